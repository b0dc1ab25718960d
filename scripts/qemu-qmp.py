#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""qemu-qmp.py: migrate the memload guest between two QEMUs on loopback,
postcopy, and check the guest's memory afterwards.  scripts/qemu-check.sh
runs it; stdlib only (Debian's /usr/bin/python3).

  qemu-qmp.py run   --qemu BIN --firmware DIRS --kernel K --initrd I
                    --mode native|pch [--json FILE] [--logs DIR] ...
  qemu-qmp.py probe --qemu BIN     exit 0 if the QEMU knows postcopy-helper,
                                   1 (and the reason on stdout) if not

A run: source QEMU (memory-backend-memfd, share=on) and destination QEMU
(memory-backend-ram, -incoming defer), both TCG, -nodefaults, serial to a
file, QMP on a unix socket.  postcopy-ram (and postcopy-preempt when it can
be set) on both; wait for a verified memload pass on the source console;
migrate; after --precopy-ms, migrate-start-postcopy; wait for completed on
both sides; then the destination console must show a memload pass that
started after completion and ended `ok`, and no FAIL on either console.
Exit 0 pass, 1 fail, 2 usage.  Every wait has a deadline, and every child
(QEMUs, pch processes) is killed and reaped on every way out.
"""

import argparse
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

PR_SET_PDEATHSIG = 1


class Fail(Exception):
    pass


def log(msg):
    print("qemu-check: " + msg, file=sys.stderr, flush=True)


def die_with_parent():
    # a QEMU must not outlive this script, even if it is SIGKILLed
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except Exception:
        pass


class Deadline:
    def __init__(self, seconds):
        self.end = time.monotonic() + seconds
        self.seconds = seconds

    def left(self):
        return self.end - time.monotonic()

    def check(self, what):
        if self.left() <= 0:
            raise Fail("deadline (%ds for the whole check) passed while %s" % (self.seconds, what))


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class QMP:
    """A minimal QMP client over a unix socket: commands with a timeout,
    events kept (with QEMU's timestamps) for later."""

    def __init__(self, name, path, proc, timeout):
        self.name = name
        self.events = []
        self.buf = b""
        end = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise Fail("%s QEMU exited (status %s) before its QMP socket came up" %
                           (name, proc.returncode))
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > end:
                    raise Fail("%s QMP socket %s did not accept within %ds" % (name, path, timeout))
                time.sleep(0.05)
        greeting = self._read(timeout)
        if "QMP" not in greeting:
            raise Fail("%s QMP: unexpected greeting %r" % (name, greeting))
        self.cmd("qmp_capabilities")

    def _read(self, timeout):
        end = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = end - time.monotonic()
            if left <= 0:
                raise Fail("%s QMP: no answer within %.0fs" % (self.name, timeout))
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError as e:    # reset when QEMU dies mid-answer
                raise Fail("%s QMP: connection lost (%s; QEMU died?)" % (self.name, e))
            if not data:
                raise Fail("%s QMP: connection closed (QEMU died?)" % self.name)
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, timeout=30, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        try:
            self.sock.sendall(json.dumps(msg).encode() + b"\n")
        except OSError as e:
            raise Fail("%s QMP %s: connection lost (%s; QEMU died?)" % (self.name, name, e))
        end = time.monotonic() + timeout
        while True:
            r = self._read(max(0.1, end - time.monotonic()))
            if "event" in r:
                self.events.append(r)
                continue
            if "error" in r:
                raise Fail("%s QMP %s %s: %s" % (self.name, name, json.dumps(args),
                                                 r["error"].get("desc", r["error"])))
            return r.get("return")

    def try_cmd(self, name, **args):
        try:
            return self.cmd(name, **args), None
        except Fail as e:
            return None, str(e)

    def drain(self):
        """collect events that arrived without a command"""
        self.sock.settimeout(0)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                self.buf += data
        except (BlockingIOError, socket.timeout):
            pass
        except OSError:
            pass    # a dead QEMU: children.check_alive() names it
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            r = json.loads(line)
            if "event" in r:
                self.events.append(r)

    def event_time(self, event, status):
        """host wall time (s) of the first MIGRATION event with this status"""
        for e in self.events:
            if e["event"] == event and e.get("data", {}).get("status") == status:
                ts = e["timestamp"]
                return ts["seconds"] + ts["microseconds"] / 1e6
        return None

    def close(self):
        try:
            self.sock.close()
        except Exception:
            pass


class Children:
    """every process started here, killed and reaped on the way out"""

    def __init__(self):
        self.procs = []
        self.may_finish = set()

    def start(self, name, argv, logpath, may_finish=False):
        """may_finish: exiting with status 0 is not a failure (pch-source and
        pch-helper exit once the migration is complete)"""
        logf = open(logpath, "wb")
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                             preexec_fn=die_with_parent)
        logf.close()
        self.procs.append((name, p))
        if may_finish:
            self.may_finish.add(name)
        return p

    def check_alive(self):
        for name, p in self.procs:
            if p.poll() is not None and not (p.returncode == 0 and name in self.may_finish):
                raise Fail("%s exited early (status %s)" % (name, p.returncode))

    def wait_exit(self, names, seconds):
        """give these a few seconds to exit on their own; their statuses"""
        end = time.monotonic() + seconds
        out = {}
        for name, p in self.procs:
            if name in names:
                try:
                    out[name] = p.wait(timeout=max(0.1, end - time.monotonic()))
                except subprocess.TimeoutExpired:
                    out[name] = None
        return out

    def stop(self):
        for name, p in self.procs:
            if p.poll() is None:
                p.terminate()
        end = time.monotonic() + 5
        for name, p in self.procs:
            try:
                p.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []


class Console:
    def __init__(self, path):
        self.path = path

    def text(self):
        try:
            with open(self.path, "rb") as f:
                return f.read().decode("latin-1").replace("\r", "")
        except FileNotFoundError:
            return ""

    def size(self):
        try:
            return os.path.getsize(self.path)
        except FileNotFoundError:
            return 0


OK_RE = re.compile(r"MEMLOAD ok pass=(\d+) pages=(\d+) stall_p99_us=(\d+) stall_max_us=(\d+)(?: ms=(\d+))?")
START_RE = re.compile(r"MEMLOAD start pass=(\d+)")
FAIL_RE = re.compile(r"MEMLOAD (FAIL|bad|exited)[^\n]*")


def wait_for(what, pred, deadline, limit, children, poll=0.1):
    end = time.monotonic() + min(limit, max(0, deadline.left()))
    while True:
        r = pred()
        if r:
            return r
        children.check_alive()
        if time.monotonic() > end:
            deadline.check(what)
            raise Fail("timed out after %ds %s" % (limit, what))
        time.sleep(poll)


def qemu_argv(a, role, work, port=None):
    argv = [a.qemu]
    for d in a.firmware.split(":"):
        if d:
            argv += ["-L", d]
    size = a.mem
    if role == "src":
        backend = "memory-backend-memfd,id=mem0,size=%s,share=on" % size
    else:
        backend = "memory-backend-ram,id=mem0,size=%s" % size
    argv += ["-name", "pch-" + role, "-machine", "%s,memory-backend=mem0" % a.machine,
             "-accel", "tcg", "-nodefaults", "-display", "none", "-no-reboot",
             "-m", size, "-smp", "1", "-object", backend,
             "-kernel", a.kernel, "-initrd", a.initrd,
             "-append", "console=ttyS0 panic=-1 quiet memload.mib=%d" % a.mib,
             "-serial", "file:%s/%s.console" % (work, role),
             "-qmp", "unix:%s/%s.qmp,server=on,wait=off" % (work, role)]
    if role == "dst":
        argv += ["-incoming", "defer"]
    return argv


# ---------------------------------------------------------------------------
# pch mode: the only part that differs from native postcopy.  pch-source
# (source side) gets the source QEMU's RAM at the switch to postcopy through
# its VMM socket; pch-helper (destination) serves the destination QEMU's
# faults, QEMU handing it its uffd and RAM blocks over the helper's control
# socket.  Both QEMUs learn the socket paths through the `postcopy-helper`
# migration parameter (qemu-glue/patches).  PCH_SOURCE_ARGS /
# PCH_HELPER_ARGS (space-separated) are appended to their command lines.
# ---------------------------------------------------------------------------
def pch_setup(a, work, children, src, dst, deadline):
    bindir = a.pch_bindir
    for prog in ("pch-source", "pch-helper"):
        if not os.access(os.path.join(bindir, prog), os.X_OK):
            raise Fail("%s/%s is not built (make)" % (bindir, prog))
    key = os.path.join(work, "pch.key")
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, ("%s %s\n" % (os.urandom(16).hex(), os.urandom(32).hex())).encode())
    os.close(fd)
    vmm_sock = os.path.join(work, "pch-source.vmm")
    ctl_sock = os.path.join(work, "pch-helper.ctl")
    port_file = os.path.join(work, "pch-source.port")
    src_argv = [os.path.join(bindir, "pch-source"), "--listen=127.0.0.1:0",
                "--port-file=" + port_file, "--key-file=" + key,
                "--channels=%d" % a.pch_channels, "--vmm-socket=" + vmm_sock,
                "--block-name=mem0",    # QEMU's RAM block: the memory backend's id
                "--vmm-timeout-s=%d" % a.deadline,
                "--stats=" + os.path.join(work, "pch-source.json"), "--timeout-s=%d" % a.deadline]
    if a.mode in ("pch-kill", "pch-hang"):
        # about 2 s of postcopy (200 MB of bulk), so the signal lands inside it
        src_argv.append("--bulk-rate=100")
    src_argv += os.environ.get("PCH_SOURCE_ARGS", "").split()
    children.start("pch-source", src_argv, os.path.join(work, "pch-source.log"), may_finish=True)
    port = wait_for("waiting for pch-source's port file",
                    lambda: open(port_file).read().strip() if os.path.exists(port_file) else None,
                    deadline, 15, children)
    wait_for("waiting for pch-source's VMM socket", lambda: os.path.exists(vmm_sock),
             deadline, 15, children)
    helper_argv = [os.path.join(bindir, "pch-helper"), "--control=" + ctl_sock,
                   "--source=127.0.0.1:%s" % port, "--key-file=" + key,
                   "--channels=%d" % a.pch_channels,
                   # QEMU connects at postcopy-listen, after the whole precopy phase
                   "--accept-timeout-s=%d" % a.deadline,
                   "--stats=" + os.path.join(work, "pch-helper.json"), "--timeout-s=%d" % a.deadline]
    helper_argv += os.environ.get("PCH_HELPER_ARGS", "").split()
    children.start("pch-helper", helper_argv, os.path.join(work, "pch-helper.log"), may_finish=True)
    wait_for("waiting for pch-helper's control socket", lambda: os.path.exists(ctl_sock),
             deadline, 15, children)
    src.cmd("migrate-set-parameters", **{"postcopy-helper": vmm_sock})
    dst.cmd("migrate-set-parameters", **{"postcopy-helper": ctl_sock})
    return {"pch_source_vmm": vmm_sock, "pch_helper_control": ctl_sock, "pch_port": int(port)}


