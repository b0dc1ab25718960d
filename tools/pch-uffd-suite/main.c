// SPDX-License-Identifier: MIT
/*
 * pch-uffd-suite - userfaultfd behaviour tests in KTAP.
 *
 *   pch-uffd-suite [--list] [--run PATTERN]... [--quick] [--json FILE]
 *                  [--timeout SECONDS] [--threads N] [--mib M] [--seconds S]
 *                  [--latency] [--faults N]
 *
 * Each case runs once per memory kind it applies to, in a forked child with a
 * deadline: a hung case is killed and reported "not ok ... # TIMEOUT", a
 * crashed one "not ok ... # CRASH".  A case whose needs the feature probe does
 * not find is skipped naming what is missing.  Exit status 0 when nothing
 * failed, 1 otherwise, 2 on bad usage.
 *
 * After the cases, the lat/ cases' numbers are printed as a table of "#"
 * lines (a row per resolving ioctl and memory kind, a column per reading
 * path, p50/p99/max µs per fault), before the Totals line, and as a
 * "latency" object in the JSON (rows keyed "ioctl/kind").
 */
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "suite.h"

#define MAX_PATTERNS 16

unsigned us_opt_threads, us_opt_mib, us_opt_seconds, us_opt_faults;

struct inst {
	const struct us_case *c;
	enum us_kind kind;
	char name[96];
};

/* what a child sends back through its pipe */
struct report {
	int result;
	char reason[200];
	int nmetrics;
	struct us_metric m[US_MAX_METRICS];
};

uint64_t us_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

int us_fail(struct us_ctx *ctx, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(ctx->reason, sizeof(ctx->reason), fmt, ap);
	va_end(ap);
	return US_FAIL;
}

int us_skip(struct us_ctx *ctx, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(ctx->reason, sizeof(ctx->reason), fmt, ap);
	va_end(ap);
	return US_SKIP;
}

/*
 * Raw open/read, no stdio: glibc's fork() holds the malloc and stdio locks
 * while the kernel waits for the FORK event to be read, so the handler must
 * not allocate or fopen until it has read it.
 */
char us_thread_state(pid_t tid)
{
	char path[64], buf[256], *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return '?';
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return '?';
	buf[n] = '\0';
	p = strrchr(buf, ')');
	return p && p[1] && p[2] ? p[2] : '?';
}

int us_read_msgs(int uffd, int stopfd, struct uffd_msg *msgs, int max, char *why, size_t len)
{
	for (;;) {
		struct pollfd p[2] = { { .fd = uffd, .events = POLLIN },
				       { .fd = stopfd, .events = POLLIN } };
		ssize_t n;

		if (poll(p, 2, 200) < 0 && errno != EINTR) {
			snprintf(why, len, "poll: %s", strerror(errno));
			return -1;
		}
		if (p[1].revents)
			return 0;
		if (!(p[0].revents & POLLIN))
			continue;
		n = read(uffd, msgs, (size_t)max * sizeof(msgs[0]));
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			snprintf(why, len, "read uffd: %s", strerror(errno));
			return -1;
		}
		if (n > 0)
			return (int)(n / (ssize_t)sizeof(msgs[0]));
	}
}

void us_seterr(atomic_bool *set, char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (atomic_exchange(set, true))
		return;
	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
}

void us_diag(const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	printf("# %s\n", buf);
	fflush(stdout);
}

