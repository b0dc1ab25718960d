#!/bin/bash
# pch-migrate stops at once when it is told to: SIGTERM (and SIGINT, Ctrl-C)
# in the middle of a migration stops source, helper and vm within seconds,
# the report says "fail" and why, and no child is left behind.  (Before, an
# interrupted --bulk-rate migration went on to its end.)
# timeout: 60
. "$(dirname "$0")/../lib/common.sh"
require_uffd

for sig in TERM INT; do
	rm -f "$T/report.json"
	# about 10 s of migration at 100 MB/s
	"$BIN/pch-migrate" --no-progress --ram 1G --channels 2 --vcpus 2 --workload random \
		--bulk-rate 100 --json "$T/report.json" >"$T/migrate-$sig.out" 2>&1 &
	MIG=$!
	PIDS="$PIDS $MIG"
	sleep 1.5
	pgrep -P "$MIG" -x pch-helper >/dev/null || fail "SIG$sig: pch-migrate started no pch-helper"
	kids=$(pgrep -P "$MIG" | tr '\n' ' ')
	t0=$(date +%s%N)
	kill -"$sig" "$MIG"
	rc=0
	wait_pid "$MIG" 8 || rc=$?
	ms=$((($(date +%s%N) - t0) / 1000000))
	[ "$rc" -ne 0 ] || fail "SIG$sig: pch-migrate exited 0 after an interruption"
	for k in $kids; do
		kill -0 "$k" 2>/dev/null && fail "SIG$sig: child $k still running after pch-migrate exited"
	done
	expect_json "$T/report.json" '.result == "fail" and (.errors[0] | startswith("pch-migrate: interrupted"))' \
		'{result, errors}'
	log "SIG$sig: pch-migrate exited $rc after $ms ms; $(jq -c '.errors[0]' "$T/report.json")"
done
