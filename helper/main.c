// SPDX-License-Identifier: MIT
/*
 * pch-helper - the destination's page service.
 *
 * Takes a VMM's guest RAM table, userfaultfd and event ring over a control
 * socket, connects to pch-source, and serves every page: bulk channels
 * stream into place while faulted pages are requested and installed first.
 * The main thread runs the control socket and the CONTROL channel, watches
 * progress, publishes sync points and completion on the ring.
 */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <unistd.h>
#include <linux/capability.h>

#include "helper_i.h"
#include "ctl.h"
#include "log.h"
#include "net.h"
#include "timeline.h"
#include "util.h"
#include "pch/ctl.h"
#include "pch/state.h"
#include "pch/uffd-compat.h"

#define CTL_SETUP_MS 30000     /* the VMM's next setup message */
#define CTL_SETUP_TOTAL_MS 120000 /* HELLO to START, all of it */
#define AFTER_COMPLETE_MS 30000 /* answer STATS this long after COMPLETE */
#define MAX_MONITORS 4
#ifndef TMPFS_MAGIC
#define TMPFS_MAGIC 0x01021994
#endif
#ifndef HUGETLBFS_MAGIC
#define HUGETLBFS_MAGIC 0x958458f6
#endif
#define CTL_SEND_MS 1000 /* a peer that does not read its replies is dropped */

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
	got_signal = sig;
}

void helper_error(struct helper *h, const char *fmt, ...)
{
	char buf[160];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	pch_err("%s", buf);
	pthread_mutex_lock(&h->err_lock);
	if (h->nerrors < PCH_ARRAY_SIZE(h->errors))
		memcpy(h->errors[h->nerrors++], buf, sizeof(buf));
	pthread_mutex_unlock(&h->err_lock);
}

