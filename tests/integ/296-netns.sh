#!/bin/bash
# Two hosts on one machine: pch-source in one network namespace, pch-helper
# and pch-vm in another, joined by a link with a 1 ms one-way delay made by
# bench/netem.sh (tc netem, or its user-space delay line where the kernel has
# no sch_netem).  Bulk is throttled and the image has no zero or one-byte
# pages (the helper installs those without asking the source), so faults are
# served over the link: their p50 at least the 2 ms round trip proves the
# traffic crossed it.  The
# namespaces (named for this test, never the benchmark's pchb-*) are gone
# afterwards, whatever happens.
# timeout: 120
. "$(dirname "$0")/../lib/common.sh"
require_uffd
[ "$(id -u)" -eq 0 ] || skip "network namespaces need root"
command -v ip >/dev/null || skip "no ip command (iproute2)"

NETEM="$(cd "$(dirname "$0")/../.." && pwd)/bench/netem.sh"
export PCHB_SRC_NS="pcht$$-src" PCHB_DST_NS="pcht$$-dst"
netns_gone() { [ ! -e "/run/netns/$PCHB_SRC_NS" ] && [ ! -e "/run/netns/$PCHB_DST_NS" ]; }
# remove the namespaces first, then common.sh's cleanup with the test's status
trap 'rc=$?; "$NETEM" down >/dev/null 2>&1 || true; (exit $rc); cleanup' EXIT

rc=0
kind=$("$NETEM" probe 2>"$T/probe.log") || rc=$?
[ "$rc" -eq 77 ] && skip "$(tail -n 1 "$T/probe.log")"
[ "$rc" -eq 0 ] || fail "netem.sh probe: $(cat "$T/probe.log")"
"$NETEM" up 10gbit 1ms >"$T/netem.log" 2>&1 || rc=$?
[ "$rc" -eq 77 ] && skip "$(tail -n 1 "$T/netem.log")"
[ "$rc" -eq 0 ] || fail "netem.sh up 10gbit 1ms: $(cat "$T/netem.log")"
log "link: $kind, 1 ms one way"

migrate --ram 128M --bulk-rate 50 --zero-fraction 0 --repeat-fraction 0 --source-netns "$PCHB_SRC_NS" --dest-netns "$PCHB_DST_NS" \
	--source-addr 10.77.0.1
R=$T/report.json
expect_json "$R" '.result == "ok" and .pages_mismatched == 0 and .pages_verified == .pages_total'
expect_json "$R" '.faults > 0 and .pages_urgent > 0' '{faults,pages_urgent}'
expect_json "$R" '.fault_latency_us.p50 >= 2000' '.fault_latency_us'

# without --source-addr across two namespaces: refused before anything starts
"$BIN/pch-migrate" --no-progress --ram 16M --source-netns "$PCHB_SRC_NS" \
	--dest-netns "$PCHB_DST_NS" >/dev/null 2>"$T/noaddr.log" && fail "no --source-addr accepted"
grep -q -- '--source-addr' "$T/noaddr.log" || fail "no --source-addr: $(cat "$T/noaddr.log")"

"$NETEM" down >>"$T/netem.log" 2>&1 || fail "netem.sh down: $(tail -n 5 "$T/netem.log")"
netns_gone || fail "namespaces $PCHB_SRC_NS/$PCHB_DST_NS still there after down"
log "ok: $(jq -c '{faults,pages_urgent,duration_s,fl_p50:.fault_latency_us.p50,fl_p99:.fault_latency_us.p99}' "$R")"