void us_metric(struct us_ctx *ctx, const char *name, double value)
{
	if (ctx->nmetrics >= US_MAX_METRICS)
		return;
	snprintf(ctx->m[ctx->nmetrics].name, sizeof(ctx->m[0].name), "%s", name);
	ctx->m[ctx->nmetrics++].value = value;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: pch-uffd-suite [--list] [--run PATTERN]... [--quick] [--json FILE]\n"
		"                      [--timeout SECONDS]\n"
		"  --list            print the case names (category/case/kind) and exit\n"
		"  --run PATTERN     run the cases matching the glob (on category/case/kind;\n"
		"                    PATTERN also matches everything below it: --run missing)\n"
		"  --quick           short runs of the same cases\n"
		"  --json FILE       write the results as JSON to FILE\n"
		"  --timeout S       kill a case after S seconds (default 30, 15 with --quick)\n"
		"  --threads N       stress/: faulting threads (default 4, 2 with --quick)\n"
		"  --mib M           stress/: area size in MiB (default 64, 4 with --quick;\n"
		"                    hugetlb: as many huge pages of it as are free)\n"
		"  --seconds S       stress/: run time (default 5, 1 with --quick)\n"
		"  --latency         run the lat/ cases (those --run selects, if given),\n"
		"                    10000 faults each, and print the latency table\n"
		"  --faults N        lat/: faults per case (default 2000, 200 with --quick;\n"
		"                    hugetlb kinds: a tenth, default 200, 32 with --quick)\n");
}

static bool selected(const char *name, char **pats, int npats)
{
	char buf[160];

	if (npats == 0)
		return true;
	for (int i = 0; i < npats; i++) {
		if (!fnmatch(pats[i], name, 0))
			return true;
		snprintf(buf, sizeof(buf), "%s/*", pats[i]);
		if (!fnmatch(buf, name, 0))
			return true;
	}
	return false;
}

/* child side: run the case, send the report, never return */
static void __attribute__((noreturn)) run_child(const struct inst *in, const struct us_probe *p,
						bool quick, int wfd)
{
	struct us_ctx ctx = { .c = in->c, .kind = in->kind, .probe = p, .quick = quick };
	struct report r;

	alarm(0);
	r.result = in->c->fn(&ctx);
	snprintf(r.reason, sizeof(r.reason), "%s", ctx.reason);
	r.nmetrics = ctx.nmetrics;
	memcpy(r.m, ctx.m, sizeof(r.m));
	fflush(stdout);
	if (write(wfd, &r, sizeof(r)) != sizeof(r))
		_exit(3);
	_exit(0);
}

/* parent side: run one instance in a child with a deadline */
static void run_inst(const struct inst *in, const struct us_probe *p, bool quick, int timeout_s,
		     struct report *r)
{
	int fds[2], status;
	pid_t pid;
	ssize_t n;
	struct pollfd pfd;
	uint64_t deadline = us_now_us() + (uint64_t)timeout_s * 1000000;

	memset(r, 0, sizeof(*r));
	if (pipe2(fds, O_CLOEXEC) < 0) {
		r->result = US_CRASH;
		snprintf(r->reason, sizeof(r->reason), "pipe: %s", strerror(errno));
		return;
	}
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		r->result = US_CRASH;
		snprintf(r->reason, sizeof(r->reason), "fork: %s", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return;
	}
	if (pid == 0) {
		close(fds[0]);
		run_child(in, p, quick, fds[1]);
	}
	close(fds[1]);
	pfd = (struct pollfd){ .fd = fds[0], .events = POLLIN };
	n = 0;
	for (;;) {
		uint64_t now = us_now_us();
		int ret;

		if (now >= deadline)
			break;
		ret = poll(&pfd, 1, (int)((deadline - now) / 1000) + 1);
		if (ret < 0 && errno == EINTR)
			continue;
		if (ret > 0)
			n = read(fds[0], r, sizeof(*r));
		break;
	}
	close(fds[0]);
	if (n == (ssize_t)sizeof(*r)) {
		waitpid(pid, &status, 0);
		return;
	}
	if (us_now_us() >= deadline) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		r->result = US_TIMEOUT;
		snprintf(r->reason, sizeof(r->reason), "killed after %d s", timeout_s);
		return;
	}
	/* the child closed its pipe without a report: it died */
	waitpid(pid, &status, 0);
	r->result = US_CRASH;
	if (WIFSIGNALED(status))
		snprintf(r->reason, sizeof(r->reason), "killed by signal %d (%s)", WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
	else
		snprintf(r->reason, sizeof(r->reason), "exited %d without a result",
			 WEXITSTATUS(status));
}

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

