// SPDX-License-Identifier: MIT
/*
 * pch-source - the source-side page server.
 *
 * Serves one RAM block (synthetic or a mapped file) to a pch-helper over one
 * CONTROL, one URGENT and N PAGES TCP channels: bulk on PAGES, fault answers
 * on URGENT.  The main thread owns options, the global deadline, signals and
 * the CONTROL conversation; see source_i.h for the other threads.
 *
 * Exit status: 0 when the helper said DONE, 1 on any failure, timeout or
 * signal, 2 on a usage error.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <glib.h>

#include "log.h"
#include "net.h"
#include "util.h"
#include "source_i.h"

static struct src g_src = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.ctl_lock = PTHREAD_MUTEX_INITIALIZER,
	.sync_lock = PTHREAD_MUTEX_INITIALIZER,
	.sync_cond = PTHREAD_COND_INITIALIZER,
	.err_lock = PTHREAD_MUTEX_INITIALIZER,
	.lfd = -1,
	.wake_fd = -1,
	.sig_fd = -1,
	.vmm_lfd = -1,
};

/* ------------------------------------------------------------------ */
/* Errors and wake-ups shared by every thread                          */
/* ------------------------------------------------------------------ */

static void record_error_v(struct src *s, const char *fmt, va_list ap)
{
	char *msg = g_strdup_vprintf(fmt, ap);
	char **e;

	pthread_mutex_lock(&s->err_lock);
	e = realloc(s->errors, (s->nerrors + 2) * sizeof(*e));
	if (e) {
		s->errors = e;
		s->errors[s->nerrors++] = msg;
		s->errors[s->nerrors] = NULL;
		msg = NULL;
	}
	pthread_mutex_unlock(&s->err_lock);
	g_free(msg);
}

/* Record an already logged error for the stats' errors list. */
void src_record_error(struct src *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	record_error_v(s, fmt, ap);
	va_end(ap);
}

/* Wake the main loop (a channel arrived, or a thread failed). */
void src_wake(struct src *s)
{
	uint64_t one = 1;

	if (write(s->wake_fd, &one, sizeof(one)) < 0) {
		/* EAGAIN: the counter is already non-zero, main will wake */
	}
}

/* Log an error once, record it, mark the session failed and wake main. */
void src_fail(struct src *s, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	pch_err("%s", buf);
	src_record_error(s, "%s", buf);
	__atomic_store_n(&s->failed, true, __ATOMIC_RELEASE);
	src_wake(s);
}

void src_lost(struct src *s, const char *fmt, ...)
{
	char buf[160];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&s->err_lock);
	if (__atomic_exchange_n(&s->lost, true, __ATOMIC_ACQ_REL)) {
		pthread_mutex_unlock(&s->err_lock);
		return; /* the first reason is the one that counts */
	}
	snprintf(s->lost_why, sizeof(s->lost_why), "%s", buf);
	pthread_mutex_unlock(&s->err_lock);
	pch_warn("%s", buf);
	src_wake(s);
}

/* Wait up to ms for shutdown to begin; true if it did. */
bool src_wait_stop(struct src *s, int ms)
{
	uint64_t deadline = pch_now_ns() + (uint64_t)ms * 1000000ull;

	while (!src_stopping(s)) {
		struct timespec ts = { 0, 10 * 1000000l };

		if (pch_now_ns() >= deadline)
			return false;
		nanosleep(&ts, NULL);
	}
	return true;
}

/* ------------------------------------------------------------------ */
/* Options                                                            */
/* ------------------------------------------------------------------ */

static int verbose;

static gboolean opt_verbose(const gchar *name, const gchar *value, gpointer data,
			    GError **error)
{
	verbose++;
	return TRUE;
}

/*
 * Pick the default chunk for o->page_size, or check the one given: a chunk
 * of at most SRC_MAX_CHUNK_BYTES, or of one page when a page is larger.
 * NULL, or what is wrong.
 */
static const char *chunk_check(struct src_opts *o)
{
	if (!o->chunk_pages_set)
		o->chunk_pages = PCH_MAX(1u, PCH_MIN(SRC_DEFAULT_CHUNK_PAGES,
						     SRC_DEFAULT_CHUNK_BYTES / o->page_size));
	if (o->chunk_pages > 1 && (uint64_t)o->chunk_pages * o->page_size > SRC_MAX_CHUNK_BYTES)
		return "--chunk-pages times the page size exceeds 256 MiB";
	return NULL;
}

