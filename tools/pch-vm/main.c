// SPDX-License-Identifier: MIT
/*
 * pch-vm - a QEMU stand-in for pch: maps guest-sized RAM, puts it under a
 * userfaultfd, hands RAM, uffd and an event ring to pch-helper through
 * libpch-client, runs vCPU-like threads that read the RAM while postcopy
 * fills it, then checks every byte against what the source served.
 *
 * Exit status: 0 when the migration completed and every page verified,
 * 1 otherwise, 77 when this machine has no usable userfaultfd (tests skip).
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>

#include "pch/client.h"
#include "pch/proto.h"

#include "log.h"
#include "util.h"
#include "pch-vm.h"

#define VM_RING_ENTRIES 64
#define VM_CONNECT_RETRY_MS 50
#define VM_JOIN_TIMEOUT_MS 5000
#define VM_EXIT_SKIP 77

static const char *const workload_names[] = {
	[VM_WL_NONE] = "none",
	[VM_WL_SEQ] = "seq",
	[VM_WL_RANDOM] = "random",
	[VM_WL_HOTSET] = "hotset",
	[VM_WL_BALLOON] = "balloon",
};

/* "random"..., "?" for a value out of range. */
const char *vm_workload_name(enum vm_workload w)
{
	return (unsigned)w < G_N_ELEMENTS(workload_names) ? workload_names[w] : "?";
}

/* Log a failure once, and keep it for the report's errors array. */
void vm_fail(struct vm *vm, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	msg = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	pch_err("%s", msg);
	g_ptr_array_add(vm->errors, msg);
}

/* ---- command line --------------------------------------------------- */

static int verbosity;

static gboolean opt_verbose(const gchar *name, const gchar *value, gpointer data, GError **err)
{
	verbosity++;
	return TRUE;
}

/*
 * Parse the command line into vm->cfg.  0, or -EINVAL with the reason on
 * stderr.
 */
