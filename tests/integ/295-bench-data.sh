#!/bin/bash
# The measurement data benchmarks plot: pch-migrate --fault-log (pch-vm: a
# CSV row per vCPU fault) and --timeline (pch-helper: progress every 10 ms),
# and the report's t0_us, maxrss and state_bytes fields.  The CSVs must agree
# with the report: one fault-log row per vCPU fault kept, the timeline in
# time order with pages in place never going back and all of them at the end.
# timeout: 120
. "$(dirname "$0")/../lib/common.sh"
require_uffd

FL=$T/faults.csv
TL=$T/timeline.csv
migrate --ram 128M --channels 2 --vcpus 2 --workload random --bulk-rate 200 \
	--fault-log "$FL" --timeline "$TL"
R=$T/report.json
expect_json "$R" '.result == "ok" and .pages_verified == .pages_total'

# headers, exactly
[ "$(head -n 1 "$FL")" = "t_us,lat_us,vcpu,page" ] || fail "$FL: header is '$(head -n 1 "$FL")'"
[ "$(head -n 1 "$TL")" = "t_us,pages_inplace,pages_bulk,pages_urgent,faults" ] ||
	fail "$TL: header is '$(head -n 1 "$TL")'"

# fault log: rows kept + dropped == the vCPUs' faults, and here none dropped
rows=$(($(wc -l <"$FL") - 1))
expect_json "$R" '.vcpu_faults > 50 and .fault_log_dropped == 0' '{vcpu_faults,fault_log_dropped}'
expect_json "$R" ".vcpu_faults == $rows + .fault_log_dropped and .vm.fault_log_rows == $rows" \
	'{vcpu_faults,fault_log_dropped,rows:.vm.fault_log_rows}'
t0=$(json "$R" .t0_us)
pages=$(json "$R" .pages_total)
vcpus=$(json "$R" .vcpus)
# every row well formed: a fault after the vCPUs started, a latency, a vCPU, a page of RAM
awk -F, -v t0="$t0" -v pages="$pages" -v vcpus="$vcpus" '
	NR == 1 { next }
	NF != 4 || $1 !~ /^[0-9]+$/ || $2 !~ /^[0-9]+\.[0-9]$/ || $3 !~ /^[0-9]+$/ ||
	$4 !~ /^[0-9]+$/ { print "line " NR ": malformed: " $0; bad = 1; exit }
	$1 + 0 < t0 { print "line " NR ": fault at " $1 " before t0_us " t0; bad = 1; exit }
	$3 + 0 >= vcpus || $4 + 0 >= pages { print "line " NR ": vcpu or page out of range: " $0; bad = 1; exit }
	$3 == last_v && $1 + 0 < last_t { print "line " NR ": vcpu " $3 " goes back in time"; bad = 1; exit }
	{ last_v = $3; last_t = $1 + 0 }
	END { exit bad }' "$FL" || fail "$FL: bad rows"

# timeline: in time order, pages_inplace never decreasing, all in place at the end
awk -F, -v pages="$pages" '
	NR == 1 { next }
	NF != 5 { print "line " NR ": malformed: " $0; bad = 1; exit }
	NR > 2 && $1 + 0 < t { print "line " NR ": t_us " $1 " before " t; bad = 1; exit }
	NR > 2 && ($2 + 0 < ip || $3 + 0 < bu || $4 + 0 < ur || $5 + 0 < fa) {
		print "line " NR ": a counter went back: " $0; bad = 1; exit }
	{ t = $1 + 0; ip = $2 + 0; bu = $3 + 0; ur = $4 + 0; fa = $5 + 0; n++ }
	END {
		if (bad) exit 1
		if (n < 3) { print "only " n " rows"; exit 1 }
		if (ip != pages) { print "last row: pages_inplace " ip ", pages_total " pages; exit 1 }
	}' "$TL" || fail "$TL: bad timeline"
first=$(sed -n 2p "$TL" | cut -d, -f1)
last=$(tail -n 1 "$TL" | cut -d, -f1)
[ "$first" -le "$t0" ] && [ "$t0" -le "$last" ] ||
	fail "t0_us $t0 is not within the timeline ($first..$last)"
# one row per 10 ms: at least a third of them, however loaded the machine is
span_ms=$(((last - first) / 1000))
trows=$(($(wc -l <"$TL") - 1))
[ "$trows" -ge $((span_ms / 30)) ] || fail "$trows timeline rows over $span_ms ms"
# the last row's faults: what the helper counted by then
expect_json "$R" ".faults >= $(tail -n 1 "$TL" | cut -d, -f5)" '{faults}'

# memory: each child's peak RSS, the helper's page state (5 bitmaps, anon RAM)
expect_json "$R" '.helper_maxrss_kb > 0 and .source_maxrss_kb > 0 and .vm_maxrss_kb > 0' \
	'{helper_maxrss_kb,source_maxrss_kb,vm_maxrss_kb}'
expect_json "$R" ".vm_maxrss_kb > 128 * 1024 * 0.9" '{vm_maxrss_kb}'
expect_json "$R" ".state_bytes == 5 * ((((.pages_total + 63) / 64) | floor) * 8)" '{state_bytes,pages_total}'
log "ok: $rows faults, $trows timeline rows over $span_ms ms, $(jq -c '{t0_us,state_bytes,helper_maxrss_kb,source_maxrss_kb,vm_maxrss_kb}' "$R")"
