#!/bin/bash
# Randomized migrations with injected faults, each verified byte for byte and
# each under a deadline, so a hang is counted (and its logs kept), never
# waited out.  Ends with one line:
#   stress: runs=N ok=N hangs=N mismatched=N errors=N skipped=N
# and fails unless every run was ok or skipped (skipped: a hugetlb run whose
# pch-vm found no free huge pages because another run on the machine held
# them; its helper and source are stopped at once, not waited out).
#
# Usage: tests/stress.sh [RUNS]      (RUNS default 200; SEED=S to replay;
#                                     FAULTS="a b" to inject only those)
# Each run picks a channel count, workload (balloon: private RAM only), zero fraction, RAM size, vCPU
# count, backing (hugetlb kinds only when 2 MiB huge pages can be reserved)
# and one injected fault:
#   none         nothing
#   corrupt      pch-source sends a corrupt frame on one PAGES channel
#   slow         bulk frames crawl in; vCPUs start late and verify every access
#   stop         pch-source is stopped (SIGSTOP) for 1.5 s mid-stream; the
#                helper gives up the silent channels and sweeps
#   proxy-cut, proxy-stall, proxy-delay
#                through pch-proxy: a PAGES channel cut or stalled mid-stream,
#                or the first PAGES channel delayed (when pch-proxy is built)
#   proxy-urgent, proxy-control
#                through pch-proxy: URGENT cut or reset, or CONTROL cut, reset
#                or stalled (found by keep-alives): the session pauses and
#                resumes (docs/protocol.md 5.8)
#   kill-source  pch-source is killed (SIGKILL) mid-run and started again
#                from the same image on the same port: the helper resumes
#   kill-helper  pch-helper is killed (SIGKILL) mid-run; pch-vm starts a new
#                one (--respawn-helper), which takes over from the page state
# The summary also gives the longest recovery of any run: a pause (loss to
# resumed), or a dead helper's takeover (death seen to the new one serving).
set -u

BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD="$(pwd)/$BUILD" ;; esac
BIN="$BUILD/bin"
TOOLS="$BUILD/tests/tools"
RUNS=${1:-${RUNS:-200}}
SEED=${SEED:-$(date +%s)}
RUN_TIMEOUT=${RUN_TIMEOUT:-90}
KEEP=${KEEP:-/tmp/pch-stress-failed}
RANDOM=$SEED

ok=0 hangs=0 mism=0 errors=0 skipped=0
declare -A per_fault=()
slowest_ms=0 slowest=""
recov_ms=0 recov=""
top=$(mktemp -d /tmp/pch-stress.XXXXXX)
HUGE_ADDED=0
PIDS=""