/* Parse --test-slow-frames N:MS into o.  0 or -EINVAL. */
static int parse_slow(const char *arg, struct src_opts *o)
{
	g_auto(GStrv) f = g_strsplit(arg, ":", 3);
	uint64_t n, ms;

	if (g_strv_length(f) != 2 || pch_parse_u64(f[0], 1, UINT32_MAX, &n) ||
	    pch_parse_u64(f[1], 0, 600000, &ms))
		return -EINVAL;
	o->slow_frames = n;
	o->slow_ms = ms;
	return 0;
}

/*
 * Parse and check the command line into o.  Returns 0, or -EINVAL after
 * printing what is wrong.
 */
static int parse_opts(int argc, char **argv, struct src_opts *o, uint32_t *dbg_mask)
{
	g_autofree char *channels = NULL, *ram = NULL, *seed = NULL, *zero = NULL,
			*repeat = NULL, *page_size = NULL, *chunk = NULL, *rate = NULL,
			*hs_timeout = NULL, *timeout = NULL, *dbg = NULL, *backing = NULL,
			*slow = NULL, *resume = NULL, *keepalive = NULL, *vmm_timeout = NULL;
	gboolean zero_first = FALSE;
	gint corrupt = -1;
	GOptionEntry entries[] = {
		{ "listen", 0, 0, G_OPTION_ARG_STRING, &o->listen,
		  "Listen for the helper's channels on HOST:PORT (port 0: any)", "HOST:PORT" },
		{ "port-file", 0, 0, G_OPTION_ARG_FILENAME, &o->port_file,
		  "Write the bound port to F (atomically)", "F" },
		{ "key-file", 0, 0, G_OPTION_ARG_FILENAME, &o->key_file,
		  "Session id and key (mode 0600)", "F" },
		{ "channels", 0, 0, G_OPTION_ARG_STRING, &channels,
		  "PAGES channels (default 4)", "N" },
		{ "ram", 0, 0, G_OPTION_ARG_STRING, &ram,
		  "Synthetic RAM size (default 1G); with --file, the size it must serve", "SIZE" },
		{ "file", 0, 0, G_OPTION_ARG_FILENAME, &o->file,
		  "Serve this file, shm file or memfd (/proc/PID/fd/N), mapped read-only, "
		  "instead of synthetic RAM", "PATH" },
		{ "vmm-socket", 0, 0, G_OPTION_ARG_FILENAME, &o->vmm_socket,
		  "Serve the RAM block a VMM (QEMU's postcopy-helper) hands over on this Unix "
		  "socket, as --file serves one; nothing is served before", "PATH" },
		{ "vmm-timeout-s", 0, 0, G_OPTION_ARG_STRING, &vmm_timeout,
		  "Give up when no VMM handed over its RAM within S seconds (600)", "S" },
		{ "seed", 0, 0, G_OPTION_ARG_STRING, &seed, "Synthetic image seed (default 1)", "S" },
		{ "zero-fraction", 0, 0, G_OPTION_ARG_STRING, &zero,
		  "Synthetic: fraction of zero pages (0.1)", "F" },
		{ "repeat-fraction", 0, 0, G_OPTION_ARG_STRING, &repeat,
		  "Synthetic: fraction of one-byte pages (0.05)", "F" },
		{ "page-size", 0, 0, G_OPTION_ARG_STRING, &page_size,
		  "Page size, e.g. 4096 or 2M (4096; a hugetlbfs file's own)", "SIZE" },
		{ "backing", 0, 0, G_OPTION_ARG_STRING, &backing,
		  "Synthetic: backing to announce, anon|memfd|hugetlb|hugetlb-private|thp "
		  "(anon); a --file's is detected", "KIND" },
		{ "block-name", 0, 0, G_OPTION_ARG_STRING, &o->block_name,
		  "RAM block name (pc.ram)", "NAME" },
		{ "chunk-pages", 0, 0, G_OPTION_ARG_STRING, &chunk,
		  "Pages per bulk chunk (64, or 4 MiB of pages over 64 KiB)", "N" },
		{ "zero-first", 0, 0, G_OPTION_ARG_NONE, &zero_first,
		  "Send every zero page before any data page", NULL },
		{ "bulk-rate", 0, 0, G_OPTION_ARG_STRING, &rate,
		  "Limit bulk to MBPS MB/s in total (0: unlimited)", "MBPS" },
		{ "handshake-timeout-ms", 0, 0, G_OPTION_ARG_STRING, &hs_timeout,
		  "Time a connection has to send its hello (5000)", "MS" },
		{ "timeout-s", 0, 0, G_OPTION_ARG_STRING, &timeout,
		  "Give up on the whole session after S seconds (600)", "S" },
		{ "resume-timeout-s", 0, 0, G_OPTION_ARG_STRING, &resume,
		  "After losing the helper, wait this long for it to resume the session "
		  "(30; 0: fail at once)", "S" },
		{ "keepalive-timeout-ms", 0, 0, G_OPTION_ARG_STRING, &keepalive,
		  "CONTROL silent this long after START is a lost helper; keep-alives come "
		  "every second (5000; 0: never)", "MS" },
		{ "test-corrupt-channel", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_INT, &corrupt,
		  "Tests only: send a frame with a bad block on PAGES channel N", "N" },
		{ "test-slow-frames", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_STRING, &slow,
		  "Tests only: the first N bulk PAGES frames (all channels) send their data "
		  "in 64 KiB pieces, each after an MS ms sleep", "N:MS" },
		{ "stats", 0, 0, G_OPTION_ARG_FILENAME, &o->stats,
		  "Write statistics JSON to FILE at exit", "FILE" },
		{ "verbose", 'v', G_OPTION_FLAG_NO_ARG, G_OPTION_ARG_CALLBACK, opt_verbose,
		  "More messages (debug level)", NULL },
		{ "debug", 'd', 0, G_OPTION_ARG_STRING, &dbg,
		  "Debug subsystems: src,chan,ctl,... or all or a number", "MASK" },
		{ NULL }
	};
	g_autoptr(GOptionContext) ctx = g_option_context_new("- pch source page server");
	g_autoptr(GError) gerr = NULL;
	uint64_t v;
	const char *bad = NULL;

	g_option_context_add_main_entries(ctx, entries, NULL);
	if (!g_option_context_parse(ctx, &argc, &argv, &gerr)) {
		fprintf(stderr, "pch-source: %s\n", gerr->message);
		return -EINVAL;
	}
	if (argc > 1) {
		fprintf(stderr, "pch-source: unexpected argument '%s'\n", argv[1]);
		return -EINVAL;
	}

	o->channels = 4;
	o->ram = 1ull << 30;
	o->seed = 1;
	o->zero_frac = 0.1;
	o->repeat_frac = 0.05;
	o->page_size = 4096;
	o->handshake_timeout_ms = 5000;
	o->timeout_s = 600;
	o->resume_s = 30;
	o->keepalive_ms = PCH_KEEPALIVE_TIMEOUT_MS;
	o->zero_first = zero_first;
	o->corrupt_channel = corrupt;
	o->block_name_set = o->block_name != NULL;
	if (!o->block_name)
		o->block_name = g_strdup("pc.ram");
	o->vmm_timeout_s = 600;

	if (!o->listen)
		bad = "--listen HOST:PORT is required";
	else if (!o->key_file)
		bad = "--key-file is required";
	else if (channels && pch_parse_u64(channels, 1, PCH_MAX_CHANNELS, &v))
		bad = "--channels: expected 1..64";
	else if (channels)
		o->channels = v;
	if (!bad && ram && (pch_parse_size(ram, &o->ram) || !o->ram))
		bad = "--ram: expected a size such as 512M or 4G";
	o->ram_set = ram != NULL;
	if (!bad && seed && pch_parse_u64(seed, 0, UINT64_MAX, &o->seed))
		bad = "--seed: expected an unsigned integer";
	if (!bad && zero && pch_parse_double(zero, 0, 1, &o->zero_frac))
		bad = "--zero-fraction: expected 0..1";
	if (!bad && repeat && pch_parse_double(repeat, 0, 1, &o->repeat_frac))
		bad = "--repeat-fraction: expected 0..1";
	if (!bad && o->zero_frac + o->repeat_frac > 1)
		bad = "--zero-fraction plus --repeat-fraction exceeds 1";
	if (!bad && page_size && (pch_parse_size(page_size, &v) || !pch_is_pow2(v) ||
				  v < 4096 || v > (1u << 30)))
		bad = "--page-size: expected a power of two from 4096 to 1G";
	else if (!bad && page_size)
		o->page_size = v;
	o->page_size_set = page_size != NULL;
	if (!bad && backing && !(o->backing = pch_backing_parse(backing)))
		bad = "--backing: expected anon, memfd, hugetlb, hugetlb-private or thp";
	if (!bad && chunk && pch_parse_u64(chunk, 1, 1u << 20, &v))
		bad = "--chunk-pages: expected 1..1048576";
	else if (!bad && chunk)
		o->chunk_pages = v;
	o->chunk_pages_set = chunk != NULL;
	if (!bad)
		bad = chunk_check(o);
	if (!bad && slow && parse_slow(slow, o))
		bad = "--test-slow-frames: expected N:MS, N >= 1 frames, MS 0..600000";
	if (!bad && rate && pch_parse_double(rate, 0, 1e9, &o->bulk_rate_mbps))
		bad = "--bulk-rate: expected MB/s >= 0";
	if (!bad && hs_timeout && pch_parse_u64(hs_timeout, 1, 600000, &v))
		bad = "--handshake-timeout-ms: expected 1..600000";
	else if (!bad && hs_timeout)
		o->handshake_timeout_ms = v;
	if (!bad && timeout && pch_parse_u64(timeout, 1, 1u << 30, &v))
		bad = "--timeout-s: expected a positive number of seconds";
	else if (!bad && timeout)
		o->timeout_s = v;
	if (!bad && resume && pch_parse_u64(resume, 0, 86400, &v))
		bad = "--resume-timeout-s: expected 0..86400";
	else if (!bad && resume)
		o->resume_s = v;
	if (!bad && keepalive && (pch_parse_u64(keepalive, 0, 3600000, &v) ||
				  (v && v < 2 * PCH_KEEPALIVE_MS)))
		bad = "--keepalive-timeout-ms: expected 0 or 2000..3600000";
	else if (!bad && keepalive)
		o->keepalive_ms = v;
	if (!bad && vmm_timeout && pch_parse_u64(vmm_timeout, 1, 1u << 30, &v))
		bad = "--vmm-timeout-s: expected a positive number of seconds";
	else if (!bad && vmm_timeout)
		o->vmm_timeout_s = v;
	if (!bad && o->vmm_socket && o->file)
		bad = "--vmm-socket and --file: the RAM comes from one of them";
	if (!bad && dbg && pch_log_parse_mask(dbg, dbg_mask))
		bad = "-d: unknown debug subsystem";
	if (bad) {
		fprintf(stderr, "pch-source: %s (see --help)\n", bad);
		return -EINVAL;
	}
	/* -v alone turns on this program's own debug messages */
	if (verbose && !dbg)
		*dbg_mask = PCH_DBG_SRC;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Setup                                                              */
/* ------------------------------------------------------------------ */

/* Write the port as text to path via a temporary file and rename. */
static int write_port_file(const char *path, uint16_t port)
{
	g_autoptr(GError) gerr = NULL;
	char text[16];

	/*
	 * g_file_set_contents writes a temp file and renames it over path.  No
	 * newline: readers parse it with pch_parse_u64, which wants digits only.
	 */
	snprintf(text, sizeof(text), "%u", port);
	if (!g_file_set_contents(path, text, -1, &gerr)) {
		pch_err("port file %s: %s", path, gerr->message);
		return -EIO;
	}
	return 0;
}

static int setup_listener(struct src *s)
{
	char host[256];
	uint16_t port, bound;
	int ret;

	ret = pch_parse_hostport(s->opt.listen, host, sizeof(host), &port);
	if (ret) {
		pch_err("--listen %s: expected HOST:PORT", s->opt.listen);
		return ret;
	}
	s->lfd = pch_tcp_listen(host, port, &bound);
	if (s->lfd < 0) {
		ret = s->lfd;
		pch_err("listen on %s: %s", s->opt.listen, strerror(-ret));
		return ret;
	}
	if (s->opt.port_file) {
		ret = write_port_file(s->opt.port_file, bound);
		if (ret)
			return ret;
	}
	pch_info(strchr(host, ':') ? "listening on [%s]:%u" : "listening on %s:%u", host, bound);
	return 0;
}

/* Block SIGINT/SIGTERM in every thread; main reads them from a signalfd. */
static int setup_signals(struct src *s)
{
	sigset_t set;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	s->sig_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (s->sig_fd < 0) {
		pch_err("signalfd: %s", strerror(errno));
		return -errno;
	}
	return 0;
}

static int setup(struct src *s)
{
	const char *why = "?";
	unsigned i;
	int ret;

	ret = pch_session_load(s->opt.key_file, &s->sess);
	if (ret) {
		pch_err("key file %s: %s", s->opt.key_file, ret == -EPERM ?
			"readable or writable by group or others (chmod 600)" : strerror(-ret));
		return ret;
	}
	if (s->opt.vmm_socket) {
		/*
		 * The helper may connect before the VMM hands its RAM over (both
		 * happen at the switch to postcopy): listen first, so its
		 * connections wait in the backlog, and take them once we serve.
		 */
		ret = setup_signals(s);
		if (!ret)
			ret = setup_listener(s);
		if (!ret)
			ret = src_vmm_listen(s);
		if (!ret)
			ret = src_vmm_wait(s);
	} else {
		ret = src_backend_open(&s->be, &s->opt);
	}
	if (ret)
		return ret;
	if (s->be.page_size != s->opt.page_size) {
		/* a hugetlbfs file or the VMM chose it: the chunk follows */
		s->opt.page_size = s->be.page_size;
		why = chunk_check(&s->opt);
		if (why) {
			pch_err("%s %s: %u-byte pages: %s", s->opt.file ? "file" : "VMM block",
				s->opt.file ? s->opt.file : s->opt.block_name, s->be.page_size, why);
			return -EINVAL;
		}
	}
	ret = pch_blocktab_add(&s->tab, s->opt.block_name, s->be.size, s->be.page_size,
			       s->be.backing, &why);
	if (ret) {
		pch_err("RAM block %s of %llu bytes, %u-byte pages: %s", s->opt.block_name,
			(unsigned long long)s->be.size, s->be.page_size, why);
		return ret;
	}
	ret = src_bulk_init(s);
	if (ret) {
		pch_err("bulk plan for %llu pages: %s", (unsigned long long)s->be.npages,
			strerror(-ret));
		return ret;
	}

	s->nchans = SRC_SLOT_PAGES0 + s->opt.channels;
	s->chans = calloc(s->nchans, sizeof(*s->chans));
	if (!s->chans)
		return -ENOMEM;
	for (i = 0; i < s->nchans; i++) {
		s->chans[i].fd = -1;
		if (i == SRC_SLOT_CONTROL)
			snprintf(s->chans[i].name, sizeof(s->chans[i].name), "CONTROL");
		else if (i == SRC_SLOT_URGENT)
			snprintf(s->chans[i].name, sizeof(s->chans[i].name), "URGENT");
		else
			snprintf(s->chans[i].name, sizeof(s->chans[i].name), "PAGES %u",
				 i - SRC_SLOT_PAGES0);
	}

	s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->wake_fd < 0) {
		pch_err("eventfd: %s", strerror(errno));
		return -errno;
	}
	if (!s->opt.vmm_socket) {
		ret = setup_signals(s);
		if (ret)
			return ret;
	}
	pch_info("serving %s block %s: %llu pages of %u bytes, backing %s, %u-page chunks",
		 s->be.ops->name, s->opt.block_name, (unsigned long long)s->be.npages,
		 s->be.page_size, pch_backing_name(s->be.backing), s->opt.chunk_pages);
	if (s->opt.slow_frames) {
		s->slow_left = s->opt.slow_frames;
		pch_warn("the first %llu bulk PAGES frames send their data in %u KiB pieces, "
			 "each after %u ms (--test-slow-frames)", (unsigned long long)s->opt.slow_frames,
			 SRC_SLOW_PIECE >> 10, s->opt.slow_ms);
	}
	if (!s->opt.vmm_socket) {
		ret = setup_listener(s);
		if (ret)
			return ret;
	}
	ret = src_accept_start(s);
	if (ret)
		pch_err("starting the accept thread: %s", strerror(-ret));
	return ret;
}

