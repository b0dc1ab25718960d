#!/bin/bash
# A fault on a 2 MiB huge page that is half sent on a bulk channel goes on
# the URGENT lane: the bulk receiver gives the page up between pieces and
# the URGENT answer is put in place, instead of the vCPU waiting for the
# rest of the bulk frame.  The source sends the first bulk frames slowly
# (64 KiB every 10 ms: 320 ms per huge page) and the vCPU starts 100 ms in,
# on page 0, which is then half received.  Every access checks the whole
# page: it must never see a partly received one.
# timeout: 120
. "$(dirname "$0")/../lib/common.sh"
require_uffd
reserve_hugepages 16

migrate --backing hugetlb --ram 32M --channels 1 --vcpus 1 --workload seq --zero-fraction 0 \
	--source-arg=--test-slow-frames=4:10 --vm-arg=--vcpu-delay-ms=100 --vm-arg=--verify-access \
	--timeout-s 60
R=$T/report.json
expect_json "$R" '.result == "ok" and .pages_mismatched == 0 and .vm.early_reads == 0'
# the half-received page was given up to the URGENT answer...
expect_json "$R" '.helper.steals >= 1' '.helper | {faults,steals,stashed,pages_urgent,pages_bulk}'
# ...so no fault waited for a slow bulk frame (320 ms each)
expect_json "$R" '.fault_latency_us.max < 200000' '.fault_latency_us'
log "ok: $(jq -c '{steals: .helper.steals, fault_max_us: .fault_latency_us.max}' "$R")"

# private hugetlb: the URGENT answer is copied in whole (UFFDIO_COPY) while
# the bulk copy of the page is still arriving; bulk's copy then finds it there
migrate --backing hugetlb-private --ram 32M --channels 1 --vcpus 1 --workload seq \
	--zero-fraction 0 --source-arg=--test-slow-frames=4:10 --vm-arg=--vcpu-delay-ms=100 \
	--vm-arg=--verify-access --timeout-s 60
expect_json "$R" '.result == "ok" and .pages_mismatched == 0 and .vm.early_reads == 0'
expect_json "$R" '.fault_latency_us.max < 200000' '.fault_latency_us'
log "private ok: $(jq -c '{fault_max_us: .fault_latency_us.max, eexist: .helper.eexist}' "$R")"
