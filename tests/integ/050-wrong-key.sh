#!/bin/bash
# Rogue channels are refused with the reason named, while the real migration
# beside them completes: wrong key, stale session, wrong version, unknown
# kind, index out of range, and a duplicate of a channel already connected.
# timeout: 120
. "$(dirname "$0")/../lib/common.sh"
require_uffd

new_key
start_source --channels 2 --ram 128M --bulk-rate 200
hello() { "$TOOLS/pch-hello" --connect "127.0.0.1:$SRC_PORT" --key-file "$T/session.key" --count 2 "$@"; }
expect_refused() {
	want=$1; shift
	out=$(hello "$@") && fail "hello $* was accepted"
	case "$out" in refused:*"$want"*) log "$* -> $out" ;; *) fail "hello $*: expected '$want', got '$out'" ;; esac
}

# before the session exists
expect_refused "auth" --kind pages --index 0 --wrong-key
expect_refused "session" --kind pages --index 0 --wrong-session
expect_refused "version" --kind pages --index 0 --version 9
expect_refused "kind" --kind 7
expect_refused "index" --kind pages --index 5

start_helper --channels 2
run_vm --ram 128M --vcpus 2 --workload random &
VM_PID=$!
PIDS="$PIDS $VM_PID"

# while it runs: the slots are taken, and the key is still checked first
sleep 0.3
expect_refused "auth" --kind control --wrong-key
expect_refused "duplicate" --kind urgent

wait_pid "$VM_PID" 100 || fail "pch-vm failed"
wait_pid "$HLP_PID" 30 || fail "pch-helper failed"
wait_pid "$SRC_PID" 30 || fail "pch-source failed"
expect_json "$T/vm.json" '.result == "ok" and .pages_mismatched == 0 and .pages_verified == .pages_total'
grep -q "refused" "$T/source.log" || fail "source logged no refusal"
log "source refusals: $(jq -c '.refused' "$T/source.json")"