/* ------------------------------------------------------------------ */
/* Main loop                                                          */
/* ------------------------------------------------------------------ */

enum phase { PH_CHANNELS, PH_START, PH_RUNNING };

/* What the session waits for now, for the timeout and signal messages. */
static void waiting_for(struct src *s, enum phase ph, char *buf, size_t len)
{
	unsigned pages = 0, i;

	switch (ph) {
	case PH_CHANNELS:
		pthread_mutex_lock(&s->lock);
		for (i = SRC_SLOT_PAGES0; i < s->nchans; i++)
			pages += s->chans[i].state == SLOT_READY;
		snprintf(buf, len, "channels (CONTROL %s, URGENT %s, PAGES %u/%u connected)",
			 s->chans[SRC_SLOT_CONTROL].state == SLOT_READY ? "connected" : "missing",
			 s->chans[SRC_SLOT_URGENT].state == SLOT_READY ? "connected" : "missing",
			 pages, s->opt.channels);
		pthread_mutex_unlock(&s->lock);
		break;
	case PH_START:
		snprintf(buf, len, "START from the helper");
		break;
	case PH_RUNNING:
		snprintf(buf, len, "DONE from the helper (bulk finished on %u/%u channels, "
			 "%u dead, %llu page requests served)",
			 __atomic_load_n(&s->senders_done, __ATOMIC_ACQUIRE), s->opt.channels,
			 __atomic_load_n(&s->senders_dead, __ATOMIC_ACQUIRE),
			 (unsigned long long)__atomic_load_n(&s->requests_live, __ATOMIC_RELAXED));
		break;
	}
}

