#!/bin/bash
# The control socket's path and the helper's privileges: a socket directory
# others could write (world-writable and not sticky; writable and another
# user's) and anything at the path but a stale socket of ours (a file, a
# link, a live helper's socket, another uid's) make the helper refuse to run
# (exit 2, naming path and mode) and leave the path alone; a migration runs
# with no new privileges and only CAP_SYS_NICE left (/proc/PID/status),
# the VMM's pid pinned by a pidfd; and a VMM that exits while another
# process holds its control connection is noticed by that pidfd at once,
# before START (SO_PEERPIDFD and the pidfd_open fallback) and after it.
# timeout: 60
. "$(dirname "$0")/../lib/common.sh"
require_uffd

new_key
H=(--source 127.0.0.1:1 --key-file "$T/session.key")
ROOT=0
[ "$(id -u)" = 0 ] && ROOT=1

# refuses NAME PATH TEXT [helper args]: the helper exits 2 at once, saying TEXT
refuses() {
	local name=$1 path=$2 want=$3 rc=0
	shift 3
	timeout 10 "$BIN/pch-helper" --control "$path" "${H[@]}" "$@" >"$T/$name.log" 2>&1 || rc=$?
	[ "$rc" -eq 2 ] || fail "$name: exit $rc, expected 2: $(cat "$T/$name.log")"
	grep -qF -- "$want" "$T/$name.log" || fail "$name: no '$want' in: $(cat "$T/$name.log")"
	log "$name: $(grep -o 'control socket: .*' "$T/$name.log")"
}

# listens NAME PATH [helper args]: the helper binds PATH; sets PID_L (running)
listens() {
	local name=$1 path=$2
	shift 2
	"$BIN/pch-helper" --control "$path" "${H[@]}" --accept-timeout-s 20 "$@" >"$T/$name.log" 2>&1 &
	PID_L=$!
	PIDS="$PIDS $PID_L"
	for _ in $(seq 300); do
		grep -qs "listening on" "$T/$name.log" && break
		kill -0 "$PID_L" 2>/dev/null || fail "$name: the helper died: $(cat "$T/$name.log")"
		sleep 0.01
	done
	[ -S "$path" ] || fail "$name: no socket at $path: $(cat "$T/$name.log")"
}

# --- (a) the socket's directory ----------------------------------------
mkdir "$T/ww"
chmod 0777 "$T/ww"
refuses world-writable "$T/ww/helper.sock" \
	"directory $T/ww (mode 0777) is writable by others and not sticky"
[ -e "$T/ww/helper.sock" ] && fail "world-writable: a socket was made anyway"
chmod 1777 "$T/ww"
listens sticky-ours "$T/ww/helper.sock"
kill -TERM "$PID_L"
wait "$PID_L" 2>/dev/null || true
[ -e "$T/ww/helper.sock" ] && fail "sticky-ours: the helper left its socket"
log "sticky-ours: mode 1777, ours: accepted"
if [ $ROOT = 1 ]; then
	chown 65534 "$T/ww"
	refuses sticky-other "$T/ww/helper.sock" \
		"directory $T/ww (mode 1777) is writable by others and owned by uid 65534, neither ours (0) nor root"
	mkdir -m 0770 "$T/gw"
	chown 65534 "$T/gw"
	refuses group-other "$T/gw/helper.sock" "(mode 0770) is writable by its group and owned by uid 65534"
	# a /tmp: root's, mode 1777; a helper of uid 65534 uses it
	mkdir -m 1777 "$T/tmp"
	chmod 0711 "$T"
	install -o 65534 -m 0600 "$T/session.key" "$T/tmp/nobody.key"
	setpriv --reuid=65534 --regid=65534 --clear-groups "$BIN/pch-helper" \
		--control "$T/tmp/nobody.sock" --source 127.0.0.1:1 --key-file "$T/tmp/nobody.key" \
		--accept-timeout-s 1 >"$T/tmp-nobody.log" 2>&1 || true
	grep -q "listening on $T/tmp/nobody.sock" "$T/tmp-nobody.log" ||
		fail "uid 65534 in a root-owned 1777 directory: $(cat "$T/tmp-nobody.log")"
	log "uid 65534 in root's mode 1777 directory: accepted"
	# another uid's socket there (its own process is gone): not ours to remove
	setpriv --reuid=65534 --regid=65534 --clear-groups perl -MSocket -e '
		socket(S, AF_UNIX, SOCK_SEQPACKET, 0) or die "socket: $!";
		bind(S, pack_sockaddr_un($ARGV[0])) or die "bind: $!";' "$T/tmp/other.sock" ||
		fail "could not make a socket of uid 65534"
	refuses other-uid-socket "$T/tmp/other.sock" "$T/tmp/other.sock is a socket of uid 65534, not ours (0)"
	[ -S "$T/tmp/other.sock" ] || fail "other-uid-socket: removed"
	chmod 0700 "$T"
