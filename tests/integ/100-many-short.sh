#!/bin/bash
# No hang, no lost page across many short migrations: vCPU counts, zero
# fractions, channel counts, both uffd read paths and both connect orders
# vary; each run has its own deadline inside the test's.  Faults read after
# COMPLETE (they race UFFDIO_UNREGISTER) must be woken, never left blocked.
# timeout: 240
. "$(dirname "$0")/../lib/common.sh"
require_uffd

runs=0 late=0
for i in $(seq 12); do
	vcpus=$((1 + i % 4)) chans=$((1 + i % 3 * 3)) zf=0.$((i % 2 * 5 + 1))
	path=uring; [ $((i % 3)) -eq 0 ] && path=poll
	order=natural; [ $((i % 2)) -eq 0 ] && order=shuffle:$i
	if ! timeout -k 5 60 "$BIN/pch-migrate" --no-progress -q --json "$T/r$i.json" --ram 32M \
		--channels $chans --vcpus $vcpus --workload random --zero-fraction "$zf" --seed $i \
		--uffd-read $path --connect-order $order >"$T/m$i.out" 2>&1; then
		cat "$T/m$i.out"
		fail "run $i (vcpus $vcpus channels $chans zero $zf $path $order) failed or hung"
	fi
	expect_json "$T/r$i.json" '.result == "ok" and .pages_mismatched == 0 and (.errors | length) == 0' '.errors'
	late=$((late + $(jq '.helper.faults_late' "$T/r$i.json")))
	runs=$((runs + 1))
done
log "ok: $runs runs, $late faults woken after COMPLETE"
