#!/bin/bash
# A helper that hangs (SIGSTOP: alive, its socket open, silent) mid-migration
# is found out by its heartbeat on the event ring: pch-vm's wait for
# COMPLETE fails with "helper hung" once the heartbeat stood still for
# --helper-hung-ms, instead of waiting out its whole deadline.  A helper
# that is only quiet (no events for longer than that, bulk throttled) is
# not taken for hung.
# timeout: 60
. "$(dirname "$0")/../lib/common.sh"
require_uffd

new_key
RAM=64M

# quiet first: no vCPU faults and the bulk at 16 MB/s, so COMPLETE comes
# after about 4 s without any event on the ring before it; a 1.5 s hung
# timeout must not fire
start_source --channels 2 --ram $RAM --bulk-rate 16
start_helper --channels 2
run_vm --ram $RAM --vcpus 1 --workload none --timeout-s 30 --helper-hung-ms 1500 ||
	fail "quiet helper: pch-vm failed: $(jq -c .errors "$T/vm.json")"
expect_json "$T/vm.json" '.result == "ok" and .pages_mismatched == 0 and .t_start_to_complete_s > 2' \
	'{result,errors,t_start_to_complete_s}'
wait_pid "$HLP_PID" 10 || fail "quiet helper: pch-helper failed"
wait_pid "$SRC_PID" 10 || fail "quiet helper: pch-source failed"
log "quiet helper ok: $(jq -c '{result,t_start_to_complete_s}' "$T/vm.json")"

# hung: stopped 0.5 s into postcopy
rm -f "$T"/*.json "$T/source.port"
start_source --channels 2 --ram $RAM --bulk-rate 8
start_helper --channels 2
"$BIN/pch-vm" --helper "$T/helper.sock" --report "$T/vm.json" --ram $RAM --vcpus 1 \
	--workload none --timeout-s 30 --helper-hung-ms 1500 >"$T/vm.log" 2>&1 &
VM_PID=$!
PIDS="$PIDS $VM_PID"
wait_log "$T/helper.log" "serving .* pages over" 10 || fail "the helper did not start serving"
sleep 0.5
kill -STOP "$HLP_PID"
t0=$(date +%s%N)
rc=0
wait_pid "$VM_PID" 10 || rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
kill -KILL "$HLP_PID" 2>/dev/null || true
[ "$rc" -ne 0 ] || fail "pch-vm exited 0 with its helper stopped"
expect_json "$T/vm.json" '.result != "ok" and ([.errors[] | select(test("helper hung"))] | length) > 0' \
	'{result,errors}'
# the hung timeout plus one heartbeat look (375 ms) at most, and slack
[ "$ms" -ge 1400 ] && [ "$ms" -le 4000 ] || fail "pch-vm gave up $ms ms after the stop (1500 ms hung timeout)"
log "hung helper ok: pch-vm gave up $ms ms after the stop: $(jq -c '.errors' "$T/vm.json")"