static int parse_args(struct vm *vm, int argc, char **argv)
{
	struct vm_config *cfg = &vm->cfg;
	g_autofree char *helper = NULL, *ram = NULL, *vcpus = NULL, *workload = NULL;
	g_autofree char *seed = NULL, *zero = NULL, *repeat = NULL, *page_size = NULL;
	g_autofree char *block = NULL, *image_file = NULL, *precopy = NULL, *prefill = NULL;
	g_autofree char *timeout = NULL, *report = NULL, *dbg = NULL, *backing = NULL;
	g_autofree char *delay = NULL, *respawn = NULL, *max_respawns = NULL, *hung = NULL;
	g_autofree char *fault_log = NULL;
	gboolean verify_access = FALSE;
	GOptionEntry entries[] = {
		{ "helper", 0, 0, G_OPTION_ARG_FILENAME, &helper,
		  "pch-helper control socket (required)", "SOCKET_PATH" },
		{ "ram", 0, 0, G_OPTION_ARG_STRING, &ram, "guest RAM size, e.g. 1G (required)",
		  "SIZE" },
		{ "vcpus", 0, 0, G_OPTION_ARG_STRING, &vcpus, "vCPU threads (2)", "N" },
		{ "workload", 0, 0, G_OPTION_ARG_STRING, &workload,
		  "none|seq|random|hotset|balloon (random)", "W" },
		{ "seed", 0, 0, G_OPTION_ARG_STRING, &seed, "image and workload seed (1)", "S" },
		{ "zero-fraction", 0, 0, G_OPTION_ARG_STRING, &zero,
		  "fraction of zero pages in the image (0.1)", "F" },
		{ "repeat-fraction", 0, 0, G_OPTION_ARG_STRING, &repeat,
		  "fraction of one-byte pages in the image (0.05)", "F" },
		{ "backing", 0, 0, G_OPTION_ARG_STRING, &backing,
		  "what backs the RAM: anon|memfd|hugetlb|hugetlb-private|thp (anon)", "KIND" },
		{ "page-size", 0, 0, G_OPTION_ARG_STRING, &page_size,
		  "page size; must be the backing's, which is the default (4096; 2M for hugetlb)",
		  "BYTES" },
		{ "block-name", 0, 0, G_OPTION_ARG_STRING, &block, "RAM block name (pc.ram)",
		  "NAME" },
		{ "image-file", 0, 0, G_OPTION_ARG_FILENAME, &image_file,
		  "verify against this file instead of the synthetic image", "PATH" },
		{ "precopy-seconds", 0, 0, G_OPTION_ARG_STRING, &precopy,
		  "precopy phase before the vCPUs start (0)", "S" },
		{ "prefill", 0, 0, G_OPTION_ARG_STRING, &prefill,
		  "fraction of RAM already in place at START, as after precopy (0)", "F" },
		{ "vcpu-delay-ms", 0, 0, G_OPTION_ARG_STRING, &delay,
		  "start the vCPUs this long after START, after precopy (0, at most 600000)", "MS" },
		{ "verify-access", 0, 0, G_OPTION_ARG_NONE, &verify_access,
		  "check the whole page after every vCPU access (synthetic image only)", NULL },
		{ "respawn-helper", 0, 0, G_OPTION_ARG_STRING, &respawn,
		  "if the helper dies before COMPLETE, run this shell command to start a new one "
		  "on the same socket and hand it the migration", "CMD" },
		{ "max-respawns", 0, 0, G_OPTION_ARG_STRING, &max_respawns,
		  "start a new helper at most this many times (3, at most 8)", "N" },
		{ "timeout-s", 0, 0, G_OPTION_ARG_STRING, &timeout,
		  "give up connecting, and waiting for COMPLETE, after this (300)", "S" },
		{ "helper-hung-ms", 0, 0, G_OPTION_ARG_STRING, &hung,
		  "a helper whose ring heartbeat stands still this long is hung: fail "
		  "(30000; 0: never)", "MS" },
		{ "report", 0, 0, G_OPTION_ARG_FILENAME, &report, "write a JSON report here",
		  "FILE" },
		{ "fault-log", 0, 0, G_OPTION_ARG_FILENAME, &fault_log,
		  "write every vCPU fault here after the run: CSV t_us,lat_us,vcpu,page", "FILE" },
		{ "verbose", 'v', G_OPTION_FLAG_NO_ARG, G_OPTION_ARG_CALLBACK, opt_verbose,
		  "more messages", NULL },
		{ "debug", 'd', 0, G_OPTION_ARG_STRING, &dbg, "debug subsystems (vm,ctl,ring,all)",
		  "MASK" },
		{ NULL }
	};
	g_autoptr(GOptionContext) ctx = g_option_context_new("- QEMU stand-in for pch");
	g_autoptr(GError) gerr = NULL;
	uint32_t mask = 0;
	uint64_t v;
	unsigned i;

	g_option_context_add_main_entries(ctx, entries, NULL);
	g_option_context_set_summary(ctx,
		"Map guest RAM under a userfaultfd, hand it to pch-helper, run vCPU\n"
		"threads over it during postcopy and verify every page at the end.\n"
		"The image options must match the source's.");
	g_option_context_set_description(ctx,
		"Backings (--backing), as QEMU's memory backends give them:\n"
		"  anon             private anonymous memory, 4 KiB pages, no THP (default)\n"
		"  thp              private anonymous, 2 MiB aligned, MADV_HUGEPAGE; 4 KiB\n"
		"                   pages to the uffd; the report tells AnonHugePages at the end\n"
		"  memfd            shared memfd, 4 KiB pages; the memfd goes to the helper,\n"
		"                   registered MISSING|MINOR (needs UFFDIO_CONTINUE)\n"
		"  hugetlb          shared hugetlbfs memfd, 2 MiB pages, MISSING|MINOR\n"
		"  hugetlb-private  private MAP_HUGETLB, 2 MiB pages, MISSING\n"
		"hugetlb kinds need free 2 MiB pages: /proc/sys/vm/nr_hugepages.\n"
		"\n"
		"--verify-access: after each vCPU load returns, the whole page is compared with\n"
		"the image.  A page that differs was mapped before its last byte arrived: it\n"
		"counts as an early read (\"early_reads\" in the report) and fails the run,\n"
		"naming the first such page and byte.  It slows the vCPUs down; fault\n"
		"latencies are timed before the check.\n"
		"\n"
		"--fault-log FILE: a CSV row per vCPU fault (an access to a page not yet\n"
		"mapped), written after the run: t_us (CLOCK_MONOTONIC, whole us) when the\n"
		"load began, lat_us (to 0.1 us) until it returned, vcpu, page (index in the\n"
		"RAM).  Rows go vCPU by vCPU, in time order within each.  At most 4194304\n"
		"faults are kept in all; the report counts the others (fault_log_dropped).");
	if (!g_option_context_parse(ctx, &argc, &argv, &gerr)) {
		fprintf(stderr, "pch-vm: %s (try --help)\n", gerr->message);
		return -EINVAL;
	}
	if (argc > 1) {
		fprintf(stderr, "pch-vm: unexpected argument '%s'\n", argv[1]);
		return -EINVAL;
	}

#define BAD(...) do { fprintf(stderr, "pch-vm: " __VA_ARGS__); fputc('\n', stderr); \
		      return -EINVAL; } while (0)

	if (dbg && pch_log_parse_mask(dbg, &mask))
		BAD("bad debug mask '%s'", dbg);
	pch_log_init("pch-vm", verbosity ? PCH_LOG_INFO : PCH_LOG_WARN, mask);

	if (!helper)
		BAD("--helper SOCKET_PATH is required");
	if (!ram)
		BAD("--ram SIZE is required");
	cfg->helper_path = g_steal_pointer(&helper);
	if (pch_parse_size(ram, &cfg->ram_bytes) || !cfg->ram_bytes)
		BAD("bad --ram '%s'", ram);

	cfg->vcpus = 2;
	if (vcpus) {
		if (pch_parse_u64(vcpus, 1, 1024, &v))
			BAD("bad --vcpus '%s' (1..1024)", vcpus);
		cfg->vcpus = (uint32_t)v;
	}
	cfg->workload = VM_WL_RANDOM;
	if (workload) {
		for (i = 0; i < G_N_ELEMENTS(workload_names); i++)
			if (!strcmp(workload, workload_names[i]))
				break;
		if (i == G_N_ELEMENTS(workload_names))
			BAD("bad --workload '%s' (none|seq|random|hotset|balloon)", workload);
		cfg->workload = (enum vm_workload)i;
	}

	cfg->image.seed = 1;
	if (seed && pch_parse_u64(seed, 0, UINT64_MAX, &cfg->image.seed))
		BAD("bad --seed '%s'", seed);
	cfg->image.zero_frac = 0.1;
	if (zero && pch_parse_double(zero, 0, 1, &cfg->image.zero_frac))
		BAD("bad --zero-fraction '%s' (0..1)", zero);
	cfg->image.repeat_frac = 0.05;
	if (repeat && pch_parse_double(repeat, 0, 1, &cfg->image.repeat_frac))
		BAD("bad --repeat-fraction '%s' (0..1)", repeat);
	if (cfg->image.zero_frac + cfg->image.repeat_frac > 1)
		BAD("--zero-fraction + --repeat-fraction exceed 1");

	cfg->backing = vm_backing_find(backing ? backing : "anon");
	if (!cfg->backing)
		BAD("bad --backing '%s' (%s)", backing, vm_backing_names());
	/* the unit of a fault and of an install is the backing's page */
	cfg->image.page_size = vm_backing_page_size(cfg->backing);
	if (page_size) {
		if (pch_parse_size(page_size, &v) || v > (1u << 30) || !pch_is_pow2(v))
			BAD("bad --page-size '%s'", page_size);
		if (v != cfg->image.page_size)
			BAD("--page-size %s: %s RAM has %u-byte pages", page_size,
			    cfg->backing->name, cfg->image.page_size);
	}
	if (cfg->ram_bytes % cfg->image.page_size)
		BAD("--ram %llu is not a multiple of the %s page size %u",
		    (unsigned long long)cfg->ram_bytes, cfg->backing->name, cfg->image.page_size);

	cfg->block_name = block ? g_steal_pointer(&block) : g_strdup("pc.ram");
	if (!cfg->block_name[0] || strlen(cfg->block_name) >= PCH_BLOCK_NAME_LEN)
		BAD("--block-name must be 1..%d bytes", PCH_BLOCK_NAME_LEN - 1);
	cfg->image_file = g_steal_pointer(&image_file);

	if (precopy && pch_parse_double(precopy, 0, 86400, &cfg->precopy_s))
		BAD("bad --precopy-seconds '%s'", precopy);
	if (prefill && pch_parse_double(prefill, 0, 1, &cfg->prefill))
		BAD("bad --prefill '%s'", prefill);
	if (cfg->prefill > 0 && cfg->image_file)
		BAD("--prefill works with the synthetic image only");
	if (delay) {
		if (pch_parse_u64(delay, 0, 600000, &v))
			BAD("bad --vcpu-delay-ms '%s' (0..600000)", delay);
		cfg->vcpu_delay_ms = (uint32_t)v;
	}
	cfg->respawn_cmd = g_steal_pointer(&respawn);
	cfg->max_respawns = 3;
	if (max_respawns) {
		if (pch_parse_u64(max_respawns, 0, 8, &v))
			BAD("bad --max-respawns '%s' (0..8)", max_respawns);
		cfg->max_respawns = (uint32_t)v;
	}
	cfg->verify_access = verify_access;
	if (cfg->verify_access && cfg->image_file)
		BAD("--verify-access works with the synthetic image only");
	cfg->timeout_s = 300;
	if (timeout) {
		if (pch_parse_u64(timeout, 1, 24 * 3600, &v))
			BAD("bad --timeout-s '%s' (1..86400)", timeout);
		cfg->timeout_s = (uint32_t)v;
	}
	cfg->hung_ms = -1; /* the library's default */
	if (hung) {
		if (pch_parse_u64(hung, 0, 3600000, &v))
			BAD("bad --helper-hung-ms '%s' (0..3600000)", hung);
		cfg->hung_ms = (int)v;
	}
	cfg->report = g_steal_pointer(&report);
	cfg->fault_log = g_steal_pointer(&fault_log);
