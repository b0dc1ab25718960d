#!/bin/bash
# The control socket serves one uid (--allow-uid, default the helper's):
# a process of another uid that reaches it anyway (here the socket and its
# directory are opened up on purpose, as a misconfiguration would) is
# refused with a log line naming its pid and uid, and counted, while the
# real VMM's migration beside it completes verified.
# timeout: 60
. "$(dirname "$0")/../lib/common.sh"
require_uffd
[ "$(id -u)" = 0 ] || skip "needs root to run a process of another uid"
# setpriv (util-linux) and perl (perl-base, with Socket) are Essential in Debian

new_key
start_source --channels 2 --ram 256M --bulk-rate 100
start_helper --channels 2
for _ in $(seq 200); do [ -S "$T/helper.sock" ] && break; sleep 0.01; done
[ -S "$T/helper.sock" ] || fail "the helper did not create its socket"
# the misconfiguration: anyone may reach the socket
chmod 0711 "$T"
chmod 0666 "$T/helper.sock"

# a process of uid 65534 connects and waits for an answer: the helper closes
setpriv --reuid=65534 --regid=65534 --clear-groups perl -MSocket -e '
	socket(S, AF_UNIX, SOCK_SEQPACKET, 0) or die "socket: $!";
	connect(S, pack_sockaddr_un($ARGV[0])) or die "connect: $!";
	my $b; my $n = sysread(S, $b, 64);
	print defined $n ? "closed after $n bytes\n" : "error: $!\n";' "$T/helper.sock" \
	>"$T/intruder.out" 2>&1 || fail "intruder: $(cat "$T/intruder.out")"
grep -q "closed after 0 bytes" "$T/intruder.out" ||
	fail "the helper did not close the intruder's connection: $(cat "$T/intruder.out")"
grep -q "control: refused a connection from pid [0-9]*, uid 65534: only uid 0 may connect" \
	"$T/helper.log" || fail "the helper did not log the refusal"

run_vm --ram 256M --vcpus 2 --workload random --timeout-s 60 ||
	fail "the migration beside it failed: $(tail -n 3 "$T/vm.log")"
wait_pid "$HLP_PID" 20 || fail "pch-helper failed"
expect_json "$T/vm.json" '.result == "ok" and .pages_mismatched == 0' '{result,errors}'
expect_json "$T/helper.json" '.result == "ok" and .control_refused == 1' '{result,control_refused}'
log "intruder refused: $(grep -o 'control: refused a connection from .*' "$T/helper.log");" \
	"migration ok"
