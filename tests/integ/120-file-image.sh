#!/bin/bash
# A file as the guest image (pch-source --file): random, zero, hole and
# one-byte pages plus a trailing partial page that is not migrated; every
# page verified against the file.  The hole's pages go as zero pages
# without pch-source reading them (SEEK_DATA), where the file system has
# holes.
# timeout: 120
. "$(dirname "$0")/../lib/common.sh"
require_uffd

img=$T/guest.img
head -c $((3 << 20)) /dev/urandom >"$img"
head -c $((2 << 20)) /dev/zero >>"$img"
truncate -s +$((2 << 20)) "$img"    # a hole: 512 pages never written
printf '\x5a%.0s' $(seq 4096) >>"$img"
head -c $((3 << 20)) /dev/urandom >>"$img"
head -c 100 /dev/urandom >>"$img"   # a partial page: dropped
migrate --image-file "$img" --channels 3 --vcpus 2 --workload random
R=$T/report.json
expect_json "$R" '.result == "ok" and .pages_mismatched == 0'
expect_json "$R" '.pages_total == 2561 and .pages_verified == 2561' '{pages_total,pages_verified}'
expect_json "$R" '.pages_zero >= 1024' '{pages_zero}'
# the written zeros are data, read and found zero; the hole is not read
# (urgent answers read pages, so a few of its pages may go that way)
read -r blocks bsize size < <(stat -c '%b %B %s' "$img")
if [ $((blocks * bsize)) -le $((size - (1 << 20))) ]; then
	expect_json "$R" '.source.pages_hole >= 256 and .source.pages_hole <= 512' '.source | {pages_zero,pages_hole}'
else
	log "note: $(df -T "$img" | awk 'NR == 2 { print $2 }') stored the hole: no holes to skip"
fi
log "ok: $(jq -c '{pages_total,pages_zero,faults,pages_hole: .source.pages_hole}' "$R")"
