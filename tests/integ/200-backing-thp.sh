#!/bin/bash
# THP-backed anonymous RAM (MADV_HUGEPAGE): faults and installs stay 4 KiB
# (UFFDIO_COPY installs base pages); the report says what THP did.
# timeout: 120
. "$(dirname "$0")/../lib/common.sh"
require_uffd
grep -q '\[never\]' /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null &&
	log "note: THP is disabled on this machine; MADV_HUGEPAGE has no effect"

migrate --backing thp --ram 128M --channels 4 --vcpus 2 --workload random --timeout-s 90
R=$T/report.json
expect_json "$R" '.result == "ok" and .pages_mismatched == 0 and .backing == "thp"'
expect_json "$R" '.helper.faults > 0 and .helper.blocks[0].backing == "thp"' '.helper | {faults,blocks}'
expect_json "$R" '.vm.thp.enabled != null' '.vm.thp'
log "ok: $(jq -c '{faults: .helper.faults, thp: .vm.thp}' "$R")"