#undef BAD
	return 0;
}

/* ---- talking to the helper -------------------------------------------- */

/*
 * Connect to the helper, retrying while its socket does not exist yet (it may
 * be starting), until deadline_ns.  The client, or NULL (failure recorded).
 */
static struct pch_client *connect_helper(struct vm *vm, uint64_t deadline_ns)
{
	struct pch_client *c;
	int ret;

	for (;;) {
		ret = pch_client_connect(vm->cfg.helper_path, pch_ms_until(deadline_ns), &c);
		if (!ret)
			return c;
		if ((ret == -ENOENT || ret == -ECONNREFUSED) && pch_ms_until(deadline_ns) > 0) {
			pch_dbg(PCH_DBG_VM, "helper not there yet: %s", pch_client_error(NULL));
			usleep(VM_CONNECT_RETRY_MS * 1000);
			continue;
		}
		if (ret == -ENOENT || ret == -ECONNREFUSED)
			vm_fail(vm, "no helper listening at %s within %u s: %s",
				vm->cfg.helper_path, vm->cfg.timeout_s, pch_client_error(NULL));
		else
			vm_fail(vm, "connecting to the helper: %s", pch_client_error(NULL));
		return NULL;
	}
}

/*
 * --prefill: put a fraction of RAM in place before the uffd is registered,
 * the way QEMU's RAM holds what precopy already sent, in runs of 64 pages
 * picked by a hash of the seed.  The helper is told with a bitmap, so
 * neither it nor the source moves those pages again.  Writing through the
 * mapping is fine for shared memory too: nothing is registered yet.
 * 0 or -errno.
 */