else
	log "not root: directories and sockets of another uid not tried"
fi

# --- (b) what is at the path --------------------------------------------
echo "precious" >"$T/file.sock"
refuses regular-file "$T/file.sock" "$T/file.sock exists and is not a socket (mode 100644)"
[ "$(cat "$T/file.sock")" = precious ] || fail "regular-file: the file was touched"
ln -s "$T/file.sock" "$T/link.sock"
refuses symlink "$T/link.sock" "$T/link.sock exists and is not a socket (mode 120777)"
[ -L "$T/link.sock" ] || fail "symlink: removed"
listens live "$T/live.sock"
LIVE=$PID_L
refuses live-socket "$T/live.sock" "$T/live.sock: another process listens on it"
kill -0 "$LIVE" 2>/dev/null || fail "live-socket: the first helper died"
{ kill -KILL "$LIVE"; wait "$LIVE"; } 2>/dev/null || true
[ -S "$T/live.sock" ] || fail "live-socket: SIGKILL should leave the socket behind"
listens stale "$T/live.sock"
kill -TERM "$PID_L"
wait "$PID_L" 2>/dev/null || true
log "stale socket of ours (its helper killed): replaced"

# --- (c) a migration, least privilege, the VMM pinned ---------------------
start_source --channels 2 --ram 256M
start_helper --channels 2
wait_log "$T/helper.log" "listening on" 3 || true
st=/proc/$HLP_PID/status
grep -q "^NoNewPrivs:[[:space:]]*1" "$st" || fail "helper: $(grep NoNewPrivs "$st")"
mine=$((16#$(awk '/^CapEff/ { print $2 }' /proc/self/status)))
want=$((mine & (1 << 23)))                       # CAP_SYS_NICE
[ "$(cat /proc/sys/kernel/io_uring_disabled 2>/dev/null)" = 1 ] && want=$((want | (mine & (1 << 21))))
eff=$((16#$(awk '/^CapEff/ { print $2 }' "$st")))
bnd=$((16#$(awk '/^CapBnd/ { print $2 }' "$st")))
prm=$((16#$(awk '/^CapPrm/ { print $2 }' "$st")))
[ "$eff" -eq "$want" ] && [ "$prm" -eq "$want" ] ||
	fail "helper: CapEff $(printf %x $eff), CapPrm $(printf %x $prm), expected $(printf %x $want)"
if [ $((mine & (1 << 8))) -ne 0 ]; then          # we have CAP_SETPCAP: so had the helper
	[ "$bnd" -eq "$want" ] || fail "helper: CapBnd $(printf %x $bnd), expected $(printf %x $want)"
fi
log "helper: NoNewPrivs 1, CapEff $(printf %016x $eff), CapBnd $(printf %016x $bnd)" \
	"(ours: CapEff $(printf %016x $mine))"
"$BIN/pch-vm" --helper "$T/helper.sock" --report "$T/vm.json" --ram 256M --vcpus 2 \
	--workload random --timeout-s 40 >"$T/vm.log" 2>&1 &
VM_PID=$!
PIDS="$PIDS $VM_PID"
wait_pid "$VM_PID" 40 || fail "pch-vm failed: $(tail -n 3 "$T/vm.log")"
wait_pid "$HLP_PID" 20 || fail "pch-helper failed"
expect_json "$T/vm.json" '.result == "ok" and .pages_mismatched == 0 and .pages_verified == .pages_total' \
	'{result,pages_verified,pages_total,pages_mismatched,errors}'
grep -q "control: VMM is pid $VM_PID (pinned by pidfd" "$T/helper.log" ||
	fail "the helper did not pin pid $VM_PID: $(grep 'control: VMM' "$T/helper.log")"
expect_json "$T/helper.json" ".vmm_pid == $VM_PID and .vmm_pinned_by != \"none\"" '{vmm_pid,vmm_pinned_by}'
if [ $((mine & (1 << 23))) -ne 0 ] && grep -q "cannot raise its priority" "$T/helper.log"; then
	fail "the fault thread lost CAP_SYS_NICE"
fi
log "migration ok: $(grep -o 'control: VMM is pid .*' "$T/helper.log")"

# --- (d) the VMM exits, its connection held by another process ------------
# before START: a child keeps the connection; SO_PEERPIDFD, then pidfd_open
for how in SO_PEERPIDFD pidfd_open; do
	extra=()
	[ $how = pidfd_open ] && extra=(--test-no-peerpidfd)
	mv "$T/helper.log" "$T/helper-before-$how.log.old"
	"$BIN/pch-helper" --control "$T/helper.sock" "${H[@]}" "${extra[@]}" >"$T/helper.log" 2>&1 &
	HLP_PID=$!
	PIDS="$PIDS $HLP_PID"
	t0=$(date +%s%N)
	"$TOOLS/pch-badvmm" --fork-hold "$T/helper.sock" >"$T/fork-hold.out" 2>&1 ||
		fail "fork-hold: $(cat "$T/fork-hold.out")"
	wait_pid "$HLP_PID" 5 && fail "$how: helper exited 0 without its VMM"
	ms=$((($(date +%s%N) - t0) / 1000000))
	grep -q "(pinned by pidfd, from $how)" "$T/helper.log" ||
		fail "$how: not pinned by $how: $(grep 'control:' "$T/helper.log")"
	grep -q "exited, its pidfd says; its control connection is still open" "$T/helper.log" ||
		fail "$how: the pidfd did not notice: $(tail -n 3 "$T/helper.log")"
	grep -q "went away before START" "$T/helper.log" || fail "$how: helper did not stop"
	log "before START ($how): helper gone ${ms} ms after the VMM: $(cat "$T/fork-hold.out")"
done

# after START: the source held still (no install can find the VMM gone
# first), pch-badvmm takes a copy of pch-vm's connection, pch-vm is killed
mv "$T/helper.log" "$T/helper-c.log.old"
rm -f "$T/source.port" "$T/helper.json"
start_source --channels 2 --ram 512M --bulk-rate 100
start_helper --channels 2
"$BIN/pch-vm" --helper "$T/helper.sock" --report "$T/vm.json" --ram 512M --vcpus 2 \
	--workload random --timeout-s 40 >"$T/vm.log" 2>&1 &
VM_PID=$!
PIDS="$PIDS $VM_PID"
wait_log "$T/helper.log" "serving" 5 || fail "the migration did not start: $(tail -n 3 "$T/helper.log")"
kill -STOP "$SRC_PID"
sleep 0.3
"$TOOLS/pch-badvmm" --hold "$VM_PID" "$T/helper.sock" >"$T/hold.out" 2>&1 &
HOLD_PID=$!
PIDS="$PIDS $HOLD_PID"
for _ in $(seq 300); do
	grep -q "holding" "$T/hold.out" && break
	kill -0 "$HOLD_PID" 2>/dev/null || break
	sleep 0.01
done
if grep -q "^SKIP" "$T/hold.out"; then
	kill -KILL "$SRC_PID"
	skip "$(cat "$T/hold.out")"
fi
grep -q "holding" "$T/hold.out" || fail "hold: $(cat "$T/hold.out")"
t0=$(date +%s%N)
disown "$VM_PID" # killed on purpose: no job report
kill -KILL "$VM_PID"
wait_pid "$HLP_PID" 10 && fail "after START: helper exited 0 without its VMM"
ms=$((($(date +%s%N) - t0) / 1000000))
kill -KILL "$SRC_PID"
wait_pid "$SRC_PID" 5 || true
grep -q "the VMM (pid $VM_PID) exited, its pidfd says; its control connection is still open" \
	"$T/helper.log" || fail "after START: the pidfd did not notice: $(grep -m3 'error\|warn' "$T/helper.log")"
grep -q "migration failed: the VMM exited before COMPLETE" "$T/helper.log" ||
	fail "after START: $(grep -m1 'migration failed' "$T/helper.log")"
wait_pid "$HOLD_PID" 5 || fail "the holder did not see the helper close"
log "after START: helper gone ${ms} ms after pch-vm was killed: $(cat "$T/hold.out")"
