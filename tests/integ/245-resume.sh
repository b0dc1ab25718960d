#!/bin/bash
# The session survives losing its source (docs/protocol.md 5.8): the helper
# pauses (faulting vCPUs wait, nothing is lost), reconnects with the same
# session, sends what it has, and the source streams the rest and answers
# the faults again.  Five losses, each once, each migration verified byte
# for byte: URGENT reset, CONTROL cut, CONTROL stalled (found by the missing
# keep-alives), the source killed with SIGKILL and started again from the
# same image, and a source that never comes back (the migration fails
# loudly at the resume deadline, the missing pages poisoned).
# timeout: 150
. "$(dirname "$0")/../lib/common.sh"
require_uffd
[ -x "$BIN/pch-proxy" ] || fail "pch-proxy is not built ($BIN/pch-proxy)"

new_key
RAM=128M
# a source slow enough that every fault fires mid-stream
SRC_ARGS=(--channels 2 --ram $RAM --bulk-rate 100) VCPUS=2

# resumed NAME: the migration completed, verified, after at least one resume
resumed() {
	local name=$1
	wait_pid "$HLP_PID" 30 || fail "$name: pch-helper failed: $(grep -m1 'migration failed' "$T/helper.log")"
	expect_json "$T/vm.json" '.result == "ok" and .pages_mismatched == 0 and
		.pages_verified == .pages_total' '{result,pages_verified,pages_total,pages_mismatched,errors}'
	expect_json "$T/helper.json" '.result == "ok" and .resumes >= 1' '{result,resumes,paused_ms,errors}'
	grep -q "session paused: " "$T/helper.log" || fail "$name: the helper did not say it paused"
	grep -q "session resumed after " "$T/helper.log" || fail "$name: the helper did not say it resumed"
	log "$name ok: $(grep -o 'session paused: [^;]*' "$T/helper.log" | head -n 1);" \
		"$(grep -o 'session resumed after [0-9.]* s' "$T/helper.log" | head -n 1);" \
		"$(jq -c '{resumes,paused_ms,pages_urgent,faults}' "$T/helper.json")"
	for f in source helper vm proxy; do
		[ -f "$T/$f.log" ] && mv "$T/$f.log" "$T/$name-$f.log"
	done
	return 0
}