cleanup() {
	for p in $PIDS; do kill -KILL "$p" 2>/dev/null; done
	# give back only the huge pages added here: a run beside this one keeps its own
	if [ "$HUGE_ADDED" -gt 0 ]; then
		cur=$(cat /proc/sys/vm/nr_hugepages)
		[ "$cur" -gt "$HUGE_ADDED" ] || HUGE_ADDED=$cur
		echo $((cur - HUGE_ADDED)) >/proc/sys/vm/nr_hugepages 2>/dev/null ||
			echo "stress: could not give back $HUGE_ADDED huge pages (vm.nr_hugepages)" >&2
	fi
	rm -rf "$top"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

"$TOOLS/pch-hello" --probe-uffd >/dev/null 2>&1
if [ $? -eq 77 ]; then
	echo "stress: SKIP: userfaultfd is not available to this user"
	exit 77
fi

# Huge pages for the hugetlb kinds, if they can be had (given back at exit).
huge=0
if grep -q '^Hugepagesize: *2048 kB' /proc/meminfo && [ -w /proc/sys/vm/nr_hugepages ]; then
	old=$(cat /proc/sys/vm/nr_hugepages)
	echo $((old + 64)) >/proc/sys/vm/nr_hugepages 2>/dev/null
	HUGE_ADDED=$(($(cat /proc/sys/vm/nr_hugepages) - old))
	free=$(awk '/^HugePages_Free:/ { f = $2 } /^HugePages_Rsvd:/ { r = $2 } END { print f - r }' \
		/proc/meminfo)
	[ "$free" -ge 64 ] && huge=1
fi

# pick WORDS...: one at random, in $PICK (no subshell: SEED must replay a run)
pick() { local a=("$@"); PICK=${a[RANDOM % ${#a[@]}]}; }

# wait_gone PID SECONDS: wait for a process to exit, kill it after that
wait_gone() {
	local i
	for ((i = 0; i < $2 * 20; i++)); do
		kill -0 "$1" 2>/dev/null || { wait "$1" 2>/dev/null; return $?; }
		sleep 0.05
	done
	kill -KILL "$1" 2>/dev/null
	wait "$1" 2>/dev/null
	return 124
}

faults=(none corrupt slow stop kill-source kill-helper)
[ -x "$BIN/pch-proxy" ] && faults+=(proxy-cut proxy-stall proxy-delay proxy-urgent proxy-control)
# FAULTS="kill-helper kill-source": only these (to chase one kind of failure)
[ -n "${FAULTS:-}" ] && read -r -a faults <<<"$FAULTS"

for ((run = 1; run <= RUNS; run++)); do
	d="$top/run$run"
	mkdir -p "$d"
	pick 1 2 3 4 8; ch=$PICK
	pick none seq random hotset balloon; wl=$PICK
	pick 0 0.1 0.3 0.6; zf=$PICK
	pick 1 2 3; vcpus=$PICK
	backings=(anon anon memfd memfd thp)
	[ "$huge" = 1 ] && backings+=(hugetlb hugetlb-private)
	pick "${backings[@]}"; backing=$PICK
	# a balloon (memory events) needs private RAM: the helper refuses it on shared
	case $wl:$backing in balloon:memfd | balloon:hugetlb) wl=random ;; esac
	case $backing in
	hugetlb*) pick 32 64; ram=$PICK; psz=2M ;;
	*) pick 32 64 128; ram=$PICK; psz=4096 ;;
	esac
	pick "${faults[@]}"; fault=$PICK
	# (and --verify-access, for the slow fault, compares pages a balloon rewrites)
	[ "$wl:$fault" = balloon:slow ] && wl=random
	src_args=() hlp_args=() vm_args=() proxy_args=()
	case $fault in
	corrupt) src_args+=(--test-corrupt-channel $((RANDOM % ch))) ;;
	slow) src_args+=(--test-slow-frames "$((RANDOM % 8 + 1)):5")
	      vm_args+=(--vcpu-delay-ms $((RANDOM % 200)) --verify-access) ;;
	stop) src_args+=(--bulk-rate 100)
	      hlp_args+=(--silent-ms 400 --channel-timeout-s 1) ;;
	proxy-cut) proxy_args+=(--fault "pages:$((RANDOM % ch)):cut@bytes=$((RANDOM * 64))") ;;
	proxy-stall) proxy_args+=(--fault "pages:$((RANDOM % ch)):stall@bytes=$((RANDOM * 32))")
	             hlp_args+=(--silent-ms 400 --channel-timeout-s 1) ;;
	proxy-delay) proxy_args+=(--fault "any-pages:delay=$((RANDOM % 20 + 1))@ms=$((RANDOM % 200))") ;;
	proxy-urgent) pick cut reset
	              proxy_args+=(--fault "urgent:$PICK@bytes=$((RANDOM * 16 + 72))")
	              src_args+=(--bulk-rate 100) ;;
	proxy-control) pick cut reset stall
	               proxy_args+=(--fault "control:$PICK@ms=$((RANDOM % 600))")
	               src_args+=(--bulk-rate 50 --keepalive-timeout-ms 2000)
	               hlp_args+=(--keepalive-timeout-ms 2000) ;;
	kill-source) src_args+=(--bulk-rate 100) ;;
	kill-helper) src_args+=(--bulk-rate 100) ;;
	esac
	desc="run $run: $fault, $backing ${ram}M, $ch channels, $vcpus vCPUs $wl, zero $zf"
	echo "$desc" >"$d/desc"

	"$TOOLS/pch-hello" --new-key "$d/key" >/dev/null
	"$BIN/pch-source" --listen 127.0.0.1:0 --port-file "$d/sport" --key-file "$d/key" \
		--channels "$ch" --ram "${ram}M" --page-size "$psz" --zero-fraction "$zf" \
		--timeout-s "$RUN_TIMEOUT" "${src_args[@]}" >"$d/source.log" 2>&1 &
	spid=$!
	PIDS="$spid"
	for _ in $(seq 500); do [ -s "$d/sport" ] && break; sleep 0.01; done
	port=$(cat "$d/sport" 2>/dev/null)
	ppid=""
	if [ "${fault#proxy}" != "$fault" ] && [ -n "$port" ]; then
		"$BIN/pch-proxy" --listen 127.0.0.1:0 --port-file "$d/pport" \
			--target "127.0.0.1:$port" --timeout-s "$RUN_TIMEOUT" "${proxy_args[@]}" \
			>"$d/proxy.log" 2>&1 &
		ppid=$!
		PIDS="$PIDS $ppid"
		for _ in $(seq 500); do [ -s "$d/pport" ] && break; sleep 0.01; done
		port=$(cat "$d/pport" 2>/dev/null)
	fi
	# every helper of the run (a new one after kill-helper too) runs this
	hcmd="exec '$BIN/pch-helper' --control '$d/helper.sock' --source 127.0.0.1:${port:-1} \
--key-file '$d/key' --channels $ch --stats '$d/helper.json' --timeout-s $RUN_TIMEOUT \
${hlp_args[*]} >>'$d/helper.log' 2>&1"
	[ "$fault" = kill-helper ] && vm_args+=(--respawn-helper "$hcmd")
	sh -c "$hcmd" &
	hpid=$!
	PIDS="$PIDS $hpid"
	start=$(date +%s%N)
	timeout -k 5 "$RUN_TIMEOUT" "$BIN/pch-vm" --helper "$d/helper.sock" --report "$d/vm.json" \
		--ram "${ram}M" --vcpus "$vcpus" --workload "$wl" --zero-fraction "$zf" \
		--backing "$backing" --timeout-s $((RUN_TIMEOUT - 10)) "${vm_args[@]}" \
		>"$d/vm.log" 2>&1 &
	vpid=$!
	PIDS="$PIDS $vpid"
	if [ "$fault" = stop ]; then
		sleep 0.$((RANDOM % 5 + 3))
		kill -STOP "$spid" 2>/dev/null
		sleep 1.5
		kill -CONT "$spid" 2>/dev/null
	fi
	if [ "$fault" = kill-helper ]; then
		# (after START: pch-vm takes over only after START)
		sleep 0.$((RANDOM % 8 + 2))
		kill -KILL "$hpid" 2>/dev/null
	fi
	if [ "$fault" = kill-source ] && [ -n "$port" ]; then
		# killed at a random point, back after a random while, same image
		sleep 0.$((RANDOM % 8 + 1))
		kill -KILL "$spid" 2>/dev/null
		wait "$spid" 2>/dev/null
		sleep 0.$((RANDOM % 6))
		"$BIN/pch-source" --listen "127.0.0.1:$port" --key-file "$d/key" \
			--channels "$ch" --ram "${ram}M" --page-size "$psz" --zero-fraction "$zf" \
			--timeout-s "$RUN_TIMEOUT" "${src_args[@]}" >"$d/source2.log" 2>&1 &
		spid=$!
		PIDS="$PIDS $spid"
	fi
	# (quiet: a helper killed on purpose is reaped here, and bash would say so)
	wait "$vpid" 2>/dev/null
	vrc=$?
	ms=$((($(date +%s%N) - start) / 1000000))
	# pch-vm could not map its huge pages (another run on this machine holds
	# them; the hugetlb kinds are picked only when 64 were free at start):
	# not this run's fault, and the helper waiting for a VMM is stopped now
	nohuge=0
	if [ "$vrc" -ne 0 ] && grep -q "free 2 MiB huge pages" "$d/vm.log" 2>/dev/null &&
		! grep -q "connected" "$d/helper.log" 2>/dev/null; then
		nohuge=1
		kill -TERM "$hpid" "$spid" 2>/dev/null
	fi
	wait_gone "$hpid" 20
	hrc=$?
	if [ "$fault" = kill-helper ]; then
		# the helper pch-vm started last (and reaped) wrote the stats
		hrc=0
		if [ "$(jq -r '.result' "$d/helper.json" 2>/dev/null)" != ok ]; then
			# a kill that came after the migration completed (a short
			# run) leaves no stats: fine if the helper said so first
			# and pch-vm's report is ok without a takeover
			grep -q "complete: every page in place" "$d/helper.log" &&
				[ "$(jq -r '.result + " " + (.helper_restarts | tostring)' \
					"$d/vm.json" 2>/dev/null)" = "ok 0" ] || hrc=1
		fi
	fi
	wait_gone "$spid" 20 >/dev/null
	[ -n "$ppid" ] && { kill -TERM "$ppid" 2>/dev/null; wait_gone "$ppid" 5 >/dev/null; }
	PIDS=""

	# a page with stale content after a balloon discarded it is a wrong page too
	m=$(jq -r '(.pages_mismatched // 0) + (.balloon.stale_after_discard // 0)' "$d/vm.json" 2>/dev/null || echo 0)
	if [ "$nohuge" = 1 ]; then
		skipped=$((skipped + 1)) verdict="SKIPPED (no free huge pages)"
	elif [ "$vrc" -eq 124 ] || [ "$vrc" -eq 137 ] || [ "$hrc" -eq 124 ]; then
		hangs=$((hangs + 1)) verdict=HANG
	elif [ "${m:-0}" != 0 ]; then
		mism=$((mism + 1)) verdict=MISMATCHED
	elif [ "$vrc" -ne 0 ] || [ "$hrc" -ne 0 ]; then
		errors=$((errors + 1)) verdict="ERROR (pch-vm $vrc, pch-helper $hrc)"
	else
		ok=$((ok + 1)) verdict=ok
	fi
	per_fault[$fault]=$(( ${per_fault[$fault]:-0} + 1 ))
	if [ "$nohuge" = 1 ]; then
		echo "stress: $desc: $verdict: $(grep -m1 -o 'needs [0-9]* free 2 MiB huge pages, [0-9]* are free' "$d/vm.log")"
		rm -rf "$d"
	elif [ "$verdict" = ok ]; then
		if [ "$fault" != none ] && [ "$ms" -gt "$slowest_ms" ]; then
			slowest_ms=$ms slowest=$desc
		fi
		# a pause until the session resumed, or a dead helper's takeover
		p=$(jq -r '.pause_max_ms // 0' "$d/helper.json" 2>/dev/null || echo 0)
		q=$(jq -r '.helper_takeover_max_ms // 0' "$d/vm.json" 2>/dev/null || echo 0)
		[ "${q:-0}" -gt "${p:-0}" ] && p=$q
		if [ "${p:-0}" -gt "$recov_ms" ]; then
			recov_ms=$p recov=$desc
		fi
		rm -rf "$d"
	else
		mkdir -p "$KEEP"
		rm -f "$d/helper.sock"
		cp -r "$d" "$KEEP/$(basename "$top")-run$run"
		echo "stress: $desc: $verdict (seed $SEED; logs in $KEEP/$(basename "$top")-run$run)"
		tail -n 3 "$d/vm.log" | sed 's/^/    /'
		rm -rf "$d"
	fi
done

counts=""
for f in "${!per_fault[@]}"; do counts="$counts $f=${per_fault[$f]}"; done
echo "stress: seed $SEED; runs per fault:$counts; slowest run with a fault: ${slowest_ms} ms ($slowest)"
echo "stress: longest recovery (a pause until resumed, or a dead helper's takeover):" \
	"${recov_ms} ms (${recov:-no run recovered})"
echo "stress: runs=$RUNS ok=$ok hangs=$hangs mismatched=$mism errors=$errors skipped=$skipped"
[ $((ok + skipped)) -eq "$RUNS" ]
