/* SPDX-License-Identifier: MIT */
/*
 * tool.h - what the loaders of the BPF tools share: the command line
 * (-p PID, -- COMMAND, -i, -d, --json), tracefs, loading errors that are
 * a skip (exit 77), the run loop, log2 histograms and JSON output.
 * User space only; the BPF side shares target.bpf.h.
 */
#ifndef PCH_BPF_TOOL_H
#define PCH_BPF_TOOL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "hist_bpf.h"

/* exit statuses */
#define TOOL_EXIT_OK 0
#define TOOL_EXIT_ERR 1
#define TOOL_EXIT_SKIP 77 /* BPF cannot be loaded here: no BTF, no permission */

struct tool_opts {
	const char *name;    /* "pch-faultlat" */
	pid_t pid;           /* -p: a process and its threads; 0: none */
	pid_t tid;           /* faultlat -t: only this thread; 0: all */
	double interval_s;   /* -i: print every interval; 0: only at exit */
	double duration_s;   /* -d: stop after; 0: never */
	const char *json;    /* --json FILE: report at exit */
	bool verbose;        /* -v: libbpf's messages */
	char **cmd;          /* -- COMMAND ARGS: run and trace it */
	pid_t child;         /* the COMMAND's pid once started */
	int child_status;    /* its wait status once reaped */
	int go_fd;           /* pipe the child waits on until tracing is attached */
};

/*
 * Parse the common options; extra is a getopt_long hook for the tool's own
 * (NULL: none).  Exits with help on -h and with 2 on a usage error.
 */
struct option;
/* A process or thread id option's value; exits 2 naming opt when it is not one. */
pid_t tool_parse_pid(const char *name, const char *arg, const char *opt);
void tool_parse(struct tool_opts *o, int argc, char **argv, const char *usage,
		const char *extra_short, const struct option *extra_long,
		int (*extra)(struct tool_opts *o, int c, const char *arg));

/*
 * Before loading: BTF present, tracefs mounted (mounted here when it is
 * not and we may), libbpf messages routed, RLIMIT_MEMLOCK raised.  Exits
 * 77 with the reason when BPF cannot work here.
 */
void tool_prepare(struct tool_opts *o);

/* A load or attach error: exits 77 when it means "not allowed / not
 * supported here" (EPERM, EACCES, ENOSYS, EOPNOTSUPP), 1 otherwise. */
void tool_load_failed(struct tool_opts *o, const char *what, int err);

/*
 * Load and attach a tool's skeleton (skel->skeleton, its rodata already
 * set), put the target (tool_target; none: every process) in its targets
 * map (target.bpf.h), say on stderr what is traced when there is no
 * COMMAND ("tracing <what><one process|every process>"), then let the
 * COMMAND run.  Exits through tool_load_failed when a step fails.
 */
struct bpf_object_skeleton;
void tool_load_attach(struct tool_opts *o, struct bpf_object_skeleton *s, const char *what);

/*
 * Fork the COMMAND (it waits until tool_start_child), so that its pid can
 * go into the target map before it runs.  No-op without a COMMAND.
 */
void tool_fork_child(struct tool_opts *o);
void tool_start_child(struct tool_opts *o);

/* The tgid to trace: -p or the COMMAND's pid. */
pid_t tool_target(const struct tool_opts *o);

/*
 * Run until the target is gone, -d passes or a signal comes, calling
 * tick(arg) every -i interval.  Returns the tool's exit status: 0, or the
 * COMMAND's own when it failed.
 */
int tool_run(struct tool_opts *o, void (*tick)(void *arg), void *arg);

/* "comm" of a process, or "?" */
void tool_comm(pid_t pid, char *buf, size_t len);

/* Print a log2 microsecond histogram, biolatency style. */
void tool_print_log2(FILE *f, const __u64 *slots, unsigned n);

/* JSON helpers: keys and values written by hand, no dependencies. */
void tool_json_latency(FILE *f, const char *indent, const struct lat_hist *h);
double tool_quantile_us(const struct lat_hist *h, double q);

#endif /* PCH_BPF_TOOL_H */
