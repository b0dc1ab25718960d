// SPDX-License-Identifier: MIT
/*
 * uffdtop.c - pch-uffdtop: once a second, per process, the userfaultfd
 * ioctls by type and result, user page faults and io_uring completions of
 * the last interval; totals at exit, and --json.
 */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pch/uffd-compat.h"
#include "uffdtop.h"
#include "uffdtop.skel.h"
#include "tool.h"

static const char usage[] =
	"Usage: pch-uffdtop [OPTIONS] [-p PID | -- COMMAND [ARGS...]]\n"
	"\n"
	"A live view of userfaultfd ioctls (COPY, ZEROPAGE, CONTINUE, WAKE, POISON, MOVE)\n"
	"by result (ok, EEXIST, EAGAIN, other), user page faults and io_uring\n"
	"completions, per process, from tracepoints only.\n"
	"\n"
	"  -p, --pid PID         trace this process and its threads\n"
	"  -- COMMAND ARGS       run COMMAND and trace it and its children until it exits\n"
	"                        (neither: every process)\n"
	"  -i, --interval SECS   print every SECS (default 1; 0: only totals at exit)\n"
	"  -d, --duration SECS   stop after SECS\n"
	"  -n, --top N           the N busiest processes per block (default 10; 0: all)\n"
	"      --json FILE       write the totals as JSON at exit\n"
	"  -v, --verbose         libbpf's messages\n"
	"  -h, --help            this help\n"
	"\n"
	"Exit status: 0; the COMMAND's status when it fails; 1 on error; 77 when BPF\n"
	"cannot be loaded here (no BTF, no permission).\n";

static const char *const kind_name[UT_NKIND] = {
	[UT_COPY] = "COPY", [UT_ZEROPAGE] = "ZEROPAGE", [UT_CONTINUE] = "CONTINUE",
	[UT_WAKE] = "WAKE", [UT_POISON] = "POISON",     [UT_MOVE] = "MOVE",
	[UT_FAULT] = "faults", [UT_CQE] = "io_uring_cqes",
};
static const char *const result_name[UR_N] = { "ok", "eexist", "eagain", "other" };

/* per process, what the counts map holds, by kind and result */
struct proc {
	__u32 tgid;
	struct uffdtop_val v[UT_NKIND][UR_N];
};

struct table {
	struct proc *p;
	size_t n, cap;
};

struct uffdtop {
	struct tool_opts o;
	size_t top; /* -n: rows of processes per block, 0: all */
	struct uffdtop_bpf *skel;
	struct table last;
};

static int extra_opt(struct tool_opts *o, int c, const char *arg)
{
	struct uffdtop *u = (struct uffdtop *)o;
	char *end;
	unsigned long v;

	if (c != 'n')
		return -1;
	v = strtoul(arg, &end, 10);
	if (end == arg || *end || v > 1000000) {
		fprintf(stderr, "pch-uffdtop: -n: not a number of processes: %s\n", arg);
		exit(2);
	}
	u->top = v;
	return 0;
}

static struct proc *proc_of(struct table *t, __u32 tgid)
{
	size_t i;

	for (i = 0; i < t->n; i++)
		if (t->p[i].tgid == tgid)
			return &t->p[i];
	if (t->n == t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 16;
		struct proc *a = realloc(t->p, cap * sizeof(*a));

		if (!a)
			return NULL;
		t->p = a;
		t->cap = cap;
	}
	memset(&t->p[t->n], 0, sizeof(t->p[0]));
	t->p[t->n].tgid = tgid;
	return &t->p[t->n++];
}

static void read_table(struct uffdtop *u, struct table *t)
{
	int fd = bpf_map__fd(u->skel->maps.counts);
	struct uffdtop_key k, next, *prev = NULL;
	struct uffdtop_val v;

	t->n = 0;
	while (!bpf_map_get_next_key(fd, prev, &next)) {
		struct proc *p;

		k = next;
		prev = &k;
		if (bpf_map_lookup_elem(fd, &k, &v) || k.kind >= UT_NKIND || k.result >= UR_N)
			continue;
		p = proc_of(t, k.tgid);
		if (p)
			p->v[k.kind][k.result] = v;
	}
}

/* The name the BPF side saw, else /proc's. */
static void comm_of(struct uffdtop *u, __u32 tgid, char *buf, size_t len)
{
	char c[16];

	if (!bpf_map__lookup_elem(u->skel->maps.comms, &tgid, sizeof(tgid), c, sizeof(c), 0)) {
		snprintf(buf, len, "%.*s", (int)sizeof(c), c);
		return;
	}
	tool_comm((pid_t)tgid, buf, len);
}

