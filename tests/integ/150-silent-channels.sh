#!/bin/bash
# A source that goes silent mid-stream: the helper reports every streaming
# channel that has received nothing for --silent-ms, gives them up after
# --channel-timeout-s, and once the source speaks again the pages those
# channels owed come over URGENT; every page verifies.
# timeout: 120
. "$(dirname "$0")/../lib/common.sh"
require_uffd

new_key
start_source --channels 2 --ram 256M --bulk-rate 100
start_helper --channels 2 --silent-ms 400 --channel-timeout-s 1
run_vm --ram 256M --vcpus 1 --workload seq --timeout-s 60 &
VM_PID=$!
PIDS="$PIDS $VM_PID"
sleep 0.8
kill -STOP "$SRC_PID"
sleep 1.8
kill -CONT "$SRC_PID"
wait_pid "$VM_PID" 60 || fail "pch-vm failed after the source's silence: $(tail -n 3 "$T/vm.log")"
wait_pid "$HLP_PID" 20 || fail "pch-helper failed"
grep -q "PAGES channel [01]: nothing received for" "$T/helper.log" || fail "no silence reported"
grep -q "silent for 1 s; channel closed" "$T/helper.log" || fail "silent channel not given up"
expect_json "$T/vm.json" '.result == "ok" and .pages_mismatched == 0'
expect_json "$T/helper.json" '.requests_sweep > 0' '{requests_sweep,channels}'
log "ok: $(jq -c '{requests_sweep,pages_urgent,channels:[.channels[].state]}' "$T/helper.json")"