def pch_stats(work):
    out = {}
    for n in ("pch-source", "pch-helper"):
        try:
            with open(os.path.join(work, n + ".json")) as f:
                out[n] = json.load(f)
        except (OSError, ValueError):
            pass
    return out


def qemu_knows_helper(qemu):
    """(True, '') if the QEMU has the postcopy-helper migration parameter"""
    try:
        p = subprocess.run([qemu, "-machine", "none", "-nodefaults", "-display", "none",
                            "-qmp", "stdio"], preexec_fn=die_with_parent,
                           input=b'{"execute":"qmp_capabilities"}\n'
                                 b'{"execute":"query-migrate-parameters"}\n'
                                 b'{"execute":"query-qmp-schema"}\n{"execute":"quit"}\n',
                           capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, "cannot run %s: %s" % (qemu, e)
    if b'"postcopy-helper"' in p.stdout:
        return True, ""
    return False, "%s has no postcopy-helper migration parameter (query-migrate-parameters, query-qmp-schema)" % qemu


class Passed(Exception):
    """a mode that ends before the migration completes (pch-kill) passed"""


def helper_death(a, children, src, dst, dst_p, work, res):
    """pch-kill: SIGKILL pch-helper while it serves the destination's
    postcopy; pch-hang: SIGSTOP it (alive, its sockets open, silent: only
    its heartbeat on the event ring stops).  The destination QEMU must
    notice, fail the migration with an error naming pch-helper and exit; the
    source must pause or fail its migration (QEMU's postcopy keeps the
    source's RAM for a recovery) and stay up.  Each within its deadline: a
    QEMU left waiting on a dead or hung helper is the failure this mode
    looks for."""
    hang = a.mode == "pch-hang"
    helper = dict(children.procs)["pch-helper"]
    end = time.monotonic() + 10
    while dst.cmd("query-migrate").get("status") != "postcopy-active":
        if dst_p.poll() is not None or time.monotonic() > end:
            raise Fail("destination never postcopy-active (QEMU %s) before the kill" %
                       ("exited %s" % dst_p.returncode if dst_p.poll() is not None else "still running"))
        time.sleep(0.005)
    time.sleep(a.kill_after_ms / 1000)
    if helper.poll() is not None:
        raise Fail("pch-helper exited (status %s) before it was killed: postcopy over too soon? (--kill-after-ms)"
                   % helper.returncode)
    helper.send_signal(signal.SIGSTOP if hang else signal.SIGKILL)
    t_kill = time.monotonic()
    what = "stopped" if hang else "killed"
    log("%s: pch-helper %s %d ms into postcopy" % (a.mode, what, a.kill_after_ms))
    end = t_kill + a.death_timeout
    while dst_p.poll() is None:
        if time.monotonic() > end:
            raise Fail("destination QEMU still running %d s after pch-helper was %s" % (a.death_timeout, what))
        time.sleep(0.01)
    t_dst = time.monotonic()
    if hang:
        helper.kill()
    with open(os.path.join(work, "dst.log"), "rb") as f:
        dlog = f.read().decode("latin-1")
    why = [line for line in dlog.splitlines() if "postcopy-helper" in line and " info: " not in line]
    res["helper_death"] = {"signal": "STOP" if hang else "KILL",
                           "kill_after_ms": a.kill_after_ms, "dst_exit": dst_p.returncode,
                           "dst_exit_ms": round((t_dst - t_kill) * 1000), "dst_error": why[:3]}
    if dst_p.returncode == 0:
        raise Fail("destination QEMU exited 0 after pch-helper was %s: its guest cannot be whole" % what)
    if not any("pch-helper" in line for line in why):
        raise Fail("destination QEMU exited %s without a postcopy-helper error naming pch-helper (dst.log)"
                   % dst_p.returncode)
    end = time.monotonic() + a.death_timeout
    while True:
        st = src.cmd("query-migrate").get("status")
        if st in ("postcopy-paused", "failed"):
            break
        if time.monotonic() > end:
            raise Fail("source migration still %s %d s after the destination died" % (st, a.death_timeout))
        time.sleep(0.05)
    res["helper_death"].update({"src_status": st, "src_status_ms": round((time.monotonic() - t_kill) * 1000)})


def run(a):
    deadline = Deadline(a.deadline)
    if a.workdir:
        os.makedirs(a.workdir, mode=0o700)
        work = a.workdir
    else:
        work = tempfile.mkdtemp(prefix="pch-qemu-check.")
    children = Children()
    qmps = []
    res = {"mode": a.mode, "machine": a.machine, "mem": a.mem, "memload_mib": a.mib,
           "qemu": a.qemu, "pass": False}
    src_con = Console(os.path.join(work, "src.console"))
    dst_con = Console(os.path.join(work, "dst.console"))
    t_run = time.monotonic()
    try:
        port = free_port()
        src_p = children.start("source QEMU", qemu_argv(a, "src", work), os.path.join(work, "src.log"))
        dst_p = children.start("destination QEMU", qemu_argv(a, "dst", work), os.path.join(work, "dst.log"))
        src = QMP("source", os.path.join(work, "src.qmp"), src_p, 20)
        qmps.append(src)
        dst = QMP("destination", os.path.join(work, "dst.qmp"), dst_p, 20)
        qmps.append(dst)

        for q in (src, dst):
            q.cmd("migrate-set-capabilities", capabilities=[
                {"capability": "postcopy-ram", "state": True},
                {"capability": "events", "state": True}])
        dst.try_cmd("migrate-set-capabilities", capabilities=[
            {"capability": "postcopy-blocktime", "state": True}])
        # auto: on for native (QEMU's best postcopy), off for pch (pch-helper
        # serves urgent pages on its own channel; QEMU's preempt channel would
        # carry nothing)
        preempt = False
        if a.preempt == "on" or (a.preempt == "auto" and a.mode == "native"):
            e1 = src.try_cmd("migrate-set-capabilities", capabilities=[
                {"capability": "postcopy-preempt", "state": True}])[1]
            e2 = dst.try_cmd("migrate-set-capabilities", capabilities=[
                {"capability": "postcopy-preempt", "state": True}])[1] if not e1 else None
            if e1 or e2:
                if a.preempt == "on":
                    raise Fail("postcopy-preempt: %s" % (e1 or e2))
                log("postcopy-preempt not used: %s" % (e1 or e2))
                src.try_cmd("migrate-set-capabilities", capabilities=[
                    {"capability": "postcopy-preempt", "state": False}])
            else:
                preempt = True
        res["postcopy_preempt"] = preempt
        # no bandwidth cap, and a downtime limit precopy cannot meet, so the
        # switch to postcopy is ours, not precopy's convergence
        src.cmd("migrate-set-parameters", **{"max-bandwidth": 0, "downtime-limit": 1})

        if a.mode != "native":
            res["pch"] = pch_setup(a, work, children, src, dst, deadline)

        uri = "tcp:127.0.0.1:%d" % port
        dst.cmd("migrate-incoming", uri=uri)

        log("%s: booting the guest (memload %d MiB in %s)" % (a.mode, a.mib, a.mem))
        wait_for("waiting for a verified memload pass on the source console",
                 lambda: OK_RE.search(src_con.text()), deadline, a.boot_timeout, children)
        if FAIL_RE.search(src_con.text()):
            raise Fail("source console before migration: " + FAIL_RE.search(src_con.text()).group(0))

        t_mig = time.monotonic()
        src.cmd("migrate", uri=uri)
        wait_for("waiting for the source to go active",
                 lambda: src.cmd("query-migrate").get("status") in ("active", "postcopy-active", "completed", "failed"),
                 deadline, 30, children, poll=0.02)
        time.sleep(a.precopy_ms / 1000)
        st = src.cmd("query-migrate").get("status")
        if st != "active":
            raise Fail("source status %s before migrate-start-postcopy (precopy should still be running)" % st)
        src.cmd("migrate-start-postcopy")
        t_pc = time.monotonic()
        if a.mode in ("pch-kill", "pch-hang"):
            helper_death(a, children, src, dst, dst_p, work, res)
            raise Passed()

        def both_completed():
            s = src.cmd("query-migrate")
            d = dst.cmd("query-migrate")
            for side, r in (("source", s), ("destination", d)):
                if r.get("status") in ("failed", "cancelled"):
                    raise Fail("%s migration %s: %s" % (side, r.get("status"), r.get("error-desc", "")))
            if s.get("status") == "completed" and d.get("status") == "completed":
                return s, d
            return None

        s_info, d_info = wait_for("waiting for completed on both sides", both_completed,
                                  deadline, a.migrate_timeout, children, poll=0.05)
        t_done = time.monotonic()
        mark = dst_con.size()
        log("%s: completed in %.2fs; waiting for a full memload pass on the destination" %
            (a.mode, t_done - t_mig))

        ok_start = [0]

        def verified_after():
            text = dst_con.text()
            tail = text[mark:]
            m = START_RE.search(tail)
            if not m:
                return None
            n = m.group(1)
            ok = re.search(r"MEMLOAD (ok|bad) pass=%s [^\n]*\n" % n, tail[m.end():])
            if ok:
                ok_start[0] = m.start()
            return ok

        ok = wait_for("waiting for a memload pass started after completion on the destination console",
                      verified_after, deadline, a.verify_timeout, children)
        dtext = dst_con.text()
        stext = src_con.text()
        fail_lines = [m.group(0) for m in FAIL_RE.finditer(stext + "\n" + dtext)]
        st = dst.cmd("query-status")
        src.drain()
        dst.drain()

        # the destination's passes that started before completion: they ran
        # across the switch and the postcopy phase
        vstart = mark + ok_start[0]
        dst_passes = [m for m in OK_RE.finditer(dtext) if m.start() < vstart]
        res.update({
            "total_time_ms": s_info.get("total-time"),
            "downtime_ms": s_info.get("downtime"),
            "setup_time_ms": s_info.get("setup-time"),
            "harness_migrate_to_completed_ms": round((t_done - t_mig) * 1000),
            "harness_postcopy_to_completed_ms": round((t_done - t_pc) * 1000),
            "precopy_ms_requested": a.precopy_ms,
            "src_ram": s_info.get("ram", {}),
            "dst_postcopy_blocktime_ms": d_info.get("postcopy-blocktime"),
            "dst_status": st.get("status"),
        })
        t_pa = src.event_time("MIGRATION", "postcopy-active")
        t_c = src.event_time("MIGRATION", "completed")
        res["postcopy_time_ms"] = round((t_c - t_pa) * 1000) if t_pa and t_c else None
        if dst_passes:
            first = dst_passes[0]
            res["stall_migration_pass"] = {"pass": int(first.group(1)),
                                           "p99_us": int(first.group(3)), "max_us": int(first.group(4))}
            res["stall_postcopy"] = {"passes": len(dst_passes),
                                     "p99_us_worst_pass": max(int(m.group(3)) for m in dst_passes),
                                     "max_us": max(int(m.group(4)) for m in dst_passes)}
        vm = OK_RE.search(ok.group(0))
        if vm:
            res["stall_verified_pass"] = {"pass": int(vm.group(1)), "p99_us": int(vm.group(3)),
                                          "max_us": int(vm.group(4))}
        sp = [m for m in OK_RE.finditer(stext)]
        if sp:
            res["stall_src_last_pass"] = {"pass": int(sp[-1].group(1)), "p99_us": int(sp[-1].group(3)),
                                          "max_us": int(sp[-1].group(4))}
        if a.mode == "pch":
            # they exit once the migration is complete; their stats come at exit
            st_pch = children.wait_exit(("pch-source", "pch-helper"), 10)
            res["pch_exit"] = st_pch
            res["pch_stats"] = pch_stats(work)
            bad = ["%s %s" % (n, "still running 10 s after completion" if c is None else "exit %d" % c)
                   for n, c in st_pch.items() if c != 0]
            if bad:
                raise Fail("after the migration: " + ", ".join(bad))
        if fail_lines or not ok.group(0).startswith("MEMLOAD ok"):
            res["fail_lines"] = fail_lines[:20]
            raise Fail("memload reported a checksum mismatch: %s" % (fail_lines[0] if fail_lines else ok.group(0).strip()))
        if st.get("status") != "running":
            raise Fail("destination VM status %s after migration, not running" % st.get("status"))
        res["pass"] = True
    except Passed:
        res["pass"] = True
    except Fail as e:
        res["error"] = str(e)
    except KeyboardInterrupt:
        res["error"] = "interrupted"
    finally:
        for q in qmps:
            q.close()
        children.stop()
        res["wall_s"] = round(time.monotonic() - t_run, 1)
        if a.logs and (not res["pass"] or a.keep_logs):
            shutil.rmtree(a.logs, ignore_errors=True)
            shutil.copytree(work, a.logs, ignore=shutil.ignore_patterns("*.qmp", "*.vmm", "*.ctl", "*.key"))
            res["logs"] = a.logs
        shutil.rmtree(work, ignore_errors=True)
    return res


def fmt(v, unit=""):
    return "-" if v is None else "%s%s" % (v, unit)


def table(res):
    rows = [("mode", res["mode"]),
            ("result", "PASS" if res["pass"] else "FAIL: " + res.get("error", "?")),
            ("postcopy-preempt", fmt(res.get("postcopy_preempt"))),
            ("total time (query-migrate)", fmt(res.get("total_time_ms"), " ms")),
            ("downtime", fmt(res.get("downtime_ms"), " ms")),
            ("postcopy time (events)", fmt(res.get("postcopy_time_ms"), " ms")),
            ("postcopy requests", fmt(res.get("src_ram", {}).get("postcopy-requests"))),
            ("dst postcopy blocktime", fmt(res.get("dst_postcopy_blocktime_ms"), " ms"))]
    h = res.get("pch_stats", {}).get("pch-helper")
    if isinstance(h, dict):
        rows.append(("pch-helper faults / urgent pages / bulk pages",
                     "%s / %s / %s" % (h.get("faults", "-"), h.get("pages_urgent", "-"), h.get("pages_bulk", "-"))))
    d = res.get("helper_death")
    if d:
        rows.append(("pch-helper SIG%s, into postcopy" % d["signal"], "%d ms" % d["kill_after_ms"]))
        rows.append(("destination QEMU exit status, after", "%s, %d ms" % (d["dst_exit"], d["dst_exit_ms"])))
        for line in d.get("dst_error", []):
            rows.append(("destination QEMU said", line.strip()[:160]))
        if "src_status" in d:
            rows.append(("source migration, after", "%s, %d ms" % (d["src_status"], d["src_status_ms"])))
    m = res.get("stall_postcopy")
    if m:
        rows.append(("guest stall p99 / max, during postcopy",
                     "%d / %d us (worst p99 of %d passes)" % (m["p99_us_worst_pass"], m["max_us"], m["passes"])))
    v = res.get("stall_verified_pass")
    if v:
        rows.append(("guest stall p99 / max, verified pass",
                     "%d / %d us (pass %d)" % (v["p99_us"], v["max_us"], v["pass"])))
    s = res.get("stall_src_last_pass")
    if s:
        rows.append(("guest stall p99 / max, source before",
                     "%d / %d us (pass %d)" % (s["p99_us"], s["max_us"], s["pass"])))
    rows.append(("check wall time", fmt(res.get("wall_s"), " s")))
    w = max(len(k) for k, _ in rows)
    return "\n".join("%-*s  %s" % (w, k, v) for k, v in rows)


def main():
    ap = argparse.ArgumentParser(description="QEMU postcopy migration check (memload guest)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    pr = sub.add_parser("probe")
    pr.add_argument("--qemu", required=True)
    r = sub.add_parser("run")
    r.add_argument("--qemu", required=True)
    r.add_argument("--firmware", default="")
    r.add_argument("--kernel", required=True)
    r.add_argument("--initrd", required=True)
    r.add_argument("--mode", choices=("native", "pch", "pch-kill", "pch-hang"), default="native",
                   help="pch-kill / pch-hang: pch-helper killed / stopped during postcopy, "
                   "both QEMUs must notice")
    r.add_argument("--kill-after-ms", type=int, default=50,
                   help="pch-kill: how long into the destination's postcopy")
    r.add_argument("--death-timeout", type=int, default=45,
                   help="pch-kill, pch-hang: seconds each QEMU has to notice (a hung helper "
                   "is judged after libpch-client's 30 s hung timeout)")
    r.add_argument("--machine", default="q35")
    r.add_argument("--mem", default="1G")
    r.add_argument("--mib", type=int, default=256, help="memload MiB")
    r.add_argument("--precopy-ms", type=int, default=500)
    r.add_argument("--preempt", choices=("auto", "on", "off"), default="auto",
                   help="postcopy-preempt; auto: on for native if QEMU takes it, off for pch")
    r.add_argument("--deadline", type=int, default=240, help="whole run, seconds")
    r.add_argument("--boot-timeout", type=int, default=90)
    r.add_argument("--migrate-timeout", type=int, default=90)
    r.add_argument("--verify-timeout", type=int, default=60)
    r.add_argument("--pch-bindir", default="build/bin")
    r.add_argument("--pch-channels", type=int, default=4)
    r.add_argument("--workdir", help="a new directory for sockets, consoles and logs (removed at exit)")
    r.add_argument("--json")
    r.add_argument("--logs", help="copy consoles and logs here on failure")
    r.add_argument("--keep-logs", action="store_true", help="copy them on success too")
    a = ap.parse_args()

    if a.cmd == "probe":
        ok, why = qemu_knows_helper(a.qemu)
        if not ok:
            print(why)
        return 0 if ok else 1

    def on_term(signum, frame):
        raise KeyboardInterrupt()
    signal.signal(signal.SIGTERM, on_term)
    res = run(a)
    if a.json:
        tmp = a.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(res, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, a.json)
    print(table(res), flush=True)
    return 0 if res["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
