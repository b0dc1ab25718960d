// SPDX-License-Identifier: MIT
/*
 * faultlat.c - pch-faultlat: user page faults that block (userfaultfd
 * waits), from the fault until the thread runs again, as QEMU 10.1's
 * postcopy-latency-dist (24 log2 microsecond buckets, faultlat.h) plus
 * count, mean, percentiles and max.  The
 * definition of a blocking fault is in faultlat.bpf.c and bpf/README.md.
 */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
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
	"  -T, --per-thread      a histogram per faulting thread too\n"
	"  -S, --any-sleep       count faults that sleep uninterruptibly (D) too\n"
	"      --json FILE       write the totals as JSON at exit\n"
	"  -v, --verbose         libbpf's messages\n"
	"  -h, --help            this help\n"
	"\n"
	"Exit status: 0; the COMMAND's status when it fails; 1 on error; 77 when BPF\n"
	"cannot be loaded here (no BTF, no permission).\n";

/* -T: the threads map, copied, sorted by tid */
struct thread {
	__u32 tid;
	struct faultlat_thread v;
};

struct threads {
	struct thread *t;
	size_t n;
};

struct faultlat {
	struct tool_opts o;
	bool any_sleep;
	bool per_thread;
	struct faultlat_bpf *skel;
	struct lat_hist last; /* totals at the previous interval */
	struct faultlat_counts last_counts;
	struct threads last_threads;
};

static int extra_opt(struct tool_opts *o, int c, const char *arg)
{
	struct faultlat *fl = (struct faultlat *)o;

	switch (c) {
	case 'S':
		fl->any_sleep = true;
		return 0;
	case 'T':
		fl->per_thread = true;
		return 0;
	case 't':
		o->tid = tool_parse_pid(o->name, arg, "-t");
		return 0;
	}
	return -1;
}

static int thread_cmp(const void *a, const void *b)
{
	const struct thread *x = a, *y = b;

	return x->tid < y->tid ? -1 : x->tid > y->tid;
}

/* Copy the threads map into ts (its old contents freed).  Returns -errno. */
static int read_threads(struct faultlat *fl, struct threads *ts)
{
	int fd = bpf_map__fd(fl->skel->maps.threads);
	__u32 k, next, *prev = NULL;
	size_t cap = 0;

	free(ts->t);
	ts->t = NULL;
	ts->n = 0;
	while (!bpf_map_get_next_key(fd, prev, &next)) {
		k = next;
		prev = &k;
		if (ts->n == cap) {
			struct thread *a;

			cap = cap ? 2 * cap : 16;
			a = realloc(ts->t, cap * sizeof(*a));
			if (!a)
				return -ENOMEM;
			ts->t = a;
		}
		if (bpf_map_lookup_elem(fd, &k, &ts->t[ts->n].v))
			continue; /* gone meanwhile: the map keeps entries, it cannot be */
		ts->t[ts->n++].tid = k;
	}
	qsort(ts->t, ts->n, sizeof(ts->t[0]), thread_cmp);
	return 0;
}

/* The q quantile of a thread's waits, us, from its fine histogram. */
static double thread_quantile_us(const struct faultlat_thread *t, double q)
{
	__u64 want, seen = 0;
	unsigned i;

	if (!t->count)
		return 0;
	want = (__u64)ceil(q * (double)t->count);
	if (want < 1)
		want = 1;
	for (i = 0; i < FL_FINE_N - 1; i++) {
		seen += t->fine[i];
		if (seen >= want) {
			__u64 hi = fl_fine_hi(i);

			return (hi < t->max_ns ? hi : t->max_ns) / 1000.0;
		}
	}
	return t->max_ns / 1000.0;
}