static const char *result_name(int r)
{
	switch (r) {
	case US_PASS: return "pass";
	case US_FAIL: return "fail";
	case US_SKIP: return "skip";
	case US_TIMEOUT: return "timeout";
	}
	return "crash";
}

static void print_probe(const struct us_probe *p)
{
	if (!p->uffd_ok) {
		us_diag("probe: %s", p->uffd_why);
		return;
	}
	us_diag("probe: syscall %s, /dev/userfaultfd %s, features 0x%llx, api ioctls 0x%llx",
		p->syscall_ok ? "yes" : "no", p->dev_ok ? "yes" : "no",
		(unsigned long long)p->features, (unsigned long long)p->api_ioctls);
	for (int k = 0; k < US_NKINDS; k++) {
		if (!p->kind_ok[k]) {
			us_diag("probe: %s: %s", us_kind_name(k), p->kind_why[k]);
			continue;
		}
		char buf[256];
		size_t off = 0;

		for (int m = 0; m < US_NMODES; m++) {
			static const char *const mn[] = { "MISSING", "WP", "MINOR" };

			if (p->reg_err[k][m])
				off += snprintf(buf + off, sizeof(buf) - off, " %s:%s", mn[m],
						strerror(p->reg_err[k][m]));
			else
				off += snprintf(buf + off, sizeof(buf) - off, " %s:0x%llx", mn[m],
						(unsigned long long)p->reg_ioctls[k][m]);
		}
		us_diag("probe: %s: register ioctls%s", us_kind_name(k), buf);
	}
}

/*
 * The latency table: lat/<ioctl>-<path> cases on each memory kind, a row per
 * (resolving ioctl (and copy-proc), kind), grouped by ioctl in the order of
 * the case table, a column per reading path.
 */
#define LAT_MAXROW 40
#define LAT_MAXCOL 8

struct lat_table {
	char row[LAT_MAXROW][40], col[LAT_MAXCOL][16]; /* row: "ioctl/kind" */
	char ioctl[LAT_MAXROW][24], kind[LAT_MAXROW][24];
	int nrow, ncol;
	bool huge[LAT_MAXROW];
	bool have[LAT_MAXROW][LAT_MAXCOL];
	double v[LAT_MAXROW][LAT_MAXCOL][3]; /* p50, p99, max */
	const char *why[LAT_MAXROW][LAT_MAXCOL]; /* not measured: skip/fail */
	double faults[LAT_MAXROW];
};

/* the index of name in a table of n names of width bytes, added if new */
static int lat_index(char *names, size_t width, int *n, int max, const char *name)
{
	for (int i = 0; i < *n; i++)
		if (!strcmp(names + (size_t)i * width, name))
			return i;
	if (*n == max)
		return -1;
	snprintf(names + (size_t)*n * width, width, "%s", name);
	return (*n)++;
}

static double metric(const struct report *r, const char *name, bool *found)
{
	for (int m = 0; m < r->nmetrics && m < US_MAX_METRICS; m++)
		if (!strcmp(r->m[m].name, name)) {
			*found = true;
			return r->m[m].value;
		}
	*found = false;
	return 0;
}

