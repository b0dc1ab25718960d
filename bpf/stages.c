// SPDX-License-Identifier: MIT
/*
 * stages.c - pch-stages: each userfaultfd fault served by pch-helper split
 * into stages (kernel queue, helper decision, network, install, wake-up)
 * from the helper's and the source's USDT probes and the faulting
 * thread's tracepoints, as one histogram per stage.  The stages are
 * defined in stages.bpf.c and bpf/README.md.
 */
#include <bpf/libbpf.h>
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "stages.h"
#include "stages.skel.h"
#include "tool.h"

static const char usage[] =
	"Usage: pch-stages [OPTIONS] [-p PID | -- COMMAND [ARGS...]]\n"
	"\n"
	"Where the time of each userfaultfd fault served by pch-helper goes: kernel\n"
	"queue, helper decision, network round trip, install, wake-up, and the total,\n"
	"from the helper's and the source's USDT probes and the faulting thread's\n"
	"tracepoints.\n"
	"\n"
	"  -p, --pid PID         trace the pch-helper process PID (and its VM's faults)\n"
	"  -- COMMAND ARGS       run COMMAND (e.g. pch-migrate) and trace it and its\n"
	"                        children until it exits (neither: every process)\n"
	"      --vm PID          the VMM whose faults the helper serves (with -p; default:\n"
	"                        learnt from the first fault the helper reads)\n"
	"      --helper PATH     the pch-helper binary (default: beside pch-stages, or\n"
	"                        /proc/PID/exe with -p)\n"
	"      --source PATH     the pch-source binary (default: beside pch-stages; the\n"
	"                        source's split of the network stage needs it)\n"
	"  -i, --interval SECS   print the last interval's stages every SECS\n"
	"  -d, --duration SECS   stop after SECS\n"
	"      --json FILE       write the totals as JSON at exit\n"
	"  -v, --verbose         libbpf's messages\n"
	"  -h, --help            this help\n"
	"\n"
	"Exit status: 0; the COMMAND's status when it fails; 1 on error; 77 when BPF\n"
	"cannot be loaded here (no BTF, no permission, no uprobes).\n";

static const char *const stage_names[ST_NR] = {
	[ST_QUEUE] = "queue",
	[ST_DECIDE] = "decide",
	[ST_NETWORK] = "network",
	[ST_INSTALL] = "install",
	[ST_WAKE] = "wake",
	[ST_TOTAL] = "total",
	[ST_SRC_TO] = "to_source",
	[ST_SRC_SERVE] = "source",
	[ST_SRC_BACK] = "from_source",
};

#define MAX_LINKS 16

struct stages {
	struct tool_opts o;
	pid_t vm;
	const char *helper_path;
	const char *source_path;
	bool source_traced;
	struct stages_bpf *skel;
	struct bpf_link *links[MAX_LINKS];
	unsigned nlinks;
	struct lat_hist last[ST_NR]; /* totals at the previous interval */
	struct stages_counts last_counts;
};

enum { OPT_VM = 0x100, OPT_HELPER, OPT_SOURCE };

static int extra_opt(struct tool_opts *o, int c, const char *arg)
{
	struct stages *s = (struct stages *)o;
	char *end;
	long v;

	switch (c) {
	case OPT_VM:
		v = strtol(arg, &end, 10);
		if (end == arg || *end || v <= 0 || v > 0x3fffffff) {
			fprintf(stderr, "pch-stages: --vm: not a process id: %s\n", arg);
			exit(2);
		}
		s->vm = (pid_t)v;
		return 0;
	case OPT_HELPER:
		s->helper_path = arg;
		return 0;
	case OPT_SOURCE:
		s->source_path = arg;
		return 0;
	}
	return -1;
}

/* dir of our own binary + "/" + name, into buf; NULL when it is not there. */
static const char *beside_me(const char *name, char *buf, size_t len)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	if (n <= 0)
		return NULL;
	self[n] = '\0';
	snprintf(buf, len, "%s/%s", dirname(self), name);
	return access(buf, X_OK) ? NULL : buf;
}

/* The 24 QEMU buckets of h: slots from the last on folded into it. */
static void qemu_slots(const struct lat_hist *h, __u64 *out)
{
	unsigned i;

	for (i = 0; i < STAGES_LOG2_SLOTS; i++)
		out[i] = h->log2_us[i];
	for (; i < LAT_LOG2_SLOTS; i++)
		out[STAGES_LOG2_SLOTS - 1] += h->log2_us[i];
}

