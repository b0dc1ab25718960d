#!/bin/bash
# Pure postcopy: two vCPUs fault randomly from the first instant while bulk
# is throttled, so most touched pages are served on the URGENT lane; every
# page is verified and the faults are accounted on both sides.
# timeout: 180
. "$(dirname "$0")/../lib/common.sh"
require_uffd

migrate --ram 256M --channels 4 --vcpus 2 --workload random --bulk-rate 300
R=$T/report.json
expect_json "$R" '.result == "ok" and .pages_mismatched == 0 and .pages_verified == .pages_total'
expect_json "$R" '.faults > 100' '{faults}'
expect_json "$R" '.pages_urgent > 0' '{pages_urgent}'
expect_json "$R" '.fault_latency_us.count > 0 and .fault_latency_us.p50 > 0' '.fault_latency_us'
expect_json "$R" '.service_latency_us.count > 0' '.service_latency_us'
expect_json "$R" '.io_path == "io_uring-read"' '{io_path}'
log "ok: $(jq -c '{faults,pages_urgent,eexist,fl:.fault_latency_us.p50,sl:.service_latency_us.p50}' "$R")"
