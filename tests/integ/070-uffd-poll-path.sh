#!/bin/bash
# The other uffd event path: io_uring POLL of the uffd, then read(2).
# timeout: 120
. "$(dirname "$0")/../lib/common.sh"
require_uffd

migrate --ram 128M --channels 2 --vcpus 2 --workload hotset --uffd-read poll --bulk-rate 300
R=$T/report.json
expect_json "$R" '.result == "ok" and .pages_mismatched == 0'
expect_json "$R" '.io_path == "io_uring-poll+read"' '{io_path}'
expect_json "$R" '.faults > 0' '{faults}'
log "ok: $(jq -c '{io_path,faults,pages_urgent}' "$R")"