static double mean_us(const struct lat_hist *h)
{
	return h->count ? (double)h->sum_ns / (double)h->count / 1000.0 : 0.0;
}

static void print_table(const char *title, const struct lat_hist *h, const struct stages_counts *c,
			bool source)
{
	unsigned i;

	printf("%s: faults read %llu, with every stage %llu; served by bulk/other %llu "
	       "(before read %llu, no request %llu, raced %llu)\n",
	       title, (unsigned long long)c->reads, (unsigned long long)c->full,
	       (unsigned long long)(c->other_before_read + c->other_no_request + c->other_raced),
	       (unsigned long long)c->other_before_read, (unsigned long long)c->other_no_request,
	       (unsigned long long)c->other_raced);
	printf("  %-14s %10s %10s %10s %10s %10s  (us)\n", "stage", "count", "mean", "p50", "p99",
	       "max");
	for (i = 0; i < ST_NR; i++) {
		if (i >= ST_SRC_TO && !source)
			break;
		printf("  %s%-*s %10llu %10.1f %10.1f %10.1f %10.1f\n", i >= ST_SRC_TO ? "  " : "",
		       i >= ST_SRC_TO ? 12 : 14, stage_names[i], (unsigned long long)h[i].count,
		       mean_us(&h[i]), tool_quantile_us(&h[i], 0.5), tool_quantile_us(&h[i], 0.99),
		       h[i].max_ns / 1000.0);
	}
}

static void snapshot(struct stages *s, struct lat_hist *h, struct stages_counts *c)
{
	memcpy(h, s->skel->bss->hist, sizeof(s->skel->bss->hist));
	memcpy(c, &s->skel->bss->counts, sizeof(*c));
}

static void tick(void *arg)
{
	static struct lat_hist now[ST_NR], d[ST_NR];
	struct stages *s = arg;
	struct stages_counts c, dc;
	char title[64];
	time_t t = time(NULL);
	unsigned i, j;

	snapshot(s, now, &c);
	memset(d, 0, sizeof(d));
	for (i = 0; i < ST_NR; i++) {
		d[i].count = now[i].count - s->last[i].count;
		d[i].sum_ns = now[i].sum_ns - s->last[i].sum_ns;
		d[i].max_ns = now[i].max_ns; /* the interval's own max is not kept */
		for (j = 0; j < LAT_LOG2_SLOTS; j++)
			d[i].log2_us[j] = now[i].log2_us[j] - s->last[i].log2_us[j];
		for (j = 0; j < LAT_FINE_SLOTS; j++)
			d[i].fine[j] = now[i].fine[j] - s->last[i].fine[j];
	}
	/* the counters are all __u64: subtract field by field */
	for (i = 0; i < sizeof(c) / sizeof(__u64); i++)
		((__u64 *)&dc)[i] = ((__u64 *)&c)[i] - ((__u64 *)&s->last_counts)[i];
	strftime(title, sizeof(title), "%H:%M:%S", localtime(&t));
	print_table(title, d, &dc, s->source_traced);
	fflush(stdout);
	memcpy(s->last, now, sizeof(now));
	s->last_counts = c;
}

static void json_stage(FILE *f, const struct lat_hist *h)
{
	__u64 q[STAGES_LOG2_SLOTS];
	unsigned i;

	qemu_slots(h, q);
	fprintf(f, "{ \"count\": %llu, \"mean\": %.3f, \"p50\": %.3f, \"p90\": %.3f, "
		   "\"p99\": %.3f, \"max\": %.3f,\n      \"log2_us\": [",
		(unsigned long long)h->count, mean_us(h), tool_quantile_us(h, 0.5),
		tool_quantile_us(h, 0.9), tool_quantile_us(h, 0.99), h->max_ns / 1000.0);
	for (i = 0; i < STAGES_LOG2_SLOTS; i++)
		fprintf(f, "%s%llu", i ? ", " : "", (unsigned long long)q[i]);
	fprintf(f, "] }");
}

