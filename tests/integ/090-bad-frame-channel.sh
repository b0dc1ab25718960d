#!/bin/bash
# A PAGES channel that sends a bad frame is closed with an error naming the
# field, no page of that frame is installed, and the migration still
# completes: whatever that channel owed is requested on URGENT.
# timeout: 120
. "$(dirname "$0")/../lib/common.sh"
require_uffd

new_key
start_source --channels 4 --ram 128M --test-corrupt-channel 1
start_helper --channels 4
run_vm --ram 128M --vcpus 2 --workload random || fail "pch-vm failed: $(tail -n 5 "$T/vm.log")"
wait_pid "$HLP_PID" 30 || fail "pch-helper failed"
wait_pid "$SRC_PID" 30 || fail "pch-source failed"
expect_json "$T/vm.json" '.result == "ok" and .pages_mismatched == 0 and .pages_verified == .pages_total'
grep -q "PAGES channel 1: bad frame: .*block" "$T/helper.log" || fail "helper did not name the bad field"
expect_json "$T/helper.json" '.channels[1].state == "dead"' '.channels'
expect_json "$T/helper.json" '([.channels[] | select(.state != "dead")] | length) == 3' '.channels'
expect_json "$T/helper.json" '.requests_sweep > 0' '{requests_sweep,pages_urgent}'
log "ok: $(jq -c '{requests_sweep,pages_urgent,errors}' "$T/helper.json")"

# the same with a precopy phase: the sync point cannot be proven by the dead
# channel, so SYNC_REACHED(1) comes once every page is in place, not never
rm -f "$T/source.port" "$T"/*.json "$T/session.key"
new_key
start_source --channels 4 --ram 128M --test-corrupt-channel 2 --bulk-rate 200
start_helper --channels 4
run_vm --ram 128M --vcpus 2 --workload random --precopy-seconds 0.1 ||
	fail "pch-vm failed with a dead channel and a sync point: $(tail -n 5 "$T/vm.log")"
wait_pid "$HLP_PID" 30 || fail "pch-helper failed"
expect_json "$T/helper.json" '.sync_reached == 1 and .channels[2].state == "dead"' '{sync_reached,channels}'
expect_json "$T/vm.json" '.result == "ok" and .pages_mismatched == 0'
log "ok with a sync point: $(jq -c '{sync_reached,requests_sweep}' "$T/helper.json")"
