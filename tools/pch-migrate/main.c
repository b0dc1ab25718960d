// SPDX-License-Identifier: MIT
/*
 * pch-migrate - run a whole postcopy migration in one command: pch-source,
 * pch-helper and pch-vm on loopback, a progress bar on a terminal, a
 * summary, and with --json a report whose field names are a contract.
 */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <json-glib/json-glib.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "auth.h"
#include "codec.h"
#include "json.h"
#include "log.h"
#include "net.h"
#include "util.h"
#include "pch/ctl.h"

enum { P_SOURCE, P_HELPER, P_VM, P_N };
static const char *const pname[P_N] = { "pch-source", "pch-helper", "pch-vm" };

struct opts {
	gchar *ram, *workload, *json, *bindir, *connect_order, *uffd_read, *image_file, *backing;
	uint32_t page_size; /* of the backing: the source serves pages of this size */
	gint channels, vcpus, seed, timeout_s, bulk_rate, rx_threads;
	gdouble zero_frac, repeat_frac, precopy_s;
	gboolean zero_first, keep, quiet, no_progress;
	gchar **helper_args, **source_args, **vm_args;
	gchar *fault_log, *timeline; /* passed to pch-vm, pch-helper */
	gchar *source_netns, *dest_netns, *source_addr; /* two hosts on one machine */
};

struct child {
	pid_t pid;
	int status;
	bool done;
	long maxrss_kb; /* wait4's ru_maxrss once done */
	double cpu_s;   /* wait4's user + system time once done */
};

static double ru_cpu_s(const struct rusage *ru)
{
	return (double)ru->ru_utime.tv_sec + ru->ru_utime.tv_usec / 1e6 +
	       (double)ru->ru_stime.tv_sec + ru->ru_stime.tv_usec / 1e6;
}

static struct child kids[P_N];
static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
	got_signal = sig;
}

#define HUGE_2M (2u << 20)

/*
 * A hugetlb backing needs ram bytes of free huge pages: say so before
 * starting anything, rather than have pch-vm fail after the source and the
 * helper are up.  Free pages already reserved by someone else do not count.
 * 0, or -1 with the reason on stderr.
 */
static int check_hugepages(uint64_t ram)
{
	long long nfree = pch_meminfo("HugePages_Free"), rsvd = pch_meminfo("HugePages_Rsvd");
	long long total = pch_meminfo("HugePages_Total"), size_kb = pch_meminfo("Hugepagesize");
	unsigned long long need = ram / HUGE_2M, avail;

	if (nfree < 0 || rsvd < 0 || total < 0 || size_kb <= 0) {
		fprintf(stderr, "pch-migrate: no huge page counts in /proc/meminfo: "
				"is hugetlbfs in this kernel?\n");
		return -1;
	}
	if (size_kb != HUGE_2M / 1024) {
		/* the counts are of another size's pool: let pch-vm find out */
		fprintf(stderr, "pch-migrate: default huge pages are %lld kB, not 2 MiB: pch-vm needs "
				"%llu 2 MiB pages (/sys/kernel/mm/hugepages/hugepages-2048kB/"
				"nr_hugepages)\n", size_kb, need);
		return 0;
	}
	avail = (unsigned long long)(nfree > rsvd ? nfree - rsvd : 0);
	if (avail * (unsigned long long)size_kb * 1024 >= ram)
		return 0;
	fprintf(stderr, "pch-migrate: %llu MiB of hugetlb RAM needs %llu free 2 MiB huge pages, "
			"%llu are free (HugePages_Free %lld, HugePages_Rsvd %lld); as root: "
			"echo %llu > /proc/sys/vm/nr_hugepages\n",
		(unsigned long long)(ram >> 20), need, avail, nfree, rsvd,
		(unsigned long long)total - avail + need);
	return -1;
}

static char *bin_path(const struct opts *o, const char *name)
{
	return g_build_filename(o->bindir, name, NULL);
}

/* /run/netns/NAME, where `ip netns add NAME` keeps a network namespace. */
static char *netns_path(const char *name)
{
	return g_build_filename("/run/netns", name, NULL);
}

/*
 * In a forked child: move into the network namespace `ip netns add NAME`
 * made (only the network namespace: files and unix sockets stay shared).
 * 0, or -1 with the reason on stderr.
 */
static int enter_netns(const char *name)
{
	char *path = netns_path(name);
	int fd = open(path, O_RDONLY | O_CLOEXEC), ret = 0;

	if (fd < 0 || setns(fd, CLONE_NEWNET) < 0) {
		fprintf(stderr, "network namespace %s (%s): %s: %s\n", name, path,
			fd < 0 ? "open" : "setns", strerror(errno));
		ret = -1;
	}
	if (fd >= 0)
		close(fd);
	g_free(path);
	return ret;
}