static int write_json(struct stages *s, const struct lat_hist *h, const struct stages_counts *c)
{
	FILE *f = fopen(s->o.json, "w");
	unsigned i;

	if (!f) {
		fprintf(stderr, "pch-stages: %s: %s\n", s->o.json, strerror(errno));
		return -1;
	}
	fprintf(f, "{\n  \"tool\": \"pch-stages\",\n  \"pid\": %d,\n  \"vm_pid\": %u,\n",
		(int)tool_target(&s->o), s->skel->bss->vm_tgid);
	fprintf(f, "  \"source_traced\": %s,\n", s->source_traced ? "true" : "false");
	fprintf(f, "  \"counts\": {\n");
#define C(x) fprintf(f, "    \"%s\": %llu,\n", #x, (unsigned long long)c->x)
	C(faults); C(reads); C(reads_matched); C(reads_unmatched); C(requests);
	C(requests_fault); C(arrived); C(src_received); C(full); C(no_wait);
	C(other_before_read); C(other_no_request); C(other_raced); C(abandoned);
	C(inconsistent);
#undef C
	fprintf(f, "    \"other\": %llu,\n    \"lost\": %llu\n  },\n",
		(unsigned long long)(c->other_before_read + c->other_no_request + c->other_raced),
		(unsigned long long)c->lost);
	fprintf(f, "  \"stages\": {\n");
	for (i = 0; i < ST_NR; i++) {
		fprintf(f, "    \"%s\": ", stage_names[i]);
		json_stage(f, &h[i]);
		fprintf(f, "%s\n", i + 1 < ST_NR ? "," : "");
	}
	fprintf(f, "  }\n}\n");
	if (fclose(f)) {
		fprintf(stderr, "pch-stages: %s: %s\n", s->o.json, strerror(errno));
		return -1;
	}
	return 0;
}

