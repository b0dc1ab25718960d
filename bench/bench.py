#!/usr/bin/env python3
"""pch benchmark driver: `make bench [NETEM=rate,delay[,delay...]] [BENCH_QUICK=1]`.

Runs, in one go, on this machine:
  1. limits  the limit probes build/bench/pch-limit-{uffd,tcp,copy,rr}
  2. matrix  pch-migrate over channels x workloads x backings, repetitions
             interleaved (all configurations for repetition 1, then 2, ...)
  3. scale   guest sizes 1, 4, 16 GiB: duration, helper RSS, per-page state
  4. netem   (NETEM set) source and destination in two network namespaces
             joined by a veth with tc netem, one run set per delay
  5. report  bench/results/<UTC time>/{results.json,report.md,*.png}

Every stage has a time budget and every run a deadline; a failed run is
recorded with its error and the bench goes on.  A stage whose input is
missing (a probe not built, a pch-migrate option not there yet) says so in
the report.  Python 3 standard library only; the plots are gnuplot's.
See bench/README.md.
"""

import argparse
import atexit
import datetime
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HUGE_PAGE = 2 << 20
GIB = 1 << 30
MIB = 1 << 20


class Interrupted(Exception):
    """SIGINT/SIGTERM/SIGHUP: unwind through every finally, then stop."""


def on_signal(signum, frame):
    raise Interrupted(signal.Signals(signum).name)


class Shield:
    """Ignore SIGINT/SIGTERM/SIGHUP while a cleanup runs, so a second
    Ctrl-C does not leave namespaces or huge pages behind."""

    SIGS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __enter__(self):
        self.old = [signal.signal(s, signal.SIG_IGN) for s in self.SIGS]

    def __exit__(self, *exc):
        for s, h in zip(self.SIGS, self.old):
            signal.signal(s, h)
        return False


def log(msg):
    print("bench: " + msg, flush=True)


def now_utc():
    return datetime.datetime.now(datetime.timezone.utc)


# --- statistics -------------------------------------------------------------

def pct(sorted_vals, p):
    """Nearest-rank percentile (p in 0..100) of an ascending list."""
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, int(math.ceil(p / 100.0 * len(sorted_vals))) - 1))
    return sorted_vals[k]


def med_range(vals):
    """(median, min, max) of the values that are not None, or None."""
    v = [x for x in vals if x is not None]
    if not v:
        return None
    return (statistics.median(v), min(v), max(v))


def fmt(x, digits=3):
    if x is None:
        return "—"
    if isinstance(x, float):
        if abs(x) >= 1000:
            return "%.0f" % x
        if x != 0 and abs(x) < 0.01:
            return "%.3g" % x
        return ("%%.%dg" % digits) % x
    return str(x)


def fmt_mr(mr, digits=3):
    """'median [min–max]' of a med_range() triple."""
    if mr is None:
        return "—"
    m, lo, hi = mr
    if lo == hi:
        return fmt(m, digits)
    return "%s [%s–%s]" % (fmt(m, digits), fmt(lo, digits), fmt(hi, digits))


def parse_size(s):
    s = s.strip().upper()
    mult = 1
    for suf, m in (("G", GIB), ("M", MIB), ("K", 1024)):
        if s.endswith(suf):
            mult, s = m, s[:-1]
            break
    return int(float(s) * mult)


def delay_ms(d):
    """A tc delay ('100us', '0.1ms', '5ms', '1s') in milliseconds."""
    for suf, mult in (("usec", 1e-3), ("us", 1e-3), ("msec", 1.0), ("ms", 1.0), ("sec", 1e3), ("s", 1e3)):
        if d.endswith(suf):
            return float(d[:-len(suf)]) * mult
    return float(d)


