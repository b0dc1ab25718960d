#!/bin/bash
# A precopy phase then the switch through a sync point: the vCPUs start only
# after SYNC_REACHED(1), which the helper posts once SYNC(1) was seen on every
# PAGES channel.
# timeout: 120
. "$(dirname "$0")/../lib/common.sh"
require_uffd

migrate --ram 256M --channels 4 --vcpus 2 --workload seq --precopy-seconds 0.2 --bulk-rate 400
R=$T/report.json
expect_json "$R" '.result == "ok" and .pages_mismatched == 0'
expect_json "$R" '.helper.sync_reached == 1' '.helper.sync_reached'
log "ok: $(jq -c '{faults,pages_urgent,postcopy_s,duration_s}' "$R")"
