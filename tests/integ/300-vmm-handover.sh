#!/bin/bash
# pch-source --vmm-socket: a source VMM (pch-handover, standing in for QEMU
# at its switch to postcopy) hands over its RAM block as a sealed memfd over
# the VMM socket; pch-source serves it as --file serves one and pch-vm
# verifies every page.  Bad handovers (a length the memfd lacks, an unsealed
# memfd, another block name, no fd, garbage, silence) are refused at once
# with their reason while pch-source keeps waiting; with no VMM at all it
# gives up at --vmm-timeout-s.
# timeout: 120
. "$(dirname "$0")/../lib/common.sh"
require_uffd
new_key

start_source --vmm-socket "$T/vmm.sock" --block-name pc.ram --channels 2 \
	--handshake-timeout-ms 1000 --vmm-timeout-s 60 --timeout-s 100
wait_log "$T/source.log" "waiting up to 60 s for a VMM" 5 || fail "pch-source does not wait for a VMM"

# bad KIND EXPECTED: that handover is refused, saying EXPECTED, within 5 s
bad() {
	local out t0=$SECONDS
	out=$(timeout 10 "$TOOLS/pch-handover" --socket "$T/vmm.sock" --size 16M --seed 3 \
		--timeout-ms 5000 --bad "$1") || fail "--bad $1: not refused ($out)"
	case "$out" in
	"refused: "*"$2"*) ;;
	*) fail "--bad $1: expected a refusal saying '$2', got: $out" ;;
	esac
	[ $((SECONDS - t0)) -le 5 ] || fail "--bad $1: refused only after $((SECONDS - t0)) s"
	kill -0 "$SRC_PID" 2>/dev/null || fail "pch-source died on --bad $1"
	log "--bad $1: ${out#refused: }"
}
bad length "but its fd has only 16777216 bytes"
bad unsealed "must be sealed against shrinking"
bad name "--block-name is pc.ram"
bad no-fd "expected its memfd"
bad garbage "malformed packet"
bad silent "no HELLO from the VMM in time"
grep -q "refused a handover: BLOCK pc.ram: length 33554432" "$T/source.log" ||
	fail "pch-source did not log the refusal"

out=$(timeout 10 "$TOOLS/pch-handover" --socket "$T/vmm.sock" --size 16M --seed 3) ||
	fail "the good handover failed: $out"
[ ! -e "$T/vmm.sock" ] || fail "the VMM socket is still there after the handover"
start_helper --channels 2 --timeout-s 60
run_vm --ram 16M --seed 3 --vcpus 2 --workload random --timeout-s 60 ||
	fail "pch-vm failed: $(tail -n 5 "$T/vm.log")"
expect_json "$T/vm.json" '.result == "ok" and .pages_mismatched == 0 and .pages_verified == 4096' \
	'{result,pages_verified,pages_mismatched}'
wait_pid "$SRC_PID" 20 || fail "pch-source exited $?"
expect_json "$T/source.json" '(.errors | length) == 6' '.errors'
log "served the handed-over memfd: $(jq -c '{pages_verified,faults}' "$T/vm.json")"

# no VMM: a clear error at the deadline, no hang
"$BIN/pch-source" --listen 127.0.0.1:0 --key-file "$T/session.key" --vmm-socket "$T/vmm2.sock" \
	--vmm-timeout-s 1 >"$T/source2.log" 2>&1 &
pid=$!
PIDS="$PIDS $pid"
wait_pid "$pid" 10 && fail "pch-source without a VMM exited 0"
grep -q "no VMM handed over its RAM on $T/vmm2.sock within 1 s" "$T/source2.log" ||
	fail "no clear error without a VMM: $(cat "$T/source2.log")"
[ ! -e "$T/vmm2.sock" ] || fail "the VMM socket is left behind"
log "ok"
