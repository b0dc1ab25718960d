#!/bin/bash
# Zero page, then a fault on it: the source sends every zero page first, so
# the helper knows them long before the vCPUs touch them.  A fault on such a
# page must be served at once with UFFDIO_ZEROPAGE (QEMU's postcopy tests
# hung for months on a zero page marked received and never placed).
# timeout: 120
. "$(dirname "$0")/../lib/common.sh"
require_uffd

migrate --ram 128M --channels 2 --vcpus 2 --workload random --zero-fraction 0.5 \
	--zero-first --bulk-rate 100 --precopy-seconds 0.3 --timeout-s 90
R=$T/report.json
expect_json "$R" '.result == "ok" and .pages_mismatched == 0'
expect_json "$R" '.helper.faults_zero > 0' '.helper | {faults,faults_zero,zero_installed}'
expect_json "$R" '.helper.zero_installed >= .helper.faults_zero' '.helper | {faults_zero,zero_installed}'
log "ok: $(jq -c '.helper | {faults,faults_zero,zero_installed,pages_zero}' "$R")"
