#!/bin/bash
# SPDX-License-Identifier: MIT
#
# qemu-check.sh: migrate a real guest (Debian kernel + busybox initramfs
# running memload, which checksums its RAM) between two QEMUs on loopback,
# postcopy, TCG, and check its memory afterwards.  `make qemu-check` runs it
# after `make qemu`.
#
#   scripts/qemu-check.sh [MODE...]   modes: native pch pch-kill pch-hang (default: all)
#
# native: QEMU's own postcopy.  pch: through pch-source and pch-helper, the
# QEMUs given `postcopy-helper`.  pch-kill: as pch, but pch-helper is killed
# during postcopy: the destination QEMU must exit naming pch-helper, the
# source pause or fail its migration, each within 45 s.  pch-hang: the same
# with pch-helper stopped (SIGSTOP), found out by its ring heartbeat.  The pch modes are SKIPped
# (with the reason) when the built QEMU has no such migration parameter.  Per mode: a table on stdout and
# build/qemu/check-<mode>.json; on failure the consoles and logs are kept in
# build/qemu/check-<mode>-logs/.  Env: QEMU_CHECK_ARGS (extra qemu-qmp.py run
# options, e.g. "--mib 128 --precopy-ms 300"), PCH_QEMU_CACHE.
# Exit 0 if every mode run passed (a SKIP is not a failure), 1 otherwise.
set -euo pipefail
# One compound command, read whole before it runs, so editing or checking out
# this file while it runs cannot break the run (bash reads scripts as it goes).
{

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
py=/usr/bin/python3
modes=("$@")
[ ${#modes[@]} -gt 0 ] || modes=(native pch pch-kill pch-hang)

pathf=build/qemu/qemu-system-x86_64.path
[ -r "$pathf" ] || { echo "qemu-check: $pathf missing: run make qemu first" >&2; exit 1; }
qemu=$(cat "$pathf")
firmware=$(cat build/qemu/firmware.path 2>/dev/null || true)
[ -x "$qemu" ] || { echo "qemu-check: $qemu (from $pathf) is not executable: run make qemu" >&2; exit 1; }

gdir=$(scripts/qemu-guest.sh | tail -n 1)
if [ ! -r "$gdir/vmlinuz" ] || [ ! -r "$gdir/initramfs.cpio.gz" ]; then
	echo "qemu-check: qemu-guest.sh built no guest in $gdir" >&2
	exit 1
fi

# the run's sockets, consoles and logs; removed however we leave, even if the
# python run is SIGKILLed (its QEMUs die with it: PR_SET_PDEATHSIG)
work=$(mktemp -d /tmp/pch-qemu-check.XXXXXX)
child=
trap '[ -n "$child" ] && kill "$child" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

rc=0
summary=()
for mode in "${modes[@]}"; do
	case $mode in native|pch|pch-kill|pch-hang) ;; *) echo "qemu-check: unknown mode $mode (native, pch, pch-kill, pch-hang)" >&2; exit 2 ;; esac
	if [ "$mode" != native ]; then
		if ! why=$("$py" scripts/qemu-qmp.py probe --qemu "$qemu"); then
			echo "qemu-check: $mode: SKIP: $why"
			summary+=("$mode SKIP")
			continue
		fi
	fi
	echo "qemu-check: $mode: $qemu"
	rm -f "build/qemu/check-$mode.json"
	# shellcheck disable=SC2086
	"$py" scripts/qemu-qmp.py run --mode "$mode" --qemu "$qemu" --firmware "$firmware" \
		--kernel "$gdir/vmlinuz" --initrd "$gdir/initramfs.cpio.gz" \
		--pch-bindir build/bin --workdir "$work/$mode" --json "build/qemu/check-$mode.json" \
		--logs "build/qemu/check-$mode-logs" ${QEMU_CHECK_ARGS:-} &
	child=$!
	if wait "$child"; then
		summary+=("$mode PASS")
		rm -rf "build/qemu/check-$mode-logs"
	else
		summary+=("$mode FAIL")
		rc=1
	fi
	child=
	[ -f "build/qemu/check-$mode.json" ] && echo "qemu-check: $mode: build/qemu/check-$mode.json"
done
echo "qemu-check: ${summary[*]}"
exit $rc
}
