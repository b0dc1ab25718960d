#!/bin/bash
# hugetlb 2 MiB private RAM (MAP_HUGETLB): huge pages installed whole with
# UFFDIO_COPY; a faulted zero huge page is a copy of zeros (hugetlb has no
# UFFDIO_ZEROPAGE).  Half the pages are zero and sent first, so faults hit
# known-zero huge pages.
# timeout: 120
. "$(dirname "$0")/../lib/common.sh"
require_uffd
reserve_hugepages 64

migrate --backing hugetlb-private --ram 128M --channels 2 --vcpus 2 --workload random \
	--zero-fraction 0.5 --zero-first --bulk-rate 100 --timeout-s 90
R=$T/report.json
expect_json "$R" '.result == "ok" and .pages_mismatched == 0 and .backing == "hugetlb-private"'
expect_json "$R" '.helper.blocks[0].page_size == 2097152 and .helper.blocks[0].install == "copy"' \
	'.helper.blocks'
expect_json "$R" '.helper.faults > 0 and .helper.faults_zero > 0' '.helper | {faults,faults_zero}'
log "ok: $(jq -c '.helper | {faults, faults_zero, zero_installed, pages_zero}' "$R")"
