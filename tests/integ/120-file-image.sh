#!/bin/bash
# A file as the guest image (pch-source --file): random, zero and one-byte
# pages plus a trailing partial page that is not migrated; every page
# verified against the file.
# timeout: 120
. "$(dirname "$0")/../lib/common.sh"
require_uffd

img=$T/guest.img
head -c $((3 << 20)) /dev/urandom >"$img"
head -c $((2 << 20)) /dev/zero >>"$img"
printf '\x5a%.0s' $(seq 4096) >>"$img"
head -c $((3 << 20)) /dev/urandom >>"$img"
head -c 100 /dev/urandom >>"$img"   # a partial page: dropped
migrate --image-file "$img" --channels 3 --vcpus 2 --workload random
R=$T/report.json
expect_json "$R" '.result == "ok" and .pages_mismatched == 0'
expect_json "$R" '.pages_total == 2049 and .pages_verified == 2049' '{pages_total,pages_verified}'
expect_json "$R" '.pages_zero >= 512' '{pages_zero}'
log "ok: $(jq -c '{pages_total,pages_zero,faults}' "$R")"
