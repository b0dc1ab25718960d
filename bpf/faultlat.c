// SPDX-License-Identifier: MIT
/*
 * faultlat.c - pch-faultlat: user page faults that block (userfaultfd
 * waits), from the fault until the thread runs again, as QEMU 10.1's
 * postcopy-latency-dist (24 log2 microsecond buckets, faultlat.h) plus
 * count, mean, percentiles and max.  The
 * definition of a blocking fault is in faultlat.bpf.c and bpf/README.md.
 */
#include <bpf/libbpf.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "faultlat.h"
#include "faultlat.skel.h"
#include "tool.h"

static const char usage[] =
	"Usage: pch-faultlat [OPTIONS] [-p PID | -- COMMAND [ARGS...]]\n"
	"\n"
	"Latency of user page faults that block (userfaultfd waits): from the fault\n"
	"to the moment the thread runs again, from tracepoints only.\n"
	"\n"
	"  -p, --pid PID         trace this process and its threads\n"
	"  -t, --tid TID         only this thread (with -p or a COMMAND)\n"
	"  -- COMMAND ARGS       run COMMAND and trace it and its children until it exits\n"
	"                        (neither: every process)\n"
	"  -i, --interval SECS   print the last interval's histogram every SECS\n"
	"  -d, --duration SECS   stop after SECS\n"
	"  -S, --any-sleep       count faults that sleep uninterruptibly (D) too\n"
	"      --json FILE       write the totals as JSON at exit\n"
	"  -v, --verbose         libbpf's messages\n"
	"  -h, --help            this help\n"
	"\n"
	"Exit status: 0; the COMMAND's status when it fails; 1 on error; 77 when BPF\n"
	"cannot be loaded here (no BTF, no permission).\n";

struct faultlat {
	struct tool_opts o;
	bool any_sleep;
	struct faultlat_bpf *skel;
	struct lat_hist last; /* totals at the previous interval */
	struct faultlat_counts last_counts;
};

static int extra_opt(struct tool_opts *o, int c, const char *arg)
{
	struct faultlat *fl = (struct faultlat *)o;

	if (c != 'S')
		return -1;
	fl->any_sleep = true;
	return 0;
}

/* A copy of the live totals (the BPF side keeps adding to them). */
static void snapshot(struct faultlat *fl, struct lat_hist *h, struct faultlat_counts *c)
{
	memcpy(h, &fl->skel->bss->hist, sizeof(*h));
	memcpy(c, &fl->skel->bss->counts, sizeof(*c));
}

/*
 * QEMU's 24 buckets from the LAT_LOG2_SLOTS of a lat_hist: the same
 * floor(log2(us)), only the last bucket takes the slots above it.
 */
static void dist_of(const struct lat_hist *h, __u64 dist[FL_DIST_N])
{
	unsigned i;

	memset(dist, 0, FL_DIST_N * sizeof(dist[0]));
	for (i = 0; i < LAT_LOG2_SLOTS; i++)
		dist[i < FL_DIST_N ? i : FL_DIST_N - 1] += h->log2_us[i];
}

static void json_dist(FILE *f, const __u64 dist[FL_DIST_N])
{
	unsigned i;

	fputc('[', f);
	for (i = 0; i < FL_DIST_N; i++)
		fprintf(f, "%s%llu", i ? ", " : "", (unsigned long long)dist[i]);
	fputc(']', f);
}

static void print_hist(const char *title, const struct lat_hist *h)
{
	__u64 dist[FL_DIST_N];

	printf("%s: %llu blocking faults, mean %.1f us, p50 %.1f us, p99 %.1f us, max %.1f us\n",
	       title, (unsigned long long)h->count,
	       h->count ? (double)h->sum_ns / (double)h->count / 1000.0 : 0.0,
	       tool_quantile_us(h, 0.5), tool_quantile_us(h, 0.99), h->max_ns / 1000.0);
	dist_of(h, dist);
	tool_print_log2(stdout, dist, FL_DIST_N);
}