static __u64 sum(const struct proc *p, unsigned kind)
{
	__u64 s = 0;
	unsigned r;

	for (r = 0; r < UR_N; r++)
		s += p->v[kind][r].count;
	return s;
}

/* How busy a process was, for the order of the rows: uffd ioctls first. */
static void activity(const struct proc *p, __u64 key[3])
{
	unsigned k;

	key[0] = 0;
	for (k = 0; k < UT_NIOCTL; k++)
		key[0] += sum(p, k);
	key[1] = sum(p, UT_CQE);
	key[2] = sum(p, UT_FAULT);
}

static int busier_first(const void *a, const void *b)
{
	__u64 x[3], y[3];
	unsigned i;

	activity(a, x);
	activity(b, y);
	for (i = 0; i < 3; i++)
		if (x[i] != y[i])
			return x[i] > y[i] ? -1 : 1;
	return ((const struct proc *)a)->tgid < ((const struct proc *)b)->tgid ? -1 : 1;
}

static void print_proc(struct uffdtop *u, const struct proc *d)
{
	bool first = true;
	char comm[32];
	unsigned k, r;

	comm_of(u, d->tgid, comm, sizeof(comm));
	for (k = 0; k < UT_NKIND; k++) {
		__u64 bytes = 0;

		if (!sum(d, k))
			continue;
		for (r = 0; r < UR_N; r++)
			bytes += d->v[k][r].bytes;
		if (first)
			printf("%-8u %-16s ", d->tgid, comm);
		else
			printf("%-8s %-16s ", "", "");
		first = false;
		if (k >= UT_NIOCTL)
			printf("%-9s %10llu %8s %8s %8llu\n", k == UT_FAULT ? "faults" : "cqes",
			       (unsigned long long)d->v[k][UR_OK].count, "", "",
			       (unsigned long long)d->v[k][UR_OTHER].count);
		else
			printf("%-9s %10llu %8llu %8llu %8llu %10.1f\n", kind_name[k],
			       (unsigned long long)d->v[k][UR_OK].count,
			       (unsigned long long)d->v[k][UR_EEXIST].count,
			       (unsigned long long)d->v[k][UR_EAGAIN].count,
			       (unsigned long long)d->v[k][UR_OTHER].count, bytes / 1048576.0);
	}
}

/*
 * Print now - base (base NULL: the totals): the processes that did
 * something, busiest first (uffd ioctls, then completions, then faults),
 * at most -n of them and a line for the rest.
 */
static void print_table(struct uffdtop *u, const struct table *now, const struct table *base,
			const char *title)
{
	struct proc *d = calloc(now->n ? now->n : 1, sizeof(*d));
	__u64 rest_faults = 0, rest_cqes = 0, rest_ioctls = 0;
	size_t i, n = 0;

	printf("%s\n%-8s %-16s %-9s %10s %8s %8s %8s %10s\n", title, "PID", "COMM", "WHAT", "OK",
	       "EEXIST", "EAGAIN", "OTHER", "MiB");
	if (!d) {
		printf("(out of memory)\n");
		return;
	}
	for (i = 0; i < now->n; i++) {
		struct proc *p = &d[n];
		__u64 key[3];
		unsigned k, r;
		size_t j;

		*p = now->p[i];
		for (j = 0; base && j < base->n; j++) {
			if (base->p[j].tgid != p->tgid)
				continue;
			for (k = 0; k < UT_NKIND; k++)
				for (r = 0; r < UR_N; r++) {
					p->v[k][r].count -= base->p[j].v[k][r].count;
					p->v[k][r].bytes -= base->p[j].v[k][r].bytes;
				}
		}
		activity(p, key);
		if (key[0] || key[1] || key[2])
			n++;
	}
	qsort(d, n, sizeof(*d), busier_first);
	for (i = 0; i < n; i++) {
		__u64 key[3];

		if (!u->top || i < u->top) {
			print_proc(u, &d[i]);
			continue;
		}
		activity(&d[i], key);
		rest_ioctls += key[0];
		rest_cqes += key[1];
		rest_faults += key[2];
	}
	if (u->top && n > u->top)
		printf("(%zu more processes: %llu uffd ioctls, %llu cqes, %llu faults; -n 0 lists all)\n",
		       n - u->top, (unsigned long long)rest_ioctls, (unsigned long long)rest_cqes,
		       (unsigned long long)rest_faults);
	free(d);
	fflush(stdout);
}

