/* SPDX-License-Identifier: MIT */
/*
 * probes.h - USDT probes (provider "pch") for the BPF tools in bpf/.
 *
 * PCH_PROBE(name, args...) marks a point of interest with a static probe:
 * one nop in the code and a note in the ELF (.note.stapsdt) that a tracer
 * (bpf/stages.c, bpftrace, perf) turns into a uprobe when it attaches.
 * Nothing runs and nothing is evaluated beyond the arguments, which are
 * values the code has at hand: zero cost when no tool is attached.  Up to
 * 6 integer arguments (libbpf's USDT support reads at most 12, pass few).
 *
 * Without <sys/sdt.h> (Debian: systemtap-sdt-dev), or with
 * -DPCH_NO_PROBES, the probes compile to nothing.  Every probe and its
 * arguments is listed in bpf/README.md, "USDT probes".
 */
#ifndef PCH_PROBES_H
#define PCH_PROBES_H

#if !defined(PCH_NO_PROBES) && defined(__has_include)
#if __has_include(<sys/sdt.h>)
#define SDT_USE_VARIADIC 1
#include <sys/sdt.h>
#define PCH_HAVE_PROBES 1
#endif
#endif

#ifdef PCH_HAVE_PROBES
#define PCH_PROBE(name, ...) STAP_PROBEV(pch, name, ##__VA_ARGS__)
#else
#define PCH_PROBE(name, ...) do { } while (0)
#endif

#endif /* PCH_PROBES_H */