/*
 * End this generation of the session (docs/protocol.md 5.8): stop the
 * urgent thread and the senders, close every channel, free the slots and
 * forget the bulk plan, so that the helper's new channels, its HAVE and its
 * START begin the session again.  The listener keeps running.
 */
static int end_generation(struct src *s)
{
	unsigned i, p;
	int ret;

	__atomic_store_n(&s->gen_stop, true, __ATOMIC_RELEASE);
	pthread_mutex_lock(&s->lock);
	for (i = 0; i < s->nchans; i++)
		if (s->chans[i].state == SLOT_READY)
			shutdown(s->chans[i].fd, SHUT_RDWR);
	pthread_mutex_unlock(&s->lock);
	src_urgent_join(s);
	src_bulk_join(s);

	pthread_mutex_lock(&s->lock);
	for (i = 0; i < s->nchans; i++) {
		struct src_chan *ch = &s->chans[i];

		/* a slot being acked belongs to the helper's new channels: keep it */
		if (ch->state != SLOT_READY)
			continue;
		close(ch->fd);
		ch->fd = -1;
		ch->state = SLOT_FREE;
		ch->seq = 0;
		s->nready--;
	}
	/* unless a resuming CONTROL is already being acked */
	s->await_control = s->chans[SRC_SLOT_CONTROL].state == SLOT_FREE;
	pthread_mutex_unlock(&s->lock);

	for (p = 0; p < s->npasses; p++) {
		pch_bitmap_free(&s->pass[p].claim);
		ret = pch_bitmap_init(&s->pass[p].claim, s->nchunks);
		if (ret)
			return ret;
		s->pass[p].cursor = 0;
	}
	pch_bitmap_free(&s->skip);
	ret = pch_bitmap_init(&s->skip, s->be.npages);
	if (ret)
		return ret;
	s->hint = SRC_NO_HINT;
	s->senders_done = s->senders_dead = s->senders_over = 0;
	pthread_mutex_lock(&s->sync_lock);
	s->nepochs = 0;
	pthread_mutex_unlock(&s->sync_lock);
	s->started = false;
	__atomic_store_n(&s->ctl_error_sent, false, __ATOMIC_RELEASE);
	__atomic_store_n(&s->lost, false, __ATOMIC_RELEASE);
	__atomic_store_n(&s->gen_stop, false, __ATOMIC_RELEASE);
	return 0;
}

