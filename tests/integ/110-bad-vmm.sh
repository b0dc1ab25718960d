#!/bin/bash
# A VMM that gets the control protocol wrong: every malformed or
# out-of-order request is refused with a reply naming what was wrong (wrong
# version, block id, size, length, backing; a uffd without an fd or that is
# a pipe; a bad ring; START too early; unknown type; stray fds), and the
# helper keeps answering.  Shared blocks: a memfd block without its fd, an
# anon block with one, a memfd that is a pipe or a disk file, too short or
# unsealed, a hugetlb block of base pages or on shmem (none needs a huge
# page), a uffd whose registration lacks CONTINUE for a memfd block; and, to
# a second helper, a memfd block announced after such a uffd, refused at
# START.  A monitor connection, even one that connects before the VMM, may
# only read stats; a second VMM is refused.
# timeout: 120
. "$(dirname "$0")/../lib/common.sh"
require_uffd

new_key
start_source --channels 2 --ram 64M
start_helper --channels 2
"$TOOLS/pch-badvmm" "$T/helper.sock" >"$T/badvmm.out" 2>&1 || { cat "$T/badvmm.out"; fail "a bad request was not refused as expected"; }
cat "$T/badvmm.out"
wait_pid "$HLP_PID" 20 && fail "helper exited 0 after its VMM left before START"
grep -q "went away before START" "$T/helper.log" || fail "helper did not say why it stopped"

# a helper takes one uffd, once: a block it cannot serve, announced after it,
# needs a helper of its own (the source is never reached: START is refused)
mv "$T/helper.log" "$T/helper-first.log"
start_helper --channels 2
"$TOOLS/pch-badvmm" --late-block "$T/helper.sock" >"$T/late.out" 2>&1 || { cat "$T/late.out"; fail "a block after the uffd was not refused at START"; }
cat "$T/late.out"
wait_pid "$HLP_PID" 20 && fail "helper exited 0 after a refused START"
grep -q "refused: START: block pc.ram (memfd) needs UFFDIO_CONTINUE" "$T/helper.log" ||
	fail "helper did not log the refused START"
grep -q "went away before START" "$T/helper.log" || fail "helper started after a refused START"
kill "$SRC_PID" 2>/dev/null || true

# a monitor beside a real migration, one of them connected before the VMM
rm -f "$T/source.port"
start_source --channels 2 --ram 256M --bulk-rate 200
start_helper --channels 2
sleep 0.2
"$TOOLS/pch-badvmm" --monitor-first "$T/helper.sock" >"$T/monitor0.out" 2>&1 || { cat "$T/monitor0.out"; fail "monitor before the VMM"; }
cat "$T/monitor0.out"
run_vm --ram 256M --vcpus 1 --workload seq &
VM_PID=$!
PIDS="$PIDS $VM_PID"
sleep 0.3
"$TOOLS/pch-badvmm" --monitor "$T/helper.sock" >"$T/monitor.out" 2>&1 || { cat "$T/monitor.out"; fail "monitor case"; }
cat "$T/monitor.out"
wait_pid "$VM_PID" 60 || fail "pch-vm failed beside the monitor"
expect_json "$T/vm.json" '.result == "ok" and .pages_mismatched == 0'
