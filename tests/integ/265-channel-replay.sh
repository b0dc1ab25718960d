#!/bin/bash
# Replayed and forged channel hellos are refused with the reason named and
# counted, while the migration beside them completes verified: hellos the
# real helper sent (captured by pch-proxy) replayed in the same session,
# a captured RESUME CONTROL hello among them (it must not end the live
# session), the same hellos replayed to the next session (another key),
# a hello without the key, and a second channel claiming a taken index.
# timeout: 60
. "$(dirname "$0")/../lib/common.sh"
require_uffd
[ -x "$BIN/pch-proxy" ] || fail "pch-proxy is not built ($BIN/pch-proxy)"

RAM=128M
# expect_refused WANT PORT ARGS...: pch-hello is refused with WANT in its answer
expect_refused() {
	local want=$1 port=$2 out
	shift 2
	out=$("$TOOLS/pch-hello" --connect "127.0.0.1:$port" "$@") && fail "hello $* was accepted"
	case "$out" in refused:*"$want"*) log "$* -> $out" ;; *) fail "hello $*: expected '$want', got '$out'" ;; esac
}
# verified: the migration completed and every page was checked
verified() {
	wait_pid "$VM_PID" 60 || fail "$1: pch-vm failed: $(tail -n 3 "$T/vm.log")"
	wait_pid "$HLP_PID" 30 || fail "$1: pch-helper failed"
	wait_pid "$SRC_PID" 30 || fail "$1: pch-source failed"
	expect_json "$T/vm.json" '.result == "ok" and .pages_mismatched == 0 and
		.pages_verified == .pages_total' '{result,pages_verified,pages_total,pages_mismatched}'
	expect_json "$T/source.json" '.result == "ok"' '{result,errors}'
}

# --- 1. key 1: a migration through pch-proxy, which keeps a copy of every
# hello and cuts CONTROL once, so the helper resumes with a RESUME hello
new_key
cp "$T/session.key" "$T/key1"
mkdir "$T/hellos"
start_source --channels 2 --ram $RAM --bulk-rate 60
SRC1_PORT=$SRC_PORT
start_proxy --dump-hellos "$T/hellos" control:cut@ms=400
start_helper --channels 2
run_vm --ram $RAM --vcpus 2 --workload random --timeout-s 50 &
VM_PID=$!
PIDS="$PIDS $VM_PID"
wait_log "$T/source.log" "session resumed" 10 || fail "the helper did not resume the session"
RESUME_HELLO=$(ls "$T"/hellos/*-control-resume.bin | head -n 1)
PAGES_HELLO=$(ls "$T"/hellos/*-pages-0.bin | tail -n 1)
[ -f "$RESUME_HELLO" ] && [ -f "$PAGES_HELLO" ] || fail "pch-proxy captured no hellos: $(ls "$T/hellos")"

# the helper's own hellos, sent again while the session runs: each refused
# as a replay before anything else looks at it (a RESUME would end the session)
expect_refused "replayed hello" "$SRC1_PORT" --replay "$RESUME_HELLO"
expect_refused "replayed hello" "$SRC1_PORT" --replay "$PAGES_HELLO"
expect_refused "replayed hello" "$SRC1_PORT" --replay "$RESUME_HELLO"
# a fresh hello made with the key, for a slot the helper holds: a duplicate
expect_refused "duplicate" "$SRC1_PORT" --key-file "$T/key1" --count 2 --kind pages --index 0
verified "session 1"
expect_json "$T/source.json" '.resumes == 1 and .refused["replayed hello"] == 3 and
	.refused["duplicate channel"] == 1' '{resumes,refused}'
expect_json "$T/helper.json" '.resumes == 1' '{resumes}'
grep -q "refused channel from .*: replayed hello: CONTROL hello: nonce [0-9a-f]* seen before" \
	"$T/source.log" || fail "no log line for the replayed RESUME hello"
[ "$(grep -c "session paused" "$T/source.log")" -eq 1 ] ||
	fail "a replayed RESUME hello ended the live session: $(grep "session paused" "$T/source.log")"
log "session 1: $(jq -c '{resumes,refused}' "$T/source.json")"
kill -TERM "$PRX_PID" 2>/dev/null || true
wait_pid "$PRX_PID" 10 || true
for f in source helper vm proxy; do mv "$T/$f.log" "$T/1-$f.log"; done
rm -f "$T"/*.json "$T/source.port"

# --- 2. key 2: the next migration; session 1's hellos are stale here
rm -f "$T/session.key"
new_key
start_source --channels 2 --ram $RAM --bulk-rate 100
expect_refused "stale or unknown session" "$SRC_PORT" --replay "$RESUME_HELLO"
expect_refused "stale or unknown session" "$SRC_PORT" --replay "$PAGES_HELLO"
expect_refused "authentication failed" "$SRC_PORT" --key-file "$T/session.key" --count 2 \
	--kind pages --index 1 --wrong-key
start_helper --channels 2
run_vm --ram $RAM --vcpus 2 --workload random --timeout-s 50 &
VM_PID=$!
PIDS="$PIDS $VM_PID"
# START, not "all 4 channels connected": that line was missing from the
# source's log in one make check run, and the test then waited its 5 s out
wait_log "$T/source.log" "START: streaming" 10 || fail "session 2 did not start"
expect_refused "duplicate channel: URGENT is already connected" "$SRC_PORT" \
	--key-file "$T/session.key" --count 2 --kind urgent
expect_refused "authentication failed" "$SRC_PORT" --key-file "$T/session.key" --count 2 \
	--kind control --wrong-key
verified "session 2"
expect_json "$T/source.json" '.resumes == 0 and .refused["stale or unknown session"] == 2 and
	.refused["authentication failed"] == 2 and .refused["duplicate channel"] == 1' '{resumes,refused}'
grep -q "refused channel from .*: stale or unknown session: hello: stale session" "$T/source.log" ||
	fail "no log line for the stale session"
grep -q "refused channel from .*: duplicate channel: URGENT is already connected" "$T/source.log" ||
	fail "no log line for the duplicate"
log "session 2: $(jq -c '{resumes,refused}' "$T/source.json")"
