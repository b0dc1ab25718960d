#!/bin/bash
# Slowloris and floods cannot lock the real channels out: a hello that
# trickles in byte by byte is closed at the handshake deadline, and two
# floods of 300 connections (idle, trickling, garbage, half a hello), one
# just before the helper connects and one while it does, are evicted,
# refused or timed out, each counted and logged (rate-limited), while the
# migration beside them completes verified.
# timeout: 60
. "$(dirname "$0")/../lib/common.sh"
require_uffd

new_key
start_source --channels 2 --ram 128M --bulk-rate 200 --handshake-timeout-ms 1000
hello() { "$TOOLS/pch-hello" --connect "127.0.0.1:$SRC_PORT" "$@"; }

# slowloris: a byte every 100 ms would take 7.2 s; the deadline is 1 s from accept
rc=0
out=$(hello --key-file "$T/session.key" --count 2 --kind pages --index 0 --trickle-ms 100) || rc=$?
[ "$rc" -eq 4 ] || fail "slowloris: expected the source to close it (exit 4), got $rc: $out"
case "$out" in "closed by peer after "*) ;; *) fail "slowloris: $out" ;; esac
ms=$(echo "$out" | sed -n 's/.*(\([0-9]*\) ms)$/\1/p')
[ "$ms" -ge 900 ] && [ "$ms" -le 2500 ] || fail "slowloris: closed after $ms ms, deadline 1000 ms"
log "slowloris -> $out"

# a flood just before the helper: the table of connections in handshake is
# full (64) until the deadline when the helper connects; a second flood
# while it connects keeps evicting
hello --flood 300 --hold-ms 3000 --trickle-ms 50 >"$T/flood1.out" &
F1=$!
PIDS="$PIDS $F1"
sleep 0.2
start_helper --channels 2
run_vm --ram 128M --vcpus 2 --workload random --timeout-s 50 &
VM_PID=$!
PIDS="$PIDS $VM_PID"
wait_log "$T/helper.log" "control: VMM" 1 || true
hello --flood 300 --hold-ms 3000 --trickle-ms 50 >"$T/flood2.out" &
F2=$!
PIDS="$PIDS $F2"
wait_pid "$VM_PID" 50 || fail "pch-vm failed: $(tail -n 3 "$T/vm.log")"
wait_pid "$HLP_PID" 30 || fail "pch-helper failed"
wait_pid "$SRC_PID" 30 || fail "pch-source failed"
wait_pid "$F1" 10 || fail "flood 1 failed"
wait_pid "$F2" 10 || fail "flood 2 failed"
log "$(cat "$T/flood1.out")"
log "$(cat "$T/flood2.out")"
expect_json "$T/vm.json" '.result == "ok" and .pages_mismatched == 0 and
	.pages_verified == .pages_total' '{result,pages_verified,pages_total,pages_mismatched}'
expect_json "$T/source.json" '.result == "ok" and .connections >= 605 and
	.handshake_timeouts >= 1 and .handshake_evicted >= 100 and .half_open_max == 64 and
	.refused["bad magic"] >= 20 and
	.handshake_failed >= .handshake_timeouts + .handshake_evicted' \
	'{connections,handshake_failed,handshake_timeouts,handshake_evicted,half_open_max,refused}'
grep -q "no hello within 1000 ms (.* of 72 bytes), closed" "$T/source.log" ||
	fail "no log line for a connection timed out"
grep -q "evicted after [0-9]* ms with [0-9]* of 72 hello bytes" "$T/source.log" ||
	fail "no log line for an evicted connection"
grep -q "refused channel from .*: bad magic: hello: bad magic" "$T/source.log" ||
	fail "no log line for a garbage hello"
grep -q "handshakes: [0-9]* more 'evicted' lines suppressed" "$T/source.log" ||
	fail "the eviction log lines were not rate-limited"
n=$(grep -c "evicted after\|bad magic\|no hello within\|before its hello" "$T/source.log")
[ "$n" -le 200 ] || fail "$n log lines about the flood: not rate-limited"
log "source: $(jq -c '{connections,handshake_failed,handshake_timeouts,handshake_evicted,half_open_max,refused}' "$T/source.json"), $n log lines about them"
