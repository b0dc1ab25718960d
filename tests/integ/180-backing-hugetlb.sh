#!/bin/bash
# hugetlb 2 MiB shared RAM (memfd MFD_HUGETLB): whole huge pages are the
# unit of fault, request, transfer and install; bulk received in place and
# mapped with UFFDIO_CONTINUE; a faulted zero huge page (no UFFDIO_ZEROPAGE
# on hugetlb) is a copy of zeros, the others stay holes.
# timeout: 120
. "$(dirname "$0")/../lib/common.sh"
require_uffd
reserve_hugepages 64

migrate --backing hugetlb --ram 128M --channels 2 --vcpus 2 --workload random \
	--zero-fraction 0.2 --timeout-s 90
R=$T/report.json
expect_json "$R" '.result == "ok" and .pages_mismatched == 0 and .backing == "hugetlb"'
expect_json "$R" '.helper.blocks[0].page_size == 2097152 and .helper.pages_total == 64' '.helper.blocks'
expect_json "$R" '.helper.blocks[0].install == "in-place+continue"' '.helper.blocks'
expect_json "$R" '.helper.copies.bulk_bounce_bytes <= .helper.rescued * 2097152' \
	'.helper | {copies, rescued}'
log "ok: $(jq -c '{faults: .helper.faults, zero: .helper.pages_zero, copies: .helper.copies}' "$R")"

# bulk alone: with two random vCPUs on 64 huge pages, faults may take every
# page before bulk reaches it (seen on a loaded machine); without vCPUs
# touching RAM, every non-zero huge page is received in place and CONTINUEd
migrate --backing hugetlb --ram 128M --channels 2 --vcpus 1 --workload none \
	--zero-fraction 0.2 --timeout-s 90
expect_json "$R" '.result == "ok" and .pages_mismatched == 0'
expect_json "$R" '.helper.copies.inplace_bytes > 0 and .helper.continue_ioctls > 0' \
	'.helper | {copies, continue_ioctls}'
expect_json "$R" '.helper.copies.bulk_bounce_bytes <= .helper.rescued * 2097152' \
	'.helper | {copies, rescued}'
log "bulk in place ok: $(jq -c '.helper.copies' "$R")"

# zero huge pages first, bulk slowed: faults land on huge pages known to be
# zero, which are filled with a copy of zeros (no ZEROPAGE on hugetlb)
migrate --backing hugetlb --ram 128M --channels 2 --vcpus 2 --workload random \
	--zero-fraction 0.5 --zero-first --bulk-rate 100 --timeout-s 90
expect_json "$R" '.result == "ok" and .pages_mismatched == 0'
expect_json "$R" '.helper.faults_zero > 0 and .helper.zero_installed > 0' \
	'.helper | {faults, faults_zero, zero_installed}'
log "zero huge pages ok: $(jq -c '.helper | {faults, faults_zero, zero_installed}' "$R")"