/* Run the session until DONE (0) or failure (-1; logged and recorded). */
static int run(struct src *s)
{
	uint64_t deadline = s->deadline_ns, resume_until = 0;
	enum phase ph = PH_CHANNELS;
	bool blocks_sent = false;
	char what[160];

	for (;;) {
		struct pollfd pfd[3] = {
			{ .fd = s->sig_fd, .events = POLLIN },
			{ .fd = s->wake_fd, .events = POLLIN },
			{ .fd = -1, .events = POLLIN },
		};
		uint64_t now;
		int ms, n, ret;

		if (__atomic_load_n(&s->failed, __ATOMIC_ACQUIRE))
			return -1;
		if (__atomic_load_n(&s->lost, __ATOMIC_ACQUIRE)) {
			char why[sizeof(s->lost_why)];

			pthread_mutex_lock(&s->err_lock);
			memcpy(why, s->lost_why, sizeof(why));
			pthread_mutex_unlock(&s->err_lock);
			if (!s->opt.resume_s) {
				src_fail(s, "helper lost (%s); resuming is off (--resume-timeout-s 0)",
					 why);
				return -1;
			}
			pch_warn("session paused: %s; waiting up to %u s for the helper to resume it",
				 why, s->opt.resume_s);
			ret = end_generation(s);
			if (ret) {
				src_fail(s, "ending the lost session: %s", strerror(-ret));
				return -1;
			}
			ph = PH_CHANNELS;
			blocks_sent = false;
			resume_until = pch_now_ns() + s->opt.resume_s * 1000000000ull;
			continue;
		}
		if (ph == PH_CHANNELS) {
			bool ctl, all;

			pthread_mutex_lock(&s->lock);
			ctl = s->chans[SRC_SLOT_CONTROL].state == SLOT_READY;
			all = s->nready == s->nchans;
			pthread_mutex_unlock(&s->lock);
			/*
			 * BLOCKS goes out right after CONTROL's ack (docs/protocol.md
			 * 5.1): the helper reads it once all its channels are acked,
			 * so sending early costs nothing and suits either order.
			 * Reading CONTROL from then on also notices a helper that dies
			 * during setup.
			 */
			if (ctl && !blocks_sent) {
				if (src_ctl_send_blocks(s)) {
					if (__atomic_load_n(&s->lost, __ATOMIC_ACQUIRE))
						continue; /* pause, above */
					return -1;
				}
				blocks_sent = true;
			}
			if (all) {
				pch_info("all %u channels connected", s->nchans);
				ph = PH_START;
			}
		}
		if (blocks_sent)
			pfd[2].fd = s->chans[SRC_SLOT_CONTROL].fd;

		now = pch_now_ns();
		if (resume_until && now >= resume_until) {
			waiting_for(s, ph, what, sizeof(what));
			src_fail(s, "the helper did not resume the session within %u s (waiting for %s)",
				 s->opt.resume_s, what);
			return -1;
		}
		/* keep-alives both ways on CONTROL, once the helper reads it */
		if (blocks_sent && now - __atomic_load_n(&s->cc_last_tx_ns, __ATOMIC_RELAXED) >=
					   PCH_KEEPALIVE_MS * 1000000ull) {
			ret = src_ctl_send(s, PCH_CC_KEEPALIVE, NULL, 0);
			if (ret) {
				src_lost(s, "CONTROL: keep-alive to %s: %s",
					 s->chans[SRC_SLOT_CONTROL].peer, strerror(-ret));
				continue;
			}
		}
		if (ph == PH_RUNNING && s->opt.keepalive_ms &&
		    now - s->cc_last_rx_ns > s->opt.keepalive_ms * 1000000ull) {
			src_lost(s, "CONTROL: nothing from the helper for %llu ms, not even a keep-alive",
				 (unsigned long long)((now - s->cc_last_rx_ns) / 1000000));
			continue;
		}

		ms = pch_ms_until(deadline);
		if (ms == 0) {
			waiting_for(s, ph, what, sizeof(what));
			src_fail(s, "timed out after %u s waiting for %s", s->opt.timeout_s, what);
			return -1;
		}
		if (blocks_sent)
			ms = PCH_MIN(ms, SRC_TICK_MS * 2);
		if (resume_until)
			ms = PCH_MIN(ms, PCH_MAX(pch_ms_until(resume_until), 1));
		n = poll(pfd, 3, ms);
		if (n < 0 && errno != EINTR) {
			src_fail(s, "poll: %s", strerror(errno));
			return -1;
		}
		if (n <= 0)
			continue;

		if (pfd[0].revents) {
			struct signalfd_siginfo si;

			if (read(s->sig_fd, &si, sizeof(si)) == sizeof(si)) {
				waiting_for(s, ph, what, sizeof(what));
				src_fail(s, "%s: shutting down while waiting for %s",
					 strsignal(si.ssi_signo), what);
				return -1;
			}
		}
		if (pfd[1].revents) {
			uint64_t v;

			if (read(s->wake_fd, &v, sizeof(v)) < 0) {
				/* EAGAIN: another wake-up already drained it */
			}
		}
		/* a thread's failure comes first: CONTROL may just be its echo */
		if (__atomic_load_n(&s->failed, __ATOMIC_ACQUIRE))
			return -1;
		if (pfd[2].revents) {
			ret = src_ctl_handle(s);
			if (ret < 0 && __atomic_load_n(&s->lost, __ATOMIC_ACQUIRE) &&
			    !__atomic_load_n(&s->failed, __ATOMIC_ACQUIRE))
				continue; /* the connection broke: pause, above */
			if (ret < 0)
				return -1;
			if (ret == 1)
				return 0;
			if (s->started && ph != PH_RUNNING) {
				ph = PH_RUNNING;
				s->cc_last_rx_ns = pch_now_ns();
				if (resume_until) {
					s->resumes++;
					resume_until = 0;
					pch_info("session resumed (%u so far)", s->resumes);
				}
			}
		}
	}
}

