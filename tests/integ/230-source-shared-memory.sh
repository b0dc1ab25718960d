#!/bin/bash
# The source reads its own side's shared memory the same way as a file: a
# live process's memfd (shmem, then hugetlb) through /proc/PID/fd/N, with
# shared memory on the destination too.  pch-memhold fills the memfd with
# the synthetic image, so pch-vm verifies every byte against it.
# timeout: 120
. "$(dirname "$0")/../lib/common.sh"
require_uffd

# hold KIND SIZE [ARGS]: a filled memfd held open; sets HOLD_PATH
hold() {
	local kind=$1 size=$2 rc
	shift 2
	mkfifo "$T/hold-$kind.in"
	"$TOOLS/pch-memhold" --kind "$kind" --size "$size" --timeout-s 100 "$@" \
		<"$T/hold-$kind.in" >"$T/hold-$kind.out" 2>"$T/hold-$kind.log" &
	HOLD_PID=$!
	PIDS="$PIDS $HOLD_PID"
	exec 3>"$T/hold-$kind.in" # keeps its stdin open
	for _ in $(seq 600); do
		[ -s "$T/hold-$kind.out" ] && break
		kill -0 "$HOLD_PID" 2>/dev/null || {
			wait "$HOLD_PID" && rc=0 || rc=$?
			[ "$rc" -eq 77 ] && skip "pch-memhold: $(cat "$T/hold-$kind.log")"
			fail "pch-memhold died: $(cat "$T/hold-$kind.log")"
		}
		sleep 0.05
	done
	HOLD_PATH=$(cat "$T/hold-$kind.out")
	[ -n "$HOLD_PATH" ] || fail "pch-memhold did not print its memfd"
}
release() {
	exec 3>&-
	wait_pid "$HOLD_PID" 10 || fail "pch-memhold exited $?"
}

hold memfd 64M --seed 5
migrate --backing memfd --ram 64M --channels 2 --vcpus 2 --workload random --seed 5 \
	--source-arg=--file="$HOLD_PATH" --timeout-s 60
R=$T/report.json
expect_json "$R" '.result == "ok" and .pages_mismatched == 0'
expect_json "$R" '.source.backing == "memfd" and .helper.blocks[0].backing == "memfd"' \
	'{source: .source.backing, helper: .helper.blocks}'
log "memfd -> memfd ok: $(jq -c '{faults: .helper.faults, inplace: .helper.copies.inplace_bytes}' "$R")"
release

reserve_hugepages 32
hold hugetlb 32M --seed 7 --page-size 2M
migrate --backing hugetlb --ram 32M --channels 2 --vcpus 2 --workload random --seed 7 \
	--source-arg=--file="$HOLD_PATH" --timeout-s 60
expect_json "$R" '.result == "ok" and .pages_mismatched == 0'
expect_json "$R" '.source.backing == "hugetlb" and .source.page_size == 2097152' '.source'
log "hugetlb -> hugetlb ok: $(jq -c '{faults: .helper.faults, pages: .pages_total}' "$R")"
release
