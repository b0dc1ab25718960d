#!/bin/bash
# A helper killed with SIGKILL mid-migration loses nothing: the VMM still
# holds its uffd and the page state memfd (PCH_CTL_STATE), pch-vm starts a
# new helper (--respawn-helper), hands it both with pch_client_reattach,
# the new helper wakes the vCPUs the dead one left waiting and resumes the
# session with the source, and every page verifies.  On private (anon) and
# shared (memfd) RAM; twice in one migration; and under a balloon (pages
# discarded during postcopy are recorded in the page state first, so the
# new helper never puts their old content back); during precopy; and a helper that dies
# right after mapping a shared page, before recording it (the successor
# maps it again, never writes it).
# timeout: 120
. "$(dirname "$0")/../lib/common.sh"
require_uffd

new_key
RAM=256M

# crash NAME BACKING KILLS [WORKLOAD]: one migration, the helper killed KILLS times
crash() {
	local name=$1 backing=$2 kills=$3 wl=${4:-random} k
	rm -f "$T/source.port" "$T"/*.json "$T"/helper-*.log
	start_source --channels 2 --ram $RAM --bulk-rate 40 --backing "$backing"
	# every helper of the run, the first and the new ones, runs this
	HCMD="exec '$BIN/pch-helper' --control '$T/helper.sock' --source 127.0.0.1:$SRC_PORT \
--key-file '$T/session.key' --channels 2 --stats '$T/helper.json' >>'$T/helper-all.log' 2>&1"
	sh -c "$HCMD" &
	HLP_PID=$!
	PIDS="$PIDS $HLP_PID"
	"$BIN/pch-vm" --helper "$T/helper.sock" --report "$T/vm.json" --ram $RAM --vcpus 1 \
		--workload "$wl" --backing "$backing" --timeout-s 90 --respawn-helper "$HCMD" ${VM_EXTRA:-} \
		>"$T/vm.log" 2>&1 &
	VM_PID=$!
	PIDS="$PIDS $VM_PID"
	for ((k = 0; k < kills; k++)); do
		sleep 0.5
		pid=$(pgrep -n -f "pch-helper --control $T/helper.sock") ||
			fail "$name: no helper running to kill"
		kill -KILL "$pid"
		log "$name: killed helper $pid"
	done
	wait_pid "$VM_PID" 60 || fail "$name: pch-vm failed: $(grep -m2 'error' "$T/vm.log")"
	wait_pid "$SRC_PID" 20 || fail "$name: pch-source failed"
	expect_json "$T/vm.json" ".result == \"ok\" and .pages_mismatched == 0 and
		.pages_verified + (.pages_unplugged // 0) == .pages_total and .helper_restarts == $kills" \
		'{result,pages_verified,pages_total,pages_mismatched,helper_restarts,errors}'
	# the last helper's stats: it found pages in place and resumed the session
	expect_json "$T/helper.json" '.result == "ok" and .pages_premarked > 0' \
		'{result,pages_premarked,errors}'
	expect_json "$T/source.json" ".result == \"ok\" and .resumes == $kills" '{result,resumes,errors}'
	grep -q "STATE: helper $((kills + 1)) on this migration: [0-9]* of [0-9]* pages already in place" \
		"$T/helper-all.log" || fail "$name: the last helper did not take over the state"
	log "$name ok: $(grep -o 'STATE: helper [0-9]* on this migration: [0-9]* of [0-9]* pages' \
		"$T/helper-all.log" | paste -sd ';');" \
		"$(jq -c '{helper_restarts,helper_takeover_max_ms,fault_latency_us_p99:.fault_latency_us.p99}' "$T/vm.json")"
	for f in source helper-all vm; do mv "$T/$f.log" "$T/$name-$f.log"; done
	cp "$T/vm.json" "$T/$name-vm.json"
}

crash anon anon 1
crash memfd memfd 1
crash twice anon 2
crash balloon anon 1 balloon
expect_json "$T/balloon-vm.json" '.balloon.stale_after_discard == 0 and .balloon.pages_discarded > 0' \
	'.balloon'
# killed during the precopy phase (no vCPU runs yet), before sync point 1:
# the new helper is asked for it again
VM_EXTRA="--precopy-seconds 1" crash precopy anon 1
grep -q "sync point 1 reached" "$T/precopy-helper-all.log" ||
	fail "precopy: the new helper did not reach sync point 1"

# The narrowest window, made to happen: a helper that dies right after a
# UFFDIO_CONTINUE mapped a page of shared RAM and before it recorded it.
# The guest may already have that page (and written it): its successor must
# never write it again, only map it (the state's mapping bit; CONTINUE finds
# it mapped).
rm -f "$T/source.port" "$T"/*.json "$T"/helper-all.log
start_source --channels 2 --ram $RAM --bulk-rate 40 --backing memfd
HCMD="exec '$BIN/pch-helper' --control '$T/helper.sock' --source 127.0.0.1:$SRC_PORT \
--key-file '$T/session.key' --channels 2 --stats '$T/helper.json' >>'$T/helper-all.log' 2>&1"
sh -c "${HCMD/--channels 2/--channels 2 --test-die-continue 300}" &
HLP_PID=$!
PIDS="$PIDS $HLP_PID"
run_vm --ram $RAM --vcpus 1 --workload random --backing memfd --timeout-s 90 \
	--respawn-helper "$HCMD" || fail "die-mapping: pch-vm failed: $(grep -m2 error "$T/vm.log")"
wait_pid "$SRC_PID" 20 || fail "die-mapping: pch-source failed"
grep -q "dying after CONTINUE 300 mapped" "$T/helper-all.log" ||
	fail "die-mapping: the first helper did not die where it was told to"
grep -q "STATE: [1-9][0-9]* pages the helper before us was mapping are mapped" "$T/helper-all.log" ||
	fail "die-mapping: the new helper did not map again what the dead one was mapping"
expect_json "$T/vm.json" '.result == "ok" and .pages_mismatched == 0 and .helper_restarts == 1' \
	'{result,pages_mismatched,helper_restarts,errors}'
log "die-mapping ok: $(grep -o 'STATE: [0-9]* pages the helper before us.*' "$T/helper-all.log")"
