#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""delayline.py - a userspace stand-in for tc netem, for kernels without
sch_netem: joins two network namespaces through one tun device in each and
carries every IP packet across after a fixed one-way DELAY, serialised at
RATE (the same model as `netem rate RATE delay DELAY`: a packet leaves once
the link is free plus its transmission time, then arrives DELAY later).

Started by bench/netem.sh, which makes the namespaces and the persistent tun
devices (ip tuntap) and addresses them; this program only attaches to them,
writes its pid to --pidfile when it carries traffic, and runs until SIGTERM.
Its own CPU time bounds throughput (one Python thread): it is there for
latency, not to show line rate.
"""
import argparse
import collections
import ctypes
import fcntl
import os
import select
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
CLONE_NEWNET = 0x40000000

libc = ctypes.CDLL(None, use_errno=True)


def die(msg):
    print("delayline: " + msg, file=sys.stderr)
    sys.exit(1)


def setns(path):
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            die("setns %s: %s" % (path, os.strerror(e)))
    finally:
        os.close(fd)


def attach(ns, dev):
    """Open the persistent tun device dev of network namespace ns."""
    setns("/run/netns/" + ns)
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as e:
        die("open /dev/net/tun: %s (CONFIG_TUN?)" % e.strerror)
    ifr = struct.pack("16sH22x", dev.encode(), IFF_TUN | IFF_NO_PI)
    try:
        fcntl.ioctl(fd, TUNSETIFF, ifr)
    except OSError as e:
        die("TUNSETIFF %s in namespace %s: %s" % (dev, ns, e.strerror))
    return fd


def parse_rate(s):
    """tc-style rate (10gbit, 500mbit, 100kbit, 1000bit, 125mbps) -> bytes/s."""
    units = [("gbit", 1e9 / 8), ("mbit", 1e6 / 8), ("kbit", 1e3 / 8), ("bit", 1 / 8),
             ("gbps", 1e9), ("mbps", 1e6), ("kbps", 1e3), ("bps", 1)]
    t = s.lower()
    for u, mul in units:
        if t.endswith(u):
            return float(t[: -len(u)]) * mul
    return float(t) / 8  # bare number: bits per second, as tc


def parse_time(s):
    """tc-style time (0.1ms, 5ms, 100us, 1s) -> seconds."""
    t = s.lower()
    for u, mul in (("usec", 1e-6), ("msec", 1e-3), ("us", 1e-6), ("ms", 1e-3), ("s", 1.0)):
        if t.endswith(u):
            return float(t[: -len(u)]) * mul
    return float(t) * 1e-6  # bare number: microseconds, as tc


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ns", nargs=2, required=True, metavar=("NS_A", "NS_B"))
    ap.add_argument("--dev", default="pchb-tun", help="tun device name in both namespaces")
    ap.add_argument("--rate", default="10gbit")
    ap.add_argument("--delay", default="1ms", help="one-way delay")
    ap.add_argument("--limit", type=int, default=100000,
                    help="packets in flight each way before more are dropped (as netem's limit)")
    ap.add_argument("--pidfile", required=True)
    ap.add_argument("--lifetime", type=float, default=6 * 3600,
                    help="exit after this many seconds even if never told to stop "
                         "(a bench killed before netem.sh down cannot leave it forever)")
    a = ap.parse_args()
    try:
        rate = parse_rate(a.rate)
        delay = parse_time(a.delay)
    except ValueError:
        die("bad --rate %s or --delay %s" % (a.rate, a.delay))
    if rate <= 0 or delay < 0:
        die("--rate must be > 0 and --delay >= 0")

    fds = [attach(a.ns[0], a.dev), attach(a.ns[1], a.dev)]
    peer = {fds[0]: fds[1], fds[1]: fds[0]}
    # per direction (by input fd): when the link is free again, and the packets
    # in flight as (arrival time, bytes) in arrival order (the delay is fixed)
    free_at = {fds[0]: 0.0, fds[1]: 0.0}
    flight = {fds[0]: collections.deque(), fds[1]: collections.deque()}
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    with open(a.pidfile + ".tmp", "w") as f:
        f.write("%d\n" % os.getpid())
    os.rename(a.pidfile + ".tmp", a.pidfile)
    now = time.monotonic
    dropped = 0
    end = now() + a.lifetime
    while not stop:
        t = now()
        if t >= end:
            print("delayline: lifetime of %g s over: exiting" % a.lifetime, file=sys.stderr)
            break
        due = min((q[0][0] for q in flight.values() if q), default=end)
        timeout = max(0.0, min(due, end) - t)
        try:
            r, _, _ = select.select(fds, [], [], timeout)
        except InterruptedError:
            continue
        for fd in r:
            q = flight[fd]
            for _ in range(64):  # a burst, then look at the clock again
                try:
                    pkt = os.read(fd, 65536)
                except BlockingIOError:
                    break
                if not pkt:
                    break
                if len(q) >= a.limit:
                    dropped += 1
                    continue
                t = now()
                free_at[fd] = max(free_at[fd], t) + len(pkt) / rate
                q.append((free_at[fd] + delay, pkt))
        t = now()
        for fd, q in flight.items():
            while q and q[0][0] <= t:
                try:
                    os.write(peer[fd], q.popleft()[1])
                except (BlockingIOError, OSError):
                    dropped += 1
    if dropped:
        print("delayline: %d packets dropped (queue full or write failed)" % dropped,
              file=sys.stderr)


if __name__ == "__main__":
    main()