static int prefill(struct vm *vm)
{
	uint64_t run, runs = PCH_DIV_ROUND_UP(vm->npages, 64);
	uint64_t limit = (uint64_t)(vm->cfg.prefill * 18446744073709551615.0);

	if (vm->cfg.prefill <= 0)
		return 0;
	vm->prefilled = g_new0(uint64_t, runs);
	for (run = 0; run < runs; run++) {
		uint64_t h = (vm->cfg.image.seed ^ 0x5eedf111ull) + run * 0x9e3779b97f4a7c15ull;
		uint64_t p, end = PCH_MIN(vm->npages, (run + 1) * 64);

		h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
		h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
		h ^= h >> 31;
		if (h > limit)
			continue;
		for (p = run * 64; p < end; p++)
			pch_image_fill(&vm->cfg.image, 0, p, vm->ram + p * vm->cfg.image.page_size);
		vm->prefilled[run] = end - run * 64 == 64 ? ~0ull : (1ull << (end - run * 64)) - 1;
		vm->pages_prefilled += end - run * 64;
	}
	pch_info("prefilled %llu of %llu pages", (unsigned long long)vm->pages_prefilled,
		 (unsigned long long)vm->npages);
	return 0;
}

/* Announce the RAM, hand over the uffd, set up the ring.  0 or -errno. */
static int setup_helper(struct vm *vm, struct pch_client *c)
{
	struct pch_client_block b = {
		.name = vm->cfg.block_name,
		.host_addr = vm->ram,
		.length = vm->cfg.ram_bytes,
		.page_size = vm->cfg.image.page_size,
		.backing = vm->cfg.backing->kind,
		/* shared RAM: the helper fills it through its own mapping of this */
		.fd = vm->ram_fd,
	};
	int ret;

	ret = pch_client_add_block(c, &b);
	if (!ret && vm->prefilled)
		ret = pch_client_send_bitmap(c, 0, vm->prefilled, vm->npages);
	if (!ret)
		ret = pch_client_send_uffd(c, vm->uffd, vm->uffd_features, vm->uffd_ioctls);
	if (!ret)
		ret = pch_client_setup_ring(c, VM_RING_ENTRIES);
	/* the page state lives here, so a new helper can take over a dead one's work */
	if (!ret) {
		ret = pch_client_setup_state(c);
		if (ret == -EOPNOTSUPP && !vm->cfg.respawn_cmd)
			ret = 0;
	}
	if (ret)
		vm_fail(vm, "setting up the helper: %s", pch_client_error(c));
	return ret;
}