static void lat_add(struct lat_table *t, const struct inst *in, const struct report *r)
{
	char ioctl[24], row[40], *dash;
	int ri, ci;
	bool f50, f99, fmax, ff;

	if (strcmp(in->c->cat, "lat") || in->kind == US_KIND_NONE)
		return;
	snprintf(ioctl, sizeof(ioctl), "%s", in->c->name);
	dash = strrchr(ioctl, '-');
	if (!dash)
		return;
	*dash = '\0';
	snprintf(row, sizeof(row), "%s/%s", ioctl, us_kind_name(in->kind));
	/* rows in the case table's order: kinds come together under their ioctl */
	ri = lat_index(t->row[0], sizeof(t->row[0]), &t->nrow, LAT_MAXROW, row);
	ci = lat_index(t->col[0], sizeof(t->col[0]), &t->ncol, LAT_MAXCOL, dash + 1);
	if (ri < 0 || ci < 0)
		return;
	snprintf(t->ioctl[ri], sizeof(t->ioctl[ri]), "%s", ioctl);
	snprintf(t->kind[ri], sizeof(t->kind[ri]), "%s", us_kind_name(in->kind));
	t->huge[ri] = in->kind == US_HUGETLB || in->kind == US_HUGETLB_SHARED;
	if (r->result != US_PASS) {
		t->why[ri][ci] = result_name(r->result);
		return;
	}
	t->v[ri][ci][0] = metric(r, "p50_us", &f50);
	t->v[ri][ci][1] = metric(r, "p99_us", &f99);
	t->v[ri][ci][2] = metric(r, "max_us", &fmax);
	t->have[ri][ci] = f50 && f99 && fmax;
	double n = metric(r, "faults", &ff);

	if (ff && n > t->faults[ri])
		t->faults[ri] = n;
}

/* the most faults a cell of a (non-)hugetlb row had */
static double lat_faults(const struct lat_table *t, bool huge)
{
	double n = 0;

	for (int r = 0; r < t->nrow; r++)
		if (t->huge[r] == huge && t->faults[r] > n)
			n = t->faults[r];
	return n;
}

static void lat_print(const struct lat_table *t)
{
	double nsmall = lat_faults(t, false), nhuge = lat_faults(t, true);
	char line[256], hl[64] = "";
	size_t off;

	if (!t->nrow)
		return;
	if (nhuge && nsmall && nhuge != nsmall)
		snprintf(hl, sizeof(hl), " (%.0f on hugetlb kinds)", nhuge);
	us_diag("latency: fault round trip in us, p50/p99/max, %.0f faults per cell%s",
		nsmall ? nsmall : nhuge, hl);
	off = (size_t)snprintf(line, sizeof(line), "%-28s", "ioctl (kind) \\ read by");
	for (int c = 0; c < t->ncol; c++)
		off += (size_t)snprintf(line + off, sizeof(line) - off, " %20s", t->col[c]);
	us_diag("%s", line);
	for (int r = 0; r < t->nrow; r++) {
		char label[64];

		snprintf(label, sizeof(label), "%s (%s)", t->ioctl[r], t->kind[r]);
		off = (size_t)snprintf(line, sizeof(line), "%-28s", label);
		for (int c = 0; c < t->ncol && off < sizeof(line); c++) {
			char cell[64];

			if (t->have[r][c])
				snprintf(cell, sizeof(cell), "%.1f/%.1f/%.0f", t->v[r][c][0],
					 t->v[r][c][1], t->v[r][c][2]);
			else
				snprintf(cell, sizeof(cell), "%s", t->why[r][c] ? t->why[r][c] : "-");
			off += (size_t)snprintf(line + off, sizeof(line) - off, " %20s", cell);
		}
		us_diag("%s", line);
	}
}

static void lat_json(FILE *f, const struct lat_table *t)
{
	double nsmall = lat_faults(t, false);

	fprintf(f, ",\"latency\":{\"unit\":\"us\",\"faults\":%.0f,\"rows\":{",
		nsmall ? nsmall : lat_faults(t, true));
	for (int r = 0; r < t->nrow; r++) {
		fprintf(f, "%s", r ? "," : "");
		json_str(f, t->row[r]);
		fprintf(f, ":{\"ioctl\":");
		json_str(f, t->ioctl[r]);
		fprintf(f, ",\"kind\":\"%s\",\"faults\":%.0f", t->kind[r], t->faults[r]);
		for (int c = 0; c < t->ncol; c++) {
			if (!t->have[r][c])
				continue;
			fprintf(f, ",");
			json_str(f, t->col[c]);
			fprintf(f, ":{\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f}", t->v[r][c][0],
				t->v[r][c][1], t->v[r][c][2]);
		}
		fprintf(f, "}");
	}
	fprintf(f, "}}");
}

