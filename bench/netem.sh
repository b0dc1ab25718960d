#!/bin/bash
# SPDX-License-Identifier: MIT
# netem.sh - two hosts on one machine: network namespaces pchb-src and
# pchb-dst joined by a link with a rate and a one-way delay, for
#   pch-migrate --source-netns pchb-src --dest-netns pchb-dst --source-addr 10.77.0.1
#
#   bench/netem.sh up RATE DELAY   make them (again: an old pair goes first)
#   bench/netem.sh down            remove them (succeeds when none are there)
#   bench/netem.sh status          what is there
#   bench/netem.sh probe           which link kind this kernel can make (exit 77: none)
#
# RATE and DELAY are tc's units (10gbit, 1ms, 100us); DELAY is one way, so
# the round trip is 2 x DELAY.  The source side is 10.77.0.1/24, the
# destination side 10.77.0.2/24, and lo is up in both.
#
# The link is a veth pair with `tc qdisc add ... root netem rate RATE delay
# DELAY` on both ends.  A kernel without sch_netem (CONFIG_NET_SCH_NETEM)
# gets, with PCHB_LINK=auto (the default), a tun device in each namespace and
# bench/delayline.py carrying the packets across with the same rate and delay
# model in user space (its CPU bounds throughput); PCHB_LINK=netem insists on
# netem, PCHB_LINK=delayline on the fallback.
#
# Environment: PCHB_SRC_NS, PCHB_DST_NS (namespace names, default pchb-src and
# pchb-dst: tests use their own), PCHB_LINK (auto|netem|delayline).
# Exit status: 0 done, 1 failed, 2 usage, 77 the kernel or the tools lack what
# is needed (the reason on stderr).  Root only.
set -u

SRC=${PCHB_SRC_NS:-pchb-src}
DST=${PCHB_DST_NS:-pchb-dst}
LINK=${PCHB_LINK:-auto}
SRC_IP=10.77.0.1
DST_IP=10.77.0.2
VETH_SRC=pchb-v0 # device names live in their namespace: no clash between pairs
VETH_DST=pchb-v1
TUN=pchb-tun
STATE=/run/pchb
HERE=$(cd "$(dirname "$0")" && pwd)
T=10 # seconds any one ip/tc command may take