void vm_state_discard(struct vm *vm, uint64_t first, uint64_t n)
{
	int ret = vm->client ? pch_client_state_discard(vm->client, 0, first, n) : -ENODEV;

	if (ret && ret != -ENODEV)
		pch_warn("page state: cannot record %llu discarded pages at %llu: %s",
			 (unsigned long long)n, (unsigned long long)first, strerror(-ret));
}

/*
 * --respawn-helper: the helper died before COMPLETE.  Start a new one with
 * the command given (it listens on the same socket) and hand it everything
 * again: the uffd and the page state here are what survived.  0 when the
 * new helper serves, -errno (nothing recorded: the caller fails the run).
 */
static int respawn_helper(struct vm *vm, struct pch_client *c, uint64_t deadline_ns)
{
	uint64_t t0 = pch_now_ns();
	pid_t pid;
	int ret;

	if (!vm->cfg.respawn_cmd || vm->helper_restarts >= vm->cfg.max_respawns)
		return -EPIPE;
	pch_warn("helper exited before COMPLETE with %llu of %llu pages recorded in place; "
		 "starting a new one (%u of at most %u): %s",
		 (unsigned long long)pch_client_state_inplace(c), (unsigned long long)vm->npages,
		 vm->helper_restarts + 1, vm->cfg.max_respawns, vm->cfg.respawn_cmd);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		execl("/bin/sh", "sh", "-c", vm->cfg.respawn_cmd, (char *)NULL);
		_exit(127);
	}
	vm->helper_pids[vm->helper_restarts++] = pid;
	ret = pch_client_reattach(c, vm->cfg.helper_path,
				  PCH_MIN(pch_ms_until(deadline_ns), 60000));
	if (ret) {
		pch_err("handing the migration to the new helper: %s", pch_client_error(c));
		return ret;
	}
	t0 = pch_now_ns() - t0;
	vm->helper_takeover_max_ns = PCH_MAX(vm->helper_takeover_max_ns, t0);
	pch_info("new helper (pid %d) took over in %.3f s", (int)pid, t0 / 1e9);
	return 0;
}

/* Reap the helpers this process started, killing one that outlives us by 10 s. */
static void reap_helpers(struct vm *vm)
{
	unsigned i;

	for (i = 0; i < vm->helper_restarts; i++) {
		uint64_t until = pch_now_ns() + 10000000000ull;
		int st;

		while (waitpid(vm->helper_pids[i], &st, WNOHANG) == 0) {
			if (pch_now_ns() > until) {
				kill(vm->helper_pids[i], SIGKILL);
				waitpid(vm->helper_pids[i], &st, 0);
				break;
			}
			usleep(20000);
		}
	}
}

/*
 * Record a failed wait on the ring (or request) as the run's failure; the
 * client's error text already says what was being waited for.
 */
static void wait_failed(struct vm *vm, struct pch_client *c, int ret)
{
	if (ret == -EPIPE)
		vm_fail(vm, "helper exited before COMPLETE");
	else
		vm_fail(vm, "%s", pch_client_error(c));
}