void helper_kick(struct helper *h)
{
	uint64_t one = 1;

	if (write(h->wake_efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		pch_warn("cannot wake the main thread: %s", strerror(errno));
}

void helper_vmm_gone(struct helper *h)
{
	if (!__atomic_exchange_n(&h->vmm_gone, true, __ATOMIC_ACQ_REL))
		pch_err("the VMM exited: its memory is gone (ESRCH from an install)");
	helper_kick(h);
}

/* ------------------------------------------------------------------ */
/* control socket                                                      */
/* ------------------------------------------------------------------ */

/*
 * A control connection.  Its HELLO decides what it is: the first one that
 * says VMM owns the session; any other VMM is refused; monitors may only
 * read stats, before and after START.
 */
struct conn {
	int fd;
	int role;          /* 0 until HELLO */
	bool owner;        /* the VMM's */
	uint64_t since_ns; /* accepted (role 0), or last message (owner, before START) */
};

static int ctl_reply(struct conn *c, const struct pch_ctl_hdr *req, int status, const char *text)
{
	struct {
		struct pch_ctl_reply r;
		char text[PCH_CTL_MAX_MSG - sizeof(struct pch_ctl_reply)];
	} *m;
	size_t tl = text ? strlen(text) : 0;
	int rc;

	if (tl > sizeof(m->text))
		tl = sizeof(m->text);
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->r.hdr.magic = PCH_CTL_MAGIC;
	m->r.hdr.type = PCH_CTL_REPLY;
	m->r.hdr.len = (uint32_t)(sizeof(m->r) + tl);
	m->r.hdr.seq = req->seq;
	m->r.req_type = req->type;
	m->r.status = status;
	m->r.text_len = (uint32_t)tl;
	if (tl)
		memcpy(m->text, text, tl);
	rc = pch_seqpkt_send(c->fd, m, m->r.hdr.len, NULL, 0, CTL_SEND_MS);
	free(m);
	return rc;
}

static void close_fds(int *fds, int n)
{
	while (n > 0)
		close(fds[--n]);
}

/* Each handler returns 0 or -errno with *why set (static or in whybuf). */
typedef int (*ctl_fn)(struct helper *h, struct conn *c, const void *msg, int *fds, int nfds,
		      char *whybuf, size_t whylen);

static int do_hello(struct helper *h, struct conn *c, const void *msg, int *fds, int nfds,
		    char *whybuf, size_t whylen)
{
	const struct pch_ctl_hello *m = msg;
	struct pch_ctl_hello r = { 0 };
	int rc;

	rc = pch_ctl_hello_check(m, whybuf, whylen);
	if (rc)
		return rc;
	if (c->role) {
		snprintf(whybuf, whylen, "HELLO: sent twice");
		return -EPROTO;
	}
	if (m->role == PCH_CTL_ROLE_VMM && h->have_owner) {
		snprintf(whybuf, whylen, "HELLO: role VMM, but a VMM is already connected");
		return -EPERM;
	}
	if (m->role == PCH_CTL_ROLE_MONITOR && h->nmonitors >= MAX_MONITORS) {
		snprintf(whybuf, whylen, "HELLO: %d monitors already connected", MAX_MONITORS);
		return -EBUSY;
	}
	c->role = m->role;
	if (m->role == PCH_CTL_ROLE_MONITOR)
		h->nmonitors++;
	if (m->role == PCH_CTL_ROLE_VMM) {
		c->owner = h->have_owner = true;
		pch_info("control: VMM %.32s (pid %u) connected", m->name, m->pid);
	}
	r.hdr = (struct pch_ctl_hdr){ PCH_CTL_MAGIC, PCH_CTL_HELLO, 0, sizeof(r), m->hdr.seq };
	r.version = PCH_CTL_VERSION;
	r.pid = (uint32_t)getpid();
	r.features = PCH_CTL_F_RING | PCH_CTL_F_BITMAP | PCH_CTL_F_STATS | PCH_CTL_F_SHARED |
		     PCH_CTL_F_STATE;
	snprintf(r.name, sizeof(r.name), "pch-helper");
	/* HELLO is answered by HELLO, not REPLY: 1 tells the caller so. */
	return pch_seqpkt_send(c->fd, &r, sizeof(r), NULL, 0, CTL_SEND_MS) ?: 1;
}

/* Is size a huge page size this host has (/sys/kernel/mm/hugepages)? */
static bool hugetlb_size_ok(uint32_t size, uint32_t sys_page)
{
	char path[64];

	if (size <= sys_page || !pch_is_pow2(size))
		return false;
	snprintf(path, sizeof(path), "/sys/kernel/mm/hugepages/hugepages-%ukB", size >> 10);
	return access(path, F_OK) == 0;
}

static void hblock_free(struct hblock *b)
{
	pch_bitmap_free(&b->present);
	pch_bitmap_free(&b->zero);
	pch_bitmap_free(&b->inplace);
	pch_bitmap_free(&b->discarded);
	pch_bitmap_free(&b->mapping);
	if (b->local)
		munmap(b->local, b->d.size);
	b->local = NULL;
	if (b->fd >= 0)
		close(b->fd);
	b->fd = -1;
	free(b->own);
	b->own = NULL;
}

/*
 * Map a shared block's memfd here, so page data can be received straight
 * into the VMM's memory and mapped for it with UFFDIO_CONTINUE.  It must be
 * what the block says: shmem for memfd, hugetlbfs with the block's page size
 * for hugetlb, and at least as long as the block.  0 or -errno with why.
 */
static int map_shared(struct hblock *b, int fd, char *whybuf, size_t whylen)
{
	bool huge = b->d.backing == PCH_BACKING_HUGETLB;
	struct statfs sfs;
	struct stat st;
	int seals;
	void *p;

	if (fstatfs(fd, &sfs) < 0 || fstat(fd, &st) < 0) {
		int err = errno;

		snprintf(whybuf, whylen, "BLOCK %s: fd: %s", b->d.name, strerror(err));
		return -EBADF;
	}
	if (!S_ISREG(st.st_mode) ||
	    (unsigned long)sfs.f_type != (huge ? HUGETLBFS_MAGIC : TMPFS_MAGIC)) {
		snprintf(whybuf, whylen, "BLOCK %s: the fd is not a %s memfd", b->d.name,
			 huge ? "hugetlbfs" : "shmem");
		return -EBADF;
	}
	if (huge && (uint64_t)st.st_blksize != b->d.page_size) {
		snprintf(whybuf, whylen, "BLOCK %s: the memfd has %ld-byte pages, the block %u",
			 b->d.name, (long)st.st_blksize, b->d.page_size);
		return -EINVAL;
	}
	if ((uint64_t)st.st_size < b->d.size) {
		snprintf(whybuf, whylen, "BLOCK %s: the memfd has %lld bytes, the block %llu",
			 b->d.name, (long long)st.st_size, (unsigned long long)b->d.size);
		return -EINVAL;
	}
	seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0 || !(seals & F_SEAL_SHRINK)) {
		/* a memfd cut short under us would make our writes fault (SIGBUS) */
		snprintf(whybuf, whylen, "BLOCK %s: the memfd must be sealed against shrinking "
			 "(F_SEAL_SHRINK; a tmpfs file that is not a memfd cannot be)", b->d.name);
		return -EINVAL;
	}
	p = mmap(NULL, b->d.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		int err = errno;

		snprintf(whybuf, whylen, "BLOCK %s: mapping the memfd: %s", b->d.name,
			 strerror(err));
		return -err;
	}
	b->local = p;
	/*
	 * shmem takes data by splice and pwrite, which allocate page-cache
	 * pages without zeroing them first; hugetlbfs has neither (no write
	 * method): it is filled through the mapping.
	 */
	b->splice = !huge;
	return 0;
}

static int do_block(struct helper *h, struct conn *c, const void *msg, int *fds, int nfds,
		    char *whybuf, size_t whylen)
{
	const struct pch_ctl_block *m = msg;
	char name[PCH_BLOCK_NAME_LEN + 1];
	static struct pch_blocktab tab; /* main thread only; too big for the stack */
	const char *why = NULL;
	uint32_t sys_page = (uint32_t)sysconf(_SC_PAGESIZE);
	bool shared, huge;
	struct hblock *b;
	int rc;

	memcpy(name, m->name, PCH_BLOCK_NAME_LEN);
	name[PCH_BLOCK_NAME_LEN] = '\0';
	if (m->id != h->nblk) {
		snprintf(whybuf, whylen, "BLOCK: id %u, expected %u", m->id, h->nblk);
		return -EINVAL;
	}
	if (!m->backing || m->backing >= PCH_BACKING_MAX) {
		snprintf(whybuf, whylen, "BLOCK %s: unknown backing %u", name, m->backing);
		return -EINVAL;
	}
	shared = m->backing == PCH_BACKING_MEMFD || m->backing == PCH_BACKING_HUGETLB;
	if (shared && (!(m->flags & PCH_CTL_BLOCK_F_FD) || nfds != 1)) {
		snprintf(whybuf, whylen, "BLOCK %s: a shared (%s) block must carry its memfd, "
			 "got %d fds", name, pch_backing_name(m->backing), nfds);
		return -EINVAL;
	}
	if (!shared && ((m->flags & PCH_CTL_BLOCK_F_FD) || nfds)) {
		snprintf(whybuf, whylen, "BLOCK %s: a private (%s) block must carry no fd", name,
			 pch_backing_name(m->backing));
		return -EINVAL;
	}
	huge = m->backing == PCH_BACKING_HUGETLB || m->backing == PCH_BACKING_HUGETLB_PRIVATE;
	if (huge ? !hugetlb_size_ok(m->page_size, sys_page) : m->page_size != sys_page) {
		snprintf(whybuf, whylen, "BLOCK %s: page size %u does not fit a %s block "
			 "(%s)", name, m->page_size, pch_backing_name(m->backing),
			 huge ? "not a huge page size of this host" : "base pages");
		return -EINVAL;
	}
	rc = pch_ctl_block_check(m, whybuf, whylen);
	if (rc)
		return rc;
	if (h->state) {
		snprintf(whybuf, whylen, "BLOCK %s: after STATE, which describes the blocks before it",
			 name);
		return -EPROTO;
	}
	/* checked on a copy: the table changes only once everything succeeded */
	tab = h->vtab;
	rc = pch_blocktab_add(&tab, m->name, m->length, m->page_size, m->backing, &why);
	if (rc) {
		snprintf(whybuf, whylen, "BLOCK %s: %s", name, why);
		return rc;
	}
	b = &h->blk[h->nblk];
	memset(b, 0, sizeof(*b));
	b->d = tab.b[h->nblk];
	b->host_addr = m->host_addr;
	b->fd = -1;
	/* a shared block after a uffd with memory events: refused (events.c) */
	if (h->uffd >= 0) {
		rc = events_block_ok(&b->d, shared, h->uffd_features, whybuf, whylen);
		if (rc)
			return rc;
	}
	if (shared) {
		rc = map_shared(b, fds[0], whybuf, whylen);
		if (rc)
			return rc;
		b->fd = fds[0];
		fds[0] = -1;
	}
	if (pch_bitmap_init(&b->present, b->d.npages) || pch_bitmap_init(&b->zero, b->d.npages) ||
	    pch_bitmap_init(&b->inplace, b->d.npages) ||
	    pch_bitmap_init(&b->discarded, b->d.npages) ||
	    pch_bitmap_init(&b->mapping, b->d.npages) ||
	    (shared && !(b->own = calloc(b->d.npages, 1)))) {
		hblock_free(b);
		snprintf(whybuf, whylen, "BLOCK %s: out of memory for page state", name);
		return -ENOMEM;
	}
	/* hugetlb has no UFFDIO_ZEROPAGE: zero pages are copied from here */
	if (huge && h->zero_len < m->page_size) {
		void *z = mmap(NULL, m->page_size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (z == MAP_FAILED) {
			hblock_free(b);
			snprintf(whybuf, whylen, "BLOCK %s: out of memory for a zero page", name);
			return -ENOMEM;
		}
		if (h->zero_buf)
			munmap(h->zero_buf, h->zero_len);
		h->zero_buf = z;
		h->zero_len = m->page_size;
	}
	h->vtab = tab;
	h->nblk++;
	pch_info("block %u %s: %s, %llu bytes at 0x%llx, %u-byte pages%s", m->id, name,
		 pch_backing_name(m->backing), (unsigned long long)m->length,
		 (unsigned long long)m->host_addr, m->page_size,
		 shared ? ", received in place" : "");
	return 0;
}

static int do_bitmap(struct helper *h, struct conn *c, const void *msg, int *fds, int nfds,
		     char *whybuf, size_t whylen)
{
	const struct pch_ctl_bitmap *m = msg;
	struct hblock *b;
	int64_t newly;
	int rc;

	if (m->block >= h->nblk) {
		snprintf(whybuf, whylen, "BITMAP: block %u not announced", m->block);
		return -EINVAL;
	}
	b = &h->blk[m->block];
	rc = pch_ctl_bitmap_check(m, b->d.npages, b->d.name, whybuf, whylen);
	if (rc)
		return rc;
	newly = pch_bitmap_import(&b->inplace, m->first_page, (const uint64_t *)(m + 1), m->npages);
	if (newly < 0) {
		snprintf(whybuf, whylen, "BITMAP: import failed");
		return (int)newly;
	}
	pch_bitmap_import(&b->present, m->first_page, (const uint64_t *)(m + 1), m->npages);
	if (b->own) {
		/* the VMM has these mapped: nobody may write them here */
		const uint64_t *w = (const uint64_t *)(m + 1);
		uint64_t i;

		for (i = 0; i < m->npages; i++)
			if (w[i / 64] >> (i % 64) & 1)
				b->own[m->first_page + i] = OWN_FULL;
	}
	h->premarked += (uint64_t)newly;
	return 0;
}

/*
 * STATE: keep the page bitmaps in the VMM's memfd (pch/state.h), so that a
 * helper started after this one dies knows what is in place.  Its layout
 * must match the blocks announced.  A state a helper used before (its
 * generation above 0) is a recovery: the pages it records count as in
 * place, and START goes to the source as a resume.
 */
static int do_state(struct helper *h, struct conn *c, const void *msg, int *fds, int nfds,
		    char *whybuf, size_t whylen)
{
	const struct pch_ctl_state *m = msg;
	/* a copy: the VMM can write its memfd while we check and use it */
	struct pch_state_hdr sh;
	struct pch_state_block sb[PCH_MAX_BLOCKS];
	uint64_t gen, total = 0;
	struct stat st;
	unsigned i;
	void *mem;
	int seals, rc;

	if (nfds != 1) {
		snprintf(whybuf, whylen, "STATE: expected one fd and no flags");
		return -EINVAL;
	}
	rc = pch_ctl_state_check(m, whybuf, whylen);
	if (rc)
		return rc;
	if (h->state) {
		snprintf(whybuf, whylen, "STATE: already received");
		return -EEXIST;
	}
	if (!h->nblk) {
		snprintf(whybuf, whylen, "STATE: before any BLOCK");
		return -EINVAL;
	}
	rc = pch_ctl_state_size_check(m, &h->vtab, whybuf, whylen);
	if (rc)
		return rc;
	if (fstat(fds[0], &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size < m->size) {
		snprintf(whybuf, whylen, "STATE: the fd is not a regular file (memfd) of %llu bytes",
			 (unsigned long long)m->size);
		return -EINVAL;
	}
	/* a VMM that could shrink it would crash us with SIGBUS */
	seals = fcntl(fds[0], F_GET_SEALS);
	if (seals < 0 || !(seals & F_SEAL_SHRINK)) {
		snprintf(whybuf, whylen, "STATE: the memfd must be sealed against shrinking "
			 "(F_SEAL_SHRINK)");
		return -EINVAL;
	}
	mem = mmap(NULL, m->size, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
	if (mem == MAP_FAILED) {
		int err = errno;

		snprintf(whybuf, whylen, "STATE: mmap: %s", strerror(err));
		return -err;
	}
	/* m->size, checked against the blocks, covers the header and nblk descriptors */
	memcpy(&sh, mem, sizeof(sh));
	memcpy(sb, (const struct pch_state_hdr *)mem + 1, h->nblk * sizeof(sb[0]));
	rc = pch_ctl_state_layout_check(&sh, sb, m->size, &h->vtab, whybuf, whylen);
	if (rc) {
		munmap(mem, m->size);
		return rc;
	}
	/* the bitmaps move in; a BITMAP already received is merged */
	for (i = 0; i < h->nblk; i++) {
		struct hblock *b = &h->blk[i];
		uint64_t *words = (uint64_t *)((uint8_t *)mem + sb[i].offset);
		uint64_t w = sb[i].words, p;

		pch_bitmap_move_to(&b->present, words + PCH_STATE_PRESENT * w);
		pch_bitmap_move_to(&b->zero, words + PCH_STATE_ZERO * w);
		pch_bitmap_move_to(&b->inplace, words + PCH_STATE_INPLACE * w);
		pch_bitmap_move_to(&b->discarded, words + PCH_STATE_DISCARDED * w);
		pch_bitmap_move_to(&b->mapping, words + PCH_STATE_MAPPING * w);
		/*
		 * A crash may have left present or zero set without inplace; the
		 * VMM sets discarded before it discards: all are in place.
		 */
		for (p = 0; p < w; p++)
			__atomic_fetch_or(&words[PCH_STATE_INPLACE * w + p],
					  __atomic_load_n(&words[PCH_STATE_PRESENT * w + p],
							  __ATOMIC_ACQUIRE) |
					  __atomic_load_n(&words[PCH_STATE_ZERO * w + p],
							  __ATOMIC_ACQUIRE) |
					  __atomic_load_n(&words[PCH_STATE_DISCARDED * w + p],
							  __ATOMIC_ACQUIRE),
					  __ATOMIC_ACQ_REL);
		/*
		 * The VMM has present pages mapped, and may have those a dead
		 * helper began to map: nobody may write them here (the latter
		 * are mapped at START, recover_mapping).
		 */
		for (p = 0; b->own && p < b->d.npages; p++)
			if (pch_bitmap_test(&b->present, p) || pch_bitmap_test(&b->mapping, p))
				b->own[p] = OWN_FULL;
		total += pch_bitmap_count(&b->inplace);
	}
	gen = __atomic_add_fetch(&((struct pch_state_hdr *)mem)->generation, 1, __ATOMIC_ACQ_REL);
	h->state = mem;
	h->state_len = m->size;
	h->premarked = total; /* nothing was served yet: in place means premarked */
	h->recovered = gen > 1;
	if (h->recovered)
		pch_info("STATE: helper %llu on this migration: %llu of %llu pages already in "
			 "place; resuming it", (unsigned long long)gen, (unsigned long long)total,
			 (unsigned long long)pages_total(h));
	else
		pch_info("STATE: page state kept in the VMM's memfd (%llu bytes)",
			 (unsigned long long)m->size);
	return 0;
}

/*
 * The ioctls the uffd registration offers (UFFD's ioctls field) must cover
 * what each block is installed with: CONTINUE on shared blocks, which the
 * kernel offers only on ranges registered for MINOR faults (without MINOR,
 * data written into the page cache would be visible at once), COPY on all
 * (URGENT answers fill holes with it), ZEROPAGE where the kernel has it
 * (not hugetlb).  Checked at UFFD and again at START, for blocks announced
 * after the uffd.  0 or -EINVAL with why.
 */
static int check_ioctls(struct helper *h, uint64_t ioctls, const char *what, char *whybuf,
			size_t whylen)
{
	unsigned i;

	for (i = 0; i < h->nblk; i++) {
		const struct hblock *b = &h->blk[i];
		bool huge = b->d.backing == PCH_BACKING_HUGETLB ||
			    b->d.backing == PCH_BACKING_HUGETLB_PRIVATE;
		uint64_t need = 1ull << _UFFDIO_COPY, missing;

		if (hblock_shared(b))
			need |= 1ull << _UFFDIO_CONTINUE;
		if (!huge)
			need |= 1ull << _UFFDIO_ZEROPAGE;
		missing = need & ~ioctls;
		if (missing) {
			static const struct { unsigned bit; const char *name; } ops[] = {
				{ _UFFDIO_COPY, "UFFDIO_COPY" },
				{ _UFFDIO_CONTINUE, "UFFDIO_CONTINUE" },
				{ _UFFDIO_ZEROPAGE, "UFFDIO_ZEROPAGE" },
			};
			char names[64] = "";
			unsigned k;

			for (k = 0; k < PCH_ARRAY_SIZE(ops); k++)
				if (missing & (1ull << ops[k].bit))
					snprintf(names + strlen(names), sizeof(names) - strlen(names),
						 "%s%s", names[0] ? " and " : "", ops[k].name);
			snprintf(whybuf, whylen, "%s: block %s (%s) needs %s, which its registration "
				 "does not offer (ioctls 0x%llx)%s", what, b->d.name,
				 pch_backing_name(b->d.backing), names, (unsigned long long)ioctls,
				 missing & (1ull << _UFFDIO_CONTINUE) ?
					 ": register it with MISSING|MINOR" : "");
			return -EINVAL;
		}
	}
	return 0;
}

static int do_uffd(struct helper *h, struct conn *c, const void *msg, int *fds, int nfds,
		   char *whybuf, size_t whylen)
{
	const struct pch_ctl_uffd *m = msg;
	int rc, fl;

	if (nfds != 1) {
		snprintf(whybuf, whylen, "UFFD: expected 1 fd, got %d", nfds);
		return -EINVAL;
	}
	if (h->uffd >= 0) {
		snprintf(whybuf, whylen, "UFFD: already received");
		return -EEXIST;
	}
	if (!pch_fd_is_anon(fds[0], "userfaultfd")) {
		snprintf(whybuf, whylen, "UFFD: the fd is not a userfaultfd");
		return -EBADF;
	}
	/* io_uring and poll both need it: a blocking uffd polls as an error */
	fl = fcntl(fds[0], F_GETFL);
	if (fl < 0 || !(fl & O_NONBLOCK)) {
		snprintf(whybuf, whylen, "UFFD: the uffd must be O_NONBLOCK");
		return -EINVAL;
	}
	/* memory events (REMOVE, UNMAP) are handled; FORK and REMAP are refused */
	rc = pch_ctl_uffd_check(m, whybuf, whylen);
	if (rc)
		return rc;
	rc = events_setup(h, m->features, whybuf, whylen);
	if (rc)
		return rc;
	rc = check_ioctls(h, m->ioctls, "UFFD", whybuf, whylen);
	if (rc) {
		events_free(h);
		h->events = false;
		return rc;
	}
	h->uffd_ioctls = m->ioctls;
	h->uffd = fds[0];
	fds[0] = -1;
	h->uffd_features = m->features;
	return 0;
}

static int do_ring(struct helper *h, struct conn *c, const void *msg, int *fds, int nfds,
		   char *whybuf, size_t whylen)
{
	const struct pch_ctl_ring *m = msg;
	const char *why = "";
	int rc;

	if (nfds != 2) {
		snprintf(whybuf, whylen, "RING: expected 2 fds (memfd, eventfd), got %d", nfds);
		return -EINVAL;
	}
	if (h->have_ring) {
		snprintf(whybuf, whylen, "RING: already received");
		return -EEXIST;
	}
	rc = pch_ring_attach_why(&h->ring, fds[0], fds[1], &why);
	fds[0] = fds[1] = -1; /* attach owns them, even on failure */
	if (rc) {
		snprintf(whybuf, whylen, "RING: %s (%s)", why, strerror(-rc));
		return rc;
	}
	/* the message must describe the ring it carries */
	if (m->nr_entries != h->ring.nr || m->size < h->ring.size) {
		snprintf(whybuf, whylen, "RING: the message says %u entries in %llu bytes, the "
			 "ring's header %u entries in %zu bytes", m->nr_entries,
			 (unsigned long long)m->size, h->ring.nr, (size_t)h->ring.size);
		pch_ring_close(&h->ring);
		return -EINVAL;
	}
	h->have_ring = true;
	pch_ring_heartbeat(&h->ring, pch_now_ns());
	return 0;
}

static void wake_all(struct helper *h);

/*
 * On connected channels (at START, and again at each resume): the fault
 * thread's eventfds first (an rx thread may kick it at once), then the rx
 * threads (they set the thread count every thread reads when it sums the
 * pages in place, so it must be final before the fault thread runs), the
 * fault thread, and HAVE + START to the source.  0 or -errno.
 */
static int start_threads(struct helper *h)
{
	int rc = fault_prepare(h);

	if (!rc)
		rc = rx_start(h);
	if (!rc)
		rc = fault_start(h);
	if (!rc)
		rc = session_start(h);
	return rc;
}

/*
 * Taking over (h->recovered), in a shared block:
 *  - a page the dead helper began to map (mapping set, present not) holds
 *    every byte in the page cache and may be mapped, written by the guest
 *    since.  Map it again, never write it: CONTINUE maps it, or finds it
 *    mapped (EEXIST).  One it was filling from a hole when it died may
 *    still be a hole (CONTINUE: EFAULT): then it is fetched anew.
 *  - a page with neither bit was never mapped, but the page cache may hold
 *    part of it, received by the dead helper: punched out, so that nothing
 *    this helper (or one after it) could map holds bytes nobody vouches for.
 * -errno when the VMM is gone.
 */
static int recover_mapping(struct helper *h)
{
	uint64_t redone = 0, holes = 0, punched = 0;
	unsigned i;

	for (i = 0; i < h->nblk; i++) {
		struct hblock *b = &h->blk[i];
		uint64_t p, run = 0;

		if (!hblock_shared(b))
			continue;
		for (p = 0; p <= b->d.npages; p++) {
			bool free = p < b->d.npages && !pch_bitmap_test(&b->present, p) &&
				    !pch_bitmap_test(&b->mapping, p);
			int rc;

			if (free) {
				run++;
				continue;
			}
			if (run && fallocate(b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					     (off_t)((p - run) << b->d.page_shift),
					     (off_t)(run << b->d.page_shift)) < 0)
				pch_warn("block %s: punching %llu pages at %llu: %s", b->d.name,
					 (unsigned long long)run, (unsigned long long)(p - run),
					 strerror(errno));
			punched += run;
			run = 0;
			if (p == b->d.npages || pch_bitmap_test(&b->present, p))
				continue;
			rc = pages_continue(h, &h->ft.st, i, p, 1, PUT_BULK);
			if (!rc) {
				redone++;
			} else if (rc == -EFAULT || rc == -ENOENT) {
				/* nothing in the page cache: a hole, as if never touched */
				pch_bitmap_clear(&b->mapping, p);
				__atomic_store_n(&b->own[p], OWN_FREE, __ATOMIC_RELEASE);
				holes++;
			} else if (rc == -ESRCH) {
				return rc;
			} /* else: it stays nobody's to write; a fault maps it again */
		}
	}
	pch_info("STATE: %llu pages the helper before us was mapping are mapped; %llu were "
		 "still holes; %llu pages never mapped cleared", (unsigned long long)redone,
		 (unsigned long long)holes, (unsigned long long)punched);
	return 0;
}

static void pause_threads(struct helper *h);

/* A connection broken under us, as opposed to a refusal or a bad peer. */
static bool connection_broke(int rc)
{
	return rc == -ECONNRESET || rc == -EPIPE || rc == -ETIMEDOUT || rc == -ECONNABORTED;
}

/*
 * The first session, at START.  A connection that breaks while the session
 * is being set up (reset, closed, silent), also while HAVE and START are
 * sent once the threads run, is retried as a resume, with the
 * back-off and the deadline of one (--resume-timeout-s; 0: no retry): the
 * source may still hold what it saw of the first try, and a RESUME hello
 * makes it drop that.  A refusal or a protocol error fails at once, and so
 * does a source that is not listening at all.
 */
static int open_session(struct helper *h)
{
	uint64_t deadline = pch_now_ns() + (uint64_t)h->o.resume_s * 1000000000ull;
	unsigned attempt = 0;
	int rc;

	rc = session_connect(h, h->recovered);
	if (!rc)
		rc = start_threads(h); /* sends HAVE and START: may find it broken too */
	while (rc && connection_broke(rc) && h->o.resume_s > 0 && !got_signal) {
		uint64_t backoff = PCH_MIN(200ull << PCH_MIN(attempt, 3u), 1000ull);

		pause_threads(h); /* closes what the failed try opened */
		if (pch_now_ns() + backoff * 1000000ull >= deadline)
			break;
		attempt++;
		pch_warn("START: the session with %s:%u broke while being set up (%s); "
			 "retry %u in %llu ms", h->o.src_host, h->o.src_port, strerror(-rc),
			 attempt, (unsigned long long)backoff);
		usleep((useconds_t)(backoff * 1000));
		rc = session_connect(h, true);
		if (!rc)
			rc = start_threads(h);
	}
	if (attempt && !rc)
		pch_info("START: session open after %u retries", attempt);
	return rc;
}

static int start_serving(struct helper *h, char *whybuf, size_t whylen)
{
	int rc;

	if (!h->nblk || h->uffd < 0 || !h->have_ring) {
		snprintf(whybuf, whylen, "START: missing %s", !h->nblk ? "RAM blocks" :
				 h->uffd < 0 ? "the uffd" : "the ring");
		return -EINVAL;
	}
	rc = check_ioctls(h, h->uffd_ioctls, "START", whybuf, whylen);
	if (rc)
		return rc;
	h->t_start_ns = pch_now_ns();
	if (h->recovered && recover_mapping(h)) {
		snprintf(whybuf, whylen, "START: the VMM exited");
		h->failed = true;
		return -ESRCH;
	}
	rc = open_session(h);
	if (rc) {
		snprintf(whybuf, whylen, "START: cannot open the session with %s:%u: %s",
			 h->o.src_host, h->o.src_port, strerror(-rc));
		h->failed = true;
		return rc;
	}
	/*
	 * The helper before us may have read faults it never answered: their
	 * threads wait on nobody.  Woken, they fault again, and we hear of it.
	 */
	if (h->recovered)
		wake_all(h);
	pch_info("serving %llu pages over %u channels",
		 (unsigned long long)pages_total(h), h->o.channels);
	helper_kick(h);
	return 0;
}

static void lose_source(struct helper *h, const char *why);

static int do_sync(struct helper *h, struct conn *c, const void *msg, int *fds, int nfds,
		   char *whybuf, size_t whylen)
{
	const struct pch_ctl_sync *m = msg;
	int rc;

	if (!h->t_start_ns) {
		snprintf(whybuf, whylen, "SYNC: before START");
		return -EINVAL;
	}
	rc = pch_ctl_sync_check(m, h->sync_asked, whybuf, whylen);
	if (rc)
		return rc;
	/* before the request: the rx threads check SYNC frames against it */
	__atomic_store_n(&h->sync_asked, m->epoch, __ATOMIC_RELEASE);
	/*
	 * Paused, or losing CONTROL now: the sync point will be reached once
	 * every page is in place (after a resume nothing less proves it).
	 */
	if (!h->paused && !h->cc_lost) {
		rc = session_sync_req(h, m->epoch);
		if (rc)
			lose_source(h, "CONTROL: cannot send SYNC_REQ");
	}
	helper_kick(h);
	return 0;
}

/* lengths are checked before by pch_ctl_check_len (lib/ctl.c) */
struct ctl_op {
	ctl_fn fn;
	const char *name;
	bool monitor;   /* allowed on a monitor connection */
	bool setup;     /* only before START */
};

static const struct ctl_op ctl_ops[PCH_CTL_TYPE_MAX] = {
	[PCH_CTL_HELLO] = { do_hello, "HELLO", true, false },
	[PCH_CTL_BLOCK] = { do_block, "BLOCK", false, true },
	[PCH_CTL_BITMAP] = { do_bitmap, "BITMAP", false, true },
	[PCH_CTL_UFFD] = { do_uffd, "UFFD", false, true },
	[PCH_CTL_RING] = { do_ring, "RING", false, true },
	[PCH_CTL_START] = { NULL, "START", false, true },
	[PCH_CTL_SYNC] = { do_sync, "SYNC", false, false },
	[PCH_CTL_STATS] = { NULL, "STATS", true, false },
	[PCH_CTL_SHUTDOWN] = { NULL, "SHUTDOWN", false, false },
	[PCH_CTL_STATE] = { do_state, "STATE", false, true },
};

/* CTL_EXITED: not from ctl_handle; the owner's pidfd said it exited */
enum { CTL_OK, CTL_CLOSED, CTL_SHUTDOWN, CTL_EXITED };

/*
 * Read and answer one control message from c.  Returns CTL_OK, CTL_CLOSED
 * (the peer went away, or sent something that ends the connection), or
 * CTL_SHUTDOWN.
 */
static int ctl_handle(struct helper *h, struct conn *c, int timeout_ms)
{
	union {
		struct pch_ctl_hdr hdr;
		uint8_t b[PCH_CTL_MAX_MSG];
	} *m;
	char whybuf[512] = "";
	int fds[4], nfds = 0, n, rc, ret = CTL_OK;
	const struct ctl_op *op;

	m = malloc(sizeof(*m));
	if (!m)
		return CTL_CLOSED;
	n = pch_seqpkt_recv(c->fd, m, sizeof(*m), fds, 4, &nfds, timeout_ms);
	if (n == -ETIMEDOUT) {
		pch_err("control: connection %d (%s): message announced but not received within %d ms",
			c->fd, c->owner ? "VMM" : c->role ? "monitor" : "no HELLO yet", timeout_ms);
		ret = CTL_CLOSED;
		goto out;
	}
	if (n <= 0) {
		if (n < 0)
			pch_err("control: receive: %s", strerror(-n));
		ret = CTL_CLOSED;
		goto out;
	}
	if (pch_ctl_check_hdr(m, (size_t)n)) {
		pch_err("control: malformed message (%d bytes): bad header", n);
		close_fds(fds, nfds);
		ret = CTL_CLOSED;
		goto out;
	}
	rc = pch_ctl_check_len(&m->hdr, (size_t)n, whybuf, sizeof(whybuf));
	op = rc ? NULL : &ctl_ops[m->hdr.type];
	if (rc) {
		/* whybuf says why */
	} else if (!c->role && m->hdr.type != PCH_CTL_HELLO) {
		snprintf(whybuf, sizeof(whybuf), "%s before HELLO", op->name);
		rc = -EPROTO;
	} else if (c->role == PCH_CTL_ROLE_MONITOR && !op->monitor) {
		snprintf(whybuf, sizeof(whybuf), "%s not allowed on a monitor connection", op->name);
		rc = -EPERM;
	} else if (op->setup && h->t_start_ns) {
		snprintf(whybuf, sizeof(whybuf), "%s after START", op->name);
		rc = -EPROTO;
	} else if (m->hdr.type != PCH_CTL_UFFD && m->hdr.type != PCH_CTL_RING &&
		   m->hdr.type != PCH_CTL_BLOCK && m->hdr.type != PCH_CTL_STATE && nfds) {
		snprintf(whybuf, sizeof(whybuf), "%s carries %d unexpected fds", op->name, nfds);
		rc = -EINVAL;
	} else if (m->hdr.type == PCH_CTL_START) {
		rc = start_serving(h, whybuf, sizeof(whybuf));
	} else if (m->hdr.type == PCH_CTL_STATS) {
		char *js = stats_json(h);

		pch_dbg(PCH_DBG_CTL, "control: STATS");
		if (ctl_reply(c, &m->hdr, 0, js))
			ret = CTL_CLOSED; /* a peer that does not take its answer is dropped */
		g_free(js);
		goto out_fds;
	} else if (m->hdr.type == PCH_CTL_SHUTDOWN) {
		rc = 0;
		ret = CTL_SHUTDOWN;
	} else {
		rc = op->fn(h, c, m, fds, nfds, whybuf, sizeof(whybuf));
		if (rc == 1)
			goto out_fds; /* answered already */
	}
	if (rc)
		pch_err("control: refused: %s (%s)", whybuf, strerror(-rc));
	else
		pch_dbg(PCH_DBG_CTL, "control: %s ok", op->name);
	if (ctl_reply(c, &m->hdr, rc, rc ? whybuf : NULL))
		ret = CTL_CLOSED;
out_fds:
	for (rc = 0; rc < nfds; rc++)
		if (fds[rc] >= 0)
			close(fds[rc]);
out:
	free(m);
	return ret;
}

/* ------------------------------------------------------------------ */
/* progress                                                            */
/* ------------------------------------------------------------------ */

/*
 * Post the queued ring events in order, as far as the ring has room.  A
 * VMM slow to read its ring delays an event, never loses it.
 */
static void flush_posts(struct helper *h)
{
	unsigned i = 0;

	while (i < h->npending) {
		int rc = pch_ring_post(&h->ring, &h->pending[i]);

		PCH_PROBE(ring_posted, h->pending[i].type, h->pending[i].epoch, rc);
		if (rc == -ENOSPC)
			break;
		if (rc)
			pch_err("ring: cannot post %s: %s",
				pch_ring_type_name(h->pending[i].type), strerror(-rc));
		else
			pch_dbg(PCH_DBG_RING, "ring: posted %s %llu",
				pch_ring_type_name(h->pending[i].type),
				(unsigned long long)h->pending[i].epoch);
		i++;
	}
	memmove(h->pending, h->pending + i, (h->npending - i) * sizeof(h->pending[0]));
	h->npending -= i;
}

static void post(struct helper *h, uint16_t type, int32_t code, uint64_t epoch, const char *text)
{
	struct pch_ring_event *ev;

	if (h->npending == PCH_ARRAY_SIZE(h->pending)) {
		pch_err("ring: %u events wait for the VMM to read its ring; %s not posted",
			h->npending, pch_ring_type_name(type));
		return;
	}
	ev = &h->pending[h->npending++];
	memset(ev, 0, sizeof(*ev));
	ev->type = type;
	ev->code = code;
	ev->epoch = epoch;
	snprintf(ev->text, sizeof(ev->text), "%s", text);
	flush_posts(h);
}

/* A range ioctl (UFFDIO_UNREGISTER, UFFDIO_WAKE) over every block, whole. */
static void each_block(struct helper *h, unsigned long req, const char *name)
{
	unsigned i;

	for (i = 0; i < h->nblk; i++) {
		struct uffdio_range r = { .start = h->blk[i].host_addr, .len = h->blk[i].d.size };

		if (ioctl(h->uffd, req, &r) < 0)
			pch_warn("block %s: %s of the whole block: %s", h->blk[i].d.name, name,
				 strerror(errno));
	}
}

static void unregister_all(struct helper *h)
{
	/* Waiters on pages known zero wake up and get the kernel's zero page. */
	each_block(h, UFFDIO_UNREGISTER, "UFFDIO_UNREGISTER");
}

/*
 * A PAGES channel that is still streaming but has received nothing for a
 * while is reported with what it has done; past --channel-timeout-s it is
 * given up (closed, as a dead channel), so the sweep brings what it owed.
 */
static void check_silence(struct helper *h)
{
	uint64_t now = pch_now_ns();
	unsigned i;

	for (i = 0; i < h->o.channels; i++) {
		struct rx_chan *c = &h->pages[i];
		uint64_t quiet, last;

		if (__atomic_load_n(&c->state, __ATOMIC_ACQUIRE) != CHAN_STREAMING)
			continue;
		/* the rx thread may have stamped it after we read the clock */
		last = __atomic_load_n(&c->last_rx_ns, __ATOMIC_RELAXED);
		quiet = now > last ? now - last : 0;
		if (quiet < (uint64_t)h->o.silent_ms * 1000000ull) {
			c->silent_reported = false;
			continue;
		}
		if (!c->silent_reported) {
			c->silent_reported = true;
			pch_warn("PAGES channel %u: nothing received for %.1f s (streaming, %llu frames "
				 "so far); %llu of %llu pages in place", i, quiet / 1e9,
				 (unsigned long long)__atomic_load_n(&c->frames, __ATOMIC_RELAXED),
				 (unsigned long long)pages_inplace(h),
				 (unsigned long long)pages_total(h));
		}
		if (h->o.chan_timeout_s && quiet > h->o.chan_timeout_s * 1000000000ull) {
			helper_error(h, "PAGES channel %u: silent for %d s; channel closed, its pages "
				     "will be requested", i, h->o.chan_timeout_s);
			__atomic_store_n(&c->state, CHAN_DEAD, __ATOMIC_RELEASE);
			shutdown(c->fd, SHUT_RDWR);
		}
	}
}

/* Look at the channels and the page counts; act on what changed. */
static void check_progress(struct helper *h)
{
	uint64_t min_epoch = UINT64_MAX;
	unsigned i, live = 0, ended = 0, dead = 0;
	bool all_in = pages_inplace(h) >= pages_total(h);

	for (i = 0; i < h->o.channels; i++) {
		int st = __atomic_load_n(&h->pages[i].state, __ATOMIC_ACQUIRE);

		if (st == CHAN_DEAD) {
			dead++;
			continue;
		}
		live++;
		ended += st == CHAN_ENDED;
		min_epoch = PCH_MIN(min_epoch, __atomic_load_n(&h->pages[i].sync_epoch,
							       __ATOMIC_ACQUIRE));
	}
	/*
	 * A sync point is reached when every channel delivered SYNC(epoch) after
	 * everything before it.  A dead channel never will, and the pages it
	 * owed come back only through the sweep: then the sync point is proven
	 * only once every page is in place.  So after a resume, whose source
	 * sends again what the lost connections carried, in any order.
	 */
	if (h->sync_asked > h->sync_reached &&
	    ((!dead && live && !h->resumes && !h->recovered && min_epoch >= h->sync_asked) ||
	     all_in)) {
		h->sync_reached = h->sync_asked;
		pch_info("sync point %llu reached", (unsigned long long)h->sync_reached);
		post(h, PCH_RING_SYNC_REACHED, 0, h->sync_reached, "sync point reached");
	}
	if (!h->complete && all_in) {
		__atomic_store_n(&h->complete, true, __ATOMIC_RELEASE);
		h->t_complete_ns = pch_now_ns();
		unregister_all(h);
		pch_info("complete: every page in place after %.3f s",
			 (h->t_complete_ns - h->t_start_ns) / 1e9);
		post(h, PCH_RING_COMPLETE, 0, 0, "every page in place");
		if (session_done(h))
			helper_error(h, "could not tell the source DONE: it will time out and fail");
		return;
	}
	/*
	 * Every live channel has ended (or died) and pages are still missing:
	 * nobody will stream them.  Ask for them on URGENT.
	 */
	if (!h->complete && ended == live && !h->sweep_started) {
		h->sweep_started = true;
		pch_warn("%llu pages missing after every channel ended; requesting them",
			 (unsigned long long)(pages_total(h) - pages_inplace(h)));
		fault_sweep(h);
	}
}

/*
 * Pages that can never arrive (the source is lost, the deadline passed):
 * UFFDIO_POISON every page not in place, so a vCPU touching one gets a
 * memory error (SIGBUS) instead of blocking forever, or, once the range is
 * unregistered, reading zeros that were never the guest's.  Poisoning
 * wakes the threads waiting on those pages.  Pages poisoned.
 */
static uint64_t poison_missing(struct helper *h)
{
	uint64_t total = 0;
	unsigned i;

	if (!(h->uffd_ioctls & (1ull << _UFFDIO_POISON))) {
		helper_error(h, "cannot poison the missing pages: the registration does not offer "
			     "UFFDIO_POISON (kernel 6.6+); vCPUs on them stay blocked until the "
			     "VMM unregisters");
		return 0;
	}
	for (i = 0; i < h->nblk; i++) {
		struct hblock *b = &h->blk[i];
		uint64_t p = 0, n;
		int tries = 0;

		while ((p = pch_bitmap_next_clear(&b->inplace, p)) < b->d.npages) {
			struct uffdio_poison u;
			int rc;

			/*
			 * Under the events lock, the run measured there: never
			 * over a page a memory event discarded meanwhile.
			 */
			events_install_begin(h);
			for (n = 0; p + n < b->d.npages && !pch_bitmap_test(&b->inplace, p + n); n++)
				;
			if (!n) {
				events_install_end(h);
				continue;
			}
			u = (struct uffdio_poison){
				.range = { .start = b->host_addr + (p << b->d.page_shift),
					   .len = n << b->d.page_shift },
			};
			rc = ioctl(h->uffd, UFFDIO_POISON, &u) ? errno : 0;
			events_install_end(h);
			if (rc == 0) {
				total += n;
				p += n;
				continue;
			}
			if (u.updated > 0) {
				total += (uint64_t)u.updated >> b->d.page_shift;
				p += (uint64_t)u.updated >> b->d.page_shift;
				continue;
			}
			if (rc == EEXIST) {
				p++; /* installed after all: skip it */
				continue;
			}
			if (rc == EAGAIN && ++tries < 1000) {
				sched_yield();
				continue;
			}
			helper_error(h, "block %s: UFFDIO_POISON of %llu pages at page %llu: %s",
				     b->d.name, (unsigned long long)n, (unsigned long long)p,
				     strerror(rc));
			break;
		}
	}
	h->poisoned = total;
	return total;
}

/*
 * The migration failed: say so, and on the ring.  lost: the pages still
 * missing can never arrive (poisoned, unless --no-poison).
 */
static void fail_pages(struct helper *h, int code, const char *text, bool lost)
{
	uint64_t n = 0;

	if (h->failed)
		return;
	h->failed = true;
	if (lost && h->o.poison && h->uffd >= 0 && !h->complete &&
	    !__atomic_load_n(&h->vmm_gone, __ATOMIC_ACQUIRE))
		n = poison_missing(h);
	if (n)
		helper_error(h, "migration failed: %s; %llu pages that can never arrive "
			     "poisoned", text, (unsigned long long)n);
	else
		helper_error(h, "migration failed: %s", text);
	/* ERROR carries the count of poisoned pages where SYNC carries its epoch */
	if (h->have_ring)
		post(h, PCH_RING_ERROR, code, n, text);
}

static void fail(struct helper *h, int code, const char *text)
{
	fail_pages(h, code, text, false);
}

static int write_stats(struct helper *h)
{
	char *js;
	GError *err = NULL;
	int rc = 0;

	if (!h->o.stats_file)
		return 0;
	js = stats_json(h);
	if (!g_file_set_contents(h->o.stats_file, js, -1, &err)) {
		pch_err("stats: %s", err->message);
		g_error_free(err);
		rc = -EIO;
	}
	g_free(js);
	return rc;
}

static void stop_threads(struct helper *h)
{
	unsigned i;

	__atomic_store_n(&h->stop, true, __ATOMIC_RELEASE);
	/* Wake receives blocked on sockets: their threads see the stop flag. */
	if (h->urgent_fd >= 0)
		shutdown(h->urgent_fd, SHUT_RDWR);
	if (h->ft.started)
		fault_kick(h); /* its URGENT may be closed already: not wait for a tick */
	for (i = 0; i < h->o.channels; i++)
		if (h->pages[i].fd >= 0)
			shutdown(h->pages[i].fd, SHUT_RDWR);
	fault_join(h);
	rx_join(h);
}

/* ------------------------------------------------------------------ */
/* Pause and resume (docs/protocol.md 5.8)                            */
/* ------------------------------------------------------------------ */

/* A send on CONTROL failed: main pauses the session at its next look. */
static void lose_source(struct helper *h, const char *why)
{
	if (h->cc_lost)
		return;
	h->cc_lost = true;
	snprintf(h->pause_why, sizeof(h->pause_why), "%s", why);
}

/*
 * After the threads are joined, put the page state of shared blocks back
 * to what a new session can start from: nobody writes any page, no fault
 * waits for one (the new fault thread learns of them again), a page whose
 * every byte is in but which was never mapped is mapped now.
 */
static void tidy_shared(struct helper *h)
{
	unsigned i;

	for (i = 0; i < h->nblk; i++) {
		struct hblock *b = &h->blk[i];
		uint64_t p;

		if (!hblock_shared(b))
			continue;
		for (p = 0; p < b->d.npages; p++) {
			uint8_t st = pages_own(b, p);

			if (!st)
				continue;
			if ((st & OWN_MASK) == OWN_FULL) {
				__atomic_store_n(&b->own[p], OWN_FULL, __ATOMIC_RELEASE);
				if (!pch_bitmap_test(&b->present, p) &&
				    pages_continue(h, &h->ft.st, i, p, 1, PUT_BULK))
					pch_warn("block %s page %llu: received but cannot be mapped",
						 b->d.name, (unsigned long long)p);
				continue;
			}
			if ((st & OWN_MASK) != OWN_FREE &&
			    madvise(b->local + (p << b->d.page_shift), b->d.page_size,
				    MADV_REMOVE) < 0)
				pch_warn("block %s page %llu: MADV_REMOVE: %s", b->d.name,
					 (unsigned long long)p, strerror(errno));
			__atomic_store_n(&b->own[p], OWN_FREE, __ATOMIC_RELEASE);
		}
	}
}

/* Stop the threads and drop every connection; the uffd and pages stay. */
static void pause_threads(struct helper *h)
{
	stop_threads(h);
	session_close(h);
	__atomic_store_n(&h->stop, false, __ATOMIC_RELEASE);
	__atomic_store_n(&h->urgent_lost, false, __ATOMIC_RELEASE);
	h->cc_lost = false;
	h->sweep_started = false;
	tidy_shared(h);
}

/*
 * The source is lost (a connection closed, reset or silent): pause.  The
 * threads stop, faulting vCPUs wait in the kernel, nothing is lost, and main
 * reconnects.  0, or -1 when resuming is off or used up (the caller fails).
 */
static int pause_begin(struct helper *h, const char *why)
{
	char text[200];

	if (why != h->pause_why)
		snprintf(h->pause_why, sizeof(h->pause_why), "%s", why);
	if (!h->o.resume_s) {
		pch_err("source lost (%s); resuming is off (--resume-timeout-s 0)", h->pause_why);
		return -1;
	}
	if (h->resumes >= (unsigned)h->o.max_resumes) {
		pch_err("source lost (%s) after %u resumes, the most allowed (--max-resumes)",
			h->pause_why, h->resumes);
		return -1;
	}
	h->paused = true;
	h->pause_t0_ns = pch_now_ns();
	h->pause_deadline_ns = h->pause_t0_ns + (uint64_t)h->o.resume_s * 1000000000ull;
	h->next_attempt_ns = h->pause_t0_ns;
	h->resume_attempts = 0;
	pch_warn("session paused: %s; %llu of %llu pages in place; reconnecting for up to %d s",
		 h->pause_why, (unsigned long long)pages_inplace(h),
		 (unsigned long long)pages_total(h), h->o.resume_s);
	/* the ring's text is short: the reason alone, the event type says paused */
	snprintf(text, sizeof(text), "%s", h->pause_why);
	post(h, PCH_RING_PAUSED, 0, h->resumes, text);
	pause_threads(h);
	return 0;
}

/* Wake every thread waiting on a fault of ours: a missing page faults again. */
static void wake_all(struct helper *h)
{
	each_block(h, UFFDIO_WAKE, "UFFDIO_WAKE");
}

/*
 * One try at resuming: reconnect every channel with the same session, send
 * HAVE (every page in place) and START, start the threads again.  Faults
 * the old fault thread read and had not answered are lost with it: waking
 * the whole range makes their threads fault again, and the new thread hears
 * of them.  0 or -errno (the connections closed again).
 */
static int resume_attempt(struct helper *h)
{
	int rc;

	h->resume_attempts++;
	rc = session_connect(h, true);
	if (!rc)
		rc = start_threads(h);
	if (rc) {
		pause_threads(h);
		return rc;
	}
	wake_all(h);
	return 0;
}

/* While paused: try again when it is time.  0 going on, -1 failed (given up). */
static int resume_step(struct helper *h)
{
	uint64_t now = pch_now_ns(), took, backoff;
	char text[96];
	int rc;

	if (now < h->next_attempt_ns)
		return 0;
	rc = resume_attempt(h);
	now = pch_now_ns();
	if (rc) {
		if (now >= h->pause_deadline_ns) {
			pch_err("source lost (%s) and not back after %u attempts in %d s: %s",
				h->pause_why, h->resume_attempts, h->o.resume_s, strerror(-rc));
			return -1;
		}
		/* 200, 400, 800 ms, then every second */
		backoff = PCH_MIN(200ull << PCH_MIN(h->resume_attempts - 1, 3u), 1000ull);
		h->next_attempt_ns = now + backoff * 1000000ull;
		return 0;
	}
	took = now - h->pause_t0_ns;
	h->paused = false;
	h->resumes++;
	h->paused_ns += took;
	h->pause_max_ns = PCH_MAX(h->pause_max_ns, took);
	pch_info("session resumed after %.3f s (attempt %u, resume %u): %llu of %llu pages in place",
		 took / 1e9, h->resume_attempts, h->resumes, (unsigned long long)pages_inplace(h),
		 (unsigned long long)pages_total(h));
	snprintf(text, sizeof(text), "resumed after %llu ms", (unsigned long long)(took / 1000000));
	post(h, PCH_RING_RESUMED, 0, h->resumes, text);
	helper_kick(h);
	return 0;
}

/*
 * Only processes of the allowed uid (--allow-uid, default ours) may talk to
 * the control socket.  Its mode 0600 already keeps others out; this holds
 * even where the socket's mode or directory is looser than it should be.
 */
static bool peer_allowed(struct helper *h, int fd)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0) {
		pch_warn("control: refused a connection: SO_PEERCRED: %s", strerror(errno));
		h->ctl_refused++;
		return false;
	}
	if (cr.uid == h->o.allow_uid)
		return true;
	h->ctl_refused++;
	pch_warn("control: refused a connection from pid %d, uid %u: only uid %u may connect "
		 "(--allow-uid)", (int)cr.pid, (unsigned)cr.uid, (unsigned)h->o.allow_uid);
	return false;
}

/*
 * The owner let go; how: CTL_CLOSED, CTL_SHUTDOWN or CTL_EXITED.  It cannot
 * come back: before START the helper ends, after it the migration fails
 * unless complete.
 */
static void owner_gone(struct helper *h, int how, bool started)
{
	h->have_owner = false;
	if (how == CTL_SHUTDOWN && !h->complete)
		fail(h, -ECANCELED, started ? "VMM asked for shutdown before completion" :
					      "VMM asked for shutdown before START");
	else if (!started)
		pch_err("control: VMM went away before START");
	else if (how == CTL_EXITED && !h->complete)
		fail(h, -ESRCH, "the VMM exited before COMPLETE");
	else if (!h->complete)
		fail(h, -EPIPE, "VMM closed the control socket");
}

/* Has the process of this pidfd exited?  (A pidfd polls readable then.) */
static bool pidfd_exited(int pidfd)
{
	struct pollfd p = { .fd = pidfd, .events = POLLIN };

	return poll(&p, 1, 0) != 0; /* readable, or an error: gone all the same */
}

/* The effective uid in /proc/PID/status, or -1. */
static long proc_euid(int pid)
{
	char path[64], line[256];
	long ruid, euid = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Uid: %ld %ld", &ruid, &euid) == 2)
			break;
	fclose(f);
	return euid;
}

/*
 * Pin the VMM that just said HELLO on c: a pidfd of the very process that
 * connected, polled by run() so that its exit is noticed at once, even when
 * its connection lingers (inherited by a child that outlives it).
 * SO_PEERPIDFD (6.5+) takes it race-free, as the kernel recorded it at
 * connect().  Before that, pidfd_open(pid): the pid SO_PEERCRED gives is
 * the connecting process's, but it may have exited and its pid gone to
 * another process by now.  So the process pinned must still be alive
 * after it was checked to run as the peer's uid, and the connection must
 * still be open: a pid reused by a process of the same uid while the
 * connection stays open (held by another process) is the one case this
 * cannot tell.  Without either, the helper goes on unpinned, and notices
 * the VMM leaving when its connection closes, as before.  True when the
 * VMM is known to have exited already (pidfd_open: no such process).
 */
static bool pin_owner(struct helper *h, struct conn *c)
{
	struct pollfd hup = { .fd = c->fd, .events = POLLIN };
	struct ucred cr, cr2;
	socklen_t len = sizeof(cr);
	const char *why = NULL;
	char whybuf[96];
	int pidfd = -1;

	if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0) {
		pch_warn("control: VMM not pinned: SO_PEERCRED: %s", strerror(errno));
		return false;
	}
	h->vmm_pid = cr.pid;
	len = sizeof(pidfd);
	if (!h->o.test_no_peerpidfd &&
	    getsockopt(c->fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) == 0) {
		h->vmm_pinned_by = "SO_PEERPIDFD";
	} else if (!h->o.test_no_peerpidfd && errno == ESRCH) {
		/* the process that connected has exited (its connection lingers) */
		pch_warn("control: the VMM (pid %d) exited before it could be pinned",
			 h->vmm_pid);
		return true;
	} else if (!h->o.test_no_peerpidfd && errno != ENOPROTOOPT) {
		snprintf(whybuf, sizeof(whybuf), "SO_PEERPIDFD: %s", strerror(errno));
		why = whybuf;
	} else {
		pidfd = (int)syscall(SYS_pidfd_open, cr.pid, 0);
		len = sizeof(cr2);
		if (pidfd < 0 && errno == ESRCH) {
			/* the pid the kernel recorded at connect() is nobody's now */
			pch_warn("control: the VMM (pid %d) exited before it could be pinned",
				 h->vmm_pid);
			return true;
		} else if (pidfd < 0) {
			snprintf(whybuf, sizeof(whybuf), "SO_PEERPIDFD: not in this kernel; "
				 "pidfd_open: %s", strerror(errno));
			why = whybuf;
		} else if (proc_euid(cr.pid) != (long)cr.uid || pidfd_exited(pidfd) ||
			   getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cr2, &len) < 0 ||
			   cr2.pid != cr.pid || poll(&hup, 1, 0) < 0 ||
			   (hup.revents & (POLLHUP | POLLERR))) {
			why = "pidfd_open: the process of that pid is not the peer any more";
		} else {
			h->vmm_pinned_by = "pidfd_open";
		}
	}
	if (!h->vmm_pinned_by) {
		if (pidfd >= 0)
			close(pidfd);
		pch_warn("control: VMM is pid %d, not pinned (%s); its exit is noticed when "
			 "its connection closes", h->vmm_pid, why);
		return false;
	}
	fcntl(pidfd, F_SETFD, FD_CLOEXEC);
	h->vmm_pidfd = pidfd;
	pch_info("control: VMM is pid %d (pinned by pidfd, from %s)", h->vmm_pid,
		 h->vmm_pinned_by);
	return false;
}

