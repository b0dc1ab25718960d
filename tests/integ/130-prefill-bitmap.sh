#!/bin/bash
# Pages already in place at START (as QEMU's RAM after precopy): the VMM
# sends a bitmap with its block, the helper counts them in place and tells
# the source, which never sends them; every page still verifies.
# timeout: 120
. "$(dirname "$0")/../lib/common.sh"
require_uffd

migrate --ram 256M --channels 2 --vcpus 2 --workload random --vm-arg=--prefill=0.5
R=$T/report.json
expect_json "$R" '.result == "ok" and .pages_mismatched == 0'
expect_json "$R" '.vm.pages_prefilled > 0 and .helper.pages_premarked == .vm.pages_prefilled' '{p:.vm.pages_prefilled,m:.helper.pages_premarked}'
expect_json "$R" '.source.pages_skipped == .vm.pages_prefilled' '{s:.source.pages_skipped}'
expect_json "$R" '.pages_bulk + .pages_urgent + .pages_zero + .helper.pages_premarked + .helper.zero_installed >= .pages_total'
expect_json "$R" '.source.pages_bulk + .source.pages_zero + .vm.pages_prefilled == .pages_total' '.source'
log "ok: $(jq -c '{pre:.vm.pages_prefilled,bulk:.pages_bulk,zero:.pages_zero,urgent:.pages_urgent}' "$R")"