/*
 * With no vCPU running, watch the ring for ERROR or COMPLETE until until_ns
 * or deadline_ns, whichever is first: during precopy, and while the vCPUs
 * wait for --vcpu-delay-ms.  1 when COMPLETE came, 0 when the time is up,
 * -errno (failure recorded).
 */
static int watch_ring(struct vm *vm, struct pch_client *c, uint64_t until_ns,
		      uint64_t deadline_ns, const char *phase)
{
	uint64_t end_ns = PCH_MIN(until_ns, deadline_ns);
	struct pch_ring_event ev;
	int ret;

	while (pch_now_ns() < end_ns) {
		ret = pch_client_wait_event(c, &ev, pch_ms_until(end_ns));
		if (ret == -ETIMEDOUT)
			continue;
		/* the helper died: a new one takes over (--respawn-helper) */
		if (ret == -EPIPE && !respawn_helper(vm, c, deadline_ns))
			continue;
		if (ret) {
			wait_failed(vm, c, ret);
			return ret;
		}
		if (ev.type == PCH_RING_ERROR) {
			vm_fail(vm, "helper error during %s: %s (%d)", phase, ev.text, ev.code);
			return ev.code < 0 ? ev.code : -EIO;
		}
		if (ev.type == PCH_RING_COMPLETE) {
			/* all RAM arrived before the vCPUs ran */
			pch_info("COMPLETE during %s", phase);
			vm->t_complete_ns = pch_now_ns();
			return 1;
		}
	}
	return 0;
}

/*
 * Precopy phase: no vCPU runs; watch the ring for ERROR (or an early
 * COMPLETE) for precopy_s, then ask for sync point 1 and wait for it: the
 * switch to postcopy.  0 or -errno (failure recorded).
 */
static int precopy(struct vm *vm, struct pch_client *c, uint64_t deadline_ns)
{
	uint64_t end_ns = pch_now_ns() + (uint64_t)(vm->cfg.precopy_s * 1e9);
	int ret;

	pch_info("precopy for %.1f s", vm->cfg.precopy_s);
	ret = watch_ring(vm, c, end_ns, deadline_ns, "precopy");
	if (ret)
		return ret < 0 ? ret : 0; /* COMPLETE: no switch to make */

	ret = pch_client_request_sync(c, 1);
	if (!ret || ret == -EPIPE)
		ret = pch_client_wait_sync(c, 1, pch_ms_until(deadline_ns));
	/* a new helper is asked for the sync point again by the reattach */
	while (ret == -EPIPE && !respawn_helper(vm, c, deadline_ns))
		ret = pch_client_wait_sync(c, 1, pch_ms_until(deadline_ns));
	if (ret) {
		wait_failed(vm, c, ret);
		return ret;
	}
	pch_info("sync point 1 reached: postcopy");
	return 0;
}

/*
 * --vcpu-delay-ms: the VM resumes later than postcopy starts.  Wait that
 * long (never past the COMPLETE deadline) on the ring, so an ERROR or the
 * helper's death is noticed and an early COMPLETE ends the wait.  0 or
 * -errno (failure recorded).
 */
static int vcpu_delay(struct vm *vm, struct pch_client *c, uint64_t deadline_ns)
{
	int ret;

	if (!vm->cfg.vcpu_delay_ms || vm->t_complete_ns)
		return 0;
	pch_info("vCPUs start in %u ms", vm->cfg.vcpu_delay_ms);
	ret = watch_ring(vm, c, pch_now_ns() + (uint64_t)vm->cfg.vcpu_delay_ms * 1000000ull,
			 deadline_ns, "the vCPU delay");
	return ret < 0 ? ret : 0;
}

/* ---- main ------------------------------------------------------------- */

/* Map the guest RAM and place the hotset.  0 or -errno (recorded). */
static int map_ram(struct vm *vm)
{
	int ret = vm_ram_map(vm);

	if (ret)
		return ret;
	vm->npages = vm->cfg.ram_bytes / vm->cfg.image.page_size;
	vm->vcpu_pages = vm->npages;
	if (vm->cfg.workload == VM_WL_BALLOON && vm_balloon_init(vm))
		return -EINVAL;

	/* hotset: a contiguous 10% of RAM, placed by the seed */
	vm->hot_pages = PCH_MAX(vm->npages / 10, 1);
	vm->hot_first = (vm->cfg.image.seed * 0x9e3779b97f4a7c15ull) %
			(vm->npages - vm->hot_pages + 1);
	return 0;
}