/* Spawn argv with stdout/stderr into logfile, in network namespace netns if set. */
static pid_t spawn(GPtrArray *argv, const char *logfile, const char *netns)
{
	pid_t pid;

	g_ptr_array_add(argv, NULL);
	pid = fork();
	if (pid == 0) {
		int fd = open(logfile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
		}
		setpgid(0, 0);
		if (netns && enter_netns(netns))
			_exit(127);
		execv(argv->pdata[0], (char **)argv->pdata);
		fprintf(stderr, "exec %s: %s\n", (char *)argv->pdata[0], strerror(errno));
		_exit(127);
	}
	if (pid < 0) {
		pch_err("fork for %s: %s", (char *)argv->pdata[0], strerror(errno));
		return 0; /* "not started": never signalled, never waited for */
	}
	return pid;
}

static void add(GPtrArray *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(GPtrArray *a, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	g_ptr_array_add(a, g_strdup_vprintf(fmt, ap));
	va_end(ap);
}

static void add_extra(GPtrArray *a, gchar **extra)
{
	for (; extra && *extra; extra++)
		g_ptr_array_add(a, g_strdup(*extra));
}

static void reap(void)
{
	int i;

	for (i = 0; i < P_N; i++) {
		struct rusage ru;
		int st;

		if (!kids[i].pid || kids[i].done)
			continue;
		if (wait4(kids[i].pid, &st, WNOHANG, &ru) == kids[i].pid) {
			kids[i].done = true;
			kids[i].status = st;
			kids[i].maxrss_kb = ru.ru_maxrss;
			kids[i].cpu_s = ru_cpu_s(&ru);
		}
	}
}

static void kill_all(int sig)
{
	int i;

	for (i = 0; i < P_N; i++)
		if (kids[i].pid && !kids[i].done)
			kill(-kids[i].pid, sig);
}

/* Wait until every child has exited, at most ms; then kill what is left. */
static void wait_all(int ms)
{
	uint64_t deadline = pch_now_ns() + (uint64_t)ms * 1000000ull;
	int i;

	for (;;) {
		bool all = true;

		reap();
		for (i = 0; i < P_N; i++)
			all &= !kids[i].pid || kids[i].done;
		if (all)
			return;
		if (pch_now_ns() > deadline)
			break;
		usleep(10000);
	}
	kill_all(SIGTERM);
	usleep(200000);
	kill_all(SIGKILL);
	for (i = 0; i < P_N; i++)
		if (kids[i].pid && !kids[i].done) {
			struct rusage ru;

			if (wait4(kids[i].pid, &kids[i].status, 0, &ru) == kids[i].pid) {
				kids[i].maxrss_kb = ru.ru_maxrss;
				kids[i].cpu_s = ru_cpu_s(&ru);
			}
			kids[i].done = true;
		}
}

static char *describe_exit(int i)
{
	int st = kids[i].status;

	if (!kids[i].pid)
		return g_strdup_printf("%s: not started", pname[i]);
	if (WIFSIGNALED(st))
		return g_strdup_printf("%s: killed by signal %d", pname[i], WTERMSIG(st));
	return g_strdup_printf("%s: exit status %d", pname[i], WEXITSTATUS(st));
}

static bool exited_ok(int i)
{
	return kids[i].done && WIFEXITED(kids[i].status) && WEXITSTATUS(kids[i].status) == 0;
}

/* ------------------------------------------------------------------ */
/* progress                                                            */
/* ------------------------------------------------------------------ */

/* Ask the helper for STATS over a monitor connection.  JSON or NULL. */
static char *helper_stats(const char *sock)
{
	struct pch_ctl_hello hello = { 0 };
	struct pch_ctl_simple req = { 0 };
	static char buf[PCH_CTL_MAX_MSG + 1];
	struct pch_ctl_reply *r = (struct pch_ctl_reply *)buf;
	int fd, n, nfds, fds[1];
	char *out = NULL;

	fd = pch_unix_connect(sock, 0);
	if (fd < 0)
		return NULL;
	hello.hdr = (struct pch_ctl_hdr){ PCH_CTL_MAGIC, PCH_CTL_HELLO, 0, sizeof(hello), 1 };
	hello.version = PCH_CTL_VERSION;
	hello.role = PCH_CTL_ROLE_MONITOR;
	hello.pid = (uint32_t)getpid();
	snprintf(hello.name, sizeof(hello.name), "pch-migrate");
	if (pch_seqpkt_send(fd, &hello, sizeof(hello), NULL, 0, 500) ||
	    pch_seqpkt_recv(fd, buf, sizeof(buf) - 1, fds, 1, &nfds, 500) <= 0)
		goto out;
	req.hdr = (struct pch_ctl_hdr){ PCH_CTL_MAGIC, PCH_CTL_STATS, 0, sizeof(req), 2 };
	if (pch_seqpkt_send(fd, &req, sizeof(req), NULL, 0, 500))
		goto out;
	n = pch_seqpkt_recv(fd, buf, sizeof(buf) - 1, fds, 1, &nfds, 500);
	if (n < (int)sizeof(*r) || r->hdr.magic != PCH_CTL_MAGIC || r->hdr.type != PCH_CTL_REPLY ||
	    r->status || r->text_len != (uint32_t)n - sizeof(*r))
		goto out;
	buf[n] = '\0';
	out = g_strdup(buf + sizeof(*r));
out:
	close(fd);
	return out;
}

static gint64 jint(JsonObject *o, const char *k)
{
	return o && json_object_has_member(o, k) ? json_object_get_int_member(o, k) : 0;
}

static double jdbl(JsonObject *o, const char *k)
{
	return o && json_object_has_member(o, k) ? json_object_get_double_member(o, k) : 0.0;
}

static void progress(const char *sock, uint64_t t0)
{
	char *js = helper_stats(sock);
	JsonParser *p;
	JsonObject *o;
	gint64 total, in;
	int width = 30, fill;
	double secs = (pch_now_ns() - t0) / 1e9;

	if (!js)
		return;
	p = json_parser_new();
	if (json_parser_load_from_data(p, js, -1, NULL) && JSON_NODE_HOLDS_OBJECT(json_parser_get_root(p))) {
		char bar[64];

		o = json_node_get_object(json_parser_get_root(p));
		total = jint(o, "pages_total");
		in = jint(o, "pages_inplace");
		/* the counts are another program's: keep the bar inside its buffer */
		fill = total > 0 ? (int)PCH_MAX(0, PCH_MIN(width, width * in / total)) : 0;
		memset(bar, '#', (size_t)fill);
		memset(bar + fill, '.', (size_t)(width - fill));
		bar[width] = '\0';
		fprintf(stderr, "\r[%s] %3d%% %lld/%lld pages  faults %lld  %.2f GB/s  %.1f s ", bar,
			total ? (int)(100 * in / total) : 0, (long long)in, (long long)total,
			(long long)jint(o, "faults"), jdbl(o, "bulk_gbps"), secs);
	}
	g_object_unref(p);
	g_free(js);
}

/* ------------------------------------------------------------------ */
/* report                                                              */
/* ------------------------------------------------------------------ */

static JsonNode *load_json(const char *path)
{
	JsonParser *p = json_parser_new();
	JsonNode *n = NULL;

	if (json_parser_load_from_file(p, path, NULL) && JSON_NODE_HOLDS_OBJECT(json_parser_get_root(p)))
		n = json_node_copy(json_parser_get_root(p));
	g_object_unref(p);
	return n;
}

static JsonObject *obj(JsonNode *n)
{
	return n ? json_node_get_object(n) : NULL;
}

static void copy_member(JsonBuilder *b, const char *name, JsonObject *from, const char *key)
{
	json_builder_set_member_name(b, name);
	if (from && json_object_has_member(from, key))
		json_builder_add_value(b, json_node_copy(json_object_get_member(from, key)));
	else
		json_builder_add_null_value(b);
}

static void add_errors(JsonBuilder *b, JsonObject *o, const char *who)
{
	JsonArray *a;
	guint i;

	if (!o || !json_object_has_member(o, "errors"))
		return;
	a = json_object_get_array_member(o, "errors");
	for (i = 0; a && i < json_array_get_length(a); i++) {
		char *s = g_strdup_printf("%s: %s", who, json_array_get_string_element(a, i));

		json_builder_add_string_value(b, s);
		g_free(s);
	}
}

static void print_tail(const char *path, int lines)
{
	gchar *txt = NULL, **v;
	int n, i;

	if (!g_file_get_contents(path, &txt, NULL, NULL))
		return;
	v = g_strsplit(txt, "\n", -1);
	n = (int)g_strv_length(v);
	fprintf(stderr, "--- %s (last %d lines) ---\n", path, lines);
	for (i = PCH_MAX(0, n - lines - 1); i < n; i++)
		if (*v[i])
			fprintf(stderr, "%s\n", v[i]);
	g_strfreev(v);
	g_free(txt);
}

/*
 * --source-netns/--dest-netns name namespaces that must exist, and when
 * they differ the source's loopback is out of the helper's reach: then
 * --source-addr is needed.  0, or -1 with the reason on stderr.
 */
static int check_netns(struct opts *o)
{
	const char *ns[2] = { o->source_netns, o->dest_netns };
	int i;

	for (i = 0; i < 2; i++) {
		char *path;
		bool there;

		if (!ns[i])
			continue;
		path = netns_path(ns[i]);
		there = *ns[i] && !strchr(ns[i], '/') && access(path, R_OK) == 0;
		if (!there)
			fprintf(stderr, "pch-migrate: --%s %s: no network namespace %s "
					"(ip netns add %s; bench/netem.sh up makes pchb-src/pchb-dst)\n",
				i ? "dest-netns" : "source-netns", ns[i], path, ns[i]);
		g_free(path);
		if (!there)
			return -1;
	}
	if (!o->source_addr) {
		if (g_strcmp0(o->source_netns, o->dest_netns)) {
			fprintf(stderr, "pch-migrate: the source and destination network namespaces differ: "
					"--source-addr IP (the source's address the destination reaches) "
					"is needed\n");
			return -1;
		}
		o->source_addr = g_strdup("127.0.0.1");
	}
	if (!*o->source_addr || strchr(o->source_addr, '[') || strchr(o->source_addr, '/')) {
		fprintf(stderr, "pch-migrate: bad --source-addr '%s': an IPv4 or IPv6 address\n",
			o->source_addr);
		return -1;
	}
	return 0;
}

static int parse(int argc, char **argv, struct opts *o)
{
	GOptionEntry e[] = {
		{ "ram", 'm', 0, G_OPTION_ARG_STRING, &o->ram, "guest RAM size (default 1G)", "SIZE" },
		{ "channels", 'n', 0, G_OPTION_ARG_INT, &o->channels, "PAGES channels (default 4)", "N" },
		{ "vcpus", 0, 0, G_OPTION_ARG_INT, &o->vcpus, "vCPU threads (default 2)", "N" },
		{ "workload", 'w', 0, G_OPTION_ARG_STRING, &o->workload,
		  "none|seq|random|hotset|balloon (default random)", "W" },
		{ "zero-fraction", 0, 0, G_OPTION_ARG_DOUBLE, &o->zero_frac,
		  "fraction of zero pages (default 0.1)", "F" },
		{ "repeat-fraction", 0, 0, G_OPTION_ARG_DOUBLE, &o->repeat_frac,
		  "fraction of one-byte pages (default 0.05)", "F" },
		{ "seed", 0, 0, G_OPTION_ARG_INT, &o->seed, "image and workload seed (default 1)", "S" },
		{ "precopy-seconds", 0, 0, G_OPTION_ARG_DOUBLE, &o->precopy_s,
		  "stream this long before the vCPUs start (default 0: pure postcopy)", "S" },
		{ "backing", 0, 0, G_OPTION_ARG_STRING, &o->backing,
		  "guest RAM backing: anon|memfd|hugetlb|hugetlb-private|thp (default anon); "
		  "hugetlb kinds migrate 2 MiB pages", "KIND" },
		{ "image-file", 0, 0, G_OPTION_ARG_FILENAME, &o->image_file,
		  "migrate this file's bytes as guest RAM (instead of a synthetic image)", "PATH" },
		{ "json", 'j', 0, G_OPTION_ARG_FILENAME, &o->json, "write the report here", "FILE" },
		{ "timeout-s", 't', 0, G_OPTION_ARG_INT, &o->timeout_s,
		  "fail if not done after this long (default 300)", "S" },
		{ "bulk-rate", 0, 0, G_OPTION_ARG_INT, &o->bulk_rate,
		  "limit bulk streaming to this many MB/s (default 0: no limit)", "MBPS" },
		{ "zero-first", 0, 0, G_OPTION_ARG_NONE, &o->zero_first,
		  "source sends every zero page before any data", NULL },
		{ "connect-order", 0, 0, G_OPTION_ARG_STRING, &o->connect_order,
		  "helper's channel connect order: natural or shuffle[:SEED]", "ORDER" },
		{ "uffd-read", 0, 0, G_OPTION_ARG_STRING, &o->uffd_read,
		  "helper's uffd event path: uring or poll", "MODE" },
		{ "rx-threads", 0, 0, G_OPTION_ARG_INT, &o->rx_threads, "helper's bulk threads (default: the helper's)", "N" },
		{ "bindir", 0, 0, G_OPTION_ARG_FILENAME, &o->bindir,
		  "where the pch programs are (default: beside this one)", "DIR" },
		{ "helper-arg", 0, 0, G_OPTION_ARG_STRING_ARRAY, &o->helper_args,
		  "extra argument for pch-helper (repeatable)", "ARG" },
		{ "source-arg", 0, 0, G_OPTION_ARG_STRING_ARRAY, &o->source_args,
		  "extra argument for pch-source (repeatable)", "ARG" },
		{ "vm-arg", 0, 0, G_OPTION_ARG_STRING_ARRAY, &o->vm_args,
		  "extra argument for pch-vm (repeatable)", "ARG" },
		{ "fault-log", 0, 0, G_OPTION_ARG_FILENAME, &o->fault_log,
		  "pch-vm writes every vCPU fault here: CSV t_us,lat_us,vcpu,page", "FILE" },
		{ "timeline", 0, 0, G_OPTION_ARG_FILENAME, &o->timeline,
		  "pch-helper writes progress every 10 ms here: CSV "
		  "t_us,pages_inplace,pages_bulk,pages_urgent,faults", "FILE" },
		{ "source-netns", 0, 0, G_OPTION_ARG_STRING, &o->source_netns,
		  "run pch-source in this network namespace (ip netns add NS)", "NS" },
		{ "dest-netns", 0, 0, G_OPTION_ARG_STRING, &o->dest_netns,
		  "run pch-helper and pch-vm in this network namespace", "NS" },
		{ "source-addr", 0, 0, G_OPTION_ARG_STRING, &o->source_addr,
		  "pch-source listens on IP (port 0) and the helper connects to it "
		  "(default 127.0.0.1; needed when the namespaces differ)", "IP" },
		{ "keep", 0, 0, G_OPTION_ARG_NONE, &o->keep, "keep the work directory and logs", NULL },
		{ "no-progress", 0, 0, G_OPTION_ARG_NONE, &o->no_progress, "no progress bar", NULL },
		{ "quiet", 'q', 0, G_OPTION_ARG_NONE, &o->quiet, "print only the result line", NULL },
		{ NULL }
	};
	GOptionContext *ctx = g_option_context_new("- run a postcopy migration through pch");
	GError *err = NULL;
	uint64_t sz;
	uint32_t kind;
	bool ok;

	o->channels = 4;
	o->vcpus = 2;
	o->seed = 1;
	o->timeout_s = 300;
	o->zero_frac = 0.1;
	o->repeat_frac = 0.05;
	o->rx_threads = 0;
	g_option_context_add_main_entries(ctx, e, NULL);
	ok = g_option_context_parse(ctx, &argc, &argv, &err);
	g_option_context_free(ctx);
	if (!ok) {
		fprintf(stderr, "pch-migrate: %s\n", err->message);
		g_error_free(err);
		return -1;
	}
	if (!o->backing)
		o->backing = g_strdup("anon");
	kind = pch_backing_parse(o->backing);
	if (!kind) {
		fprintf(stderr, "pch-migrate: bad --backing '%s' "
				"(anon|memfd|hugetlb|hugetlb-private|thp)\n", o->backing);
		return -1;
	}
	/* hugetlb kinds have 2 MiB pages, the others base pages */
	o->page_size = kind == PCH_BACKING_HUGETLB || kind == PCH_BACKING_HUGETLB_PRIVATE ?
		       HUGE_2M : (uint32_t)sysconf(_SC_PAGESIZE);
	if (o->image_file) {
		struct stat st;

		if (o->ram || stat(o->image_file, &st) < 0 || st.st_size < o->page_size) {
			fprintf(stderr, "pch-migrate: --image-file must be a file of at least one page "
					"(%u bytes), without --ram\n", o->page_size);
			return -1;
		}
		/* the source serves whole pages: a trailing partial page is dropped */
		o->ram = g_strdup_printf("%llu", (unsigned long long)st.st_size /
					 o->page_size * o->page_size);
	}
	if (!o->ram)
		o->ram = g_strdup("1G");
	if (!o->workload)
		o->workload = g_strdup("random");
	if (pch_parse_size(o->ram, &sz) || sz < 4096) {
		fprintf(stderr, "pch-migrate: bad --ram '%s'\n", o->ram);
		return -1;
	}
	if (sz % o->page_size) {
		fprintf(stderr, "pch-migrate: --ram %s is not a multiple of the %s page size %u\n",
			o->ram, o->backing, o->page_size);
		return -1;
	}
	if (o->page_size == HUGE_2M && check_hugepages(sz))
		return -1;
	if (o->channels < 1 || o->channels > PCH_MAX_CHANNELS || o->vcpus < 0 || o->vcpus > 256 ||
	    o->timeout_s < 1 || o->zero_frac < 0 || o->zero_frac > 1 || o->repeat_frac < 0 ||
	    o->zero_frac + o->repeat_frac > 1 || o->precopy_s < 0 || o->bulk_rate < 0) {
		fprintf(stderr, "pch-migrate: option out of range\n");
		return -1;
	}
	if (check_netns(o))
		return -1;
	if (!o->bindir) {
		char self[PATH_MAX];
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

		if (n <= 0) {
			fprintf(stderr, "pch-migrate: cannot find my own directory; use --bindir\n");
			return -1;
		}
		self[n] = '\0';
		o->bindir = g_path_get_dirname(self);
	}
	return 0;
}

static void free_opts(struct opts *o)
{
	g_free(o->ram);
	g_free(o->workload);
	g_free(o->json);
	g_free(o->bindir);
	g_free(o->connect_order);
	g_free(o->uffd_read);
	g_free(o->image_file);
	g_free(o->backing);
	g_strfreev(o->helper_args);
	g_strfreev(o->source_args);
	g_strfreev(o->vm_args);
	g_free(o->fault_log);
	g_free(o->timeline);
	g_free(o->source_netns);
	g_free(o->dest_netns);
	g_free(o->source_addr);
}

int main(int argc, char **argv)
{
	struct opts o = { 0 };
	struct pch_session sess;
	char dir[] = "/tmp/pch-migrate.XXXXXX";
	gchar *key, *portf, *sock, *logs[P_N], *stats[P_N], *port_txt = NULL;
	GPtrArray *a;
	uint64_t t0, deadline;
	uint64_t last_progress = 0;
	JsonNode *js[P_N];
	JsonObject *vm, *hp;
	JsonBuilder *b;
	bool ok, tty, stop = false;
	int i, rc;

	if (parse(argc, argv, &o))
		return 2;
	pch_log_init("pch-migrate", o.quiet ? PCH_LOG_WARN : PCH_LOG_INFO, 0);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	tty = isatty(STDERR_FILENO) && !o.no_progress && !o.quiet;
	if (!mkdtemp(dir)) {
		pch_err("mkdtemp: %s", strerror(errno));
		return 1;
	}
	key = g_build_filename(dir, "session.key", NULL);
	portf = g_build_filename(dir, "source.port", NULL);
	sock = g_build_filename(dir, "helper.sock", NULL);
	for (i = 0; i < P_N; i++) {
		logs[i] = g_strdup_printf("%s/%s.log", dir, pname[i]);
		stats[i] = g_strdup_printf("%s/%s.json", dir, pname[i]);
	}
	rc = pch_session_create(key, &sess);
	if (rc) {
		pch_err("session key: %s", strerror(-rc));
		return 1;
	}
	t0 = pch_now_ns();
	deadline = t0 + (uint64_t)(o.timeout_s + 30) * 1000000000ull;

	/* source */
	a = g_ptr_array_new_with_free_func(g_free);
	g_ptr_array_add(a, bin_path(&o, "pch-source"));
	add(a, strchr(o.source_addr, ':') ? "--listen=[%s]:0" : "--listen=%s:0", o.source_addr);
	add(a, "--port-file=%s", portf);
	add(a, "--key-file=%s", key);
	add(a, "--channels=%d", o.channels);
	/* hugetlb RAM faults and installs whole huge pages: the source's unit */
	if (o.page_size != (uint32_t)sysconf(_SC_PAGESIZE))
		add(a, "--page-size=%u", o.page_size);
	if (o.image_file) {
		add(a, "--file=%s", o.image_file);
	} else {
		add(a, "--ram=%s", o.ram);
		add(a, "--seed=%d", o.seed);
		add(a, "--zero-fraction=%g", o.zero_frac);
		add(a, "--repeat-fraction=%g", o.repeat_frac);
	}
	add(a, "--stats=%s", stats[P_SOURCE]);
	add(a, "--timeout-s=%d", o.timeout_s);
	if (o.zero_first)
		add(a, "--zero-first");
	if (o.bulk_rate)
		add(a, "--bulk-rate=%d", o.bulk_rate);
	add_extra(a, o.source_args);
	kids[P_SOURCE].pid = spawn(a, logs[P_SOURCE], o.source_netns);
	g_ptr_array_free(a, TRUE);
	if (!kids[P_SOURCE].pid)
		goto finish;

	/* wait for its port */
	while (!g_file_get_contents(portf, &port_txt, NULL, NULL)) {
		reap();
		if (kids[P_SOURCE].done || pch_now_ns() - t0 > 10000000000ull) {
			pch_err("pch-source did not start listening");
			goto finish;
		}
		usleep(5000);
	}
	g_strstrip(port_txt);

	/* helper */
	a = g_ptr_array_new_with_free_func(g_free);
	g_ptr_array_add(a, bin_path(&o, "pch-helper"));
	add(a, "--control=%s", sock);
	add(a, strchr(o.source_addr, ':') ? "--source=[%s]:%s" : "--source=%s:%s", o.source_addr,
	    port_txt);
	add(a, "--key-file=%s", key);
	add(a, "--channels=%d", o.channels);
	add(a, "--stats=%s", stats[P_HELPER]);
	add(a, "--timeout-s=%d", o.timeout_s);
	if (o.rx_threads)
		add(a, "--rx-threads=%d", o.rx_threads);
	if (o.connect_order)
		add(a, "--connect-order=%s", o.connect_order);
	if (o.uffd_read)
		add(a, "--uffd-read=%s", o.uffd_read);
	if (o.timeline)
		add(a, "--timeline=%s", o.timeline);
	add_extra(a, o.helper_args);
	kids[P_HELPER].pid = spawn(a, logs[P_HELPER], o.dest_netns);
	g_ptr_array_free(a, TRUE);
	if (!kids[P_HELPER].pid)
		goto finish;

	/* vm */
	a = g_ptr_array_new_with_free_func(g_free);
	g_ptr_array_add(a, bin_path(&o, "pch-vm"));
	add(a, "--helper=%s", sock);
	add(a, "--ram=%s", o.ram);
	add(a, "--backing=%s", o.backing);
	add(a, "--vcpus=%d", o.vcpus);
	add(a, "--workload=%s", o.workload);
	add(a, "--seed=%d", o.seed);
	add(a, "--zero-fraction=%g", o.zero_frac);
	add(a, "--repeat-fraction=%g", o.repeat_frac);
	add(a, "--precopy-seconds=%g", o.precopy_s);
	if (o.image_file)
		add(a, "--image-file=%s", o.image_file);
	add(a, "--report=%s", stats[P_VM]);
	if (o.fault_log)
		add(a, "--fault-log=%s", o.fault_log);
	add(a, "--timeout-s=%d", o.timeout_s);
	add_extra(a, o.vm_args);
	kids[P_VM].pid = spawn(a, logs[P_VM], o.dest_netns);
	g_ptr_array_free(a, TRUE);
	if (!kids[P_VM].pid)
		goto finish;

	if (!o.quiet)
		pch_info("migrating %s of %s RAM over %d channels, %d vCPUs (%s), work dir %s",
			 o.ram, o.backing, o.channels, o.vcpus, o.workload, dir);

	/* The vm decides: it exits once verified (or failed). */
	while (!kids[P_VM].done) {
		reap();
		if (got_signal) {
			pch_err("interrupted (%s): stopping everything", strsignal(got_signal));
			stop = true;
			break;
		}
		if (pch_now_ns() > deadline) {
			pch_err("migration not finished after %d s: stopping everything",
				o.timeout_s + 30);
			stop = true;
			break;
		}
		if ((kids[P_HELPER].done && !exited_ok(P_HELPER)) ||
		    (kids[P_SOURCE].done && !exited_ok(P_SOURCE))) {
			/* give the vm a moment to notice and report */
			uint64_t grace = pch_now_ns() + 5000000000ull;

			while (!kids[P_VM].done && pch_now_ns() < grace) {
				usleep(10000);
				reap();
			}
			break;
		}
		if (tty && pch_now_ns() - last_progress > 250000000ull) {
			last_progress = pch_now_ns();
			progress(sock, t0);
		}
		usleep(10000);
	}
	if (tty)
		fputc('\n', stderr);
finish:
	/* stopping: the children end now, not at their own pace (a --bulk-rate
	 * migration interrupted went on to its end, 9 s, before this) */
	if (stop || got_signal)
		kill_all(SIGTERM);
	wait_all(stop || got_signal ? 5000 : 15000);

	for (i = 0; i < P_N; i++)
		js[i] = load_json(stats[i]);
	vm = obj(js[P_VM]);
	hp = obj(js[P_HELPER]);
	ok = !stop && !got_signal && exited_ok(P_SOURCE) && exited_ok(P_HELPER) &&
	     exited_ok(P_VM) && vm && hp &&
	     jint(vm, "pages_mismatched") == 0 &&
	     /* --workload balloon: unplugged pages are gone, not verified */
	     jint(vm, "pages_verified") + jint(vm, "pages_unplugged") == jint(vm, "pages_total") &&
	     jint(vm, "pages_total") > 0;

	b = json_builder_new();
	json_builder_begin_object(b);
	json_builder_set_member_name(b, "result");
	json_builder_add_string_value(b, ok ? "ok" : "fail");
	copy_member(b, "ram_bytes", vm, "ram_bytes");
	copy_member(b, "page_size", vm, "page_size");
	json_builder_set_member_name(b, "backing");
	json_builder_add_string_value(b, o.backing);
	json_builder_set_member_name(b, "channels");
	json_builder_add_int_value(b, o.channels);
	json_builder_set_member_name(b, "vcpus");
	json_builder_add_int_value(b, o.vcpus);
	json_builder_set_member_name(b, "workload");
	json_builder_add_string_value(b, o.workload);
	copy_member(b, "pages_total", vm, "pages_total");
	copy_member(b, "pages_verified", vm, "pages_verified");
	copy_member(b, "pages_mismatched", vm, "pages_mismatched");
	if (!strcmp(o.workload, "balloon")) {
		copy_member(b, "pages_unplugged", vm, "pages_unplugged");
		copy_member(b, "stale_after_discard", vm, "stale_after_discard");
	}
	copy_member(b, "pages_zero", hp, "pages_zero");
	copy_member(b, "pages_bulk", hp, "pages_bulk");
	copy_member(b, "pages_urgent", hp, "pages_urgent");
	copy_member(b, "faults", hp, "faults");
	copy_member(b, "eexist", hp, "eexist");
	copy_member(b, "duration_s", hp, "duration_s");
	copy_member(b, "postcopy_s", vm, "postcopy_s");
	copy_member(b, "bulk_gbps", hp, "bulk_gbps");
	copy_member(b, "fault_latency_us", vm, "fault_latency_us");
	copy_member(b, "service_latency_us", hp, "service_latency_us");
	copy_member(b, "io_path", hp, "io_path");
	/* measurement data (README, "Benchmark data") */
	copy_member(b, "t0_us", vm, "t0_us");
	copy_member(b, "vcpu_faults", vm, "vcpu_faults");
	copy_member(b, "fault_log_dropped", vm, "fault_log_dropped");
	copy_member(b, "state_bytes", hp, "state_bytes");
	for (i = 0; i < P_N; i++) {
		static const char *const rss[P_N] = { "source_maxrss_kb", "helper_maxrss_kb",
						      "vm_maxrss_kb" };

		static const char *const cpu[P_N] = { "source_cpu_s", "helper_cpu_s", "vm_cpu_s" };

		json_builder_set_member_name(b, rss[i]);
		if (kids[i].done && kids[i].maxrss_kb > 0)
			json_builder_add_int_value(b, kids[i].maxrss_kb);
		else
			json_builder_add_null_value(b);
		json_builder_set_member_name(b, cpu[i]);
		if (kids[i].done && kids[i].maxrss_kb > 0)
			json_builder_add_double_value(b, kids[i].cpu_s);
		else
			json_builder_add_null_value(b);
	}
	json_builder_set_member_name(b, "wall_s");
	json_builder_add_double_value(b, (pch_now_ns() - t0) / 1e9);
	json_builder_set_member_name(b, "errors");
	json_builder_begin_array(b);
	if (got_signal) {
		char *s = g_strdup_printf("pch-migrate: interrupted (%s)", strsignal(got_signal));

		json_builder_add_string_value(b, s);
		g_free(s);
	} else if (stop) {
		json_builder_add_string_value(b, "pch-migrate: migration not finished in time");
	}
	for (i = 0; i < P_N; i++) {
		if (!exited_ok(i)) {
			char *s = describe_exit(i);

			json_builder_add_string_value(b, s);
			g_free(s);
		}
		add_errors(b, obj(js[i]), pname[i]);
	}
	json_builder_end_array(b);
	for (i = 0; i < P_N; i++) {
		json_builder_set_member_name(b, i == P_SOURCE ? "source" : i == P_HELPER ? "helper" : "vm");
		if (js[i])
			json_builder_add_value(b, json_node_copy(js[i]));
		else
			json_builder_add_null_value(b);
	}
	json_builder_end_object(b);

	{
		JsonNode *root = json_builder_get_root(b);
		JsonObject *r = json_node_get_object(root);
		JsonObject *fl = json_object_has_member(r, "fault_latency_us") &&
					 JSON_NODE_HOLDS_OBJECT(json_object_get_member(r, "fault_latency_us")) ?
				 json_object_get_object_member(r, "fault_latency_us") : NULL;

		if (o.json && pch_json_write(b, o.json))
			ok = false;
		printf("%s: %s, %lld/%lld pages verified, %lld mismatched, %lld faults, "
		       "%.3f s, bulk %.2f GB/s, fault latency p50 %.1f us p99 %.1f us\n",
		       ok ? "ok" : "FAIL", o.ram, (long long)jint(r, "pages_verified"),
		       (long long)jint(r, "pages_total"), (long long)jint(r, "pages_mismatched"),
		       (long long)jint(r, "faults"), jdbl(r, "duration_s"), jdbl(r, "bulk_gbps"),
		       jdbl(fl, "p50"), jdbl(fl, "p99"));
		json_node_unref(root);
	}
	g_object_unref(b);

	if (!ok) {
		for (i = 0; i < P_N; i++) {
			char *s = describe_exit(i);

			fprintf(stderr, "%s\n", s);
			g_free(s);
			print_tail(logs[i], 15);
		}
		fprintf(stderr, "pch-migrate: logs kept in %s\n", dir);
	} else if (!o.keep) {
		for (i = 0; i < P_N; i++) {
			unlink(logs[i]);
			unlink(stats[i]);
		}
		unlink(key);
		unlink(portf);
		unlink(sock);
		rmdir(dir);
	} else {
		pch_info("logs and reports kept in %s", dir);
	}
	for (i = 0; i < P_N; i++) {
		g_free(logs[i]);
		g_free(stats[i]);
		if (js[i])
			json_node_unref(js[i]);
	}
	g_free(key);
	g_free(portf);
	g_free(sock);
	g_free(port_txt);
	free_opts(&o);
	return ok ? 0 : 1;
}
