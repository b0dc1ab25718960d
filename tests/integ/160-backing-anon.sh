#!/bin/bash
# Anonymous private RAM in 4 KiB pages (QEMU's default -m RAM), named
# explicitly: installed with UFFDIO_COPY from the receive buffers.
# timeout: 120
. "$(dirname "$0")/../lib/common.sh"
require_uffd

migrate --backing anon --ram 128M --channels 4 --vcpus 2 --workload random --timeout-s 90
R=$T/report.json
expect_json "$R" '.result == "ok" and .pages_mismatched == 0 and .backing == "anon"'
expect_json "$R" '.helper.faults > 0 and .helper.blocks[0].install == "copy"' '.helper | {faults,blocks}'
# every byte went through a receive buffer and was copied in
expect_json "$R" '.helper.copies.inplace_bytes == 0 and .helper.copies.bounce_bytes > 0' '.helper.copies'
log "ok: $(jq -c '{faults: .helper.faults, copies: .helper.copies}' "$R")"
