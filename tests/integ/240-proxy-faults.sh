#!/bin/bash
# Through pch-proxy (source -> proxy -> helper), three network faults, each
# on a fresh proxy: a PAGES channel cut mid-stream (its pages come over
# URGENT by the sweep), latency on every channel kind (PAGES and URGENT
# delayed), and a PAGES channel stalled for good (reported silent, given
# up).  Every migration completes and verifies; the proxy says what it did.
# timeout: 120
. "$(dirname "$0")/../lib/common.sh"
require_uffd
[ -x "$BIN/pch-proxy" ] || fail "pch-proxy is not built ($BIN/pch-proxy)"

new_key

# migrate_via NAME SOURCE_ARGS -- PROXY_FAULTS -- HELPER_ARGS: one verified
# migration through a fresh source and proxy; logs kept as NAME-*.log
migrate_via() {
	local name=$1 src=() prx=() hlp=()
	shift
	while [ "$1" != -- ]; do src+=("$1"); shift; done
	shift
	while [ "$1" != -- ]; do prx+=("$1"); shift; done
	shift
	hlp=("$@")
	rm -f "$T/source.port" "$T"/*.json
	start_source --channels 2 "${src[@]}"
	start_proxy "${prx[@]}"
	start_helper --channels 2 "${hlp[@]}"
	run_vm --ram "$RAM" --vcpus 1 --timeout-s 60 "${VM_ARGS[@]}" ||
		fail "$name: pch-vm failed: $(tail -n 3 "$T/vm.log")"
	wait_pid "$HLP_PID" 20 || fail "$name: pch-helper failed"
	wait_pid "$SRC_PID" 20 || fail "$name: pch-source failed"
	kill -TERM "$PRX_PID"
	wait_pid "$PRX_PID" 10 || fail "$name: pch-proxy exited with status $? on SIGTERM"
	expect_json "$T/vm.json" '.result == "ok" and .pages_mismatched == 0' \
		'{result,pages_mismatched,errors}'
	grep -q "summary: conn [0-9]* urgent: source->helper [1-9]" "$T/proxy.log" ||
		fail "$name: no byte count for URGENT in the proxy's summary"
	for f in source helper vm proxy; do mv "$T/$f.log" "$T/$name-$f.log"; done
}

RAM=128M VM_ARGS=(--workload random)
# 1. PAGES 1 cut (FIN) after exactly 1000000 bytes: the helper closes it,
# and the pages it owed come over URGENT by the sweep once PAGES 0 ends
migrate_via cut --ram $RAM -- pages:1:cut@bytes=1000000 --
grep -q "fault pages:1:cut@bytes=1000000: fired on pages:1 (conn [0-9]*) at byte 1000000 " \
	"$T/cut-proxy.log" || fail "cut: the proxy did not cut pages:1 at byte 1000000"
grep -q "summary: conn [0-9]* pages:1: source->helper 1000000 bytes" "$T/cut-proxy.log" ||
	fail "cut: pages:1 relayed other than 1000000 bytes"
grep -q "PAGES channel 1: .*channel closed" "$T/cut-helper.log" ||
	fail "cut: the helper did not name the cut channel"
expect_json "$T/helper.json" '.requests_sweep > 0' '{requests_sweep,channels}'
log "cut ok: $(grep -o 'PAGES channel 1: .*' "$T/cut-helper.log" | head -n 1);" \
	"$(jq -c '{requests_sweep,pages_urgent,channels:[.channels[].state]}' "$T/helper.json")"

RAM=64M
# 2. latency, nothing lost: one PAGES channel delayed 20 ms per chunk from
# 100 ms on (bulk limited so it is still streaming then), URGENT 2 ms each
# way from the start
migrate_via delay --ram $RAM --bulk-rate 50 -- any-pages:delay=20@ms=100 urgent:delay=2@ms=0 --
for f in any-pages:delay=20@ms=100 urgent:delay=2@ms=0; do
	grep -q "summary: fault $f: fired 1 time$" "$T/delay-proxy.log" ||
		fail "delay: fault $f did not fire once"
done
log "delay ok: $(grep -o 'fired on [a-z:0-9]* (conn [0-9]*) at byte [0-9]*' "$T/delay-proxy.log" |
	paste -sd ';');" "$(jq -c '{faults,pages_urgent,service_latency_us:.service_latency_us.p50}' \
	"$T/helper.json" 2>/dev/null)"

# 3. PAGES 0 stalled for good after 500000 bytes (open, silent both ways):
# the helper reports it silent, gives it up after 1 s, and the sweep brings
# what the source had queued on it.  The vCPU starts late: faulting at once,
# it would pull those few pages over URGENT before the channel is silent
# long enough to be reported (the run then completes in ~0.4 s, stall and all)
VM_ARGS=(--workload seq --vcpu-delay-ms 2000)
migrate_via stall --ram $RAM -- pages:0:stall@bytes=500000 -- --silent-ms 400 --channel-timeout-s 1
grep -q "fault pages:0:stall@bytes=500000: fired on pages:0 (conn [0-9]*) at byte 500000 .*stalled for good" \
	"$T/stall-proxy.log" || fail "stall: the proxy did not stall pages:0 at byte 500000"
grep -q "PAGES channel 0: nothing received for" "$T/stall-helper.log" ||
	fail "stall: the helper did not report the silent channel"
grep -q "PAGES channel 0: silent for 1 s; channel closed" "$T/stall-helper.log" ||
	fail "stall: the helper did not give the silent channel up"
expect_json "$T/helper.json" '.requests_sweep > 0' '{requests_sweep,channels}'
log "stall ok: $(jq -c '{requests_sweep,pages_urgent,channels:[.channels[].state]}' \
	"$T/helper.json")"
