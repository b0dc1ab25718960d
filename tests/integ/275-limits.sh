#!/bin/bash
# Hostile input is cut off, not served.  (1) A control-socket peer that
# breaks a limit (a HELLO name with a control character, header flags, a
# reserved field) is refused or dropped, and the VMM's migration after it
# completes, verified.  (2) A source whose URGENT answer names a request id
# the helper never sent (a proxy rewrites the first answer's id) is cut off:
# the helper refuses the answer, says which id, and installs nothing of it.
# timeout: 180
. "$(dirname "$0")/../lib/common.sh"
require_uffd
command -v python3 >/dev/null || skip "python3 is not installed (the rogue peers are python)"

# --- (1) control socket -----------------------------------------------------
new_key
start_source --channels 4 --ram 128M
start_helper --channels 4
for _ in $(seq 100); do [ -S "$T/helper.sock" ] && break; sleep 0.05; done
python3 - "$T/helper.sock" >"$T/ctlpeer.log" 2>&1 <<'PY' || fail "control peer: $(cat "$T/ctlpeer.log")"
import socket, struct, sys
MAGIC, HELLO, START, REPLY = 0x56484350, 1, 6, 10

def conn():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.settimeout(5)
    s.connect(sys.argv[1])
    return s

def hello(name, role=2, flags=0):
    body = struct.pack('<HHIQ32s', 1, role, 0, 0, name)
    return struct.pack('<IHHII', MAGIC, HELLO, flags, 16 + len(body), 1) + body

def reply(s):
    r = s.recv(65536)
    if not r:
        return None
    magic, typ, fl, ln, seq, rtype, _, status, tl, _ = struct.unpack_from('<IHHIIHHiII', r)
    return typ, status, r[32:32 + tl].decode(errors='replace')

# a monitor whose name carries an escape sequence: refused, and still served
s = conn()
s.send(hello(b'mon\x1b[2J'))
r = reply(s)
assert r and r[0] == REPLY and r[1] == -22 and 'character 0x1b in name' in r[2], r
s.send(hello(b'monitor'))
r = reply(s)
assert r and r[0] == HELLO, r
print('name refused, then served:', r[0])
s.close()
# header flags not 0: the connection is dropped without an answer
s = conn()
s.send(hello(b'monitor', flags=1))
assert reply(s) is None
print('header flags: dropped')
s.close()
# START with its reserved field set, from a monitor: refused by its length rule first
s = conn()
s.send(hello(b'monitor'))
assert reply(s)[0] == HELLO
s.send(struct.pack('<IHHIIII', MAGIC, START, 0, 24, 2, 0, 7))
r = reply(s)
assert r and r[1] == -22 and 'flags or reserved not 0' in r[2], r
print('reserved field: refused:', r[2])
s.close()
PY
grep -q "control: refused: HELLO: character 0x1b in name" "$T/helper.log" ||
	fail "helper did not name the bad HELLO name"
run_vm --ram 128M --vcpus 2 --workload random || fail "pch-vm failed after the rogue peer: $(tail -n 5 "$T/vm.log")"
wait_pid "$HLP_PID" 30 || fail "pch-helper failed"
wait_pid "$SRC_PID" 30 || fail "pch-source failed"
expect_json "$T/vm.json" '.result == "ok" and .pages_mismatched == 0 and .pages_verified == .pages_total'
log "ok: control-socket limits; migration verified: $(jq -c '{pages_verified,faults}' "$T/vm.json")"

# --- (2) an URGENT answer for a request never sent ---------------------------
rm -f "$T/source.port" "$T"/*.json "$T/session.key" "$T/helper.sock"
new_key
# slow bulk, so that faults go to URGENT
start_source --channels 2 --ram 128M --bulk-rate 20
python3 - "$T/rogue.port" "$SRC_PORT" >"$T/rogue.log" 2>&1 <<'PY' &
import os, socket, struct, sys, threading
port_file, target = sys.argv[1], int(sys.argv[2])
ls = socket.socket()
ls.bind(('127.0.0.1', 0))
ls.listen(16)
with open(port_file + '.tmp', 'w') as f:
    f.write(str(ls.getsockname()[1]))
os.rename(port_file + '.tmp', port_file)

def exact(s, n):
    b = b''
    while len(b) < n:
        d = s.recv(n - len(b))
        if not d:
            raise EOFError
        b += d
    return b

def pump(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    for x in (a, b):
        try:
            x.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

def urgent(src, dst):
    done = False
    try:
        dst.sendall(exact(src, 72))  # the ack
        while True:
            h = exact(src, 32)
            magic, typ, flags, block, count, seq, arg = struct.unpack('<IHHIIQQ', h)
            if not done and typ in (1, 2) and flags & 1:
                print('rewrote answer id %d to %d' % (arg, arg + (1 << 40)), flush=True)
                h = struct.pack('<IHHIIQQ', magic, typ, flags, block, count, seq, arg + (1 << 40))
                done = True
            dst.sendall(h)
            n = count * 8 + (count * 4096 if typ == 1 else 0)
            while n:
                d = src.recv(min(n, 65536))
                if not d:
                    raise EOFError
                dst.sendall(d)
                n -= len(d)
    except (EOFError, OSError):
        pass
    pump(src, dst)

def handle(c):
    s = socket.create_connection(('127.0.0.1', target))
    h = exact(c, 72)
    s.sendall(h)
    threading.Thread(target=pump, args=(c, s), daemon=True).start()
    (urgent if h[6] == 2 else pump)(s, c)

while True:
    c, _ = ls.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
PY
RGE_PID=$!
PIDS="$PIDS $RGE_PID"
SRC_PORT=$(wait_port rogue-proxy "$RGE_PID" "$T/rogue.port") || exit 1
start_helper --channels 2
run_vm --ram 128M --vcpus 2 --workload random && log "note: pch-vm ended ok"
wait_pid "$HLP_PID" 60 && fail "pch-helper served a source that answered a request it never sent"
grep -q "rewrote answer id" "$T/rogue.log" || fail "no URGENT answer went through the rogue proxy"
grep -q "URGENT channel: answer for request [0-9]*, which the helper never sent" "$T/helper.log" ||
	fail "helper did not refuse the answer by its id"
# nothing of that answer was installed: every page the VM saw is right
if [ -s "$T/vm.json" ]; then
	expect_json "$T/vm.json" '.pages_mismatched == 0' '{result,pages_mismatched}'
fi
log "ok: $(grep -o 'answer for request [0-9]*[^;]*' "$T/helper.log" | head -1)"