/* A comm as a JSON string (it is the thread's to choose). */
static void json_str(FILE *f, const char *s, size_t len)
{
	size_t i;

	fputc('"', f);
	for (i = 0; i < len && s[i]; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
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

/* -T: each thread's waits since base (NULL: all), those that had any. */
static void print_threads(const struct threads *now, const struct threads *base)
{
	size_t i;

	for (i = 0; i < now->n; i++) {
		struct faultlat_thread d = now->t[i].v;
		const struct thread *b = NULL;
		unsigned j;

		if (base)
			b = bsearch(&now->t[i], base->t, base->n, sizeof(base->t[0]), thread_cmp);
		if (b) {
			/* the interval's own max is not kept: the max so far */
			d.count -= b->v.count;
			d.sum_ns -= b->v.sum_ns;
			for (j = 0; j < FL_DIST_N; j++)
				d.dist[j] -= b->v.dist[j];
			for (j = 0; j < FL_FINE_N; j++)
				d.fine[j] -= b->v.fine[j];
		}
		if (!d.count)
			continue;
		printf("  tid %u %.*s (pid %u): %llu blocking faults, mean %.1f us, p50 %.1f us, "
		       "max %.1f us\n", now->t[i].tid, (int)sizeof(d.comm), d.comm, d.tgid,
		       (unsigned long long)d.count, (double)d.sum_ns / (double)d.count / 1000.0,
		       thread_quantile_us(&d, 0.5), d.max_ns / 1000.0);
		tool_print_log2(stdout, d.dist, FL_DIST_N);
	}
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
	if (fl->per_thread) {
		struct threads ts = { 0 };

		if (!read_threads(fl, &ts)) {
			print_threads(&ts, &fl->last_threads);
			free(fl->last_threads.t);
			fl->last_threads = ts;
		} else {
			free(ts.t);
		}
	}
	fflush(stdout);
	fl->last = now;
}

static int write_json(struct faultlat *fl, const struct lat_hist *h,
		      const struct faultlat_counts *c, const struct threads *ts)
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
		   "  \"faults_blocked\": %llu,\n  \"lost\": %llu,\n  \"threads_lost\": %llu,\n",
		(unsigned long long)c->faults, (unsigned long long)c->blocked_s,
		(unsigned long long)c->blocked_d, (unsigned long long)c->faults_blocked,
		(unsigned long long)c->lost, (unsigned long long)c->threads_lost);
	fprintf(f, "  \"latency_us\": ");
	tool_json_latency(f, "  ", h);
	/* QEMU's field: postcopy-latency-dist */
	fprintf(f, ",\n  \"latency_dist_us\": ");
	dist_of(h, dist);
	json_dist(f, dist);
	if (fl->per_thread) {
		size_t i;

		fprintf(f, ",\n  \"threads\": [");
		for (i = 0; i < ts->n; i++) {
			const struct faultlat_thread *t = &ts->t[i].v;

			fprintf(f, "%s\n    { \"tid\": %u, \"pid\": %u, \"comm\": ", i ? "," : "",
				ts->t[i].tid, t->tgid);
			json_str(f, t->comm, sizeof(t->comm));
			fprintf(f, ", \"count\": %llu, \"mean\": %.3f, \"p50\": %.3f, \"max\": %.3f,\n"
				   "      \"latency_dist_us\": ",
				(unsigned long long)t->count,
				t->count ? (double)t->sum_ns / (double)t->count / 1000.0 : 0.0,
				thread_quantile_us(t, 0.5), t->max_ns / 1000.0);
			json_dist(f, t->dist);
			fprintf(f, " }");
		}
		fprintf(f, "\n  ]");
	}
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
		{ "per-thread", no_argument, NULL, 'T' },
		{ "tid", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	struct faultlat fl = { .o = { .name = "pch-faultlat" } };
	struct lat_hist total;
	struct faultlat_counts c;
	struct threads threads = { 0 };
	pid_t target;
	int err, rc;

	tool_parse(&fl.o, argc, argv, usage, "STt:", longs, extra_opt);
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
	fl.skel->rodata->per_thread = fl.per_thread;
	tool_load_attach(&fl.o, fl.skel->skeleton, "blocking page faults of ");

	rc = tool_run(&fl.o, tick, &fl);

	snapshot(&fl, &total, &c);
	print_hist("total", &total);
	if (fl.per_thread) {
		err = read_threads(&fl, &threads);
		if (err) {
			fprintf(stderr, "pch-faultlat: reading the threads: %s\n", strerror(-err));
			rc = rc ? rc : TOOL_EXIT_ERR;
		}
		print_threads(&threads, NULL);
	}
	printf("user faults %llu, %llu of them blocked; waits %llu (S %llu, D %llu); "
	       "untracked %llu\n",
	       (unsigned long long)c.faults, (unsigned long long)c.faults_blocked,
	       (unsigned long long)(c.blocked_s + c.blocked_d), (unsigned long long)c.blocked_s,
	       (unsigned long long)c.blocked_d, (unsigned long long)c.lost);
	if (c.threads_lost)
		printf("%llu waits of threads beyond the first %u counted in the totals only\n",
		       (unsigned long long)c.threads_lost, FL_THREADS);
	if (fl.o.json && write_json(&fl, &total, &c, &threads))
		rc = rc ? rc : TOOL_EXIT_ERR;
	free(threads.t);
	free(fl.last_threads.t);
	faultlat_bpf__destroy(fl.skel);
	return rc;
}