#define MAX_CONNS (1 + MAX_MONITORS + 3) /* the VMM, monitors, not yet introduced */
#define HELLO_MS 5000                   /* a new connection's HELLO */

/*
 * The whole life of the helper after it listens: accept control
 * connections, set up with the VMM, serve, watch progress, until complete
 * and the VMM lets go, or failure.  Every phase has a deadline.  Exit status.
 */
static int run(struct helper *h, int lfd)
{
	uint64_t accept_deadline = pch_now_ns() + (uint64_t)h->o.accept_timeout_ms * 1000000ull;
	uint64_t setup_deadline = 0, deadline = 0, done_deadline = 0;
	struct conn conns[MAX_CONNS];
	unsigned nconn = 0, npolled, i;
	bool started = false, owner_left = false, vmm_exited = false;

	for (;;) {
		struct pollfd p[3 + MAX_CONNS + 1];
		uint64_t now = pch_now_ns();
		int np = 0, rc, pidx;

		if (got_signal) {
			fail(h, -EINTR, "stopped by a signal");
			break;
		}
		if (h->failed)
			break;
		/* the VMM tells a hung helper from a quiet one by this (ring.h) */
		if (h->have_ring)
			pch_ring_heartbeat(&h->ring, now);
		if (!h->have_owner && now > accept_deadline) {
			pch_err("control socket %s: no VMM said HELLO within %d s", h->o.ctl_path,
				h->o.accept_timeout_ms / 1000);
			break;
		}
		if (h->have_owner && !started) {
			struct conn *o = NULL;

			for (i = 0; i < nconn; i++)
				if (conns[i].owner)
					o = &conns[i];
			if (o && now - o->since_ns > CTL_SETUP_MS * 1000000ull) {
				pch_err("control: no message from the VMM within %d s before START",
					CTL_SETUP_MS / 1000);
				break;
			}
			if (now > setup_deadline) {
				pch_err("control: VMM did not START within %d s",
					CTL_SETUP_TOTAL_MS / 1000);
				break;
			}
		}
		if (!started && h->t_start_ns) {
			started = true;
			if (h->o.timeout_s)
				deadline = now + h->o.timeout_s * 1000000000ull;
		}
		if (started) {
			if (deadline && now > deadline && !h->complete) {
				char t[96];

				snprintf(t, sizeof(t), "not complete after %d s (%llu of %llu pages)",
					 h->o.timeout_s, (unsigned long long)pages_inplace(h),
					 (unsigned long long)pages_total(h));
				fail_pages(h, -ETIMEDOUT, t, true);
				break;
			}
			if (h->complete && !done_deadline)
				done_deadline = now + AFTER_COMPLETE_MS * 1000000ull;
			if (done_deadline && now > done_deadline)
				break;
			if (__atomic_load_n(&h->vmm_gone, __ATOMIC_ACQUIRE) && !h->complete) {
				fail(h, -ESRCH, "the VMM exited before COMPLETE");
				break;
			}
			if (__atomic_load_n(&h->urgent_dead, __ATOMIC_ACQUIRE) && !h->complete) {
				fail_pages(h, -EPIPE, "URGENT channel lost: faults cannot be served", true);
				break;
			}
			if (!h->complete && !h->paused) {
				const char *lost = NULL;
				char t[160];

				if (__atomic_load_n(&h->urgent_lost, __ATOMIC_ACQUIRE)) {
					/* written before the flag, by the fault thread */
					lost = h->urgent_lost_why;
				} else if (h->cc_lost) {
					lost = h->pause_why;
				} else if (h->o.keepalive_ms &&
					   now - h->cc_last_rx_ns >
						   (uint64_t)h->o.keepalive_ms * 1000000ull) {
					snprintf(t, sizeof(t), "CONTROL channel silent for %llu ms, "
						 "not even a keep-alive",
						 (unsigned long long)((now - h->cc_last_rx_ns) / 1000000));
					lost = t;
				}
				if (lost && pause_begin(h, lost)) {
					snprintf(t, sizeof(t), "source lost: %.140s", h->pause_why);
					fail_pages(h, -EPIPE, t, true);
					break;
				}
			}
			if (h->paused && resume_step(h)) {
				char t[200];

				snprintf(t, sizeof(t), "source lost (%.140s) and not back within %d s",
					 h->pause_why, h->o.resume_s);
				fail_pages(h, -EHOSTUNREACH, t, true);
				break;
			}
			if (!h->complete && !h->paused && !h->cc_lost &&
			    now - h->cc_last_tx_ns >= PCH_KEEPALIVE_MS * 1000000ull &&
			    session_keepalive(h))
				lose_source(h, "CONTROL: cannot send a keep-alive");
			if (__atomic_load_n(&h->fault_exited, __ATOMIC_ACQUIRE) && !h->complete) {
				fail(h, -EIO, "fault thread stopped");
				break;
			}
		}

		p[np++] = (struct pollfd){ .fd = h->wake_efd, .events = POLLIN };
		p[np++] = (struct pollfd){ .fd = started && !h->complete && !h->paused ? h->cc_fd : -1,
					   .events = POLLIN };
		p[np++] = (struct pollfd){ .fd = nconn < MAX_CONNS ? lfd : -1, .events = POLLIN };
		for (i = 0; i < nconn; i++)
			p[np++] = (struct pollfd){ .fd = conns[i].fd, .events = POLLIN };
		pidx = np;
		p[np++] = (struct pollfd){ .fd = h->have_owner ? h->vmm_pidfd : -1,
					   .events = POLLIN };
		rc = poll(p, (nfds_t)np, timeline_tick(h, 100));
		if (rc < 0 && errno != EINTR) {
			fail(h, -errno, "poll failed");
			break;
		}
		if (p[0].revents & POLLIN) {
			uint64_t v;

			if (read(h->wake_efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				pch_warn("wake eventfd: %s", strerror(errno));
		}
		if (started && !h->complete && !h->paused)
			check_silence(h);
		if (started && !h->paused)
			check_progress(h);
		if (h->have_ring)
			flush_posts(h);
		if (p[1].revents) {
			struct pch_cc_hdr hdr;
			struct pch_cc_error e;
			const char *why;

			rc = pch_read_full(h->cc_fd, &hdr, sizeof(hdr), 1000);
			if (rc) { /* the connection, not the peer's words: resume */
				char t[96];

				snprintf(t, sizeof(t), "CONTROL: %s", rc == -ECONNRESET ?
					 "source closed the connection" : strerror(-rc));
				lose_source(h, t);
				continue;
			}
			if (!rc)
				rc = pch_cc_check_hdr(&hdr, &why) ? -EBADMSG : 0;
			if (!rc && hdr.type == PCH_CC_KEEPALIVE) {
				h->cc_last_rx_ns = pch_now_ns();
				continue;
			}
			if (!rc && hdr.type == PCH_CC_ERROR && hdr.len == sizeof(e) &&
			    !pch_read_full(h->cc_fd, &e, sizeof(e), 1000)) {
				e.text[sizeof(e.text) - 1] = '\0';
				/* the ring carries -errno: never pass on what the wire claims */
				fail_pages(h, e.code < 0 && e.code > -4096 ? e.code : -EPROTO, e.text, true);
				break;
			}
			fail_pages(h, rc ? rc : -EPROTO, "unexpected message on CONTROL", true);
			break;
		}
		/* the connections this poll covered; one accepted now waits a round */
		npolled = nconn;
		if (p[2].revents & POLLIN) {
			int fd = pch_accept(lfd, 0);

			if (fd >= 0 && !peer_allowed(h, fd))
				close(fd);
			else if (fd >= 0)
				conns[nconn++] = (struct conn){ .fd = fd, .since_ns = pch_now_ns() };
		}
		for (i = 0; i < npolled; i++) {
			struct conn *c = &conns[i];
			bool was_owner = c->owner;

			if (!p[3 + i].revents) {
				if (!c->role && pch_now_ns() - c->since_ns > HELLO_MS * 1000000ull) {
					pch_warn("control: a connection sent no HELLO within %d ms",
						 HELLO_MS);
					close(c->fd);
					c->fd = -1;
				}
				continue;
			}
			rc = ctl_handle(h, c, 1000);
			if (c->owner)
				c->since_ns = pch_now_ns();
			if (c->owner && !was_owner) {
				setup_deadline = pch_now_ns() + CTL_SETUP_TOTAL_MS * 1000000ull;
				vmm_exited = pin_owner(h, c);
			}
			if (rc == CTL_OK)
				continue;
			close(c->fd);
			c->fd = -1;
			if (c->role == PCH_CTL_ROLE_MONITOR)
				h->nmonitors--;
			if (!c->owner)
				continue;
			owner_gone(h, rc, started);
			owner_left = true;
		}
		/* the VMM exited, whatever became of its connection: it let go */
		if (!owner_left && h->have_owner && (p[pidx].revents || vmm_exited)) {
			for (i = 0; i < nconn; i++) {
				struct conn *c = &conns[i];
				struct pollfd hup = { .fd = c->fd, .events = POLLIN };
				bool held;

				if (!c->owner || c->fd < 0)
					continue;
				held = poll(&hup, 1, 0) >= 0 && !(hup.revents & (POLLHUP | POLLERR));
				pch_warn("control: the VMM (pid %d) exited, %s says%s", h->vmm_pid,
					 vmm_exited ? "pidfd_open" : "its pidfd", held ? "; its control connection is still open "
					 "(another process holds it)" : "");
				close(c->fd);
				c->fd = -1;
				owner_gone(h, CTL_EXITED, started);
				owner_left = true;
			}
		}
		for (i = 0; i < nconn;) {
			if (conns[i].fd < 0)
				conns[i] = conns[--nconn];
			else
				i++;
		}
		if (owner_left)
			break; /* failed above, or done: either way the VMM has let go */
	}
	for (i = 0; i < nconn; i++)
		close(conns[i].fd);
	if (h->vmm_pidfd >= 0)
		close(h->vmm_pidfd);
	h->vmm_pidfd = -1;
	return h->complete && !h->failed ? 0 : 1;
}

/* Release what main and the threads left; every thread is joined. */
static void helper_free(struct helper *h)
{
	size_t cap = pages_frame_cap(h);
	unsigned i;

	for (i = 0; i < h->nblk; i++)
		hblock_free(&h->blk[i]);
	if (h->state)
		munmap(h->state, h->state_len);
	if (h->zero_buf)
		munmap(h->zero_buf, h->zero_len);
	for (i = 0; i < PCH_MAX_CHANNELS; i++) {
		free(h->pages[i].offs);
		/* rx_start set the pipe fds to -1 when it allocated mine */
		if (h->pages[i].mine && h->pages[i].pipe[0] >= 0) {
			close(h->pages[i].pipe[0]);
			close(h->pages[i].pipe[1]);
		}
		free(h->pages[i].mine);
		free(h->pages[i].iov);
		if (h->pages[i].data)
			munmap(h->pages[i].data, cap);
	}
	if (h->uffd >= 0)
		close(h->uffd);
	events_free(h);
	if (h->ft.sweep_efd > 0)
		close(h->ft.sweep_efd);
	if (h->ft.kick_efd > 0)
		close(h->ft.kick_efd);
	for (i = 0; i < h->nrx; i++)
		if (h->rx[i].wake_efd > 0)
			close(h->rx[i].wake_efd);
	close(h->wake_efd);
	g_free((char *)h->o.ctl_path);
	g_free((char *)h->o.key_file);
	g_free((char *)h->o.stats_file);
	g_free((char *)h->o.timeline_file);
	timeline_free(h);
	g_free((char *)h->o.uffd_read);
	g_free((char *)h->o.connect_order);
	free(h);
}

/* ------------------------------------------------------------------ */

static int parse_args(int argc, char **argv, struct helper_opts *o)
{
	gchar *source = NULL, *debug = NULL, *ctl = NULL, *key = NULL, *stats = NULL;
	gchar *uffd_read = NULL, *order = NULL, *timeline = NULL;
	gint channels = 4, rx = 0, timeout = 600, stall = 1000, nice_inc = 5, accept_s = 30;
	gint silent = 5000, chan_timeout = 30, keepalive = PCH_KEEPALIVE_TIMEOUT_MS, resume = 30;
	gint max_resumes = 20, die_continue = 0, allow_uid = -1;
	gboolean verbose = FALSE, quiet = FALSE, no_poison = FALSE, no_drop = FALSE;
	gboolean no_peerpidfd = FALSE;
	GOptionEntry entries[] = {
		{ "control", 'c', 0, G_OPTION_ARG_FILENAME, &ctl, "control socket path (listen)", "PATH" },
		{ "source", 's', 0, G_OPTION_ARG_STRING, &source, "pch-source address", "HOST:PORT" },
		{ "key-file", 'k', 0, G_OPTION_ARG_FILENAME, &key, "session id and key file", "FILE" },
		{ "channels", 'n', 0, G_OPTION_ARG_INT, &channels, "PAGES channels (default 4)", "N" },
		{ "rx-threads", 0, 0, G_OPTION_ARG_INT, &rx, "bulk receive threads (default: one per online CPU, at most --channels and 8)", "N" },
		{ "uffd-read", 0, 0, G_OPTION_ARG_STRING, &uffd_read,
		  "how uffd events are read: uring (default; falls back) or poll", "MODE" },
		{ "connect-order", 0, 0, G_OPTION_ARG_STRING, &order,
		  "channel connect order: natural or shuffle[:SEED]", "ORDER" },
		{ "stats", 0, 0, G_OPTION_ARG_FILENAME, &stats, "write stats JSON here at exit", "FILE" },
		{ "timeline", 0, 0, G_OPTION_ARG_FILENAME, &timeline,
		  "write progress every 10 ms from START here at exit: CSV "
		  "t_us,pages_inplace,pages_bulk,pages_urgent,faults", "FILE" },
		{ "timeout-s", 't', 0, G_OPTION_ARG_INT, &timeout,
		  "fail if not complete after this long (default 600, 0 = none)", "S" },
		{ "accept-timeout-s", 0, 0, G_OPTION_ARG_INT, &accept_s,
		  "wait this long for the VMM to connect (default 30)", "S" },
		{ "stall-ms", 0, 0, G_OPTION_ARG_INT, &stall,
		  "report faults pending longer than this (default 1000, 0 = off)", "MS" },
		{ "silent-ms", 0, 0, G_OPTION_ARG_INT, &silent,
		  "report a streaming channel silent this long (default 5000)", "MS" },
		{ "channel-timeout-s", 0, 0, G_OPTION_ARG_INT, &chan_timeout,
		  "give up a channel silent this long; its pages are requested (default 30, "
		  "0 = never)", "S" },
		{ "allow-uid", 0, 0, G_OPTION_ARG_INT, &allow_uid,
		  "only processes of this uid may use the control socket (default: ours)", "UID" },
		{ "keepalive-timeout-ms", 0, 0, G_OPTION_ARG_INT, &keepalive,
		  "CONTROL or URGENT silent this long (keep-alives come every second) is a "
		  "lost connection (default 5000, 0 = never)", "MS" },
		{ "resume-timeout-s", 0, 0, G_OPTION_ARG_INT, &resume,
		  "after losing the source, reconnect for this long before failing (default 30, "
		  "0 = fail at once)", "S" },
		{ "max-resumes", 0, 0, G_OPTION_ARG_INT, &max_resumes,
		  "resume at most this many times per migration (default 20)", "N" },
		{ "test-die-continue", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_INT, &die_continue,
		  "tests only: SIGKILL ourselves once N UFFDIO_CONTINUEs have mapped, before the "
		  "last is recorded", "N" },
		{ "test-no-peerpidfd", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_NONE, &no_peerpidfd,
		  "tests only: pin the VMM with pidfd_open, as on kernels before 6.5", NULL },
		{ "no-drop-privileges", 0, 0, G_OPTION_ARG_NONE, &no_drop,
		  "keep every capability, and allow new privileges (for debugging)", NULL },
		{ "rx-nice", 0, 0, G_OPTION_ARG_INT, &nice_inc,
		  "niceness added to bulk receive threads (default 5)", "N" },
		{ "no-poison", 0, 0, G_OPTION_ARG_NONE, &no_poison,
		  "when the source is lost or the deadline passes, leave missing pages "
		  "unpoisoned (for a later helper to serve) instead of UFFDIO_POISON", NULL },
		{ "verbose", 'v', 0, G_OPTION_ARG_NONE, &verbose, "more messages", NULL },
		{ "quiet", 'q', 0, G_OPTION_ARG_NONE, &quiet, "errors and warnings only", NULL },
		{ "debug", 'd', 0, G_OPTION_ARG_STRING, &debug,
		  "debug subsystems: uffd,chan,ring,ctl or all", "MASK" },
		{ NULL }
	};
	GOptionContext *ctx = g_option_context_new("- pch destination page service");
	GError *err = NULL;
	uint32_t mask = 0;
	int rc = -EINVAL;

	g_option_context_add_main_entries(ctx, entries, NULL);
	if (!g_option_context_parse(ctx, &argc, &argv, &err)) {
		fprintf(stderr, "pch-helper: %s\n", err->message);
		g_error_free(err);
		goto out;
	}
	if (debug && pch_log_parse_mask(debug, &mask)) {
		fprintf(stderr, "pch-helper: unknown debug mask '%s'\n", debug);
		goto out;
	}
	pch_log_init("pch-helper", quiet ? PCH_LOG_WARN : verbose ? PCH_LOG_DBG : PCH_LOG_INFO,
		     mask);
	if (!ctl || !source || !key) {
		fprintf(stderr, "pch-helper: --control, --source and --key-file are required\n");
		goto out;
	}
	if (pch_parse_hostport(source, o->src_host, sizeof(o->src_host), &o->src_port)) {
		fprintf(stderr, "pch-helper: bad --source '%s' (HOST:PORT)\n", source);
		goto out;
	}
	if (channels < 1 || channels > PCH_MAX_CHANNELS || rx < 0 || rx > HELPER_MAX_RX ||
	    timeout < 0 || stall < 0 || accept_s < 1 || nice_inc < 0 || nice_inc > 19 ||
	    silent < 1 || chan_timeout < 0 || (keepalive && keepalive < 2 * PCH_KEEPALIVE_MS) ||
	    keepalive < 0 || resume < 0 || max_resumes < 0 || die_continue < 0 ||
	    allow_uid < -1) {
		fprintf(stderr, "pch-helper: option out of range\n");
		goto out;
	}
	if (uffd_read && strcmp(uffd_read, "uring") && strcmp(uffd_read, "poll")) {
		fprintf(stderr, "pch-helper: --uffd-read takes uring or poll\n");
		goto out;
	}
	o->ctl_path = ctl;
	o->key_file = key;
	o->stats_file = stats;
	o->timeline_file = timeline;
	o->channels = (unsigned)channels;
	if (!rx) {
		/*
		 * One per CPU: on 2 CPUs, 1 GiB with nothing faulting comes in at
		 * 2.0-2.3 GB/s with two against 1.4-1.8 with one.  Only the
		 * first keeps receiving while a fault is served (rx.c).
		 */
		long cpus = sysconf(_SC_NPROCESSORS_ONLN);

		rx = (gint)PCH_MIN(PCH_MAX(cpus, 1L), (long)HELPER_MAX_RX);
	}
	o->rx_threads = (unsigned)PCH_MIN(rx, channels);
	o->uffd_read = uffd_read ? uffd_read : g_strdup("uring");
	o->connect_order = order;
	o->connect_timeout_ms = 5000;
	o->accept_timeout_ms = accept_s * 1000;
	o->timeout_s = timeout;
	o->stall_ms = stall;
	o->silent_ms = silent;
	o->chan_timeout_s = chan_timeout;
	o->rx_nice = nice_inc;
	o->poison = !no_poison;
	o->keepalive_ms = keepalive;
	o->resume_s = resume;
	o->max_resumes = max_resumes;
	o->test_die_continue = (uint64_t)die_continue;
	o->allow_uid = allow_uid < 0 ? geteuid() : (uid_t)allow_uid;
	o->drop_privileges = !no_drop;
	o->test_no_peerpidfd = no_peerpidfd;
	ctl = key = stats = uffd_read = order = timeline = NULL; /* kept for the whole run */
	rc = 0;
out:
	g_free(source);
	g_free(debug);
	g_free(ctl);
	g_free(key);
	g_free(stats);
	g_free(uffd_read);
	g_free(order);
	g_free(timeline);
	g_option_context_free(ctx);
	return rc;
}

/*
 * Does creating an io_uring take CAP_SYS_ADMIN here?  kernel.io_uring_disabled
 * = 1 lets only members of kernel.io_uring_group (and CAP_SYS_ADMIN) create
 * rings; 0 lets everybody, 2 nobody.
 */
static bool uring_needs_admin(void)
{
	gid_t groups[256];
	char *txt = NULL;
	long gid = -1;
	int n, i;

	if (!g_file_get_contents("/proc/sys/kernel/io_uring_disabled", &txt, NULL, NULL))
		return false; /* before 6.6: no such switch */
	n = atoi(txt);
	g_free(txt);
	if (n != 1)
		return false;
	if (g_file_get_contents("/proc/sys/kernel/io_uring_group", &txt, NULL, NULL)) {
		gid = atol(txt);
		g_free(txt);
	}
	if (gid < 0)
		return true;
	if ((gid_t)gid == getegid())
		return false;
	n = getgroups(PCH_ARRAY_SIZE(groups), groups);
	for (i = 0; i < n; i++)
		if (groups[i] == (gid_t)gid)
			return false;
	return true;
}

/*
 * Least privilege, once the control socket is bound (docs/protocol.md §3,
 * "What pch-helper needs").  Everything the helper does later works on
 * what the VMM hands it (the uffd, memfds, the ring), on TCP connections
 * to the source, and on io_uring rings that each (re)start of the threads
 * creates anew (start_threads, at START and at every resume).  None of it
 * needs a capability but two:
 *  - CAP_SYS_NICE: the fault thread raises its priority (nice -10) each
 *    time it starts (fault.c), so it keeps up with faults on a busy host;
 *  - CAP_SYS_ADMIN, only where kernel.io_uring_disabled = 1 and we are not
 *    in kernel.io_uring_group: the threads' rings need it then.
 * No CAP_IPC_LOCK (no registered buffers, no mlock; io_uring memory is
 * charged to the memory cgroup since 5.12), nothing for the UFFDIO_*
 * ioctls on the VMM's uffd, nothing for /dev/userfaultfd (never opened).
 * Every other capability leaves the effective, permitted, inheritable,
 * ambient and bounding sets, and no new privilege can be had (no setuid
 * or file capability through exec: PR_SET_NO_NEW_PRIVS).
 *
 * Capabilities are per thread: this runs on the main thread before any
 * other exists, and the threads started later inherit what it keeps.
 *
 * Not PR_SET_DUMPABLE 0: it would make /proc/PID of the helper root's
 * and keep ptrace out, which the BPF/USDT tools, gdb and the tests reading
 * /proc/PID/status need; the helper holds no secret but the session key,
 * which its uid can read from the key file anyway.
 */
static void drop_privileges(struct helper *h)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[2];
	uint64_t keep = 1ull << CAP_SYS_NICE, prm, eff;
	char kept[96] = "";
	int last = CAP_LAST_CAP, c;
	char *txt = NULL;

	if (!h->o.drop_privileges) {
		pch_info("privileges: kept (--no-drop-privileges)");
		return;
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		pch_warn("privileges: PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
	if (syscall(SYS_capget, &hdr, d) < 0) {
		pch_warn("privileges: capget: %s; capabilities left as they are", strerror(errno));
		return;
	}
	prm = d[0].permitted | (uint64_t)d[1].permitted << 32;
	eff = d[0].effective | (uint64_t)d[1].effective << 32;
	if (uring_needs_admin())
		keep |= 1ull << CAP_SYS_ADMIN;
	keep &= prm;
	if (g_file_get_contents("/proc/sys/kernel/cap_last_cap", &txt, NULL, NULL)) {
		last = PCH_MIN(atoi(txt), 63);
		g_free(txt);
	}
	/* the bounding set first: dropping from it takes CAP_SETPCAP, which goes next */
	if (eff & (1ull << CAP_SETPCAP)) {
		for (c = 0; c <= last; c++)
			if (!(keep & (1ull << c)) && prctl(PR_CAPBSET_READ, c, 0, 0, 0) == 1 &&
			    prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0) {
				pch_warn("privileges: dropping capability %d from the bounding set: %s",
					 c, strerror(errno));
				break;
			}
	}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		pch_warn("privileges: clearing the ambient set: %s", strerror(errno));
	if (prm & ~keep) {
		memset(d, 0, sizeof(d));
		d[0].effective = d[0].permitted = (uint32_t)keep;
		d[1].effective = d[1].permitted = (uint32_t)(keep >> 32);
		if (syscall(SYS_capset, &hdr, d) < 0) {
			pch_warn("privileges: capset: %s; capabilities left as they are",
				 strerror(errno));
			return;
		}
	}
	if (keep & (1ull << CAP_SYS_NICE))
		snprintf(kept, sizeof(kept), "cap_sys_nice (the fault thread's priority)");
	if (keep & (1ull << CAP_SYS_ADMIN))
		snprintf(kept + strlen(kept), sizeof(kept) - strlen(kept), "%scap_sys_admin "
			 "(kernel.io_uring_disabled=1)", kept[0] ? ", " : "");
	pch_info("privileges: no new privileges; capabilities kept: %s", kept[0] ? kept : "none");
}

/* Unlink our socket at exit, not one that a helper after us made there. */
static void unlink_ours(const char *path, const struct stat *ours)
{
	struct stat st;

	if (ours->st_ino && lstat(path, &st) == 0 && st.st_ino == ours->st_ino &&
	    st.st_dev == ours->st_dev)
		unlink(path);
}

int main(int argc, char **argv)
{
	struct helper *h = calloc(1, sizeof(*h));
	struct sigaction sa = { .sa_handler = on_signal };
	char why[PATH_MAX + 200];
	struct stat sock_st;
	int lfd, rc, ret = 1;
	unsigned i;

	if (!h)
		return 1;
	pthread_mutex_init(&h->err_lock, NULL);
	h->uffd = h->cc_fd = h->urgent_fd = h->vmm_pidfd = h->wake_efd = -1;
	for (i = 0; i < PCH_MAX_CHANNELS; i++)
		h->pages[i].fd = -1;
	/* every early exit frees what it had, so a leak checker sees none */
	ret = 2;
	if (parse_args(argc, argv, &h->o))
		goto out;
	signal(SIGPIPE, SIG_IGN);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	ret = 1;
	h->wake_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (h->wake_efd < 0) {
		pch_err("eventfd: %s", strerror(errno));
		goto out;
	}
	/* exit 2, as for a bad option: nothing is wrong but where we were told to listen */
	rc = pch_unix_path_check(h->o.ctl_path, why, sizeof(why));
	if (rc) {
		pch_err("control socket: %s; refusing to run (docs/protocol.md, section 3)", why);
		ret = 2;
		goto out;
	}
	rc = pch_session_load(h->o.key_file, &h->sess);
	if (rc) {
		pch_err("key file %s: %s%s", h->o.key_file, strerror(-rc),
			rc == -EPERM ? " (must be a regular file of mode 0600 or stricter)" : "");
		goto out;
	}
	lfd = pch_unix_listen(h->o.ctl_path);
	if (lfd < 0) {
		pch_err("control socket %s: %s", h->o.ctl_path, strerror(-lfd));
		goto out;
	}
	if (lstat(h->o.ctl_path, &sock_st) < 0)
		sock_st.st_ino = 0;
	drop_privileges(h);
	pch_info("listening on %s for the VMM", h->o.ctl_path);
	ret = run(h, lfd);
	/* events the VMM has not made room for yet: give it a moment */
	for (i = 0; h->have_ring && h->npending && i < 100; i++) {
		usleep(10000);
		flush_posts(h);
	}
	if (h->npending)
		pch_err("ring: %u events never posted: the VMM did not read its ring", h->npending);
	stop_threads(h);
	session_close(h);
	if (write_stats(h))
		ret = 1;
	if (timeline_write(h))
		ret = 1;
	close(lfd);
	unlink_ours(h->o.ctl_path, &sock_st);
	if (h->have_ring)
		pch_ring_close(&h->ring);
	pch_info("exit %d", ret);
out:
	helper_free(h);
	return ret;
}
