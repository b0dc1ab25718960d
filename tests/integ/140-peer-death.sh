#!/bin/bash
# Nothing waits forever when a peer dies mid-migration: whichever of
# source, helper or vm is killed, the other two stop within seconds, fail
# (never report success), and say what happened.
# timeout: 150
. "$(dirname "$0")/../lib/common.sh"
require_uffd

# ThreadSanitizer cannot hand a SIGBUS to pch-vm's handler (it jumps out of
# the handler back to the access): there, pages are left unpoisoned.
POISON_ARGS=""
[ "${SANITIZE:-}" = thread ] && POISON_ARGS=--no-poison
# Before 6.6 there is no UFFDIO_POISON: the helper says so and leaves the
# pages; everything else below is checked the same
if ! uffd_has_feature 14; then
	log "UFFD_FEATURE_POISON missing (kernel before 6.6): poisoning not checked"
	POISON_ARGS=--no-poison
fi

# one migration slow enough to kill things in the middle of it
begin() {
	rm -f "$T/source.port" "$T"/*.json
	new_key_file=$T/session.key
	rm -f "$new_key_file"
	new_key
	start_source --channels 2 --ram 512M --bulk-rate 100 --resume-timeout-s 1
	start_helper --channels 2 --stall-ms 500 --resume-timeout-s 1 $POISON_ARGS
	"$BIN/pch-vm" --helper "$T/helper.sock" --report "$T/vm.json" --ram 512M --vcpus 2 \
		--workload hotset --timeout-s 60 >"$T/vm.log" 2>&1 &
	VM_PID=$!
	PIDS="$PIDS $VM_PID"
	sleep 1
}

# the source dies and does not come back within the resume deadline (1 s):
# helper fails, poisons the pages that can never arrive
# (vCPUs on them get a memory error, never a hang, never zeros), posts
# ERROR with their count; vm fails naming it, and no page reads wrong
begin
kill -KILL "$SRC_PID"
wait_pid "$VM_PID" 20 && fail "vm succeeded without its source"
wait_pid "$HLP_PID" 20 && fail "helper succeeded without its source"
grep -q "session paused: \(CONTROL\|URGENT\)" "$T/helper.log" || fail "helper did not say the source went away"
expect_json "$T/vm.json" '.result == "fail" and (.errors | length) > 0' '.errors'
if [ -z "$POISON_ARGS" ]; then
	grep -q "pages that can never arrive poisoned" "$T/helper.log" ||
		fail "helper did not poison the missing pages"
	expect_json "$T/vm.json" '.pages_poisoned > 0 and .pages_mismatched == 0 and
		.pages_verified + .pages_poisoned == .pages_total' \
		'{pages_total,pages_verified,pages_poisoned,pages_mismatched}'
	grep -q "pages could never arrive" "$T/vm.log" || fail "vm did not say pages were poisoned"
fi
log "source killed: vm says: $(jq -r '.errors[0]' "$T/vm.json")"

# the helper dies: vm fails with "helper exited", source stops
begin
kill -KILL "$HLP_PID"
wait_pid "$VM_PID" 20 && fail "vm succeeded without its helper"
wait_pid "$SRC_PID" 20 && fail "source succeeded without its helper"
grep -q "helper exited" "$T/vm.log" || fail "vm did not say the helper exited"
log "helper killed: vm says: $(jq -r '.errors[0]' "$T/vm.json")"

# the vm dies: helper and source stop and fail
begin
kill -KILL "$VM_PID"
wait_pid "$HLP_PID" 20 && fail "helper succeeded without its VMM"
wait_pid "$SRC_PID" 20 && fail "source succeeded without its helper"
grep -q "VMM closed the control socket\|VMM exited" "$T/helper.log" || fail "helper did not say the VMM left"
log "vm killed: helper says: $(grep -o 'migration failed: .*' "$T/helper.log" | head -n 1)"