static void tick(void *arg)
{
	struct faultlat *fl = arg;
	struct lat_hist now, d;
	struct faultlat_counts c;
	char title[64];
	time_t t = time(NULL);
	unsigned i;

	snapshot(fl, &now, &c);
	memset(&d, 0, sizeof(d));
	d.count = now.count - fl->last.count;
	d.sum_ns = now.sum_ns - fl->last.sum_ns;
	d.max_ns = now.max_ns; /* the interval's own max is not kept: the max so far */
	for (i = 0; i < LAT_LOG2_SLOTS; i++)
		d.log2_us[i] = now.log2_us[i] - fl->last.log2_us[i];
	for (i = 0; i < LAT_FINE_SLOTS; i++)
		d.fine[i] = now.fine[i] - fl->last.fine[i];
	strftime(title, sizeof(title), "%H:%M:%S", localtime(&t));
	print_hist(title, &d);
	fflush(stdout);
	fl->last = now;
}

static int write_json(struct faultlat *fl, const struct lat_hist *h,
		      const struct faultlat_counts *c)
{
	FILE *f = fopen(fl->o.json, "w");
	__u64 dist[FL_DIST_N];

	if (!f) {
		fprintf(stderr, "pch-faultlat: %s: %s\n", fl->o.json, strerror(errno));
		return -1;
	}
	fprintf(f, "{\n  \"tool\": \"pch-faultlat\",\n  \"pid\": %d,\n  \"tid\": %d,\n",
		(int)tool_target(&fl->o), (int)fl->o.tid);
	fprintf(f, "  \"any_sleep\": %s,\n", fl->any_sleep ? "true" : "false");
	fprintf(f, "  \"faults_user\": %llu,\n  \"blocked_s\": %llu,\n  \"blocked_d\": %llu,\n"
		   "  \"faults_blocked\": %llu,\n  \"lost\": %llu,\n",
		(unsigned long long)c->faults, (unsigned long long)c->blocked_s,
		(unsigned long long)c->blocked_d, (unsigned long long)c->faults_blocked,
		(unsigned long long)c->lost);
	fprintf(f, "  \"latency_us\": ");
	tool_json_latency(f, "  ", h);
	/* QEMU's field: postcopy-latency-dist */
	fprintf(f, ",\n  \"latency_dist_us\": ");
	dist_of(h, dist);
	json_dist(f, dist);
	fprintf(f, "\n}\n");
	if (fclose(f)) {
		fprintf(stderr, "pch-faultlat: %s: %s\n", fl->o.json, strerror(errno));
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longs[] = {
		{ "any-sleep", no_argument, NULL, 'S' },
		{ NULL, 0, NULL, 0 },
	};
	struct faultlat fl = { .o = { .name = "pch-faultlat" } };
	struct lat_hist total;
	struct faultlat_counts c;
	pid_t target;
	int rc;

	tool_parse(&fl.o, argc, argv, usage, "S", longs, extra_opt);
	tool_prepare(&fl.o);
	tool_fork_child(&fl.o);
	target = tool_target(&fl.o);

	fl.skel = faultlat_bpf__open();
	if (!fl.skel)
		tool_load_failed(&fl.o, "open the BPF object", errno);
	fl.skel->rodata->follow_children = fl.o.cmd != NULL;
	fl.skel->rodata->trace_all = !target;
	fl.skel->rodata->target_tid = (__u32)fl.o.tid;
	fl.skel->rodata->any_sleep = fl.any_sleep;
	tool_load_attach(&fl.o, fl.skel->skeleton, "blocking page faults of ");

	rc = tool_run(&fl.o, tick, &fl);

	snapshot(&fl, &total, &c);
	print_hist("total", &total);
	printf("user faults %llu, %llu of them blocked; waits %llu (S %llu, D %llu); "
	       "untracked %llu\n",
	       (unsigned long long)c.faults, (unsigned long long)c.faults_blocked,
	       (unsigned long long)(c.blocked_s + c.blocked_d), (unsigned long long)c.blocked_s,
	       (unsigned long long)c.blocked_d, (unsigned long long)c.lost);
	if (fl.o.json && write_json(&fl, &total, &c))
		rc = rc ? rc : TOOL_EXIT_ERR;
	faultlat_bpf__destroy(fl.skel);
	return rc;
}