me=$(basename "$0")
err() { echo "$me: $*" >&2; }
die() { err "$*"; exit 1; }
lack() { err "$*"; exit 77; }
usage() {
	sed -n '3,12p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

# run CMD...: with a deadline; says which command failed and how
run() {
	local out rc
	out=$(timeout -k 2 "$T" "$@" 2>&1)
	rc=$?
	[ "$rc" -eq 124 ] && out="no answer within $T s"
	if [ "$rc" -ne 0 ]; then
		err "$* failed: $out"
		return "$rc"
	fi
	return 0
}

ns_there() { [ -e "/run/netns/$1" ]; }

check_tools() {
	[ "$(id -u)" -eq 0 ] || lack "needs root (ip netns, tc)"
	command -v ip >/dev/null || lack "no ip command (Debian package iproute2)"
	command -v timeout >/dev/null || lack "no timeout command (coreutils)"
	case "$SRC$DST" in */*) die "bad namespace names $SRC $DST" ;; esac
	[ "$SRC" != "$DST" ] || die "the source and destination namespaces must differ ($SRC)"
}

# netem_ok: 0 when this kernel has sch_netem (tried on lo of a scratch
# namespace, so nothing of the host's is touched)
netem_ok() {
	local ns="pchb-probe-$$" rc=1
	command -v tc >/dev/null || return 1
	timeout "$T" ip netns add "$ns" 2>/dev/null || return 1
	timeout "$T" tc -n "$ns" qdisc add dev lo root netem delay 1ms 2>/dev/null && rc=0
	timeout "$T" ip netns del "$ns" 2>/dev/null
	return $rc
}

tun_ok() {
	[ -c /dev/net/tun ] && command -v python3 >/dev/null && [ -r "$HERE/delayline.py" ]
}

# probe: print the link kind PCHB_LINK resolves to here, or exit 77 why not
probe() {
	local ns="pchb-probe-$$"
	timeout "$T" ip netns add "$ns" 2>/dev/null ||
		lack "cannot make a network namespace (ip netns add: CONFIG_NET_NS, root?)"
	timeout "$T" ip netns del "$ns" 2>/dev/null
	case "$LINK" in
	netem|auto)
		if netem_ok; then
			echo netem
			return 0
		fi
		[ "$LINK" = netem ] &&
			lack "tc netem is not available: this kernel has no sch_netem (CONFIG_NET_SCH_NETEM; no module to load here?)"
		tun_ok || lack "neither tc netem (CONFIG_NET_SCH_NETEM) nor the delay line fallback (/dev/net/tun, python3, $HERE/delayline.py) is available"
		err "tc netem is not available (no sch_netem in this kernel): using the user-space delay line bench/delayline.py over tun (throughput bounded by its CPU)"
		echo delayline
		;;
	delayline)
		tun_ok || lack "the delay line needs /dev/net/tun (CONFIG_TUN), python3 and $HERE/delayline.py"
		echo delayline
		;;
	*) die "PCHB_LINK must be auto, netem or delayline, not '$LINK'" ;;
	esac
}

pidfile() { echo "$STATE/$SRC.delayline.pid"; }

stop_delayline() {
	local pf pid
	pf=$(pidfile)
	[ -s "$pf" ] || { rm -f "$pf"; return 0; }
	pid=$(cat "$pf")
	# only that pid if it is still our delay line (pids are reused)
	if [ -n "$pid" ] && grep -qs delayline.py "/proc/$pid/cmdline"; then
		kill -TERM "$pid" 2>/dev/null
		for _ in $(seq 40); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.05
		done
		kill -KILL "$pid" 2>/dev/null
	fi
	rm -f "$pf"
}

down() {
	local ns rc=0 pid
	check_tools
	stop_delayline
	for ns in "$SRC" "$DST"; do
		ns_there "$ns" || continue
		# processes still inside would keep the namespace alive
		for pid in $(timeout "$T" ip netns pids "$ns" 2>/dev/null); do
			err "killing process $pid still in namespace $ns: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)"
			kill -KILL "$pid" 2>/dev/null
		done
		run ip netns del "$ns" || rc=1
	done
	rm -f "$STATE/$SRC.link" "$STATE/$SRC.delayline.log"
	for _ in $(seq 20); do
		ns_there "$SRC" || ns_there "$DST" || break
		sleep 0.05
	done
	ns_there "$SRC" && { err "namespace $SRC is still there"; rc=1; }
	ns_there "$DST" && { err "namespace $DST is still there"; rc=1; }
	return $rc
}

# reachable: the source side answers a TCP SYN from the destination side
# (a refused connection is an answer: the RST came back over the link)
reachable() {
	local out
	out=$(timeout 5 ip netns exec "$DST" bash -c "exec 3<>/dev/tcp/$SRC_IP/9" 2>&1)
	case "$out" in *refused*) return 0 ;; esac
	[ -z "$out" ] && return 0
	err "$DST cannot reach $SRC_IP in $SRC: ${out:-no answer in 5 s}"
	return 1
}

up() {
	local rate=$1 delay=$2 kind ns
	check_tools
	case "$rate" in [0-9]*) ;; *) die "bad RATE '$rate' (e.g. 10gbit)" ;; esac
	case "$delay" in [0-9]*) ;; *) die "bad DELAY '$delay' (e.g. 1ms)" ;; esac
	kind=$(probe) || exit $?
	down || die "could not remove the old $SRC/$DST"
	trap 'rc=$?; if [ $rc -ne 0 ]; then err "up failed: removing what was made"; down; fi; exit $rc' EXIT
	mkdir -p "$STATE" || die "mkdir $STATE"
	for ns in "$SRC" "$DST"; do
		run ip netns add "$ns" || exit 1
		run ip -n "$ns" link set lo up || exit 1
	done
	if [ "$kind" = netem ]; then
		run ip -n "$SRC" link add "$VETH_SRC" type veth peer name "$VETH_DST" netns "$DST" ||
			lack "cannot make a veth pair (CONFIG_VETH?)"
		run ip -n "$SRC" addr add "$SRC_IP/24" dev "$VETH_SRC" || exit 1
		run ip -n "$DST" addr add "$DST_IP/24" dev "$VETH_DST" || exit 1
		run ip -n "$SRC" link set "$VETH_SRC" up || exit 1
		run ip -n "$DST" link set "$VETH_DST" up || exit 1
		# limit: room for a bandwidth-delay product of packets (the default 1000 drops)
		run tc -n "$SRC" qdisc add dev "$VETH_SRC" root netem rate "$rate" delay "$delay" limit 100000 ||
			exit 1
		run tc -n "$DST" qdisc add dev "$VETH_DST" root netem rate "$rate" delay "$delay" limit 100000 ||
			exit 1
	else
		for ns in "$SRC" "$DST"; do
			run ip -n "$ns" tuntap add dev "$TUN" mode tun || lack "cannot make a tun device (CONFIG_TUN?)"
			# big packets: fewer of them for the delay line to carry
			run ip -n "$ns" link set "$TUN" mtu 65000 txqueuelen 10000 up || exit 1
		done
		run ip -n "$SRC" addr add "$SRC_IP/24" dev "$TUN" || exit 1
		run ip -n "$DST" addr add "$DST_IP/24" dev "$TUN" || exit 1
		rm -f "$(pidfile)"
		setsid python3 "$HERE/delayline.py" --ns "$SRC" "$DST" --dev "$TUN" --rate "$rate" \
			--delay "$delay" --pidfile "$(pidfile)" </dev/null >/dev/null 2>"$STATE/$SRC.delayline.log" &
		for _ in $(seq 100); do
			[ -s "$(pidfile)" ] && break
			kill -0 $! 2>/dev/null || break
			sleep 0.05
		done
		[ -s "$(pidfile)" ] || die "the delay line did not start: $(cat "$STATE/$SRC.delayline.log" 2>/dev/null)"
	fi
	echo "$kind $rate $delay" >"$STATE/$SRC.link"
	reachable || exit 1
	trap - EXIT
	echo "$SRC ($SRC_IP) <-> $DST ($DST_IP): $kind rate $rate, one-way delay $delay"
}

status() {
	local ns
	check_tools
	if ! ns_there "$SRC" && ! ns_there "$DST"; then
		echo "down: no $SRC, no $DST"
		return 0
	fi
	[ -s "$STATE/$SRC.link" ] && echo "link: $(cat "$STATE/$SRC.link")"
	[ -s "$(pidfile)" ] && echo "delay line: pid $(cat "$(pidfile)")"
	for ns in "$SRC" "$DST"; do
		if ! ns_there "$ns"; then
			echo "$ns: missing"
			continue
		fi
		echo "$ns:"
		timeout "$T" ip -n "$ns" -br addr 2>&1 | sed 's/^/  /'
		command -v tc >/dev/null && timeout "$T" tc -n "$ns" qdisc show 2>&1 | grep -v 'qdisc noqueue' | sed 's/^/  /'
	done
}

case "${1:-}" in
up) [ $# -eq 3 ] || usage; up "$2" "$3" ;;
down) [ $# -eq 1 ] || usage; down ;;
status) [ $# -eq 1 ] || usage; status ;;
probe) [ $# -eq 1 ] || usage; check_tools; probe ;;
*) usage ;;
esac