static void tick(void *arg)
{
	struct uffdtop *u = arg;
	struct table now = { 0 };
	char title[64];
	time_t t = time(NULL);

	read_table(u, &now);
	strftime(title, sizeof(title), "%H:%M:%S", localtime(&t));
	print_table(u, &now, &u->last, title);
	free(u->last.p);
	u->last = now;
}

static int write_json(struct uffdtop *u, const char *path, const struct table *t)
{
	FILE *f = fopen(path, "w");
	size_t i;

	if (!f) {
		fprintf(stderr, "pch-uffdtop: %s: %s\n", path, strerror(errno));
		return -1;
	}
	fprintf(f, "{\n  \"tool\": \"pch-uffdtop\",\n  \"processes\": [");
	for (i = 0; i < t->n; i++) {
		const struct proc *p = &t->p[i];
		char comm[32];
		unsigned k, r;

		comm_of(u, p->tgid, comm, sizeof(comm));
		fprintf(f, "%s\n    {\n      \"pid\": %u,\n      \"comm\": \"%s\",\n", i ? "," : "",
			p->tgid, strpbrk(comm, "\"\\") ? "?" : comm);
		fprintf(f, "      \"faults\": %llu,\n", (unsigned long long)sum(p, UT_FAULT));
		fprintf(f, "      \"io_uring_cqes\": %llu,\n      \"io_uring_cqe_errors\": %llu,\n",
			(unsigned long long)sum(p, UT_CQE),
			(unsigned long long)p->v[UT_CQE][UR_OTHER].count);
		fprintf(f, "      \"ioctls\": {");
		for (k = 0; k < UT_NIOCTL; k++) {
			__u64 bytes = 0;

			fprintf(f, "%s\n        \"%s\": { \"count\": %llu", k ? "," : "", kind_name[k],
				(unsigned long long)sum(p, k));
			for (r = 0; r < UR_N; r++) {
				bytes += p->v[k][r].bytes;
				fprintf(f, ", \"%s\": %llu", result_name[r],
					(unsigned long long)p->v[k][r].count);
			}
			fprintf(f, ", \"bytes\": %llu }", (unsigned long long)bytes);
		}
		fprintf(f, "\n      }\n    }");
	}
	fprintf(f, "\n  ]\n}\n");
	if (fclose(f)) {
		fprintf(stderr, "pch-uffdtop: %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longs[] = {
		{ "top", required_argument, NULL, 'n' },
		{ NULL, 0, NULL, 0 },
	};
	struct uffdtop u = { .o = { .name = "pch-uffdtop", .interval_s = 1 }, .top = 10 };
	struct table total = { 0 };
	pid_t target;
	int rc;

	tool_parse(&u.o, argc, argv, usage, "n:", longs, extra_opt);
	tool_prepare(&u.o);
	tool_fork_child(&u.o);
	target = tool_target(&u.o);

	u.skel = uffdtop_bpf__open();
	if (!u.skel)
		tool_load_failed(&u.o, "open the BPF object", errno);
	u.skel->rodata->follow_children = u.o.cmd != NULL;
	u.skel->rodata->trace_all = !target;
	u.skel->rodata->cmd[UT_COPY] = UFFDIO_COPY;
	u.skel->rodata->cmd[UT_ZEROPAGE] = UFFDIO_ZEROPAGE;
	u.skel->rodata->cmd[UT_CONTINUE] = UFFDIO_CONTINUE;
	u.skel->rodata->cmd[UT_WAKE] = UFFDIO_WAKE;
	u.skel->rodata->cmd[UT_POISON] = UFFDIO_POISON;
	u.skel->rodata->cmd[UT_MOVE] = UFFDIO_MOVE;
	tool_load_attach(&u.o, u.skel->skeleton, "");

	rc = tool_run(&u.o, tick, &u);

	read_table(&u, &total);
	print_table(&u, &total, NULL, "total");
	if (u.skel->bss->dropped)
		fprintf(stderr, "pch-uffdtop: %llu events not counted (table full)\n",
			(unsigned long long)u.skel->bss->dropped);
	if (u.o.json && write_json(&u, u.o.json, &total))
		rc = rc ? rc : TOOL_EXIT_ERR;
	free(total.p);
	free(u.last.p);
	uffdtop_bpf__destroy(u.skel);
	return rc;
}