static void restore_and_die(int sig)
{
	us_hugepages_restore();
	signal(sig, SIG_DFL);
	raise(sig);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "list", no_argument, NULL, 'l' },
		{ "run", required_argument, NULL, 'r' },
		{ "quick", no_argument, NULL, 'q' },
		{ "json", required_argument, NULL, 'j' },
		{ "timeout", required_argument, NULL, 't' },
		{ "threads", required_argument, NULL, 'T' },
		{ "mib", required_argument, NULL, 'M' },
		{ "seconds", required_argument, NULL, 'S' },
		{ "latency", no_argument, NULL, 'L' },
		{ "faults", required_argument, NULL, 'F' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	char *pats[MAX_PATTERNS];
	int npats = 0, opt, timeout_s = 0;
	bool list = false, quick = false, want_huge = false, latency = false;
	static struct lat_table lt;
	const char *json_path = NULL;
	struct inst *insts;
	size_t ninst = 0;
	struct us_probe probe;
	unsigned tot[US_CRASH + 1] = { 0 };
	FILE *jf = NULL;

	while ((opt = getopt_long(argc, argv, "lr:qj:t:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'l': list = true; break;
		case 'r':
			if (npats == MAX_PATTERNS) {
				fprintf(stderr, "pch-uffd-suite: at most %d --run\n", MAX_PATTERNS);
				return 2;
			}
			pats[npats++] = optarg;
			break;
		case 'q': quick = true; break;
		case 'j': json_path = optarg; break;
		case 't': timeout_s = atoi(optarg); break;
		case 'T': us_opt_threads = (unsigned)atoi(optarg); break;
		case 'M': us_opt_mib = (unsigned)atoi(optarg); break;
		case 'S': us_opt_seconds = (unsigned)atoi(optarg); break;
		case 'F': us_opt_faults = (unsigned)atoi(optarg); break;
		case 'L': latency = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (timeout_s <= 0)
		timeout_s = quick ? 15 : 30;
	if (latency) {
		/* only the numbers, with more samples (--run may choose among them) */
		if (!npats)
			pats[npats++] = "lat";
		if (!us_opt_faults)
			us_opt_faults = 10000;
	}

	insts = calloc(us_ncases * (US_NKINDS + 1), sizeof(*insts));
	if (!insts)
		return 1;
	for (size_t i = 0; i < us_ncases; i++) {
		const struct us_case *c = &us_cases[i];

		for (int k = 0; k <= US_NKINDS; k++) {
			struct inst *in = &insts[ninst];

			if (c->kinds ? (k == US_NKINDS || !(c->kinds & US_K(k))) : k != US_NKINDS)
				continue;
			in->c = c;
			in->kind = (enum us_kind)k;
			if (k == US_NKINDS)
				snprintf(in->name, sizeof(in->name), "%s/%s", c->cat, c->name);
			else
				snprintf(in->name, sizeof(in->name), "%s/%s/%s", c->cat, c->name,
					 us_kind_name((enum us_kind)k));
			if (!selected(in->name, pats, npats))
				continue;
			if (k == US_HUGETLB || k == US_HUGETLB_SHARED)
				want_huge = true;
			ninst++;
		}
	}
	if (list) {
		for (size_t i = 0; i < ninst; i++)
			printf("%s\n", insts[i].name);
		return 0;
	}
	if (npats && !ninst) {
		fprintf(stderr, "pch-uffd-suite: no case matches\n");
		return 2;
	}

	/* huge pages for the hugetlb kinds, given back at exit */
	if (want_huge) {
		signal(SIGINT, restore_and_die);
		signal(SIGTERM, restore_and_die);
		signal(SIGHUP, restore_and_die);
		atexit(us_hugepages_restore);
		/* stress/ sizes its hugetlb areas to what is free (up to 32 with --mib 64) */
		us_hugepages_reserve(16);
	}
	us_probe_run(&probe);

	if (json_path) {
		jf = fopen(json_path, "w");
		if (!jf) {
			fprintf(stderr, "pch-uffd-suite: %s: %s\n", json_path, strerror(errno));
			return 1;
		}
		fprintf(jf, "{\"ktap_version\":1,\"quick\":%s,\"probe\":{\"uffd\":%s,"
			"\"features\":%llu,\"api_ioctls\":%llu},\"cases\":[",
			quick ? "true" : "false", probe.uffd_ok ? "true" : "false",
			(unsigned long long)probe.features, (unsigned long long)probe.api_ioctls);
	}

	printf("KTAP version 1\n");
	printf("1..%zu\n", ninst);
	print_probe(&probe);
	for (size_t i = 0; i < ninst; i++) {
		const struct inst *in = &insts[i];
		struct report r;
		uint64_t t0 = us_now_us();

		memset(&r, 0, sizeof(r));
		if (us_decide(&probe, in->c, in->kind, r.reason, sizeof(r.reason)))
			r.result = US_SKIP;
		else
			run_inst(in, &probe, quick, timeout_s, &r);
		uint64_t dur = us_now_us() - t0;

		tot[r.result]++;
		switch (r.result) {
		case US_PASS:
			printf("ok %zu %s\n", i + 1, in->name);
			break;
		case US_SKIP:
			printf("ok %zu %s # SKIP %s\n", i + 1, in->name, r.reason);
			break;
		case US_FAIL:
			printf("# %s: %s\n", in->name, r.reason);
			printf("not ok %zu %s\n", i + 1, in->name);
			break;
		case US_TIMEOUT:
			printf("not ok %zu %s # TIMEOUT %s\n", i + 1, in->name, r.reason);
			break;
		default:
			printf("not ok %zu %s # CRASH %s\n", i + 1, in->name, r.reason);
			break;
		}
		fflush(stdout);
		lat_add(&lt, in, &r);
		if (jf) {
			fprintf(jf, "%s{\"name\":", i ? "," : "");
			json_str(jf, in->name);
			fprintf(jf, ",\"category\":\"%s\",\"case\":\"%s\",\"kind\":\"%s\",\"result\":\"%s\","
				"\"reason\":", in->c->cat, in->c->name, us_kind_name(in->kind),
				result_name(r.result));
			json_str(jf, r.reason);
			fprintf(jf, ",\"duration_us\":%llu,\"metrics\":{", (unsigned long long)dur);
			for (int m = 0; m < r.nmetrics && m < US_MAX_METRICS; m++) {
				r.m[m].name[sizeof(r.m[m].name) - 1] = '\0';
				fprintf(jf, "%s", m ? "," : "");
				json_str(jf, r.m[m].name);
				fprintf(jf, ":%.3f", r.m[m].value);
			}
			fprintf(jf, "}}");
		}
	}
	unsigned nfail = tot[US_FAIL] + tot[US_TIMEOUT] + tot[US_CRASH];

	lat_print(&lt);

	printf("# Totals: pass:%u fail:%u xfail:0 xpass:0 skip:%u error:0\n", tot[US_PASS], nfail,
	       tot[US_SKIP]);
	if (jf) {
		fprintf(jf, "]");
		lat_json(jf, &lt);
		fprintf(jf, ",\"totals\":{\"pass\":%u,\"fail\":%u,\"xfail\":0,\"xpass\":0,"
			"\"skip\":%u,\"error\":0}}\n", tot[US_PASS], nfail, tot[US_SKIP]);
		if (fclose(jf)) {
			fprintf(stderr, "pch-uffd-suite: %s: %s\n", json_path, strerror(errno));
			return 1;
		}
	}
	free(insts);
	return nfail ? 1 : 0;
}