/* Release what main set up (the helper has its own copy of the uffd). */
static void vm_free(struct vm *vm)
{
	if (vm->uffd >= 0)
		close(vm->uffd);
	vm_ram_unmap(vm);
	vm_vcpus_free(vm);
	vm_faultlog_free(vm);
	vm_balloon_free(vm);
	g_free(vm->vcpu);
	free(vm->resident);
	g_ptr_array_free(vm->errors, TRUE);
	g_free((char *)vm->cfg.helper_path);
	g_free((char *)vm->cfg.block_name);
	g_free((char *)vm->cfg.image_file);
	g_free(vm->prefilled);
	g_free((char *)vm->cfg.report);
	g_free((char *)vm->cfg.fault_log);
	g_free((char *)vm->cfg.respawn_cmd);
}

/*
 * Finish the run: stop the vCPUs and release the ones blocked on pages that
 * will never come (unregistering wakes them), verify, report.  If some vCPU
 * still cannot be joined, write the report and leave without waiting.
 * Returns the exit status.
 */
static int finish(struct vm *vm, struct pch_client *c)
{
	uint64_t t0;
	int ret;

	vm_vcpus_stop(vm);
	/* the balloon first: a discard in flight waits for the helper to read it */
	if (vm_balloon_join(vm, VM_JOIN_TIMEOUT_MS)) {
		vm_fail(vm, "balloon thread still blocked after the migration ended");
		if (vm->cfg.report)
			vm_report_write(vm);
		_exit(1);
	}
	/* what the helper installed, before anything else can map a page */
	if (vm->ram && vm->t_start_ns) {
		vm_verify_snapshot(vm);
		vm_ram_thp_sample(vm);
	}
	if (vm->errors->len)
		vm_uffd_unregister(vm);
	ret = vm_vcpus_join(vm, VM_JOIN_TIMEOUT_MS);
	vm_vcpus_check_early(vm);
	/* what the vCPUs published, even if one is still blocked */
	if (vm_faultlog_write(vm))
		vm_fail(vm, "could not write the fault log %s", vm->cfg.fault_log);
	if (ret) {
		vm_fail(vm, "vCPUs still blocked after the migration ended");
		if (vm->cfg.report)
			vm_report_write(vm);
		/* blocked threads cannot be joined: leave without them */
		_exit(1);
	}

	/*
	 * The helper unregistered the RAM at COMPLETE; do it again in case it
	 * did not, so a page it never installed reads as zero (and fails the
	 * check) instead of blocking the verification forever.  Before START
	 * nothing was migrated: there is nothing to verify.
	 */
	if (vm->ram && vm->t_start_ns) {
		vm_uffd_unregister(vm);
		t0 = pch_now_ns();
		ret = vm_verify(vm);
		vm->verify_s = (pch_now_ns() - t0) / 1e9;
		vm->verified = true;
		if (ret)
			vm_fail(vm, "verification could not run: %s", strerror(-ret));
		vm_balloon_finish(vm);
		if (vm->pages_poisoned)
			vm_fail(vm, "%llu pages could never arrive: the helper poisoned them, and "
				"reading one is a memory error", (unsigned long long)vm->pages_poisoned);
		else if (vm->pages_mismatched)
			vm_fail(vm, "%llu of %llu pages differ from the source (%llu never installed)",
				(unsigned long long)vm->pages_mismatched,
				(unsigned long long)vm->npages,
				(unsigned long long)vm->pages_missing);
		pch_info("verified %llu pages in %.2f s: %llu mismatched",
			 (unsigned long long)vm->pages_verified, vm->verify_s,
			 (unsigned long long)vm->pages_mismatched);
	}

	if (vm->cfg.report && vm_report_write(vm))
		vm_fail(vm, "could not write the report %s", vm->cfg.report);
	pch_client_close(c);
	reap_helpers(vm);
	if (vm->errors->len) {
		pch_err("FAIL: %s", (char *)g_ptr_array_index(vm->errors, 0));
		ret = 1;
	} else {
		pch_info("ok: %llu pages verified", (unsigned long long)vm->pages_verified);
		ret = 0;
	}
	vm_free(vm);
	return ret;
}