# via_proxy NAME FAULT [HELPER_ARGS...]: a migration through pch-proxy
# with one injected fault; the source is the same process throughout
via_proxy() {
	local name=$1 fault=$2
	shift 2
	rm -f "$T/source.port" "$T"/*.json
	start_source "${SRC_ARGS[@]}"
	start_proxy "$fault"
	start_helper --channels 2 "$@"
	run_vm --ram $RAM --vcpus $VCPUS --workload random --timeout-s 90 ||
		fail "$name: pch-vm failed: $(tail -n 3 "$T/vm.log")"
	wait_pid "$SRC_PID" 20 || fail "$name: pch-source failed"
	expect_json "$T/source.json" '.result == "ok" and .resumes >= 1' '{result,resumes,errors}'
	kill -TERM "$PRX_PID"
	wait_pid "$PRX_PID" 10 || true
	grep -q "summary: fault $fault: fired 1 time" "$T/proxy.log" ||
		fail "$name: the proxy did not fire $fault once"
	resumed "$name"
}

# 1. URGENT reset while faults are being answered
via_proxy urgent-reset urgent:reset@bytes=300000
# 2. CONTROL closed (FIN both ways) half a second in
via_proxy control-cut control:cut@ms=500
# 3. CONTROL stalled: open, silent both ways; only keep-alives can tell
# (a longer migration, still running when the silence is found)
RAM=256M SRC_ARGS=(--channels 2 --ram 256M --bulk-rate 40) VCPUS=1
via_proxy control-stall control:stall@ms=200 --keepalive-timeout-ms 2000
grep -q "CONTROL channel silent for [0-9]* ms, not even a keep-alive" "$T/control-stall-helper.log" ||
	fail "control-stall: the helper did not find CONTROL silent"

RAM=128M SRC_ARGS=(--channels 2 --ram $RAM --bulk-rate 100) VCPUS=2

# 4. the source killed outright, then started again from the same image on
# the same port: the helper's reconnects find the new process
rm -f "$T/source.port" "$T"/*.json
start_source "${SRC_ARGS[@]}"
PORT=$SRC_PORT
start_helper --channels 2
"$BIN/pch-vm" --helper "$T/helper.sock" --report "$T/vm.json" --ram $RAM --vcpus 2 \
	--workload random --timeout-s 90 >"$T/vm.log" 2>&1 &
VM_PID=$!
PIDS="$PIDS $VM_PID"
sleep 0.7
kill -KILL "$SRC_PID"
wait "$SRC_PID" 2>/dev/null || true
mv "$T/source.log" "$T/source-killed.log"
sleep 0.5
rm -f "$T/source.port"
"$BIN/pch-source" --listen "127.0.0.1:$PORT" --port-file "$T/source.port" \
	--key-file "$T/session.key" --stats "$T/source.json" "${SRC_ARGS[@]}" >"$T/source.log" 2>&1 &
SRC_PID=$!
PIDS="$PIDS $SRC_PID"
wait_pid "$VM_PID" 60 || fail "source-restart: pch-vm failed: $(tail -n 3 "$T/vm.log")"
resumed source-restart
wait_pid "$SRC_PID" 20 || fail "source-restart: the new pch-source failed"
expect_json "$T/source.json" '.result == "ok" and .pages_skipped > 0' '{result,pages_skipped,errors}'

# 4b. CONTROL reset while the first session is being set up (right after
# the source's ack): START retries it as a resume.  Channels the helper was
# still connecting when CONTROL broke reach a source that has paused the
# session; it closes them unacked (stale_channels) so they cannot take the
# slots the retry needs ("duplicate channel", seen in a stress run)
rm -f "$T/source.port" "$T"/*.json
start_source "${SRC_ARGS[@]}"
start_proxy control:reset@bytes=80
start_helper --channels 2
run_vm --ram $RAM --vcpus $VCPUS --workload random --timeout-s 90 ||
	fail "setup-reset: pch-vm failed: $(tail -n 3 "$T/vm.log")"
wait_pid "$SRC_PID" 20 || fail "setup-reset: pch-source failed: $(tail -n 3 "$T/source.log")"
kill -TERM "$PRX_PID"
wait_pid "$PRX_PID" 10 || true
expect_json "$T/vm.json" '.result == "ok" and .pages_mismatched == 0 and
	.pages_verified == .pages_total' '{result,pages_verified,pages_total,errors}'
wait_pid "$HLP_PID" 30 || fail "setup-reset: pch-helper failed"
grep -q "broke while being set up" "$T/helper.log" ||
	fail "setup-reset: the helper did not retry the session (proxy: $(grep -c fired "$T/proxy.log") faults fired)"
log "setup-reset ok: $(grep -o 'START: session open after [0-9]* retries' "$T/helper.log");" \
	"source: $(jq -c '{stale_channels, resumes}' "$T/source.json")"
for f in source helper vm proxy; do
	[ -f "$T/$f.log" ] && mv "$T/$f.log" "$T/setup-reset-$f.log"
done

# 5. the source killed and never back: the helper gives up at the resume
# deadline, poisons what can never arrive, and the VMM is told
POISON_ARGS=""
[ "${SANITIZE:-}" = thread ] && POISON_ARGS=--no-poison # (see 140-peer-death.sh)
# before 6.6 there is no UFFDIO_POISON: the helper says so and leaves the pages
if ! uffd_has_feature 14; then
	log "UFFD_FEATURE_POISON missing (kernel before 6.6): poisoning not checked"
	POISON_ARGS=--no-poison
fi
rm -f "$T/source.port" "$T"/*.json
start_source "${SRC_ARGS[@]}"
start_helper --channels 2 --resume-timeout-s 2 $POISON_ARGS
"$BIN/pch-vm" --helper "$T/helper.sock" --report "$T/vm.json" --ram $RAM --vcpus 2 \
	--workload random --timeout-s 60 >"$T/vm.log" 2>&1 &
VM_PID=$!
PIDS="$PIDS $VM_PID"
sleep 0.7
kill -KILL "$SRC_PID"
wait_pid "$VM_PID" 30 && fail "gone: vm succeeded without its source"
wait_pid "$HLP_PID" 10 && fail "gone: helper succeeded without its source"
grep -q "and not back within 2 s" "$T/helper.log" || fail "gone: the helper did not say it gave up"
expect_json "$T/vm.json" '.result == "fail"' '{result,errors}'
if [ -z "$POISON_ARGS" ]; then
	expect_json "$T/vm.json" '.pages_poisoned > 0 and .pages_mismatched == 0 and
		.pages_verified + .pages_poisoned == .pages_total' \
		'{pages_total,pages_verified,pages_poisoned,pages_mismatched}'
fi
log "gone ok: $(grep -o 'migration failed: .*' "$T/helper.log" | head -n 1)"
