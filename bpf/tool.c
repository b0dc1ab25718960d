// SPDX-License-Identifier: MIT
/*
 * tool.c - the part every BPF tool's loader shares (tool.h): options,
 * tracefs, skip-or-fail on load errors, the COMMAND child, the run loop,
 * histogram text and JSON.
 */
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tool.h"

static volatile sig_atomic_t stop_sig;
static bool verbose;

static void on_signal(int sig)
{
	stop_sig = sig;
}

static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_DEBUG && !verbose)
		return 0;
	if (level == LIBBPF_INFO && !verbose)
		return 0;
	return vfprintf(stderr, fmt, ap);
}

static const struct option common_long[] = {
	{ "pid", required_argument, NULL, 'p' },
	{ "interval", required_argument, NULL, 'i' },
	{ "duration", required_argument, NULL, 'd' },
	{ "json", required_argument, NULL, 'J' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
};

static double parse_seconds(const char *name, const char *arg, const char *opt)
{
	char *end;
	double v = strtod(arg, &end);

	if (end == arg || *end || v < 0 || !isfinite(v)) {
		fprintf(stderr, "%s: %s: not a number of seconds: %s\n", name, opt, arg);
		exit(2);
	}
	return v;
}

pid_t tool_parse_pid(const char *name, const char *arg, const char *opt)
{
	char *end;
	long v = strtol(arg, &end, 10);

	if (end == arg || *end || v <= 0 || v > 0x3fffffff) {
		fprintf(stderr, "%s: %s: not a process id: %s\n", name, opt, arg);
		exit(2);
	}
	return (pid_t)v;
}

void tool_parse(struct tool_opts *o, int argc, char **argv, const char *usage,
		const char *extra_short, const struct option *extra_long,
		int (*extra)(struct tool_opts *o, int c, const char *arg))
{
	struct option longs[32];
	char shorts[64];
	size_t n = 0, i;
	int c;

	memset(longs, 0, sizeof(longs));
	for (i = 0; i < sizeof(common_long) / sizeof(common_long[0]); i++)
		longs[n++] = common_long[i];
	for (i = 0; extra_long && extra_long[i].name && n < 31; i++)
		longs[n++] = extra_long[i];
	/* "+": stop at the COMMAND, whose options are its own */
	snprintf(shorts, sizeof(shorts), "+p:i:d:vh%s", extra_short ? extra_short : "");
	o->go_fd = -1;
	while ((c = getopt_long(argc, argv, shorts, longs, NULL)) != -1) {
		switch (c) {
		case 'p':
			o->pid = tool_parse_pid(o->name, optarg, "-p");
			break;
		case 'i':
			o->interval_s = parse_seconds(o->name, optarg, "-i");
			break;
		case 'd':
			o->duration_s = parse_seconds(o->name, optarg, "-d");
			break;
		case 'J':
			o->json = optarg;
			break;
		case 'v':
			o->verbose = true;
			break;
		case 'h':
			fputs(usage, stdout);
			exit(0);
		default:
			if (extra && !extra(o, c, optarg))
				break;
			fprintf(stderr, "%s", usage);
			exit(2);
		}
	}
	if (optind < argc)
		o->cmd = argv + optind;
	if (o->cmd && o->pid) {
		fprintf(stderr, "%s: -p and a COMMAND exclude each other\n", o->name);
		exit(2);
	}
}

/* Is a tracefs mounted where libbpf looks for tracepoint ids? */
static bool tracefs_ok(void)
{
	return !access("/sys/kernel/tracing/events", F_OK) ||
	       !access("/sys/kernel/debug/tracing/events", F_OK);
}

void tool_prepare(struct tool_opts *o)
{
	struct rlimit rl = { RLIM_INFINITY, RLIM_INFINITY };

	verbose = o->verbose;
	libbpf_set_print(libbpf_print);
	if (access("/sys/kernel/btf/vmlinux", R_OK)) {
		fprintf(stderr, "%s: SKIP: the kernel has no BTF (/sys/kernel/btf/vmlinux: %s); "
			"it needs CONFIG_DEBUG_INFO_BTF=y\n", o->name, strerror(errno));
		exit(TOOL_EXIT_SKIP);
	}
	/*
	 * libbpf attaches tracepoints through perf_event_open, with the id it
	 * reads under tracefs: mount it when nobody has (root only).
	 */
	if (!tracefs_ok() && mount("nodev", "/sys/kernel/tracing", "tracefs", 0, NULL) &&
	    !tracefs_ok()) {
		fprintf(stderr, "%s: SKIP: tracefs is not mounted and cannot be mounted here (%s); "
			"as root: mount -t tracefs nodev /sys/kernel/tracing\n", o->name,
			strerror(errno));
		exit(TOOL_EXIT_SKIP);
	}
	/* kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK */
	setrlimit(RLIMIT_MEMLOCK, &rl);
}

void tool_load_failed(struct tool_opts *o, const char *what, int err)
{
	if (err < 0)
		err = -err;
	/* EACCES is also the verifier's refusal: a skip only for non-root */
	if (err == EPERM || (err == EACCES && geteuid()) || err == ENOSYS ||
	    err == EOPNOTSUPP || err == ENOTSUP) {
		fprintf(stderr, "%s: SKIP: cannot %s: %s (needs root, or CAP_BPF and "
			"CAP_PERFMON, and a kernel with BPF tracepoints and uprobes)\n", o->name, what,
			strerror(err));
		if (o->child > 0) {
			kill(o->child, SIGKILL);
			waitpid(o->child, NULL, 0);
		}
		exit(TOOL_EXIT_SKIP);
	}
	fprintf(stderr, "%s: cannot %s: %s%s\n", o->name, what, strerror(err),
		o->verbose ? "" : " (-v shows libbpf's messages)");
	if (o->child > 0) {
		kill(o->child, SIGKILL);
		waitpid(o->child, NULL, 0);
	}
	exit(TOOL_EXIT_ERR);
}

void tool_fork_child(struct tool_opts *o)
{
	int p[2];
	char c;

	if (!o->cmd)
		return;
	if (pipe2(p, O_CLOEXEC)) {
		fprintf(stderr, "%s: pipe: %s\n", o->name, strerror(errno));
		exit(TOOL_EXIT_ERR);
	}
	o->child = fork();
	if (o->child < 0) {
		fprintf(stderr, "%s: fork: %s\n", o->name, strerror(errno));
		exit(TOOL_EXIT_ERR);
	}
	if (!o->child) {
		close(p[1]);
		/* run only once tracing is attached; EOF: the tool gave up */
		if (read(p[0], &c, 1) != 1)
			_exit(127);
		execvp(o->cmd[0], o->cmd);
		fprintf(stderr, "%s: cannot run %s: %s\n", o->name, o->cmd[0], strerror(errno));
		_exit(127);
	}
	close(p[0]);
	o->go_fd = p[1];
}

void tool_start_child(struct tool_opts *o)
{
	if (o->go_fd < 0)
		return;
	if (write(o->go_fd, "g", 1) != 1)
		fprintf(stderr, "%s: cannot start the command: %s\n", o->name, strerror(errno));
	close(o->go_fd);
	o->go_fd = -1;
}

pid_t tool_target(const struct tool_opts *o)
{
	return o->cmd ? o->child : o->pid;
}

void tool_load_attach(struct tool_opts *o, struct bpf_object_skeleton *s, const char *what)
{
	pid_t target = tool_target(o);
	int err;

	err = bpf_object__load_skeleton(s);
	if (err)
		tool_load_failed(o, "load the BPF programs", err);
	if (target) {
		struct bpf_map *m = bpf_object__find_map_by_name(*s->obj, "targets");
		__u32 k = (__u32)target;
		__u8 one = 1;

		err = m ? bpf_map__update_elem(m, &k, sizeof(k), &one, sizeof(one), BPF_ANY) :
			  -ENOENT;
		if (err)
			tool_load_failed(o, "set the target", err);
	}
	err = bpf_object__attach_skeleton(s);
	if (err)
		tool_load_failed(o, "attach to the tracepoints", err);
	if (!o->cmd)
		fprintf(stderr, "%s: tracing %s%s; Ctrl-C ends\n", o->name, what,
			target ? "one process" : "every process");
	tool_start_child(o);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int tool_run(struct tool_opts *o, void (*tick)(void *arg), void *arg)
{
	struct sigaction sa = { .sa_handler = on_signal };
	double t0 = now_s(), next = t0 + o->interval_s;
	bool forwarded = false;

	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	for (;;) {
		double t;

		usleep(20000);
		t = now_s();
		if (o->interval_s > 0 && t >= next) {
			tick(arg);
			next += o->interval_s;
			if (next < t)
				next = t + o->interval_s;
		}
		if (o->child > 0) {
			pid_t w = waitpid(o->child, &o->child_status, WNOHANG);

			if (w == o->child)
				break;
			/* a signal stops the COMMAND first; the report follows it */
			if (stop_sig && !forwarded) {
				kill(o->child, stop_sig);
				forwarded = true;
			}
		} else {
			if (stop_sig)
				break;
			if (o->pid && kill(o->pid, 0) && errno == ESRCH)
				break;
		}
		if (o->duration_s > 0 && t - t0 >= o->duration_s) {
			if (o->child > 0) {
				if (!forwarded)
					kill(o->child, SIGTERM);
				forwarded = true;
				continue;
			}
			break;
		}
	}
	if (o->child > 0) {
		if (WIFEXITED(o->child_status))
			return WEXITSTATUS(o->child_status);
		return 128 + WTERMSIG(o->child_status);
	}
	return TOOL_EXIT_OK;
}

void tool_comm(pid_t pid, char *buf, size_t len)
{
	char path[64];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	f = fopen(path, "r");
	if (!f || !fgets(buf, (int)len, f)) {
		snprintf(buf, len, "?");
	} else {
		buf[strcspn(buf, "\n")] = '\0';
	}
	if (f)
		fclose(f);
}

void tool_print_log2(FILE *f, const __u64 *slots, unsigned n)
{
	uint64_t max = 0;
	unsigned i, first = n, last = 0;

	for (i = 0; i < n; i++) {
		if (slots[i] > max)
			max = slots[i];
		if (slots[i]) {
			if (first == n)
				first = i;
			last = i;
		}
	}
	if (first == n) {
		fprintf(f, "     (no samples)\n");
		return;
	}
	fprintf(f, "%24s : %-10s distribution\n", "usecs", "count");
	for (i = first; i <= last; i++) {
		unsigned long long lo = i ? 1ull << i : 0, hi = (2ull << i) - 1;
		int bar = (int)(slots[i] * 40 / max);
		char range[32];

		if (i == n - 1)
			snprintf(range, sizeof(range), "%llu -> ...", lo);
		else
			snprintf(range, sizeof(range), "%llu -> %llu", lo, hi);
		fprintf(f, "%24s : %-10llu |%-40.*s|\n", range, (unsigned long long)slots[i], bar,
			"****************************************");
	}
}

double tool_quantile_us(const struct lat_hist *h, double q)
{
	uint64_t want, seen = 0;
	unsigned i;

	if (!h->count)
		return 0;
	want = (uint64_t)ceil(q * (double)h->count);
	if (want < 1)
		want = 1;
	for (i = 0; i < LAT_FINE_SLOTS; i++) {
		seen += h->fine[i];
		if (seen >= want) {
			uint64_t hi = lat_fine_hi(i);

			return (hi < h->max_ns ? hi : h->max_ns) / 1000.0;
		}
	}
	return h->max_ns / 1000.0;
}

void tool_json_latency(FILE *f, const char *in, const struct lat_hist *h)
{
	unsigned i, n = LAT_LOG2_SLOTS;

	fprintf(f, "{\n%s  \"count\": %llu,\n", in, (unsigned long long)h->count);
	fprintf(f, "%s  \"mean\": %.3f,\n", in,
		h->count ? (double)h->sum_ns / (double)h->count / 1000.0 : 0.0);
	fprintf(f, "%s  \"p50\": %.3f,\n%s  \"p90\": %.3f,\n%s  \"p99\": %.3f,\n%s  \"p999\": %.3f,\n",
		in, tool_quantile_us(h, 0.5), in, tool_quantile_us(h, 0.9), in,
		tool_quantile_us(h, 0.99), in, tool_quantile_us(h, 0.999));
	fprintf(f, "%s  \"max\": %.3f,\n", in, h->max_ns / 1000.0);
	/* trailing empty slots are left out, as QEMU's list ends where data ends */
	while (n > 1 && !h->log2_us[n - 1])
		n--;
	fprintf(f, "%s  \"log2_us\": [", in);
	for (i = 0; i < n; i++)
		fprintf(f, "%s%llu", i ? ", " : "", (unsigned long long)h->log2_us[i]);
	fprintf(f, "]\n%s}", in);
}