int main(int argc, char **argv)
{
	struct vm vm_s = { .uffd = -1, .ram_fd = -1, .pagemap_fd = -1, .thp_anon_huge_kb = -1 };
	struct vm *vm = &vm_s;
	struct pch_client *c = NULL;
	uint64_t deadline;
	bool unavailable;
	int ret;

	vm->errors = g_ptr_array_new_with_free_func(g_free);
	if (parse_args(vm, argc, argv))
		return 1;
	/* a helper that dies must show up as -EPIPE, not kill us */
	signal(SIGPIPE, SIG_IGN);
	/* a page the helper poisoned is a memory error to count, not a crash */
	if (vm_guard_install())
		pch_warn("cannot catch SIGBUS: a poisoned page will kill pch-vm");

	vm->vcpu = g_new0(struct vm_vcpu, PCH_MAX(vm->cfg.vcpus, 1));
	for (unsigned i = 0; i < vm->cfg.vcpus; i++) {
		vm->vcpu[i].vm = vm;
		vm->vcpu[i].idx = i;
		pch_hist_init(&vm->vcpu[i].hist);
	}

	if (map_ram(vm) || prefill(vm) || vm_faultlog_init(vm))
		return finish(vm, NULL);
	ret = vm_uffd_setup(vm, &unavailable);
	if (ret && unavailable) {
		fprintf(stderr, "pch-vm: SKIP: no usable userfaultfd on this machine\n");
		return VM_EXIT_SKIP;
	}
	if (ret) {
		vm_fail(vm, "userfaultfd setup: %s", strerror(-ret));
		return finish(vm, NULL);
	}
	vm_ram_ready(vm);

	/* the helper may still be starting: wait for it, up to --timeout-s */
	deadline = pch_now_ns() + (uint64_t)vm->cfg.timeout_s * 1000000000ull;
	c = connect_helper(vm, deadline);
	if (c && vm->cfg.hung_ms >= 0)
		pch_client_set_hung_timeout(c, vm->cfg.hung_ms);
	if (!c || setup_helper(vm, c))
		return finish(vm, c);

	vm->client = c;
	vm->t_start_ns = pch_now_ns();
	ret = pch_client_start(c);
	if (ret) {
		vm_fail(vm, "START: %s", pch_client_error(c));
		return finish(vm, c);
	}
	pch_info("started: %llu MiB of %s RAM, %u-byte pages, %u vCPUs, workload %s",
		 (unsigned long long)(vm->cfg.ram_bytes >> 20), vm->cfg.backing->name,
		 vm->cfg.image.page_size, vm->cfg.vcpus, vm_workload_name(vm->cfg.workload));

	/* COMPLETE must arrive within --timeout-s of START */
	deadline = vm->t_start_ns + (uint64_t)vm->cfg.timeout_s * 1000000000ull;
	if (vm->cfg.precopy_s > 0 && precopy(vm, c, deadline))
		return finish(vm, c);
	if (vcpu_delay(vm, c, deadline))
		return finish(vm, c);

	vm->t_vcpu_ns = pch_now_ns();
	if (vm_vcpus_start(vm) || (vm->balloon && vm_balloon_start(vm))) {
		vm_fail(vm, "could not start the vCPUs");
		return finish(vm, c);
	}

	ret = pch_client_wait_complete(c, pch_ms_until(deadline));
	while (ret == -EPIPE && !respawn_helper(vm, c, deadline))
		ret = pch_client_wait_complete(c, pch_ms_until(deadline));
	if (ret) {
		if (ret == -ETIMEDOUT)
			vm_fail(vm, "no COMPLETE within %u s of START", vm->cfg.timeout_s);
		else
			wait_failed(vm, c, ret);
		return finish(vm, c);
	}
	if (!vm->t_complete_ns)
		vm->t_complete_ns = pch_now_ns();
	pch_info("COMPLETE %.3f s after START, %.3f s after the vCPUs started",
		 (vm->t_complete_ns - vm->t_start_ns) / 1e9,
		 vm->t_complete_ns > vm->t_vcpu_ns ? (vm->t_complete_ns - vm->t_vcpu_ns) / 1e9 : 0);
	return finish(vm, c);
}
