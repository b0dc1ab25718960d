#!/bin/bash
# Shared memory is received in place, into the page cache the VMM maps: a
# page must not become visible before its last byte is in.  Bulk frames
# come slowly (64 KiB every 5 ms) so pages stay half received for a long
# time, while two vCPUs read random pages and compare every page they
# touch, whole, with what the source serves: each access must fault or
# see the final content, never part of it.
# timeout: 120
. "$(dirname "$0")/../lib/common.sh"
require_uffd

migrate --backing memfd --ram 16M --channels 2 --vcpus 2 --workload random \
	--source-arg=--test-slow-frames=100000:5 --vm-arg=--verify-access --timeout-s 60
R=$T/report.json
expect_json "$R" '.result == "ok" and .pages_mismatched == 0'
expect_json "$R" '.vm.verify_access == true and .vm.early_reads == 0' '.vm | {verify_access,early_reads}'
# faults did land on pages being received in place
expect_json "$R" '.helper.faults > 0 and .helper.copies.inplace_bytes > 0' '.helper | {faults,copies}'
expect_json "$R" '.helper.steals + .helper.stashed > 0' '.helper | {steals,stashed}'
log "ok: $(jq -c '.helper | {faults, steals, stashed, copies}' "$R")"
