#!/bin/bash
# memfd (shmem) RAM: the helper splices bulk page data from the socket
# straight into the memfd and maps each page for the VMM with
# UFFDIO_CONTINUE.  Proof that bulk data was received in place: the only
# bulk bytes that went through a bounce buffer are pages a fault took from
# the receiver (rescued at the end of their frame), and the bytes received
# in place cover every other bulk page.
# timeout: 120
. "$(dirname "$0")/../lib/common.sh"
require_uffd

migrate --backing memfd --ram 128M --channels 4 --vcpus 2 --workload random --timeout-s 90
R=$T/report.json
expect_json "$R" '.result == "ok" and .pages_mismatched == 0 and .backing == "memfd"'
expect_json "$R" '.helper.blocks[0].install == "in-place+continue"' '.helper.blocks'
expect_json "$R" '.helper.faults > 0 and .helper.continue_ioctls > 0' '.helper | {faults,continue_ioctls}'
expect_json "$R" '.helper.copies.bulk_bounce_bytes <= .helper.rescued * 4096' \
	'{copies: .helper.copies, rescued: .helper.rescued}'
expect_json "$R" '.helper.copies.inplace_bytes >= (.helper.pages_bulk - .helper.rescued) * 4096' \
	'{copies: .helper.copies, pages_bulk: .helper.pages_bulk, rescued: .helper.rescued}'
# only URGENT answers (faulted pages) and rescued pages are copied in
expect_json "$R" '.helper.copies.bounce_bytes <= (.helper.pages_urgent + .helper.rescued) * 4096' \
	'{copies: .helper.copies, pages_urgent: .helper.pages_urgent, rescued: .helper.rescued}'
log "ok: $(jq -c '{faults: .helper.faults, minor: .helper.faults_minor, copies: .helper.copies}' "$R")"