/* Stop every thread and close the channels.  Bounded: each wait ticks. */
static void shut_down(struct src *s, bool ok)
{
	unsigned i;

	__atomic_store_n(&s->stop, true, __ATOMIC_RELEASE);
	/* tell the helper why, unless it told us or is gone */
	if (!ok && s->chans && s->chans[SRC_SLOT_CONTROL].state == SLOT_READY) {
		char first[120];

		pthread_mutex_lock(&s->err_lock);
		snprintf(first, sizeof(first), "source: %s",
			 s->nerrors ? s->errors[0] : "failed");
		pthread_mutex_unlock(&s->err_lock);
		src_ctl_send_error(s, -EPROTO, first);
	}
	/* wake the urgent thread and senders out of poll now, not at a tick */
	pthread_mutex_lock(&s->lock);
	for (i = SRC_SLOT_URGENT; s->chans && i < s->nchans; i++)
		if (s->chans[i].state == SLOT_READY)
			shutdown(s->chans[i].fd, SHUT_RDWR);
	pthread_mutex_unlock(&s->lock);
	if (s->lfd >= 0)
		shutdown(s->lfd, SHUT_RDWR); /* wakes the accept thread's poll */
	src_urgent_join(s);
	src_bulk_join(s);
	if (s->accept_started)
		pthread_join(s->accept_thread, NULL);
	/* the accept loop closed what was still in handshake; slots are final */
	pthread_mutex_lock(&s->lock);
	for (i = 0; s->chans && i < s->nchans; i++) {
		if (s->chans[i].state == SLOT_READY && s->chans[i].fd >= 0) {
			close(s->chans[i].fd);
			s->chans[i].fd = -1;
		}
		s->chans[i].state = SLOT_READY;
	}
	pthread_mutex_unlock(&s->lock);
	if (s->lfd >= 0)
		close(s->lfd);
	s->lfd = -1;
	if (s->vmm_lfd >= 0) {
		/* no VMM came: the socket goes with us */
		close(s->vmm_lfd);
		s->vmm_lfd = -1;
		unlink(s->opt.vmm_socket);
	}
}

