#!/bin/bash
# A source that goes silent mid-stream: the helper reports every streaming
# channel that has received nothing for --silent-ms, gives them up after
# --channel-timeout-s, and once the source speaks again the pages those
# channels owed come over URGENT; every page verifies.  Run on anonymous
# and on memfd RAM (channels given up in the middle of in-place frames).
# timeout: 120
. "$(dirname "$0")/../lib/common.sh"
require_uffd

new_key
# anon; then memfd, with bulk frames crawling (64 KiB every 20 ms), so the
# silence falls in the middle of frames received in place: their claimed
# pages must be given back when the channels are given up
for backing in anon memfd; do
	slow=""
	[ "$backing" = memfd ] && slow="--test-slow-frames=1000000:20"
	start_source --channels 2 --ram 256M --bulk-rate 100 $slow
	start_helper --channels 2 --silent-ms 400 --channel-timeout-s 1
	run_vm --ram 256M --vcpus 1 --workload seq --backing "$backing" --timeout-s 60 &
	VM_PID=$!
	PIDS="$PIDS $VM_PID"
	sleep 0.8
	kill -STOP "$SRC_PID"
	sleep 1.8
	kill -CONT "$SRC_PID"
	wait_pid "$VM_PID" 60 ||
		fail "$backing: pch-vm failed after the source's silence: $(tail -n 3 "$T/vm.log")"
	wait_pid "$HLP_PID" 20 || fail "$backing: pch-helper failed"
	wait_pid "$SRC_PID" 20 || true
	grep -q "PAGES channel [01]: nothing received for" "$T/helper.log" ||
		fail "$backing: no silence reported"
	grep -q "silent for 1 s; channel closed" "$T/helper.log" ||
		fail "$backing: silent channel not given up"
	# the vCPU waited through the silence: the stall report says on what
	grep -q "stall: block pc.ram page [0-9]*: fault pending for .*; page: .*; URGENT up.*; PAGES 0: " \
		"$T/helper.log" || fail "$backing: no stall report naming the page and channels"
	expect_json "$T/vm.json" '.result == "ok" and .pages_mismatched == 0'
	expect_json "$T/helper.json" '.requests_sweep > 0' '{requests_sweep,channels}'
	log "$backing ok: $(jq -c '{requests_sweep,pages_urgent,channels:[.channels[].state]}' \
		"$T/helper.json")"
	mv "$T/helper.log" "$T/helper-$backing.log"
	rm -f "$T/source.port"
done
