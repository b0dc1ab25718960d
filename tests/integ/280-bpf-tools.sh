#!/bin/bash
# The BPF tools against a real migration: pch-faultlat (tracepoints only)
# counts the faults the helper served and sees the latency pch-vm sees, per
# vCPU thread too;
# pch-uffdtop counts the helper's UFFDIO_COPY and ZEROPAGE ioctls as the
# helper does.  Both run at once, nested, around one pch-migrate.
# timeout: 180
. "$(dirname "$0")/../lib/common.sh"
require_uffd

for t in pch-faultlat pch-uffdtop; do
	[ -x "$BIN/$t" ] || skip "$t is not built (bpftool, clang, libbpf or the kernel's BTF is missing)"
done
[ "$(id -u)" -eq 0 ] || skip "the BPF tools need root (CAP_BPF, CAP_PERFMON)"

rc=0
"$BIN/pch-faultlat" -T --json "$T/faultlat.json" -- \
	"$BIN/pch-uffdtop" -i 0 --json "$T/uffdtop.json" -- \
	"$BIN/pch-migrate" --no-progress --json "$T/report.json" \
	--ram 256M --channels 4 --vcpus 2 --workload random --bulk-rate 300 \
	>"$T/tools.out" 2>"$T/tools.log" || rc=$?
if [ "$rc" -eq 77 ]; then
	skip "$(grep SKIP "$T/tools.log" | tail -n 1)"
fi
if [ "$rc" -ne 0 ]; then
	cat "$T/tools.out"
	tail -n 40 "$T/tools.log"
	fail "pch-faultlat -- pch-uffdtop -- pch-migrate exited $rc"
fi
R=$T/report.json
FL=$T/faultlat.json
UT=$T/uffdtop.json
expect_json "$R" '.result == "ok" and .pages_mismatched == 0' '{result, errors}'
H=$(jq -c '.helper' "$R")

# Every fault the helper read blocked a vCPU in the kernel, and no other
# fault did.  They may differ by the faults that raced with an install
# (the helper counts them: present, dup, late) and by a thread the kernel
# let go without sleeping because its page landed as it was about to.
faults=$(json "$R" '.helper.faults')
raced=$(json "$R" '.helper | .faults_present + .faults_dup + .faults_late')
seen=$(json "$FL" '.latency_us.count')
[ "$faults" -gt 100 ] || fail "too few faults to compare: $faults"
diff=$(( seen > faults ? seen - faults : faults - seen ))
[ "$diff" -le $(( raced + faults / 100 )) ] ||
	fail "pch-faultlat saw $seen blocking faults, the helper served $faults ($raced raced)"
expect_json "$FL" '.latency_us.count > 0 and (.latency_us.log2_us | add) == .latency_us.count' \
	'.latency_us'
expect_json "$FL" '.blocked_d == 0 and .lost == 0' '{blocked_d, lost}'
# QEMU 10.1's postcopy-latency-dist: 24 buckets, every wait in one
expect_json "$FL" '(.latency_dist_us | length) == 24 and
	(.latency_dist_us | add) == .latency_us.count' '{latency_dist_us, count: .latency_us.count}'

# -T: the waits are the vCPU threads' (pch-vm names them vcpu/N), each
# thread's histogram is whole, and the threads add up to the total
expect_json "$FL" '.threads_lost == 0 and ([.threads[].count] | add) == .latency_us.count' \
	'{threads_lost, count: .latency_us.count, threads: [.threads[] | {tid, comm, count}]}'
expect_json "$FL" '[.threads[] | select(.comm | test("^vcpu/[0-9]+$"))] | length == 2' \
	'[.threads[] | {tid, pid, comm, count}]'
expect_json "$FL" 'all(.threads[]; (.latency_dist_us | length) == 24 and
	(.latency_dist_us | add) == .count and .count > 0 and .p50 > 0 and .max >= .p50)' \
	'.threads'

# The kernel's p50 (fault to running again) includes the helper's service
# (uffd read to install): above half its p50, below its max; and it is the
# latency pch-vm measures around its accesses, within a factor of 2.
fl50=$(json "$FL" '.latency_us.p50')
jq -e --argjson fl "$fl50" '.helper.service_latency_us as $s | .fault_latency_us as $v |
	$fl >= $s.p50 / 2 and $fl <= $s.max and $fl >= $v.p50 / 2 and $fl <= $v.p50 * 2' "$R" >/dev/null ||
	fail "pch-faultlat p50 $fl50 us out of range: helper $(jq -c '.helper.service_latency_us' "$R"), vm $(jq -c '.fault_latency_us' "$R")"

# uffdtop: the helper's ioctls, counted as the helper counts them
hp=$(jq -c '[.processes[] | select(.comm == "pch-helper")] | .[0]' "$UT")
[ "$hp" != null ] || fail "pch-uffdtop saw no pch-helper: $(jq -c '[.processes[] | {pid, comm}]' "$UT")"
copies=$(echo "$hp" | jq '.ioctls.COPY.count')
[ "$copies" -eq "$(json "$R" '.helper.copy_ioctls')" ] ||
	fail "pch-uffdtop counted $copies UFFDIO_COPY, the helper $(json "$R" '.helper.copy_ioctls')"
zeros=$(echo "$hp" | jq '.ioctls.ZEROPAGE.ok')
[ "$zeros" -eq "$(json "$R" '.helper.zero_installed')" ] ||
	fail "pch-uffdtop counted $zeros UFFDIO_ZEROPAGE ok, the helper $(json "$R" '.helper.zero_installed')"
echo "$hp" | jq -e '.io_uring_cqes > 0' >/dev/null || fail "no io_uring completions for the helper: $hp"
jq -e '[.processes[] | select(.comm == "pch-vm")] | .[0].faults > 0' "$UT" >/dev/null ||
	fail "pch-uffdtop saw no faults of pch-vm"
# the vCPU threads pch-faultlat saw are pch-vm's
vm=$(jq '[.processes[] | select(.comm == "pch-vm")] | .[0].pid' "$UT")
jq -e --argjson vm "$vm" 'all(.threads[] | select(.comm | test("^vcpu/")); .pid == $vm)' "$FL" >/dev/null ||
	fail "vCPU threads not in pch-vm ($vm): $(jq -c '[.threads[] | {tid, pid, comm}]' "$FL")"

log "ok: faults helper $faults kernel $seen (raced $raced), p50 kernel $fl50 us" \
	"helper $(json "$R" '.helper.service_latency_us.p50') us vm $(json "$R" '.fault_latency_us.p50') us," \
	"COPY $copies ZEROPAGE $zeros, threads $(jq -c '[.threads[] | "\(.comm) \(.count)"]' "$FL")"