def size_name(b):
    if b % GIB == 0:
        return "%dG" % (b // GIB)
    return "%dM" % (b // MIB)


# --- processes ----------------------------------------------------------------

class Runner:
    """Runs commands with a deadline, logs in <results>/logs/, and kills the
    whole process group of a command that overstays (or on Ctrl-C)."""

    def __init__(self, logdir):
        self.logdir = logdir
        os.makedirs(logdir, exist_ok=True)

    def run(self, name, cmd, timeout, cwd=ROOT):
        out_path = os.path.join(self.logdir, name + ".out")
        err_path = os.path.join(self.logdir, name + ".err")
        rec = {"name": name, "cmd": cmd, "timeout_s": timeout,
               "stdout_log": os.path.relpath(out_path, os.path.dirname(self.logdir)),
               "stderr_log": os.path.relpath(err_path, os.path.dirname(self.logdir))}
        t0 = time.monotonic()
        with open(out_path, "wb") as fo, open(err_path, "wb") as fe:
            try:
                p = subprocess.Popen(cmd, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL,
                                     cwd=cwd, start_new_session=True)
            except OSError as e:
                rec.update(rc=None, elapsed_s=0.0, error="cannot run %s: %s" % (cmd[0], e))
                return rec
            try:
                rc = p.wait(timeout=timeout)
                rec["rc"] = rc
                if rc != 0:
                    rec["error"] = "%s exited with status %d" % (os.path.basename(cmd[0]), rc)
            except subprocess.TimeoutExpired:
                rec["rc"] = None
                rec["error"] = "%s timed out after %g s (killed)" % (os.path.basename(cmd[0]), timeout)
            finally:
                if p.poll() is None:
                    kill_group(p)
        rec["elapsed_s"] = time.monotonic() - t0
        with open(out_path, "r", errors="replace") as f:
            rec["stdout"] = f.read()
        with open(err_path, "r", errors="replace") as f:
            err = f.read()
        if rec.get("error"):
            tail = [l for l in err.strip().splitlines() if l.strip()][-3:]
            if tail:
                rec["error"] += ": " + " | ".join(tail)
        rec["stderr_tail"] = err[-2000:]
        return rec


def proc_stat(pid):
    """(ppid, start time) of a process from /proc, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return int(rest[1]), rest[19]
    except (OSError, IndexError, ValueError):
        return None


def descendants(root):
    """[(pid, start time)] of every process below root (pch-migrate puts
    each of its children in a process group of its own)."""
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = proc_stat(int(d))
            if st:
                children.setdefault(st[0], []).append((int(d), st[1]))
    out, todo = [], [root]
    while todo:
        for kid in children.get(todo.pop(), []):
            out.append(kid)
            todo.append(kid[0])
    return out


def kill_group(p):
    """SIGTERM to the command's process group (pch-migrate then stops its
    children), SIGKILL 10 s later; then SIGKILL any process it started that
    is still there (same pid and start time: never a recycled pid)."""
    with Shield():
        kids = descendants(p.pid)
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        for pid, start in kids:
            st = proc_stat(pid)
            if st and st[1] == start:
                try:
                    os.kill(pid, signal.SIGKILL)
                    log("killed pid %d left behind by %s" % (pid, p.args[0]))
                except ProcessLookupError:
                    pass


def capture(cmd, timeout=10):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        return r.returncode, r.stdout + r.stderr
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, str(e)


# --- huge pages -------------------------------------------------------------

class HugePages:
    """Reserves free 2 MiB huge pages through /proc/sys/vm/nr_hugepages and
    gives back exactly the number it added (not below 0), once."""

    NR = "/proc/sys/vm/nr_hugepages"

    def __init__(self):
        self.added = 0
        atexit.register(self.release)

    @staticmethod
    def meminfo(key):
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        return None

    def free_unreserved(self):
        return (self.meminfo("HugePages_Free") or 0) - (self.meminfo("HugePages_Rsvd") or 0)

    def reserve(self, need):
        """Make `need` huge pages free; returns None or the reason it could not."""
        if self.meminfo("Hugepagesize") != 2048:
            return "the default huge page size is not 2 MiB"
        free = self.free_unreserved()
        if free >= need:
            return None
        try:
            with Shield():
                with open(self.NR) as f:
                    old = int(f.read())
                try:
                    with open(self.NR, "w") as f:
                        f.write(str(old + need - free))
                except OSError:
                    pass
                with open(self.NR) as f:
                    self.added += max(0, int(f.read()) - old)
        except OSError as e:
            return "cannot change %s: %s" % (self.NR, e)
        free = self.free_unreserved()
        if free < need:
            return "could reserve only %d of %d free 2 MiB huge pages through %s" % (free, need, self.NR)
        return None

    def release(self):
        """Lower vm.nr_hugepages by the pages added, but only by pages that
        are free and unreserved: a test beside the bench that is using huge
        pages keeps them even when someone else's accounting went wrong
        (e.g. a tool that wrote an absolute value to nr_hugepages)."""
        if self.added <= 0:
            return
        with Shield():
            try:
                with open(self.NR) as f:
                    cur = int(f.read())
                spare = max(0, (self.meminfo("HugePages_Free") or 0) - (self.meminfo("HugePages_Rsvd") or 0))
                give = min(self.added, cur, spare)
                with open(self.NR, "w") as f:
                    f.write(str(cur - give))
                if give == self.added:
                    log("gave back %d huge pages (vm.nr_hugepages %d -> %d)" % (give, cur, cur - give))
                else:
                    log("gave back %d of the %d huge pages added (vm.nr_hugepages %d -> %d): the "
                        "others are in use by other programs or were taken back by another tool"
                        % (give, self.added, cur, cur - give))
            except OSError as e:
                print("bench: could not give back %d huge pages (%s): %s" % (self.added, self.NR, e),
                      file=sys.stderr)
            self.added = 0


# --- fault log / timeline CSVs ---------------------------------------------------

def read_csv(path, cols):
    """Rows of a CSV written by pch (header line, numbers) as tuples of the
    named columns, or None when the file is missing or has no such header."""
    try:
        with open(path) as f:
            header = f.readline().strip().split(",")
            try:
                idx = [header.index(c) for c in cols]
            except ValueError:
                return None
            rows = []
            for line in f:
                parts = line.strip().split(",")
                if len(parts) < len(header):
                    continue
                try:
                    rows.append(tuple(float(parts[i]) for i in idx))
                except ValueError:
                    continue
            return rows
    except OSError:
        return None


def lat_summary(lats):
    s = sorted(lats)
    if not s:
        return {"count": 0}
    return {"count": len(s), "p50": pct(s, 50), "p90": pct(s, 90), "p99": pct(s, 99),
            "p999": pct(s, 99.9), "max": s[-1], "mean": sum(s) / len(s)}


# --- the bench --------------------------------------------------------------

class Bench:
    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.build = args.build
        self.bin = os.path.join(self.build, "bin")
        self.migrate = os.path.join(self.bin, "pch-migrate")
        self.huge = HugePages()
        self.plots = []          # (title, file)
        if args.rereport:
            # report and plots again from a results directory's results.json
            self.dir = args.rereport
            with open(os.path.join(self.dir, "results.json")) as f:
                self.res = json.load(f)
            self.quick = self.res["quick"]
            self.res["notes"] = [n for n in self.res["notes"] if n["stage"] != "report"]
            self.notes = [(n["stage"], n["text"]) for n in self.res["notes"]]
            self.has_fault_log = self.res["features"].get("fault-log")
            self.has_timeline = self.res["features"].get("timeline")
            self.runner = Runner(os.path.join(self.dir, "logs"))
            return
        stamp = now_utc().strftime("%Y%m%dT%H%M%SZ")
        self.dir = os.path.join(args.out, stamp)
        n = 1
        while os.path.exists(self.dir):
            n += 1
            self.dir = os.path.join(args.out, "%s-%d" % (stamp, n))
        os.makedirs(self.dir)
        self.runner = Runner(os.path.join(self.dir, "logs"))
        self.runs_dir = os.path.join(self.dir, "runs")
        os.makedirs(self.runs_dir)
        self.notes = []          # (stage, text) shown in the report
        self.res = {"quick": self.quick, "started_utc": now_utc().isoformat(),
                    "machine": {}, "features": {}, "stages": {}, "limits": {},
                    "runs": [], "notes": []}

    def note(self, stage, text):
        self.notes.append((stage, text))
        self.res["notes"].append({"stage": stage, "text": text})
        log("%s: %s" % (stage, text))

    # -- environment ---------------------------------------------------------

    def machine(self, when):
        m = self.res["machine"]
        m["loadavg_" + when] = list(os.getloadavg())
        if when != "before":
            return
        m["kernel"] = platform.release()
        m["uname"] = " ".join(platform.uname())
        m["cpus"] = os.cpu_count()
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("model name"):
                        m["cpu_model"] = line.split(":", 1)[1].strip()
                        break
        except OSError:
            pass
        m["mem_total_kb"] = HugePages.meminfo("MemTotal")
        m["mem_available_kb"] = HugePages.meminfo("MemAvailable")
        try:
            with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
                m["thp"] = f.read().strip()
        except OSError:
            pass
        rc, out = capture(["git", "-C", ROOT, "rev-parse", "HEAD"])
        m["git_commit"] = out.strip() if rc == 0 else None
        rc, out = capture(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"])
        m["git_dirty"] = bool(out.strip()) if rc == 0 else None
        m["python"] = platform.python_version()
        rc, out = capture(["gnuplot", "--version"])
        m["gnuplot"] = out.strip() if rc == 0 else None

    def features(self):
        rc, out = capture([self.migrate, "--help"])
        if rc is None or not os.path.exists(self.migrate):
            raise SystemExit("bench: %s is not there or does not run (make build-all first): %s"
                             % (self.migrate, out.strip()))
        f = {opt: ("--" + opt) in out for opt in
             ("fault-log", "timeline", "source-netns", "dest-netns", "source-addr", "backing")}
        self.res["features"] = f
        self.has_fault_log = f["fault-log"]
        self.has_timeline = f["timeline"]
        if not self.has_fault_log:
            self.note("matrix", "fault CDF from the report's percentiles only: pch-migrate has no "
                      "--fault-log (per-fault latencies not available)")
        if not self.has_timeline:
            self.note("matrix", "timeline not available: pch-migrate has no --timeline")

    # -- 1. limits -----------------------------------------------------------------

    def stage_limits(self):
        st = self.res["stages"]["limits"] = {"started": time.time()}
        deadline = time.monotonic() + (120 if self.quick else 300)
        secs = ["--seconds", "1"] if self.quick else []
        probes = [("uffd", []), ("tcp", ["--streams", "1,2,4,8"]),
                  ("copy", ["--batch-kib", "4,64,1024"]), ("rr", [])]
        lim = self.res["limits"]
        for name, extra in probes:
            path = os.path.join(self.build, "bench", "pch-limit-" + name)
            if not os.access(path, os.X_OK):
                self.note("limits", "pch-limit-%s not available: %s is not built" % (name, path))
                continue
            left = deadline - time.monotonic()
            if left < 5:
                self.note("limits", "pch-limit-%s skipped: stage time budget used up" % name)
                continue
            rec = self.runner.run("limit-" + name, [path] + extra + secs, timeout=min(left, 90))
            rec["probe"] = name
            objs = []
            for line in rec.pop("stdout").splitlines():
                line = line.strip()
                if line.startswith("{"):
                    try:
                        objs.append(json.loads(line))
                    except ValueError:
                        pass
            rec["results"] = objs
            if rec.get("rc") == 77:
                rec["skipped"] = True
                why = rec["stderr_tail"].strip().splitlines()
                self.note("limits", "pch-limit-%s skipped (exit 77): %s"
                          % (name, why[-1] if why else "no reason given"))
            elif rec.get("error") or not objs:
                self.note("limits", "pch-limit-%s failed: %s"
                          % (name, rec.get("error") or "no JSON on stdout"))
            lim[name] = rec
            if objs:
                log("limit %s: %s" % (name, " ".join(json.dumps(o, sort_keys=True) for o in objs)))
        st["elapsed_s"] = time.time() - st.pop("started")

    def limit_value(self, probe, key, match=None):
        """A number from a probe's JSON objects (the first whose fields equal
        `match`), or None."""
        rec = self.res["limits"].get(probe)
        if not rec:
            return None
        for o in rec.get("results", []):
            if match and any(o.get(k) != v for k, v in match.items()):
                continue
            v = o.get(key)
            if isinstance(v, (int, float)):
                return float(v)
        return None

    # -- pch-migrate runs -------------------------------------------------------------

    def migrate_run(self, stage, cfg, rep, extra=()):
        """One pch-migrate run; returns its record (appended to results)."""
        rid = "%s-%s-%s-%s-c%d-r%d" % (stage, size_name(cfg["ram"]), cfg["backing"],
                                       cfg["workload"], cfg["channels"], rep)
        if "delay" in cfg:
            rid += "-d" + cfg["delay"]
        base = os.path.join(self.runs_dir, rid)
        mig_timeout = 60 + 30 * max(1, cfg["ram"] // GIB)
        if "delay" in cfg:
            mig_timeout *= 3
        cmd = [self.migrate, "--no-progress", "--ram", size_name(cfg["ram"]),
               "--channels", str(cfg["channels"]), "--workload", cfg["workload"],
               "--backing", cfg["backing"], "--timeout-s", str(mig_timeout),
               "--json", base + ".json"]
        if cfg["workload"] == "none":
            # nothing faults: pure bulk of an image whose every page is
            # non-zero random content (the bulk target's terms), not the
            # default image's 10 % zero and 5 % one-byte pages
            cmd += ["--zero-fraction", "0", "--repeat-fraction", "0"]
        if self.has_fault_log:
            cmd += ["--fault-log", base + ".faults.csv"]
        if self.has_timeline:
            cmd += ["--timeline", base + ".timeline.csv"]
        cmd += list(extra)
        why = None
        if cfg["backing"].startswith("hugetlb"):
            # again before every run: a test beside this bench that gives back
            # its own huge pages may have taken the free ones reserved here
            why = self.huge.reserve(cfg["ram"] // HUGE_PAGE + 1)
        if why:
            rec = {"name": rid, "cmd": cmd, "rc": None, "elapsed_s": 0.0,
                   "error": "not run: " + why, "stdout_log": None, "stderr_log": None}
        else:
            rec = self.runner.run(rid, cmd, timeout=mig_timeout + 30)
        rec.pop("stdout", None)
        rec.update(id=rid, stage=stage, rep=rep, config=dict(cfg, ram_bytes=cfg["ram"]))
        rec["config"].pop("ram")
        report = None
        try:
            with open(base + ".json") as f:
                report = json.load(f)
        except (OSError, ValueError) as e:
            if not rec.get("error"):
                rec["error"] = "no JSON report from pch-migrate: %s" % e
        rec["report"] = report
        if report is not None:
            if report.get("result") != "ok" and not rec.get("error"):
                rec["error"] = "result %s: %s" % (report.get("result"), report.get("errors"))
        rec["ok"] = not rec.get("error")
        rec["metrics"] = self.metrics(rec, base)
        self.res["runs"].append(rec)
        m = rec["metrics"]
        if rec["ok"]:
            log("%s: ok %.2f s, bulk %s GB/s, fault p50 %s us p99 %s us"
                % (rid, m.get("duration_s") or 0, fmt(m.get("bulk_gbps")),
                   fmt(m.get("fault_p50_us")), fmt(m.get("fault_p99_us"))))
        else:
            log("%s: FAILED: %s" % (rid, rec["error"]))
        return rec

    def metrics(self, rec, base):
        r = rec.get("report") or {}
        m = {}
        for k in ("duration_s", "bulk_gbps", "faults", "pages_total", "helper_maxrss_kb",
                  "source_maxrss_kb", "vm_maxrss_kb", "state_bytes", "t0_us", "wall_s",
                  "helper_cpu_s", "source_cpu_s", "vm_cpu_s"):
            v = r.get(k)
            if v is None and k in ("state_bytes",):
                v = (r.get("helper") or {}).get(k)
            if isinstance(v, (int, float)):
                m[k] = v
        # CPUs the page service kept busy while it ran (setup included: small)
        if m.get("helper_cpu_s") is not None and m.get("source_cpu_s") is not None \
                and m.get("duration_s"):
            m["service_cpus"] = (m["helper_cpu_s"] + m["source_cpu_s"]) / m["duration_s"]
        if m.get("state_bytes") is not None and r.get("pages_total"):
            m["state_bytes_per_page"] = m["state_bytes"] / r["pages_total"]
        fl = read_csv(base + ".faults.csv", ["t_us", "lat_us"]) if self.has_fault_log else None
        if fl is not None:
            m["fault_source"] = "fault-log"
            rec["fault_log"] = os.path.relpath(base + ".faults.csv", self.dir)
            s = lat_summary([x[1] for x in fl])
        else:
            s = r.get("fault_latency_us") or {}
            if s:
                m["fault_source"] = "report"
        if not s.get("count"):
            s = {"count": 0}  # no fault: no percentiles (the report says 0)
        for k in ("count", "p50", "p90", "p99", "p999", "max"):
            if isinstance(s.get(k), (int, float)):
                m["fault_%s_us" % k if k != "count" else "fault_count"] = s[k]
        if self.has_timeline and os.path.exists(base + ".timeline.csv"):
            rec["timeline"] = os.path.relpath(base + ".timeline.csv", self.dir)
        return m

    def mem_fits(self, ram):
        avail = (HugePages.meminfo("MemAvailable") or 0) * 1024
        return avail >= ram + 2 * GIB, avail

    # -- 2. matrix --------------------------------------------------------------------

    def probe_backings(self, ram):
        """The backings this machine can run, with huge pages reserved for
        hugetlb; a note for each one that cannot."""
        ok = ["anon"]
        for b in ("memfd", "hugetlb", "thp"):
            if b == "hugetlb":
                why = self.huge.reserve(ram // HUGE_PAGE + 1)
                if why:
                    self.note("matrix", "backing hugetlb left out: %s" % why)
                    continue
            cmd = [self.migrate, "--no-progress", "--ram", "64M", "--channels", "1",
                   "--workload", "none", "--backing", b, "--timeout-s", "60",
                   "--json", os.path.join(self.runs_dir, "probe-%s.json" % b)]
            rec = self.runner.run("probe-backing-" + b, cmd, timeout=90)
            if rec.get("error"):
                self.note("matrix", "backing %s left out: a 64 MiB probe run failed: %s" % (b, rec["error"]))
                continue
            ok.append(b)
        return ok

    def stage_matrix(self):
        st = self.res["stages"]["matrix"] = {"started": time.time()}
        q = self.quick
        ram = parse_size(self.args.matrix_ram) if self.args.matrix_ram else (256 * MIB if q else GIB)
        reps = self.args.reps or (1 if q else 3)
        chans = [1, 4] if q else [1, 2, 4, 8]
        wls = ["none", "random"] if q else ["none", "seq", "random", "hotset"]
        try:
            backings = ["anon"] if q else self.probe_backings(ram)
            configs = [{"ram": ram, "channels": c, "workload": w, "backing": b}
                       for b in backings for w in wls for c in chans]
            st.update(ram_bytes=ram, reps=reps, channels=chans, workloads=wls, backings=backings,
                      configs=len(configs))
            log("matrix: %d configurations x %d repetitions, %s each (%s)"
                % (len(configs), reps, size_name(ram), ", ".join(backings)))
            deadline = time.monotonic() + self.args.matrix_budget
            skipped = 0
            for rep in range(1, reps + 1):
                for cfg in configs:
                    if time.monotonic() > deadline:
                        skipped += 1
                        continue
                    self.migrate_run("m", cfg, rep)
            if skipped:
                self.note("matrix", "%d runs skipped: stage time budget (%d s) used up"
                          % (skipped, self.args.matrix_budget))
        finally:
            self.huge.release()
            st["elapsed_s"] = time.time() - st.pop("started")

    # -- 3. scale ---------------------------------------------------------------------

    def stage_scale(self):
        st = self.res["stages"]["scale"] = {"started": time.time()}
        sizes = [1, 2] if self.quick else [1, 4, 16]
        reps = 1 if self.quick else (self.args.reps or 3)
        st.update(sizes_gib=sizes, reps=reps)
        deadline = time.monotonic() + self.args.scale_budget
        try:
            for rep in range(1, reps + 1):
                for g in sizes:
                    fits, avail = self.mem_fits(g * GIB)
                    if not fits:
                        if rep == 1:
                            self.note("scale", "%d GiB skipped: %d MiB available, need guest + 2 GiB"
                                      % (g, avail // MIB))
                        continue
                    if time.monotonic() > deadline:
                        self.note("scale", "%d GiB repetition %d skipped: stage time budget used up" % (g, rep))
                        continue
                    self.migrate_run("s", {"ram": g * GIB, "channels": 4, "workload": "random",
                                           "backing": "anon"}, rep)
        finally:
            st["elapsed_s"] = time.time() - st.pop("started")
        have = [r for r in self.res["runs"] if r["stage"] == "s" and r["ok"]]
        if have and not any("helper_maxrss_kb" in r["metrics"] for r in have):
            self.note("scale", "helper RSS not available: pch-migrate's report has no helper_maxrss_kb")
        if have and not any("state_bytes" in r["metrics"] for r in have):
            self.note("scale", "per-page state not available: pch-migrate's report has no state_bytes")

    # -- 4. netem ---------------------------------------------------------------------

    def stage_netem(self, spec):
        st = self.res["stages"]["netem"] = {"spec": spec}
        parts = [p.strip() for p in spec.split(",") if p.strip()]
        if len(parts) < 2:
            self.note("netem", "NETEM=%r: expected rate,delay[,delay...] (e.g. 10gbit,0.1ms,1ms,5ms)" % spec)
            return
        rate = parts[0]
        delays = [d if d[-1:].isalpha() else d + "ms" for d in parts[1:]]
        script = os.path.join(ROOT, "bench", "netem.sh")
        f = self.res["features"]
        missing = [o for o in ("source-netns", "dest-netns", "source-addr") if not f.get(o)]
        if missing:
            self.note("netem", "netem stage not run: pch-migrate has no %s"
                      % ", ".join("--" + o for o in missing))
            return
        if not os.access(script, os.X_OK):
            self.note("netem", "netem stage not run: %s is not there (or not executable)" % script)
            return
        ram = 256 * MIB if self.quick else GIB
        reps = 1 if self.quick else (self.args.reps or 3)
        st.update(rate=rate, delays=delays, ram_bytes=ram, reps=reps, started=time.time())
        deadline = time.monotonic() + self.args.netem_budget
        try:
            for d in delays:
                if time.monotonic() > deadline:
                    self.note("netem", "delay %s skipped: stage time budget used up" % d)
                    continue
                up = self.runner.run("netem-up-" + d, [script, "up", rate, d], timeout=60)
                try:
                    if up.get("error"):
                        self.note("netem", "delay %s skipped: netem.sh up failed: %s" % (d, up["error"]))
                        continue
                    status = self.runner.run("netem-status-" + d, [script, "status"], timeout=30)
                    st.setdefault("link_status", {})[d] = status.get("stdout", "").strip()
                    for rep in range(1, reps + 1):
                        self.migrate_run("n", {"ram": ram, "channels": 4, "workload": "random",
                                               "backing": "anon", "rate": rate, "delay": d}, rep,
                                         extra=["--source-netns", "pchb-src", "--dest-netns", "pchb-dst",
                                                "--source-addr", "10.77.0.1"])
                finally:
                    self.netem_down(script, rate, d)
        finally:
            st["elapsed_s"] = time.time() - st.pop("started")

    def netem_down(self, script, rate, d):
        """netem.sh down; bench/netem.sh takes no arguments after down (and
        says usage, exit 2, when given some): the RATE DELAY form is tried
        only after that."""
        with Shield():
            down = self.runner.run("netem-down-" + d, [script, "down"], timeout=60)
            if down.get("rc") == 2:
                down = self.runner.run("netem-down2-" + d, [script, "down", rate, d], timeout=60)
        if down.get("error"):
            self.note("netem", "netem.sh down failed after delay %s: %s" % (d, down["error"]))

    # -- 5. report ---------------------------------------------------------------------

    def runs(self, stage, **match):
        return [r for r in self.res["runs"] if r["stage"] == stage
                and all(r["config"].get(k) == v for k, v in match.items())]

    def agg(self, runs, key):
        return med_range([r["metrics"].get(key) for r in runs if r["ok"]])

    def headline(self):
        """Rows: figure, value, limit, limit name, ratio, target, met."""
        rows = []
        uffd50 = self.limit_value("uffd", "p50")
        uffd99 = self.limit_value("uffd", "p99")
        rr50 = self.limit_value("rr", "p50_us")
        rr99 = self.limit_value("rr", "p99_us")
        tcp1 = self.limit_value("tcp", "gbps", {"streams": 1})
        tcp4 = self.limit_value("tcp", "gbps", {"streams": 4})
        copy64 = self.limit_value("copy", "gbps", {"batch_kib": 64})
        floor50 = uffd50 + rr50 if uffd50 is not None and rr50 is not None else None
        floor99 = uffd99 + rr99 if uffd99 is not None and rr99 is not None else None
        ram = self.res["stages"].get("matrix", {}).get("ram_bytes")
        rep = self.runs("m", channels=4, workload="random", backing="anon")
        one = self.runs("m", channels=1, workload="random", backing="anon")
        where = "%s random anon 4 ch" % size_name(ram) if ram else "random anon 4 ch"

        def row(fig, mr, unit, lim, limname, target, met, higher_better):
            v = mr[0] if mr else None
            ratio = None
            if v is not None and lim:
                ratio = v / lim
            rows.append({"figure": fig, "value": v, "range": mr, "unit": unit, "limit": lim,
                         "limit_name": limname, "ratio": ratio, "target": target,
                         "met": (met(v) if v is not None else None),
                         "ratio_meaning": "x limit" if higher_better else "x floor"})

        row("fault p50 under bulk (%s)" % where, self.agg(rep, "fault_p50_us"), "µs", floor50,
            "pch-limit-uffd p50 + pch-limit-rr p50 (out-of-process remote floor)", "≤ 100 µs",
            lambda v: v <= 100, False)
        row("fault p99 under bulk (%s)" % where, self.agg(rep, "fault_p99_us"), "µs", floor99,
            "pch-limit-uffd p99 + pch-limit-rr p99", "≤ 1000 µs", lambda v: v <= 1000, False)
        lim_bulk = min([x for x in (tcp4, copy64) if x is not None], default=None)
        bulk4 = self.runs("m", channels=4, workload="none", backing="anon")
        bulk1 = self.runs("m", channels=1, workload="none", backing="anon")
        bwhere = ("%s, every page non-zero random content, nothing faulting, anon 4 ch"
                  % (size_name(ram) if ram else "matrix guest"))
        row("bulk GB/s (%s)" % bwhere, self.agg(bulk4, "bulk_gbps"), "GB/s", lim_bulk,
            "min(pch-limit-tcp 4 streams, pch-limit-copy 64 KiB)", "≥ 1.5 GB/s",
            lambda v: v >= 1.5, True)
        row("bulk GB/s under faults (%s)" % where, self.agg(rep, "bulk_gbps"), "GB/s", lim_bulk,
            "min(pch-limit-tcp 4 streams, pch-limit-copy 64 KiB)", "—", lambda v: None, True)

        def ch_ratio(four, single):
            # per repetition where both ran (runs are interleaved)
            by_rep1 = {r["rep"]: r["metrics"].get("bulk_gbps") for r in single if r["ok"]}
            pairs = [r["metrics"]["bulk_gbps"] / by_rep1[r["rep"]] for r in four
                     if r["ok"] and r["metrics"].get("bulk_gbps") and by_rep1.get(r["rep"])]
            return med_range(pairs) if pairs else None

        lim_ch = tcp4 / tcp1 if tcp4 and tcp1 else None
        row("4 ch / 1 ch bulk throughput (nothing faulting, anon)", ch_ratio(bulk4, bulk1), "×",
            lim_ch, "pch-limit-tcp 4 streams / 1 stream", "≥ 1.4", lambda v: v >= 1.4, True)
        ncpu = self.res.get("machine", {}).get("cpus") or os.cpu_count()
        cpus1 = self.agg(bulk1, "service_cpus")
        row("CPUs busy in pch-helper + pch-source, 1 ch, nothing faulting (CPU s / duration)",
            cpus1, "CPUs", ncpu, "online CPUs: 4 ch can be at most (limit / value) x faster",
            "—", lambda v: None, True)
        row("4 ch / 1 ch bulk throughput (random anon)", ch_ratio(rep, one), "×",
            lim_ch, "pch-limit-tcp 4 streams / 1 stream", "—", lambda v: None, True)
        scale = [r for r in self.runs("s") if r["ok"]]
        if scale:
            big = max(r["config"]["ram_bytes"] for r in scale)
            at = [r for r in scale if r["config"]["ram_bytes"] == big]
            mr = self.agg(at, "helper_maxrss_kb")
            if mr:
                mr = tuple(x / 1024.0 for x in mr)
            is16 = big >= 16 * GIB
            row("helper RSS at %s" % size_name(big) + ("" if is16 else " (target is for 16 GiB)"),
                mr, "MiB", None, "— (a budget, not a machine limit)", "≤ 64 MiB at 16 GiB",
                (lambda v: v <= 64) if is16 else (lambda v: None), False)
        return rows

    def write_report(self, interrupted=None):
        if not self.args.rereport:
            self.machine("after")
            self.res["finished_utc"] = now_utc().isoformat()
        if interrupted:
            self.res["interrupted"] = interrupted
        plot_notes = self.make_plots()
        for n in plot_notes:
            self.note("report", n)
        heads = self.headline()
        self.res["headline"] = heads
        with open(os.path.join(self.dir, "results.json"), "w") as f:
            json.dump(self.res, f, indent=1, sort_keys=True, default=str)
        md = self.markdown(heads)
        with open(os.path.join(self.dir, "report.md"), "w") as f:
            f.write(md)
        return heads

    def markdown(self, heads):
        R = self.res
        m = R["machine"]
        L = []
        L.append("# pch benchmark %s%s" % (R["started_utc"][:19].replace("T", " ") + " UTC",
                                           " (BENCH_QUICK)" if self.quick else ""))
        L.append("")
        if R.get("interrupted"):
            L.append("**Interrupted (%s): partial results.**" % R["interrupted"])
            L.append("")
        L.append("## Headline")
        L.append("")
        L.append("Every figure beside the limit of this machine it is bounded by, measured in "
                 "the same run (median over repetitions [min–max]).")
        L.append("")
        L.append("| figure | value | limit it is bounded by | ratio | target | met? |")
        L.append("|---|---|---|---|---|---|")
        for h in heads:
            val = fmt_mr(h["range"]) + (" " + h["unit"] if h["range"] else "")
            lim = ("%s %s — %s" % (fmt(h["limit"]), h["unit"], h["limit_name"])
                   if h["limit"] is not None else
                   ("not measured: " + h["limit_name"] if "budget" not in h["limit_name"]
                    else h["limit_name"]))
            ratio = ("%.2f %s" % (h["ratio"], h["ratio_meaning"])) if h["ratio"] is not None else "—"
            met = {True: "yes", False: "**no**", None: "—"}[h["met"]]
            L.append("| %s | %s | %s | %s | %s | %s |" % (h["figure"], val, lim, ratio, h["target"], met))
        L.append("")
        L.append("## Machine")
        L.append("")
        L.append("- kernel %s, %s CPUs (%s), %s MiB RAM, THP %s" % (
            m.get("kernel"), m.get("cpus"), m.get("cpu_model", "?"),
            (m.get("mem_total_kb") or 0) // 1024, m.get("thp", "?")))
        L.append("- load average before %s, after %s (other work on the machine makes noise)"
                 % (" ".join("%.2f" % x for x in m.get("loadavg_before", [])),
                    " ".join("%.2f" % x for x in m.get("loadavg_after", []))))
        if m.get("cpu_group"):
            L.append("- ran in a cpu cgroup of its own that outweighs other work (BENCH_CPU_WEIGHT): %s"
                     % m["cpu_group"])
        L.append("- git %s%s; pch-migrate options: %s" % (
            (m.get("git_commit") or "?")[:12], " (dirty tree)" if m.get("git_dirty") else "",
            ", ".join("--%s %s" % (k, "yes" if v else "no") for k, v in sorted(R["features"].items()))))
        L.append("- stage times: " + ", ".join("%s %.0f s" % (k, v.get("elapsed_s", 0))
                                               for k, v in R["stages"].items()))
        if self.notes:
            L.append("")
            L.append("## Notes (missing inputs, skipped or failed parts)")
            L.append("")
            for st, t in self.notes:
                L.append("- %s: %s" % (st, t))
        L.append("")
        L.append("## Limits (this run)")
        L.append("")
        if not any(r.get("results") for r in R["limits"].values()):
            L.append("No limit probe results (see notes).")
        else:
            L.append("| probe | result |")
            L.append("|---|---|")
            for name, rec in R["limits"].items():
                for o in rec.get("results", []):
                    L.append("| pch-limit-%s | %s |" % (name, ", ".join(
                        "%s %s" % (k, fmt(v) if not isinstance(v, str) else v)
                        for k, v in o.items() if k != "probe")))
        L.append("")
        L.append("## Matrix")
        L.append("")
        ms = R["stages"].get("matrix", {})
        if ms.get("configs"):
            L.append("%s guest, %d repetition(s) interleaved; median [min–max]. Faults: %s."
                     % (size_name(ms["ram_bytes"]), ms["reps"],
                        "per-fault log (--fault-log)" if self.has_fault_log
                        else "pch-vm's latency percentiles from the report"))
            L.append("")
            L.append("Workload none: nothing faults, and every page is non-zero random content "
                     "(--zero-fraction 0 --repeat-fraction 0); the other workloads use the default "
                     "image (10 % zero pages, 5 % one-byte pages).")
            L.append("")
            L.append("CPUs: pch-helper's + pch-source's CPU time over the duration (how many of "
                     "the machine's CPUs the page service kept busy).")
            L.append("")
            L.append("| backing | workload | channels | ok | duration s | bulk GB/s | CPUs | faults | fault p50 µs | fault p99 µs |")
            L.append("|---|---|---|---|---|---|---|---|---|---|")
            for b in ms["backings"]:
                for w in ms["workloads"]:
                    for c in ms["channels"]:
                        rs = self.runs("m", backing=b, workload=w, channels=c)
                        L.append("| %s | %s | %d | %d/%d | %s | %s | %s | %s | %s | %s |" % (
                            b, w, c, sum(r["ok"] for r in rs), len(rs),
                            fmt_mr(self.agg(rs, "duration_s")), fmt_mr(self.agg(rs, "bulk_gbps")),
                            fmt_mr(self.agg(rs, "service_cpus")),
                            fmt_mr(self.agg(rs, "fault_count")), fmt_mr(self.agg(rs, "fault_p50_us")),
                            fmt_mr(self.agg(rs, "fault_p99_us"))))
        else:
            L.append("Not run.")
        L.append("")
        L.append("## Scale (anon, 4 channels, random)")
        L.append("")
        ss = self.runs("s")
        if ss:
            L.append("| guest | ok | duration s | bulk GB/s | helper RSS MiB | vm RSS MiB | state bytes | state bytes/page |")
            L.append("|---|---|---|---|---|---|---|---|")
            for g in sorted({r["config"]["ram_bytes"] for r in ss}):
                rs = [r for r in ss if r["config"]["ram_bytes"] == g]
                mib = lambda mr: tuple(x / 1024.0 for x in mr) if mr else None
                L.append("| %s | %d/%d | %s | %s | %s | %s | %s | %s |" % (
                    size_name(g), sum(r["ok"] for r in rs), len(rs),
                    fmt_mr(self.agg(rs, "duration_s")), fmt_mr(self.agg(rs, "bulk_gbps")),
                    fmt_mr(mib(self.agg(rs, "helper_maxrss_kb"))), fmt_mr(mib(self.agg(rs, "vm_maxrss_kb"))),
                    fmt_mr(self.agg(rs, "state_bytes")), fmt_mr(self.agg(rs, "state_bytes_per_page"))))
        else:
            L.append("Not run.")
        L.append("")
        L.append("## Netem (two network namespaces joined by bench/netem.sh's link)")
        L.append("")
        ns = self.runs("n")
        if ns:
            links = sorted({(v.splitlines() or ["?"])[0] for v in
                            R["stages"]["netem"].get("link_status", {}).values()})
            L.append("rate %s, %s guest, anon, 4 channels, random; netem.sh status: %s." % (
                R["stages"]["netem"].get("rate"), size_name(R["stages"]["netem"].get("ram_bytes", 0)),
                "; ".join(links) or "not recorded"))
            L.append("")
            L.append("| one-way delay | ok | duration s | bulk GB/s | fault p50 µs | fault p99 µs |")
            L.append("|---|---|---|---|---|---|")
            for d in R["stages"]["netem"].get("delays", []):
                rs = [r for r in ns if r["config"].get("delay") == d]
                L.append("| %s | %d/%d | %s | %s | %s | %s |" % (
                    d, sum(r["ok"] for r in rs), len(rs), fmt_mr(self.agg(rs, "duration_s")),
                    fmt_mr(self.agg(rs, "bulk_gbps")), fmt_mr(self.agg(rs, "fault_p50_us")),
                    fmt_mr(self.agg(rs, "fault_p99_us"))))
        else:
            L.append("Not run (set NETEM=rate,delay[,delay...], e.g. `make bench NETEM=10gbit,0.1ms,1ms,5ms`)."
                     if "netem" not in R["stages"] else "No runs (see notes).")
        L.append("")
        L.append("## Plots")
        L.append("")
        if self.plots:
            for title, fn in self.plots:
                L.append("### %s" % title)
                L.append("")
                L.append("![%s](%s)" % (title, fn))
                L.append("")
        else:
            L.append("None (see notes).")
        failed = [r for r in R["runs"] if not r["ok"]]
        L.append("## Failed runs")
        L.append("")
        if failed:
            for r in failed:
                L.append("- `%s`: %s (logs: %s, %s)" % (r["id"], r.get("error"), r["stdout_log"], r["stderr_log"]))
        else:
            L.append("None.")
        L.append("")
        L.append("Raw results: results.json (every run's full pch-migrate report); logs/; runs/.")
        L.append("")
        return "\n".join(L)

    # -- plots ---------------------------------------------------------------------------

    def make_plots(self):
        notes = []
        gp = shutil.which("gnuplot")
        term = "pngcairo size 1000,650 font ',10'"
        if gp:
            rc, _ = capture([gp, "-e", "set terminal pngcairo"])
            if rc != 0:
                term = "png size 1000,650"
        pdir = os.path.join(self.dir, "plots")
        os.makedirs(pdir, exist_ok=True)
        jobs = []
        for fn in (self.plot_cdf, self.plot_throughput, self.plot_timeline, self.plot_scale, self.plot_netem):
            try:
                for name, title, script, note in fn(pdir):
                    if note:
                        notes.append(note)
                    if script:
                        jobs.append((name, title, script))
            except Exception as e:  # a plot's bug must not lose the results
                notes.append("plot %s failed: %s: %s" % (fn.__name__, type(e).__name__, e))
        for name, title, script in jobs:
            path = os.path.join(pdir, name + ".gp")
            size = "1200,900" if name == "throughput" else "1000,650"
            with open(path, "w") as f:
                f.write("set terminal %s\nset output '../%s.png'\n%s\n"
                        % (term.replace("1000,650", size), name, script))
            if not gp:
                continue
            rec = self.runner.run("gnuplot-" + name, [gp, name + ".gp"], timeout=60, cwd=pdir)
            if rec.get("error") or not os.path.exists(os.path.join(self.dir, name + ".png")):
                notes.append("plot %s failed: %s" % (name, rec.get("error") or "no PNG"))
            else:
                self.plots.append((title, name + ".png"))
        if not gp:
            notes.append("plots not drawn: gnuplot is not installed (apt-get install gnuplot-nox); "
                         "the scripts and data are in plots/")
        return notes

    @staticmethod
    def write_dat(path, header, rows):
        with open(path, "w") as f:
            f.write("# " + " ".join(header) + "\n")
            for r in rows:
                f.write(" ".join("%.6g" % x if isinstance(x, float) else str(x) for x in r) + "\n")

    def plot_cdf(self, pdir):
        out = []
        ms = self.res["stages"].get("matrix", {})
        if not ms.get("configs"):
            return [("", "", None, "fault CDF not drawn: no matrix runs")]
        for b in ms["backings"]:
            for w in ms["workloads"]:
                lines = []
                for c in ms["channels"]:
                    rs = [r for r in self.runs("m", backing=b, workload=w, channels=c) if r["ok"]]
                    pts = self.cdf_points(rs)
                    if not pts:
                        continue
                    dat = "cdf-%s-%s-c%d.dat" % (b, w, c)
                    self.write_dat(os.path.join(pdir, dat), ["lat_us", "fraction"], pts)
                    lines.append("'%s' using 1:2 with %s lw 2 title '%d ch'"
                                 % (dat, "steps" if self.has_fault_log else "linespoints", c))
                if not lines:
                    continue
                src = ("per-fault log, all repetitions" if self.has_fault_log
                       else "report percentiles p50/p90/p99/p99.9/max only (no --fault-log)")
                script = ("set title 'fault latency CDF: %s, %s, %s guest (%s)'\n"
                          "set logscale x\nset xlabel 'fault to vCPU running again (µs)'\n"
                          "set ylabel 'fraction of faults'\nset yrange [0:1.02]\nset grid\n"
                          "set key bottom right\nplot %s"
                          % (w, b, size_name(ms["ram_bytes"]), src, ", ".join(lines)))
                out.append(("fault-cdf-%s-%s" % (b, w), "Fault latency CDF, %s, %s" % (b, w), script, None))
        if not out:
            out.append(("", "", None, "fault CDF not drawn: no run had faults"))
        return out

    def cdf_points(self, runs):
        if self.has_fault_log:
            lats = []
            for r in runs:
                if r.get("fault_log"):
                    rows = read_csv(os.path.join(self.dir, r["fault_log"]), ["lat_us"])
                    lats += [max(x[0], 0.1) for x in rows or []]
            lats.sort()
            n = len(lats)
            if not n:
                return []
            if n <= 3000:
                idx = range(n)
            else:  # 2000 evenly by rank, every point of the top 0.5%
                idx = sorted(set([int(i * (n - 1) / 1999) for i in range(2000)] +
                                 list(range(int(n * 0.995), n))))
            return [(lats[i], (i + 1) / n) for i in idx]
        pts = []
        for k, q in (("fault_p50_us", 0.5), ("fault_p90_us", 0.9), ("fault_p99_us", 0.99),
                     ("fault_p999_us", 0.999), ("fault_max_us", 1.0)):
            v = med_range([r["metrics"].get(k) for r in runs])
            if v and v[0] > 0:
                pts.append((v[0], q))
        return pts if len(pts) >= 2 else []

    def plot_throughput(self, pdir):
        """One panel per backing (same y range), one line per workload in
        the same colour in every panel, the limits dashed."""
        ms = self.res["stages"].get("matrix", {})
        if not ms.get("configs"):
            return [("", "", None, "throughput plot not drawn: no matrix runs")]
        limits = []
        for label, v in (("tcp 1 stream", self.limit_value("tcp", "gbps", {"streams": 1})),
                         ("tcp 4 streams", self.limit_value("tcp", "gbps", {"streams": 4})),
                         ("uffd copy 64 KiB", self.limit_value("copy", "gbps", {"batch_kib": 64}))):
            if v:
                limits.append("%g with lines dt %d lw 1 lc rgb 'gray30' title 'limit: %s'"
                              % (v, 2 + len(limits), label))
        limits.append("1.5 with lines dt 3 lw 2 lc rgb 'black' title 'target 1.5 GB/s'")
        panels, top = [], 0.0
        for b in ms["backings"]:
            lines = []
            for wi, w in enumerate(ms["workloads"]):
                rows = []
                for c in ms["channels"]:
                    mr = self.agg(self.runs("m", backing=b, workload=w, channels=c), "bulk_gbps")
                    if mr:
                        rows.append((c, mr[0], mr[1], mr[2]))
                        top = max(top, mr[2])
                if rows:
                    dat = "thr-%s-%s.dat" % (b, w)
                    self.write_dat(os.path.join(pdir, dat), ["channels", "median", "min", "max"], rows)
                    lines.append("'%s' using 1:2:3:4 with yerrorlines lw 2 lc %d pt %d title '%s'"
                                 % (dat, wi + 1, wi + 5, w))
            if lines:
                panels.append("set title '%s'\nplot %s" % (b, ", ".join(lines + limits)))
        if not panels:
            return [("", "", None, "throughput plot not drawn: no successful matrix run")]
        cols = 1 if len(panels) == 1 else 2
        rows_n = (len(panels) + cols - 1) // cols
        script = ("set logscale x 2\nset xtics (%s)\nset xrange [0.8:%g]\nset xlabel 'PAGES channels'\n"
                  "set ylabel 'bulk GB/s'\nset yrange [0:%g]\nset grid\nset key top left font ',8'\n"
                  "set multiplot layout %d,%d title 'bulk throughput against channel count, %s guest "
                  "(median, bars min-max over repetitions)'\n%s\nunset multiplot"
                  % (",".join(str(c) for c in ms["channels"]), max(ms["channels"]) * 1.25,
                     max(top, 1.5) * 1.25, rows_n, cols, size_name(ms["ram_bytes"]), "\n".join(panels)))
        return [("throughput", "Bulk throughput against channel count", script, None)]

    def plot_timeline(self, pdir):
        cand = [r for r in self.runs("m", backing="anon", workload="random", channels=4) if r["ok"]]
        if not cand:
            cand = [r for r in self.runs("m") if r["ok"] and r["config"]["workload"] != "none"]
        if not cand:
            return [("", "", None, "timeline not drawn: no successful matrix run with faults")]
        r = cand[0]
        tl = read_csv(os.path.join(self.dir, r["timeline"]),
                      ["t_us", "pages_inplace", "pages_bulk", "pages_urgent", "faults"]) if r.get("timeline") else None
        fl = read_csv(os.path.join(self.dir, r["fault_log"]), ["t_us", "lat_us"]) if r.get("fault_log") else None
        if not tl and not fl:
            why = []
            if not self.has_timeline:
                why.append("pch-migrate has no --timeline")
            if not self.has_fault_log:
                why.append("pch-migrate has no --fault-log")
            return [("", "", None, "timeline not drawn: %s" % ("; ".join(why) or
                                                                 "run %s wrote no timeline or fault log" % r["id"]))]
        t0 = r["metrics"].get("t0_us")
        if t0 is None:
            t0 = min([x[0] for x in (tl or [])] + [x[0] for x in (fl or [])])
        lines = []
        if tl:
            self.write_dat(os.path.join(pdir, "timeline.dat"),
                           ["t_s", "pages_inplace", "pages_bulk", "pages_urgent", "faults"],
                           [((x[0] - t0) / 1e6,) + tuple(int(v) for v in x[1:]) for x in tl])
            lines += ["'timeline.dat' using 1:2 with lines lw 2 title 'pages in place'",
                      "'' using 1:3 with lines title 'pages from bulk'",
                      "'' using 1:4 with lines title 'pages urgent'"]
        if fl:
            self.write_dat(os.path.join(pdir, "timeline-faults.dat"), ["t_s", "lat_us"],
                           [((x[0] - t0) / 1e6, max(x[1], 0.1)) for x in fl])
            lines.append("'timeline-faults.dat' using 1:2 axes x1y2 with points pt 7 ps 0.25 "
                         "title 'vCPU fault (latency, right axis)'")
        script = ("set title 'run %s: pages in place over time, faults marked'\n"
                  "set xlabel 'seconds since the vCPUs started'\nset ylabel 'pages'\n"
                  "set y2label 'fault latency (µs)'\nset logscale y2\nset y2tics\nset ytics nomirror\n"
                  "set grid\nset key outside bottom center horizontal\nplot %s" % (r["id"], ", ".join(lines)))
        note = None
        if not tl:
            note = "timeline plot shows faults only: %s" % (
                "pch-migrate has no --timeline" if not self.has_timeline else "no timeline CSV")
        return [("timeline", "Timeline of %s" % r["id"], script, note)]

    def plot_scale(self, pdir):
        ss = [r for r in self.runs("s") if r["ok"]]
        if not ss:
            return [("", "", None, "scale plot not drawn: no successful scale run")]
        rows = []
        for g in sorted({r["config"]["ram_bytes"] for r in ss}):
            rs = [r for r in ss if r["config"]["ram_bytes"] == g]
            d = self.agg(rs, "duration_s")
            rss = self.agg(rs, "helper_maxrss_kb")
            rows.append((g / GIB, d[0], d[1], d[2]) +
                        (tuple(x / 1024.0 for x in rss) if rss else ("NaN", "NaN", "NaN")))
        self.write_dat(os.path.join(pdir, "scale.dat"),
                       ["gib", "dur", "dmin", "dmax", "rss_mib", "rmin", "rmax"], rows)
        lines = ["'scale.dat' using 1:2:3:4 with yerrorlines lw 2 title 'duration (s, left)'"]
        if any(x[4] != "NaN" for x in rows):
            lines.append("'' using 1:5:6:7 axes x1y2 with yerrorlines lw 2 title 'helper RSS (MiB, right)'")
            lines.append("64 axes x1y2 with lines dt 3 lc rgb 'black' title 'RSS target 64 MiB'")
        script = ("set title 'scale: anon, 4 channels, random (median, bars min-max)'\nset logscale x 2\n"
                  "set xtics (%s)\nset xrange [%g:%g]\n"
                  % (",".join("%g" % x[0] for x in rows), rows[0][0] / 1.3, rows[-1][0] * 1.3) +
                  "set xlabel 'guest RAM (GiB)'\nset ylabel 'duration (s)'\nset y2label 'helper RSS (MiB)'\n"
                  "set y2tics\nset ytics nomirror\nset yrange [0:*]\nset y2range [0:*]\nset grid\n"
                  "set key outside bottom center horizontal\nplot %s" % ", ".join(lines))
        return [("scale", "Scale: duration and helper RSS against guest size", script,
                 None if len(lines) > 1 else "scale plot has no helper RSS: no helper_maxrss_kb in the report")]

    def plot_netem(self, pdir):
        ns = [r for r in self.runs("n") if r["ok"]]
        if not ns:
            return []
        rows = []
        for d in self.res["stages"]["netem"].get("delays", []):
            rs = [r for r in ns if r["config"].get("delay") == d]
            p50, p99, dur = (self.agg(rs, k) for k in ("fault_p50_us", "fault_p99_us", "duration_s"))
            if not dur:
                continue
            rows.append((delay_ms(d), p50[0] if p50 else "NaN", p99[0] if p99 else "NaN", dur[0]))
        if not rows:
            return []
        self.write_dat(os.path.join(pdir, "netem.dat"), ["delay_ms", "p50_us", "p99_us", "total_s"], rows)
        script = ("set title 'netem: one-way delay against fault latency and total time'\n"
                  "set logscale x\nset logscale y\nset xlabel 'one-way delay (ms)'\n"
                  "set ylabel 'fault latency (µs)'\nset y2label 'total time (s)'\nset y2tics\n"
                  "set ytics nomirror\nset y2range [0:*]\nset grid\nset key top left\n"
                  "plot 'netem.dat' using 1:2 with linespoints lw 2 title 'fault p50', "
                  "'' using 1:3 with linespoints lw 2 title 'fault p99', "
                  "'' using 1:4 axes x1y2 with linespoints lw 2 title 'total time (right)', "
                  "2000 * x with lines dt 2 lc rgb 'gray30' title 'round trip 2 x delay'")
        return [("netem", "Netem: fault latency and total time against delay", script, None)]

    # -- summary ---------------------------------------------------------------------------

    def summary(self, heads):
        print("")
        print("pch bench summary%s" % (" (BENCH_QUICK)" if self.quick else ""))
        for h in heads:
            val = "%s %s" % (fmt(h["value"]), h["unit"]) if h["value"] is not None else "—"
            lim = ("limit %s %s, ratio %.2f" % (fmt(h["limit"]), h["unit"], h["ratio"])
                   if h["ratio"] is not None else
                   "a budget" if h["limit_name"].startswith("—") else "no limit measured")
            met = {True: "met", False: "NOT met", None: "-"}[h["met"]]
            print("  %s: %s (%s; target %s: %s)" % (h["figure"], val, lim, h["target"], met))
        runs = self.res["runs"]
        print("  runs: %d ok, %d failed; notes: %d (see report.md)"
              % (sum(r["ok"] for r in runs), sum(not r["ok"] for r in runs), len(self.notes)))
        print("results: %s" % self.dir)
        print("report:  %s" % os.path.join(self.dir, "report.md"))


class CpuGroup:
    """The bench in a cpu cgroup of its own that outweighs the machine's other
    work (cgroup v1 cpu.shares or v2 cpu.weight), so a shared, busy machine
    disturbs the figures less: its children inherit it.  Source, helper and
    vm still share the same CPUs with each other.  Removed at exit."""

    V1 = "/sys/fs/cgroup/cpu"
    V2 = "/sys/fs/cgroup"

    def __init__(self, weight):
        self.path = None
        self.parent_procs = None
        self.desc = None
        name = "pch-bench-%d" % os.getpid()
        try:
            if os.path.exists(os.path.join(self.V1, "cpu.shares")):
                self.path = os.path.join(self.V1, name)
                os.mkdir(self.path)
                shares = max(2, min(262144, weight * 1024 // 100))
                self.write("cpu.shares", shares)
                self.parent_procs = os.path.join(self.V1, "cgroup.procs")
                self.desc = "cgroup v1 %s, cpu.shares %d (a nice-0 task has 1024)" % (self.path, shares)
            elif "cpu" in open(os.path.join(self.V2, "cgroup.subtree_control")).read().split():
                self.path = os.path.join(self.V2, name)
                os.mkdir(self.path)
                w = max(1, min(10000, weight))
                self.write("cpu.weight", w)
                self.parent_procs = os.path.join(self.V2, "cgroup.procs")
                self.desc = "cgroup v2 %s, cpu.weight %d (default 100)" % (self.path, w)
            else:
                raise OSError("no cpu controller (cgroup v1 cpu or v2 cpu in subtree_control)")
            self.write("cgroup.procs", os.getpid())
        except OSError as e:
            self.remove()
            raise OSError("cannot run in a cpu cgroup of its own: %s" % e)

    def write(self, f, v):
        with open(os.path.join(self.path, f), "w") as fh:
            fh.write("%s\n" % v)

    def remove(self):
        if not self.path:
            return
        try:
            if self.parent_procs:
                with open(self.parent_procs, "w") as fh:
                    fh.write("%d\n" % os.getpid())
        except OSError:
            pass
        for _ in range(50):  # children reaped, the group empties
            try:
                os.rmdir(self.path)
                break
            except OSError:
                time.sleep(0.1)
        self.path = None


def main():
    env_quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
    ap = argparse.ArgumentParser(description="pch benchmark driver (see bench/README.md)")
    ap.add_argument("--build", default=os.environ.get("BUILD") or "build",
                    help="build directory (default $BUILD or build)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"),
                    help="results parent directory (default bench/results)")
    ap.add_argument("--quick", action="store_true", default=env_quick,
                    help="short run (also BENCH_QUICK=1)")
    ap.add_argument("--netem", default=os.environ.get("NETEM", ""),
                    help="rate,delay[,delay...]: run the netem stage (also NETEM=)")
    ap.add_argument("--stages", default="limits,matrix,scale,netem",
                    help="comma-separated subset of limits,matrix,scale,netem")
    ap.add_argument("--reps", type=int, default=0, help="repetitions (default 3, quick 1)")
    ap.add_argument("--matrix-ram", default="", help="matrix guest size (default 1G, quick 256M)")
    ap.add_argument("--matrix-budget", type=int, default=2400, help="matrix stage time budget, s")
    ap.add_argument("--scale-budget", type=int, default=1200, help="scale stage time budget, s")
    ap.add_argument("--netem-budget", type=int, default=1200, help="netem stage time budget, s")
    ap.add_argument("--cpu-weight", type=int,
                    default=int(os.environ.get("BENCH_CPU_WEIGHT") or 0),
                    help="run in a cpu cgroup of this weight (cgroup v2 scale: default 100, "
                         "up to 10000; v1 shares = weight * 1024 / 100), so other work on a "
                         "shared machine disturbs the figures less (also BENCH_CPU_WEIGHT=)")
    ap.add_argument("--rereport", metavar="DIR", default="",
                    help="write report.md and the plots again from DIR/results.json (no runs)")
    args = ap.parse_args()
    group = None
    if args.cpu_weight and not args.rereport:
        try:
            group = CpuGroup(args.cpu_weight)
        except OSError as e:
            log("bench: %s" % e)
            return 1
        atexit.register(group.remove)
    if not os.path.isabs(args.build):
        args.build = os.path.join(ROOT, args.build)
    stages = set(s.strip() for s in args.stages.split(",") if s.strip())

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    b = Bench(args)
    if group:
        b.res["machine"]["cpu_group"] = group.desc
        log("running in %s" % group.desc)
    if args.rereport:
        b.summary(b.write_report(b.res.get("interrupted")))
        return 0
    log("results in %s" % b.dir)
    interrupted = None
    try:
        b.machine("before")
        b.features()
        if "limits" in stages:
            b.stage_limits()
        if "matrix" in stages:
            b.stage_matrix()
        if "scale" in stages:
            b.stage_scale()
        if "netem" in stages and args.netem:
            b.stage_netem(args.netem)
    except Interrupted as e:
        interrupted = str(e)
        log("interrupted (%s): writing what was measured" % interrupted)
    finally:
        b.huge.release()
    with Shield():
        heads = b.write_report(interrupted)
    b.summary(heads)
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
