# Sourced by every tests/integ/NNN-*.sh.  Each test gets its own temp dir,
# kills every process it started when it exits, and skips with exit 77 and a
# reason when the kernel lacks something it needs.
set -eu

BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD="$(pwd)/$BUILD" ;; esac
BIN="$BUILD/bin"
TOOLS="$BUILD/tests/tools"
TEST_NAME=$(basename "$0" .sh)
T=$(mktemp -d "/tmp/pch-$TEST_NAME.XXXXXX")
PIDS=""

cleanup() {
	rc=$?
	for p in $PIDS; do
		kill -TERM "$p" 2>/dev/null || true
	done
	sleep 0.2
	for p in $PIDS; do
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	# give back the huge pages this test added (its processes are gone):
	# only those, so a run beside this one keeps what it reserved
	if [ -n "${HUGE_ADDED:-}" ] && [ "$HUGE_ADDED" -gt 0 ]; then
		hugepages_give_back "$HUGE_ADDED" ||
			echo "$TEST_NAME: could not give back $HUGE_ADDED huge pages (vm.nr_hugepages)" >&2
	fi
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
		for f in "$T"/*.log; do
			[ -f "$f" ] || continue
			echo "--- $f (last 20 lines)"
			tail -n 20 "$f"
		done
		echo "--- work dir kept: $T"
	else
		rm -rf "$T"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

log() { printf '%s: %s\n' "$TEST_NAME" "$*"; }
fail() { printf '%s: FAIL: %s\n' "$TEST_NAME" "$*" >&2; exit 1; }
skip() { printf '%s: SKIP: %s\n' "$TEST_NAME" "$*"; exit 77; }

# json FILE EXPR: a jq expression over a report
json() { jq -r "$2" "$1"; }

# expect_json FILE EXPR: fail unless the jq expression is true
expect_json() {
	jq -e "$2" "$1" >/dev/null || fail "$1: expected $2 (got: $(jq -c "${3:-.}" "$1" 2>/dev/null | head -c 400))"
}

# Userfaultfd must be usable by this user, or the test cannot run at all.
require_uffd() {
	"$TOOLS/pch-hello" --probe-uffd >/dev/null 2>&1 && return 0
	case $? in
	77) skip "userfaultfd is not available to this user (syscall and /dev/userfaultfd)" ;;
	esac
}

# uffd_has_feature BIT: true when the kernel's UFFDIO_API offers feature
# bit BIT (e.g. 14, UFFD_FEATURE_POISON, 6.6)
uffd_has_feature() {
	local f
	f=$("$TOOLS/pch-hello" --probe-uffd 2>/dev/null | awk '/^userfaultfd features/ { print $3 }')
	[ -n "$f" ] && [ $(( f >> $1 & 1 )) -eq 1 ]
}

# hugepages_free: 2 MiB huge pages free now and not reserved by anyone
hugepages_free() {
	awk '/^HugePages_Free:/ { f = $2 } /^HugePages_Rsvd:/ { r = $2 } END { print f - r }' \
		/proc/meminfo
}

# hugepages_give_back N: lower vm.nr_hugepages by N (not below 0)
hugepages_give_back() {
	local f=/proc/sys/vm/nr_hugepages cur
	cur=$(cat "$f") || return 1
	[ "$cur" -gt "$1" ] || set -- "$cur"
	echo $((cur - $1)) >"$f" 2>/dev/null
}

# reserve_hugepages N: make N 2 MiB huge pages free, through vm.nr_hugepages;
# the pages added are given back when the test exits (only those: a test
# running beside this one keeps its own).  Skips when they cannot be had.
reserve_hugepages() {
	local f=/proc/sys/vm/nr_hugepages old free
	grep -q '^Hugepagesize: *2048 kB' /proc/meminfo ||
		skip "the default huge page size is not 2 MiB"
	free=$(hugepages_free)
	[ "$free" -ge "$1" ] && return 0
	[ -w "$f" ] || skip "need $1 free 2 MiB huge pages, have $free, and cannot write $f"
	old=$(cat "$f")
	echo $((old + $1 - free)) >"$f" 2>/dev/null || true
	HUGE_ADDED=$(($(cat "$f") - old))
	free=$(hugepages_free)
	[ "$free" -ge "$1" ] ||
		skip "could reserve only $free of $1 2 MiB huge pages through $f (memory fragmented?)"
}

# migrate ARGS...: pch-migrate with a report in $T/report.json
migrate() {
	"$BIN/pch-migrate" --no-progress --json "$T/report.json" "$@" >"$T/migrate.out" 2>"$T/migrate.log" || {
		cat "$T/migrate.out"
		tail -n 60 "$T/migrate.log"
		fail "pch-migrate $* failed"
	}
	cat "$T/migrate.out"
	# a clean run reports no error from any of the three programs
	expect_json "$T/report.json" '(.errors | length) == 0' '.errors'
}

new_key() { "$TOOLS/pch-hello" --new-key "$T/session.key"; }

# wait_port NAME PID FILE: wait (5 s at most) for a program to publish its
# listening port in FILE; prints the port, fails if it dies or never does
wait_port() {
	for _ in $(seq 500); do
		[ -s "$3" ] && break
		kill -0 "$2" 2>/dev/null || fail "$1 died at start"
		sleep 0.01
	done
	[ -s "$3" ] || fail "$1 did not publish its port"
	cat "$3"
}

# start_source ARGS...: pch-source on a free loopback port; sets SRC_PID SRC_PORT
start_source() {
	"$BIN/pch-source" --listen 127.0.0.1:0 --port-file "$T/source.port" \
		--key-file "$T/session.key" --stats "$T/source.json" "$@" >"$T/source.log" 2>&1 &
	SRC_PID=$!
	PIDS="$PIDS $SRC_PID"
	SRC_PORT=$(wait_port pch-source "$SRC_PID" "$T/source.port") || exit 1
}

# start_proxy FAULT...: pch-proxy in front of the source, one --fault per
# argument (an argument starting with -- is passed as it is, with the next
# one when it has no '='); sets PRX_PID, and SRC_PORT to the proxy's port
# (start_helper connects to it)
start_proxy() {
	local args=() f
	while [ $# -gt 0 ]; do
		f=$1; shift
		case "$f" in
		--*=*) args+=("$f") ;;
		--*) args+=("$f" "$1"); shift ;;
		*) args+=(--fault "$f") ;;
		esac
	done
	rm -f "$T/proxy.port" "$T/proxy.log"
	"$BIN/pch-proxy" --listen 127.0.0.1:0 --port-file "$T/proxy.port" \
		--target "127.0.0.1:$SRC_PORT" --timeout-s 100 --log "$T/proxy.log" "${args[@]}" &
	PRX_PID=$!
	PIDS="$PIDS $PRX_PID"
	SRC_PORT=$(wait_port pch-proxy "$PRX_PID" "$T/proxy.port") || exit 1
}

# start_helper ARGS...: sets HLP_PID; control socket $T/helper.sock
start_helper() {
	"$BIN/pch-helper" --control "$T/helper.sock" --source "127.0.0.1:$SRC_PORT" \
		--key-file "$T/session.key" --stats "$T/helper.json" "$@" >"$T/helper.log" 2>&1 &
	HLP_PID=$!
	PIDS="$PIDS $HLP_PID"
}

# run_vm ARGS...: pch-vm in the foreground, report in $T/vm.json
run_vm() {
	"$BIN/pch-vm" --helper "$T/helper.sock" --report "$T/vm.json" "$@" >"$T/vm.log" 2>&1
}

# wait_log FILE PATTERN SECONDS: wait for a line matching PATTERN (grep)
# in FILE; 0 when it came, 1 when it did not within SECONDS (the caller
# says what that means)
wait_log() {
	local i
	for i in $(seq $(($3 * 100))); do
		grep -qs -- "$2" "$1" && return 0
		sleep 0.01
	done
	grep -qs -- "$2" "$1"
}

# wait_pid PID SECONDS: wait for a process to exit; its status, or fail
wait_pid() {
	for _ in $(seq $(($2 * 20))); do
		# (quiet: bash reports a job killed on purpose when it reaps it)
		kill -0 "$1" 2>/dev/null || { wait "$1" 2>/dev/null; return $?; }
		sleep 0.05
	done
	fail "process $1 still running after $2 s"
}