/* Attach prog to probe name of binary path, for pid (-1: every process). */
static int attach_usdt(struct stages *s, struct bpf_program *prog, pid_t pid, const char *path,
		       const char *name)
{
	struct bpf_link *l;
	char what[PATH_MAX + 64];

	if (s->nlinks == MAX_LINKS)
		return -ENOSPC;
	l = bpf_program__attach_usdt(prog, pid, path, "pch", name, NULL);
	if (!l) {
		int err = -errno;

		snprintf(what, sizeof(what), "attach to USDT pch:%s of %s", name, path);
		if (err == -ENOENT)
			fprintf(stderr, "pch-stages: %s: no such probe (built without <sys/sdt.h>?)\n",
				what);
		tool_load_failed(&s->o, what, err);
	}
	s->links[s->nlinks++] = l;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longs[] = {
		{ "vm", required_argument, NULL, OPT_VM },
		{ "helper", required_argument, NULL, OPT_HELPER },
		{ "source", required_argument, NULL, OPT_SOURCE },
		{ NULL, 0, NULL, 0 },
	};
	static struct stages s = { .o = { .name = "pch-stages" } };
	static struct lat_hist total[ST_NR];
	char hbuf[PATH_MAX], sbuf[PATH_MAX];
	struct stages_counts c;
	pid_t target, hpid;
	__u8 one = 1;
	unsigned i;
	int err, rc;

	tool_parse(&s.o, argc, argv, usage, "", longs, extra_opt);
	if (s.vm && !s.o.pid) {
		fprintf(stderr, "pch-stages: --vm goes with -p\n");
		return 2;
	}
	if (!s.helper_path) {
		if (s.o.pid) {
			/* the binary's own path, read now: /proc/PID/exe lasts only
			 * as long as the process, and loading the programs can take
			 * seconds on a busy machine */
			char link[64];
			ssize_t n;

			snprintf(link, sizeof(link), "/proc/%d/exe", (int)s.o.pid);
			n = readlink(link, hbuf, sizeof(hbuf) - 1);
			if (n <= 0 || n >= (ssize_t)sizeof(hbuf) - 1) {
				fprintf(stderr, "pch-stages: -p %d: %s: %s\n", (int)s.o.pid, link,
					n < 0 ? strerror(errno) : "path too long");
				return TOOL_EXIT_ERR;
			}
			hbuf[n] = '\0';
			s.helper_path = hbuf;
		} else {
			s.helper_path = beside_me("pch-helper", hbuf, sizeof(hbuf));
		}
	}
	if (!s.helper_path || access(s.helper_path, R_OK)) {
		fprintf(stderr, "pch-stages: no pch-helper binary to attach to%s%s; use --helper PATH\n",
			s.helper_path ? ": " : "", s.helper_path ? s.helper_path : "");
		return TOOL_EXIT_ERR;
	}
	if (!s.source_path)
		s.source_path = beside_me("pch-source", sbuf, sizeof(sbuf));
	else if (access(s.source_path, R_OK)) {
		fprintf(stderr, "pch-stages: --source %s: %s\n", s.source_path, strerror(errno));
		return TOOL_EXIT_ERR;
	}
	tool_prepare(&s.o);
	tool_fork_child(&s.o);
	target = tool_target(&s.o);

	s.skel = stages_bpf__open();
	if (!s.skel)
		tool_load_failed(&s.o, "open the BPF object", errno);
	s.skel->rodata->follow_children = s.o.cmd != NULL;
	s.skel->rodata->trace_all = !target;
	/* -p attaches to the helper's pid; the source (any) is matched by request id */
	s.skel->rodata->usdt_filter = s.o.cmd != NULL;
	s.skel->rodata->learn_vm = s.o.pid && !s.vm;
	err = stages_bpf__load(s.skel);
	if (err)
		tool_load_failed(&s.o, "load the BPF programs", err);
	for (i = 0; i < 2; i++) {
		__u32 k = (__u32)(i ? s.vm : target);

		if (!k)
			continue;
		err = bpf_map__update_elem(s.skel->maps.targets, &k, sizeof(k), &one, sizeof(one),
					   BPF_ANY);
		if (err)
			tool_load_failed(&s.o, "set the target", err);
	}
	if (s.vm)
		s.skel->bss->vm_tgid = (__u32)s.vm;
	/* tracepoints (the USDT programs, SEC("usdt") without a target, are left alone) */
	err = stages_bpf__attach(s.skel);
	if (err)
		tool_load_failed(&s.o, "attach to the tracepoints", err);
	hpid = s.o.pid ? s.o.pid : -1;
	attach_usdt(&s, s.skel->progs.fault_read, hpid, s.helper_path, "fault_read");
	attach_usdt(&s, s.skel->progs.request_sent, hpid, s.helper_path, "request_sent");
	attach_usdt(&s, s.skel->progs.page_arrived, hpid, s.helper_path, "page_arrived");
	attach_usdt(&s, s.skel->progs.page_installed, hpid, s.helper_path, "page_installed");
	if (s.source_path) {
		attach_usdt(&s, s.skel->progs.request_received, -1, s.source_path,
			    "request_received");
		attach_usdt(&s, s.skel->progs.page_sent, -1, s.source_path, "page_sent");
		s.source_traced = true;
	}
	if (!s.o.cmd)
		fprintf(stderr, "pch-stages: tracing the faults served by %s%s; Ctrl-C ends\n",
			s.helper_path, s.source_traced ? " (and its source)" : "");
	tool_start_child(&s.o);

	rc = tool_run(&s.o, tick, &s);

	snapshot(&s, total, &c);
	print_table("total", total, &c, s.source_traced);
	for (i = 0; i < ST_NR; i++) {
		__u64 q[STAGES_LOG2_SLOTS];

		if (i >= ST_SRC_TO && !s.source_traced)
			break;
		printf("\n%s:\n", stage_names[i]);
		qemu_slots(&total[i], q);
		tool_print_log2(stdout, q, STAGES_LOG2_SLOTS);
	}
	printf("\nfaults seen %llu; fault reads %llu: matched %llu, unmatched %llu; requests %llu "
	       "(for faults %llu); URGENT answers %llu; faulted again before served %llu; "
	       "table full %llu; inconsistent (not recorded) %llu\n",
	       (unsigned long long)c.faults, (unsigned long long)c.reads,
	       (unsigned long long)c.reads_matched, (unsigned long long)c.reads_unmatched,
	       (unsigned long long)c.requests, (unsigned long long)c.requests_fault,
	       (unsigned long long)c.arrived, (unsigned long long)c.abandoned,
	       (unsigned long long)c.lost, (unsigned long long)c.inconsistent);
	if (s.o.json && write_json(&s, total, &c))
		rc = rc ? rc : TOOL_EXIT_ERR;
	for (i = 0; i < s.nlinks; i++)
		bpf_link__destroy(s.links[i]);
	stages_bpf__destroy(s.skel);
	return rc;
}
