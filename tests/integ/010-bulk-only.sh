#!/bin/bash
# Bulk only: no vCPU touches RAM; every page arrives over the PAGES channels
# and is verified byte for byte.
# timeout: 120
. "$(dirname "$0")/../lib/common.sh"
require_uffd

migrate --ram 128M --channels 4 --vcpus 2 --workload none --zero-fraction 0.2
R=$T/report.json
expect_json "$R" '.result == "ok"'
expect_json "$R" '.pages_total == 32768 and .pages_verified == 32768 and .pages_mismatched == 0'
expect_json "$R" '.faults == 0 and .pages_urgent == 0' '{faults,pages_urgent}'
expect_json "$R" '.pages_bulk + .pages_zero == .pages_total' '{pages_bulk,pages_zero,pages_total}'
expect_json "$R" '.pages_zero > 0'
log "ok: $(jq -c '{duration_s,bulk_gbps,pages_bulk,pages_zero}' "$R")"