int main(int argc, char **argv)
{
	struct src *s = &g_src;
	struct src_stats tot = { 0 };
	uint32_t dbg_mask = 0;
	uint64_t t_end, t_bulk_end;
	double dur, bulk_s;
	unsigned i, nref = 0;
	bool ok = false;

	s->t_start_ns = pch_now_ns();
	if (parse_opts(argc, argv, &s->opt, &dbg_mask))
		return 2;
	s->deadline_ns = s->t_start_ns + (uint64_t)s->opt.timeout_s * 1000000000ull;
	pch_log_init("pch-source", verbose ? PCH_LOG_DBG : PCH_LOG_INFO, dbg_mask);

	if (setup(s) == 0)
		ok = run(s) == 0;
	shut_down(s, ok);
	ok = ok && !__atomic_load_n(&s->failed, __ATOMIC_ACQUIRE);

	t_end = pch_now_ns();
	t_bulk_end = __atomic_load_n(&s->t_bulk_end_ns, __ATOMIC_ACQUIRE);
	if (!t_bulk_end)
		t_bulk_end = t_end;
	dur = (t_end - s->t_start_ns) / 1e9;
	bulk_s = s->t_bulk_start_ns ? (t_bulk_end - s->t_bulk_start_ns) / 1e9 : 0;
	for (i = 0; s->senders && i < s->opt.channels; i++)
		src_stats_add(&tot, &s->senders[i].st);
	src_stats_add(&tot, &s->urgent_st);
	pthread_mutex_lock(&s->lock);
	for (i = 0; i < PCH_REFUSE_MAX; i++)
		nref += s->refused[i];
	pthread_mutex_unlock(&s->lock);

	if (s->opt.stats && src_stats_write(s, s->opt.stats, &tot, ok, dur, bulk_s))
		ok = false;
	if (s->accept_started) { /* setup finished: a session was attempted */
		pch_info("%s: %llu data + %llu zero pages (%llu unread holes) in bulk, %.1f MiB in %.2f s "
			 "(%.2f GB/s), %llu requests (%llu pages), %u refused, %.2f s total",
			 ok ? "done" : "FAILED", (unsigned long long)tot.pages_bulk,
			 (unsigned long long)tot.pages_zero, (unsigned long long)tot.pages_hole,
			 tot.bytes_bulk / 1048576.0, bulk_s,
			 bulk_s > 0 ? tot.bytes_bulk / bulk_s / 1e9 : 0.0,
			 (unsigned long long)tot.requests, (unsigned long long)tot.pages_urgent,
			 nref, dur);
	}
	src_backend_close(&s->be);
	return ok ? 0 : 1;
}
