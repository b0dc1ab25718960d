#!/bin/sh
# Install the Debian packages pch needs to build and test, if any is missing.
# Safe to run again: it does nothing when everything is present.
set -eu

# clang and its runtimes (libFuzzer, ASan, UBSan) for make fuzz; libbpf,
# bpftool and libelf/zlib for the BPF tools in bpf/ (clang builds their BPF
# side); systemtap-sdt-dev for the USDT probes (sys/sdt.h, lib/probes.h);
# python3 for the rogue peers of tests/integ/275-limits.sh and make bench's
# driver (bench/bench.py); gnuplot-nox for make bench's plots; iproute2 for its
# network namespaces and tc netem (make bench NETEM=...)
PKGS="build-essential pkg-config liburing-dev libglib2.0-dev libjson-glib-dev check jq clang libclang-rt-14-dev
libbpf-dev bpftool libelf-dev zlib1g-dev systemtap-sdt-dev python3 gnuplot-nox iproute2"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing="$missing $p"
	fi
done

[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "deps.sh: missing Debian packages:$missing" >&2
	echo "deps.sh: run as root (or: sudo apt-get install$missing)" >&2
	exit 1
fi

echo "deps.sh: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing >/dev/null
