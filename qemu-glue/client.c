// SPDX-License-Identifier: MIT
/*
 * client.c - libpch-client: the VMM side of the control socket protocol
 * (include/pch/ctl.h) and the consumer side of the event ring
 * (include/pch/ring.h).
 *
 * A struct pch_client is not thread-safe: one thread at a time calls into it
 * (QEMU's migration thread, pch-vm's main thread).  Requests are strictly
 * sequential: send one packet, wait for its reply, with a deadline.  Every
 * reply is treated as hostile input and checked field by field; a reply that
 * fails a check breaks the connection (the stream can no longer be trusted)
 * and every later call fails with the same error.
 *
 * This library links only log, net, ring and util from libpch: no glib, no
 * io_uring, so a VMM pulls in nothing it does not already have.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "pch/client.h"
#include "pch/ctl.h"
#include "pch/proto.h"
#include "pch/ring.h"
#include "pch/state.h"

#include "log.h"
#include "net.h"
#include "ring.h"
#include "util.h"

/* Deadline of a request whose API call takes no timeout. */
#define CLIENT_DEFAULT_TIMEOUT_MS 5000
#define CLIENT_START_TIMEOUT_MS 60000

/* Features this client speaks (sent in HELLO). */
#define CLIENT_FEATURES (PCH_CTL_F_RING | PCH_CTL_F_BITMAP | PCH_CTL_F_STATS | PCH_CTL_F_SHARED | \
			 PCH_CTL_F_STATE)

#define CLIENT_ERR_LEN 256
/* a helper whose ring heartbeat stands still this long is hung (ring.h) */
#define CLIENT_HUNG_MS 30000
/* ... looked at this often (or 4 times per hung timeout) while a wait has nothing else to do */
#define CLIENT_HUNG_CHECK_MS 1000

/*
 * What the client remembers of a block: to check later calls against, and
 * to announce it again to a new helper (pch_client_reattach).
 */
struct client_block {
	uint64_t npages;
	struct pch_ctl_block msg; /* as sent */
	int fd;                   /* the caller's memfd, or -1 */
};

struct pch_client {
	int sock;             /* control socket (SOCK_SEQPACKET) */
	uint32_t seq;         /* seq of the last request sent */
	int broken;           /* 0, or the -errno that broke the connection */
	const char *peer;     /* who answers, for errors: "helper" or "pch-source" */
	uint64_t helper_features; /* PCH_CTL_F_* from the helper's HELLO */

	struct client_block blocks[PCH_MAX_BLOCKS];
	uint32_t nr_blocks;

	bool have_ring;
	struct pch_ring ring;
	uint32_t ring_nr;
	int hung_ms;          /* heartbeat silence that means hung; 0: never */
	uint64_t hb_seen;     /* the helper's last heartbeat value seen */
	uint64_t hb_since;    /* our clock when it last moved (or the ring came) */

	/* kept for a new helper (pch_client_reattach) */
	int uffd;             /* the caller's, or -1 before send_uffd */
	uint64_t uffd_features, uffd_ioctls;
	int state_fd;         /* the page state memfd (ours), or -1 */
	void *state;          /* ... mapped */
	uint64_t state_len;
	unsigned reattaches;

	/* state learned from ring events, so no wait misses one */
	bool complete;        /* COMPLETE seen */
	bool have_sync;       /* some SYNC_REACHED seen */
	uint64_t sync_epoch;  /* highest SYNC_REACHED epoch seen */
	uint64_t last_sync_req; /* highest epoch asked with request_sync */

	char err[CLIENT_ERR_LEN];
	uint8_t rx[PCH_CTL_MAX_MSG]; /* one reply; also sized for the largest request */
	uint8_t tx[PCH_CTL_MAX_MSG]; /* one request (BITMAP is the only big one) */
};

/*
 * pch_client_connect() has no client to hold its error when it fails, so the
 * reason lives here, per thread, and pch_client_error(NULL) returns it.
 */
static __thread char connect_err[CLIENT_ERR_LEN];

static void __attribute__((format(printf, 2, 3))) set_err(struct pch_client *c, const char *fmt,
							   ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c ? c->err : connect_err, CLIENT_ERR_LEN, fmt, ap);
	va_end(ap);
	pch_dbg(PCH_DBG_CTL, "client: %s", c ? c->err : connect_err);
}

/*
 * Copy text received from the helper into dst, NUL-terminated, replacing
 * anything that is not printable ASCII: it ends up in logs and reports.
 */
static void copy_text(char *dst, size_t cap, const char *src, size_t len)
{
	size_t i;

	if (len >= cap)
		len = cap - 1;
	for (i = 0; i < len && src[i]; i++)
		dst[i] = (src[i] >= 0x20 && src[i] < 0x7f) ? src[i] : '?';
	dst[i] = '\0';
}

static const char *const ctl_type_names[PCH_CTL_TYPE_MAX] = {
	[PCH_CTL_HELLO] = "HELLO",   [PCH_CTL_BLOCK] = "BLOCK", [PCH_CTL_BITMAP] = "BITMAP",
	[PCH_CTL_UFFD] = "UFFD",     [PCH_CTL_RING] = "RING",   [PCH_CTL_START] = "START",
	[PCH_CTL_SYNC] = "SYNC",     [PCH_CTL_STATS] = "STATS", [PCH_CTL_SHUTDOWN] = "SHUTDOWN",
	[PCH_CTL_REPLY] = "REPLY",   [PCH_CTL_STATE] = "STATE",
};

static const char *ctl_type_name(unsigned type)
{
	if (type < PCH_CTL_TYPE_MAX && ctl_type_names[type])
		return ctl_type_names[type];
	return "?";
}

/*
 * Remember that the connection can no longer be used; returns err.  The
 * helper's exit (-EPIPE) overrides an earlier reason: it is the final word.
 */
static int break_conn(struct pch_client *c, int err)
{
	if (!c->broken || err == -EPIPE)
		c->broken = err;
	return err;
}

/*
 * Receive the reply to request (type, c->seq) before deadline_ns.  Replies to
 * older requests (that timed out earlier) are skipped.  On success the packet
 * is in c->rx and its length is returned; the caller checks the body.
 * HELLO accepts a PCH_CTL_HELLO packet or a REPLY (a refusal).
 */
static int recv_reply(struct pch_client *c, uint16_t type, uint64_t deadline_ns)
{
	const struct pch_ctl_hdr *h = (const struct pch_ctl_hdr *)c->rx;
	int nfds = 0;
	int n;

	for (;;) {
		n = pch_seqpkt_recv(c->sock, c->rx, sizeof(c->rx), NULL, 0, &nfds,
				    pch_ms_until(deadline_ns));
		if (n == 0) {
			set_err(c, "%s exited", c->peer);
			return break_conn(c, -EPIPE);
		}
		if (n == -ETIMEDOUT) {
			/* the reply may still come: recv_reply skips it next time */
			set_err(c, "no reply to %s (seq %u) from the %s in time",
				ctl_type_name(type), c->seq, c->peer);
			return n;
		}
		if (n == -ECONNRESET || n == -EPIPE) {
			set_err(c, "%s exited", c->peer);
			return break_conn(c, -EPIPE);
		}
		if (n < 0) {
			set_err(c, "receiving the reply to %s: %s", ctl_type_name(type),
				strerror(-n));
			return break_conn(c, n);
		}
		if ((size_t)n < sizeof(*h) || h->magic != PCH_CTL_MAGIC || h->len != (uint32_t)n) {
			set_err(c, "malformed packet from the %s (%d bytes)", c->peer, n);
			return break_conn(c, -EPROTO);
		}
		if (h->type != PCH_CTL_REPLY && !(type == PCH_CTL_HELLO && h->type == PCH_CTL_HELLO)) {
			set_err(c, "unexpected %s packet from the %s", ctl_type_name(h->type), c->peer);
			return break_conn(c, -EPROTO);
		}
		/* seq is 32-bit and wraps: "older" is a small negative difference */
		if (h->seq != c->seq) {
			int32_t d = (int32_t)(h->seq - c->seq);

			if (d < 0 && d > -(1 << 20)) {
				pch_dbg(PCH_DBG_CTL, "client: skipping a late reply (seq %u)", h->seq);
				continue;
			}
			set_err(c, "reply with seq %u to request seq %u", h->seq, c->seq);
			return break_conn(c, -EPROTO);
		}
		return n;
	}
}

/*
 * Check a REPLY packet of length n in c->rx against the request type.
 * 0 with *status and the text (pointer into c->rx, not NUL-terminated, and
 * its length), or -EPROTO.
 */
static int check_reply(struct pch_client *c, uint16_t type, int n, int32_t *status,
		       const char **text, uint32_t *text_len)
{
	const struct pch_ctl_reply *r = (const struct pch_ctl_reply *)c->rx;

	if ((size_t)n < sizeof(*r) || r->text_len != (uint32_t)n - sizeof(*r)) {
		set_err(c, "malformed reply to %s (%d bytes)", ctl_type_name(type), n);
		return break_conn(c, -EPROTO);
	}
	if (r->req_type != type) {
		set_err(c, "reply to %s answers %s", ctl_type_name(type),
			ctl_type_name(r->req_type));
		return break_conn(c, -EPROTO);
	}
	/* a status must be 0 or -errno: anything else is not one */
	if (r->status > 0 || r->status < -4095) {
		set_err(c, "reply to %s: bad status %d", ctl_type_name(type), r->status);
		return break_conn(c, -EPROTO);
	}
	*status = r->status;
	*text = (const char *)(r + 1);
	*text_len = r->text_len;
	return 0;
}

/*
 * Send the request in buf (len bytes, header filled here) with its fds, and
 * wait for its reply until timeout_ms.  Returns the reply's status (0 or the
 * helper's -errno, with its text as the error), or -errno if the exchange
 * failed.  With json, a successful reply's text is returned malloc'ed there.
 */
static int request(struct pch_client *c, void *buf, size_t len, uint16_t type, const int *fds,
		   int nfds, int timeout_ms, char **json)
{
	struct pch_ctl_hdr *h = buf;
	uint64_t deadline;
	const char *text;
	uint32_t text_len;
	int32_t status;
	int n, ret;

	if (c->broken) {
		/* keep the error text of whatever broke it */
		return c->broken;
	}
	if (timeout_ms < 0)
		timeout_ms = CLIENT_DEFAULT_TIMEOUT_MS;
	deadline = pch_now_ns() + (uint64_t)timeout_ms * 1000000ull;

	h->magic = PCH_CTL_MAGIC;
	h->type = type;
	h->flags = 0;
	h->len = (uint32_t)len;
	h->seq = ++c->seq;

	pch_dbg(PCH_DBG_CTL, "client: -> %s seq %u len %zu fds %d", ctl_type_name(type), h->seq,
		len, nfds);
	ret = pch_seqpkt_send(c->sock, buf, len, fds, nfds, pch_ms_until(deadline));
	if (ret == -EPIPE || ret == -ECONNRESET || ret == -ENOTCONN) {
		set_err(c, "%s exited", c->peer);
		return break_conn(c, -EPIPE);
	}
	if (ret == -ETIMEDOUT) {
		/* half a packet cannot be in flight, but the helper stopped reading */
		set_err(c, "sending %s: the %s does not read its socket", ctl_type_name(type),
			c->peer);
		return break_conn(c, -ETIMEDOUT);
	}
	if (ret < 0) {
		set_err(c, "sending %s: %s", ctl_type_name(type), strerror(-ret));
		return ret;
	}

	n = recv_reply(c, type, deadline);
	if (n < 0)
		return n;
	ret = check_reply(c, type, n, &status, &text, &text_len);
	if (ret)
		return ret;
	pch_dbg(PCH_DBG_CTL, "client: <- REPLY %s seq %u status %d", ctl_type_name(type), c->seq,
		status);
	if (status < 0) {
		char why[CLIENT_ERR_LEN - 64];

		copy_text(why, sizeof(why), text, text_len);
		set_err(c, "%s refused %s: %s", c->peer, ctl_type_name(type),
			why[0] ? why : strerror(-status));
		return status;
	}
	if (json) {
		*json = malloc(text_len + 1);
		if (!*json) {
			set_err(c, "out of memory for a %u-byte reply", text_len);
			return -ENOMEM;
		}
		memcpy(*json, text, text_len);
		(*json)[text_len] = '\0';
	}
	return 0;
}

/* Send a request that carries only pch_ctl_simple. */
static int request_simple(struct pch_client *c, uint16_t type, int timeout_ms, char **json)
{
	struct pch_ctl_simple m;

	memset(&m, 0, sizeof(m));
	return request(c, &m, sizeof(m), type, NULL, 0, timeout_ms, json);
}

/*
 * HELLO exchange: send ours, check the helper's.  0 or -errno (a refusal
 * comes back as a REPLY with a negative status).
 */
static int hello(struct pch_client *c, int timeout_ms)
{
	struct pch_ctl_hello m, *r = (struct pch_ctl_hello *)c->rx;
	const char *text;
	uint32_t text_len;
	int32_t status;
	char name[sizeof(m.name)];
	uint64_t deadline = pch_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	int n, ret;

	memset(&m, 0, sizeof(m));
	m.hdr.magic = PCH_CTL_MAGIC;
	m.hdr.type = PCH_CTL_HELLO;
	m.hdr.len = sizeof(m);
	m.hdr.seq = ++c->seq;
	m.version = PCH_CTL_VERSION;
	m.role = PCH_CTL_ROLE_VMM;
	m.pid = (uint32_t)getpid();
	m.features = CLIENT_FEATURES;
	/* the program name, as ps shows it: tells the helper's log who we are */
	snprintf(m.name, sizeof(m.name), "%s", program_invocation_short_name);

	ret = pch_seqpkt_send(c->sock, &m, sizeof(m), NULL, 0, pch_ms_until(deadline));
	if (ret < 0) {
		set_err(c, "sending HELLO: %s", strerror(-ret));
		return ret;
	}
	n = recv_reply(c, PCH_CTL_HELLO, deadline);
	if (n < 0)
		return n;
	if (r->hdr.type == PCH_CTL_REPLY) {
		/* a refusal (a VMM is already connected, ...) */
		ret = check_reply(c, PCH_CTL_HELLO, n, &status, &text, &text_len);
		if (ret)
			return ret;
		if (status == 0) {
			set_err(c, "%s answered HELLO with an empty REPLY", c->peer);
			return break_conn(c, -EPROTO);
		}
		copy_text(name, sizeof(name), text, text_len);
		set_err(c, "%s refused HELLO: %s", c->peer, text_len ? name : strerror(-status));
		return break_conn(c, status);
	}
	if (n != sizeof(*r)) {
		set_err(c, "%s HELLO of %d bytes, expected %zu", c->peer, n, sizeof(*r));
		return break_conn(c, -EPROTO);
	}
	if (r->version != PCH_CTL_VERSION) {
		set_err(c, "%s speaks control protocol version %u, we speak %u", c->peer,
			r->version, PCH_CTL_VERSION);
		return break_conn(c, -EPROTONOSUPPORT);
	}
	c->helper_features = r->features;
	copy_text(name, sizeof(name), r->name, sizeof(r->name));
	pch_dbg(PCH_DBG_CTL, "client: %s \"%s\" pid %u, features 0x%llx", c->peer, name, r->pid,
		(unsigned long long)r->features);
	return 0;
}

/*
 * A client with nothing open, talking to peer ("helper", "pch-source");
 * NULL (the error set) without memory.
 */
static struct pch_client *client_new(const char *peer)
{
	struct pch_client *c = calloc(1, sizeof(*c));

	if (!c) {
		set_err(NULL, "out of memory");
		return NULL;
	}
	c->sock = -1;
	c->uffd = -1;
	c->state_fd = -1;
	c->hung_ms = CLIENT_HUNG_MS;
	c->peer = peer;
	return c;
}

/*
 * Connect to the helper's control socket at path and exchange HELLO, all
 * within timeout_ms (< 0: 5 s).  0 with *out set, or -errno with *out NULL
 * and the reason in pch_client_error(NULL) (per thread).
 */
int pch_client_connect(const char *path, int timeout_ms, struct pch_client **out)
{
	struct pch_client *c;
	uint64_t deadline;
	int fd, ret;

	*out = NULL;
	if (!path) {
		set_err(NULL, "no control socket path");
		return -EINVAL;
	}
	if (timeout_ms < 0)
		timeout_ms = CLIENT_DEFAULT_TIMEOUT_MS;
	deadline = pch_now_ns() + (uint64_t)timeout_ms * 1000000ull;

	c = client_new("helper");
	if (!c)
		return -ENOMEM;

	fd = pch_unix_connect(path, timeout_ms);
	if (fd < 0) {
		set_err(NULL, "connecting to %s: %s", path, strerror(-fd));
		free(c);
		return fd;
	}
	c->sock = fd;

	ret = hello(c, pch_ms_until(deadline));
	if (ret) {
		set_err(NULL, "%s: %s", path, c->err);
		pch_client_close(c);
		return ret;
	}
	*out = c;
	return 0;
}

/*
 * Announce one RAM block (id = number of blocks announced before).  Its memfd
 * rides along when b->fd >= 0.  0 or -errno.
 */
int pch_client_add_block(struct pch_client *c, const struct pch_client_block *b)
{
	struct pch_ctl_block m;
	size_t name_len;
	int ret;

	if (!b || !b->name) {
		set_err(c, "add_block: no block");
		return -EINVAL;
	}
	name_len = strnlen(b->name, PCH_BLOCK_NAME_LEN);
	if (name_len == 0 || name_len >= PCH_BLOCK_NAME_LEN) {
		set_err(c, "block name must be 1..%d bytes", PCH_BLOCK_NAME_LEN - 1);
		return -EINVAL;
	}
	if (c->nr_blocks >= PCH_MAX_BLOCKS) {
		set_err(c, "block %s: more than %d blocks", b->name, PCH_MAX_BLOCKS);
		return -E2BIG;
	}
	if (b->page_size < 4096 || !pch_is_pow2(b->page_size) || !b->length ||
	    b->length % b->page_size || (uintptr_t)b->host_addr % b->page_size) {
		set_err(c, "block %s: page size %u, length %llu, address %p: not page aligned",
			b->name, b->page_size, (unsigned long long)b->length, b->host_addr);
		return -EINVAL;
	}
	if (b->backing < PCH_BACKING_ANON || b->backing >= PCH_BACKING_MAX) {
		set_err(c, "block %s: unknown backing %u", b->name, b->backing);
		return -EINVAL;
	}
	/* the helper fills shared blocks through its own mapping of the memfd */
	if ((b->backing == PCH_BACKING_MEMFD || b->backing == PCH_BACKING_HUGETLB) != (b->fd >= 0)) {
		set_err(c, "block %s: backing %u %s", b->name, b->backing,
			b->fd >= 0 ? "is private: it takes no fd" : "is shared: its memfd must ride along");
		return -EINVAL;
	}

	if (b->fd >= 0 && !(c->helper_features & PCH_CTL_F_SHARED)) {
		set_err(c, "block %s: this helper does not serve shared (memfd, hugetlb) blocks",
			b->name);
		return -EOPNOTSUPP;
	}

	memset(&m, 0, sizeof(m));
	m.id = c->nr_blocks;
	m.page_size = b->page_size;
	m.backing = b->backing;
	m.flags = b->fd >= 0 ? PCH_CTL_BLOCK_F_FD : 0;
	m.host_addr = (uint64_t)(uintptr_t)b->host_addr;
	m.length = b->length;
	memcpy(m.name, b->name, name_len);

	ret = request(c, &m, sizeof(m), PCH_CTL_BLOCK, b->fd >= 0 ? &b->fd : NULL,
		      b->fd >= 0 ? 1 : 0, -1, NULL);
	if (ret)
		return ret;
	c->blocks[c->nr_blocks].npages = b->length / b->page_size;
	c->blocks[c->nr_blocks].msg = m;
	c->blocks[c->nr_blocks].fd = b->fd;
	c->nr_blocks++;
	return 0;
}

/*
 * Send the in-place bitmap of block id (npages bits of words) in BITMAP
 * packets of at most PCH_CTL_BITMAP_MAX_PAGES pages.  0 or -errno.
 */
int pch_client_send_bitmap(struct pch_client *c, uint32_t id, const uint64_t *words,
			   uint64_t npages)
{
	struct pch_ctl_bitmap *m = (struct pch_ctl_bitmap *)c->tx;
	uint64_t *out = (uint64_t *)(m + 1);
	uint64_t first, n, nwords;
	int ret;

	_Static_assert(PCH_CTL_BITMAP_MAX_PAGES % 64 == 0, "bitmap packets start on a word");

	if (!(c->helper_features & PCH_CTL_F_BITMAP)) {
		set_err(c, "helper does not take in-place bitmaps");
		return -EOPNOTSUPP;
	}
	if (id >= c->nr_blocks || npages > c->blocks[id].npages || (npages && !words)) {
		set_err(c, "bitmap of block %u: %llu pages do not fit the block", id,
			(unsigned long long)npages);
		return -EINVAL;
	}

	for (first = 0; first < npages; first += n) {
		n = PCH_MIN(npages - first, PCH_CTL_BITMAP_MAX_PAGES);
		nwords = PCH_DIV_ROUND_UP(n, 64);

		memset(m, 0, sizeof(*m));
		m->block = id;
		m->first_page = first;
		m->npages = n;
		memcpy(out, words + first / 64, nwords * 8);
		/* bits past the last page are not the caller's to send */
		if (n % 64)
			out[nwords - 1] &= (1ull << (n % 64)) - 1;

		ret = request(c, m, sizeof(*m) + nwords * 8, PCH_CTL_BITMAP, NULL, 0, -1, NULL);
		if (ret)
			return ret;
	}
	return 0;
}

/*
 * Hand the uffd over (the fd is duplicated into the helper; the caller keeps
 * its own), with the features enabled by UFFDIO_API and the ioctls
 * UFFDIO_REGISTER reported.  0 or -errno.
 */
int pch_client_send_uffd(struct pch_client *c, int uffd, uint64_t features, uint64_t ioctls)
{
	struct pch_ctl_uffd m;

	if (uffd < 0) {
		set_err(c, "send_uffd: bad fd %d", uffd);
		return -EBADF;
	}
	memset(&m, 0, sizeof(m));
	m.features = features;
	m.ioctls = ioctls;
	c->uffd = uffd;
	c->uffd_features = features;
	c->uffd_ioctls = ioctls;
	return request(c, &m, sizeof(m), PCH_CTL_UFFD, &uffd, 1, -1, NULL);
}

/*
 * Create the page state memfd for the blocks announced so far and hand it
 * to the helper (PCH_CTL_STATE).  The client keeps it: a helper that dies
 * leaves in it which pages are in place, for the next one.  0 or -errno.
 */
int pch_client_setup_state(struct pch_client *c)
{
	uint64_t npages[PCH_MAX_BLOCKS];
	uint32_t psz[PCH_MAX_BLOCKS];
	struct pch_ctl_state m;
	uint32_t i;
	void *mem;
	int fd, ret;

	if (!(c->helper_features & PCH_CTL_F_STATE)) {
		set_err(c, "helper does not keep its page state in the VMM's memory");
		return -EOPNOTSUPP;
	}
	if (c->state_fd >= 0) {
		set_err(c, "the page state is already set up");
		return -EALREADY;
	}
	if (!c->nr_blocks) {
		set_err(c, "setup_state: announce the blocks first");
		return -EINVAL;
	}
	for (i = 0; i < c->nr_blocks; i++) {
		npages[i] = c->blocks[i].npages;
		psz[i] = c->blocks[i].msg.page_size;
	}
	c->state_len = pch_state_size(c->nr_blocks, npages);
	fd = memfd_create("pch-state", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	/* sealed at its size: the helper maps it, a shrink would crash it */
	if (fd < 0 || ftruncate(fd, (off_t)c->state_len) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		ret = -errno;
		set_err(c, "page state memfd of %llu bytes: %s",
			(unsigned long long)c->state_len, strerror(-ret));
		if (fd >= 0)
			close(fd);
		return ret;
	}
	mem = mmap(NULL, c->state_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (mem == MAP_FAILED) {
		ret = -errno;
		set_err(c, "mapping the page state: %s", strerror(-ret));
		close(fd);
		return ret;
	}
	pch_state_init(mem, c->nr_blocks, npages, psz);
	memset(&m, 0, sizeof(m));
	m.size = c->state_len;
	ret = request(c, &m, sizeof(m), PCH_CTL_STATE, &fd, 1, -1, NULL);
	if (ret) {
		/* refused: as if never set up (a retry, or no reattach) */
		munmap(mem, c->state_len);
		close(fd);
		c->state_len = 0;
		return ret;
	}
	c->state_fd = fd;
	c->state = mem;
	return 0;
}

/*
 * Record in the page state that pages [first, first + n) of block id are
 * about to be discarded or unmapped (call it before the madvise/munmap): a
 * new helper taking over from a dead one must never put old content there,
 * even if the dead one read the REMOVE event and died before marking it.
 * The live helper reads the same bits.  0, or -EINVAL / -ENODEV (no state).
 */
int pch_client_state_discard(struct pch_client *c, uint32_t id, uint64_t first, uint64_t n)
{
	const struct pch_state_hdr *h = c->state;
	const struct pch_state_block *b;
	uint64_t *words, p;

	if (!h)
		return -ENODEV;
	b = (const struct pch_state_block *)(h + 1);
	if (id >= h->nr_blocks || first > b[id].npages || n > b[id].npages - first)
		return -EINVAL;
	words = (uint64_t *)((uint8_t *)c->state + b[id].offset) + PCH_STATE_DISCARDED * b[id].words;
	for (p = first; p < first + n; p++)
		__atomic_fetch_or(&words[p / 64], 1ull << (p % 64), __ATOMIC_ACQ_REL);
	return 0;
}

/* Pages the page state records in place (0 without a state). */
uint64_t pch_client_state_inplace(const struct pch_client *c)
{
	const struct pch_state_hdr *h = c->state;
	const struct pch_state_block *b;
	uint64_t n = 0, w, i;

	if (!h)
		return 0;
	b = (const struct pch_state_block *)(h + 1);
	for (i = 0; i < h->nr_blocks; i++) {
		const uint64_t *in = (const uint64_t *)((const uint8_t *)h + b[i].offset) +
				     PCH_STATE_INPLACE * b[i].words;

		for (w = 0; w < b[i].words; w++)
			n += (uint64_t)__builtin_popcountll(__atomic_load_n(&in[w], __ATOMIC_RELAXED));
	}
	return n;
}

/*
 * Create the event ring (nr entries, power of two) and hand its memfd and
 * eventfd to the helper.  0, -EALREADY, -EOPNOTSUPP, or -errno.
 */
int pch_client_setup_ring(struct pch_client *c, uint32_t nr)
{
	struct pch_ctl_ring m;
	int fds[2];
	int ret;

	if (c->have_ring) {
		set_err(c, "the ring is already set up");
		return -EALREADY;
	}
	if (!(c->helper_features & PCH_CTL_F_RING)) {
		set_err(c, "helper does not post events on a ring");
		return -EOPNOTSUPP;
	}
	ret = pch_ring_create(&c->ring, nr);
	if (ret) {
		set_err(c, "creating a %u-entry ring: %s", nr, strerror(-ret));
		return ret;
	}
	c->ring_nr = nr;

	memset(&m, 0, sizeof(m));
	m.nr_entries = c->ring.nr;
	m.size = c->ring.size;
	fds[0] = c->ring.memfd;
	fds[1] = c->ring.efd;
	ret = request(c, &m, sizeof(m), PCH_CTL_RING, fds, 2, -1, NULL);
	if (ret) {
		pch_ring_close(&c->ring);
		return ret;
	}
	c->have_ring = true;
	c->hb_seen = 0;
	c->hb_since = pch_now_ns();
	return 0;
}

int pch_client_set_hung_timeout(struct pch_client *c, int ms)
{
	if (ms < 0) {
		set_err(c, "hung timeout %d ms: not >= 0", ms);
		return -EINVAL;
	}
	c->hung_ms = ms;
	return 0;
}

/*
 * -ETIME (the reason set) when the helper's heartbeat on the ring has not
 * moved for hung_ms of our time: stopped, deadlocked, or starved that long.
 * A helper that never beat (an older one) is not judged.  Else 0.
 */
static int check_heartbeat(struct pch_client *c)
{
	uint64_t hb, now;

	if (!c->have_ring || !c->hung_ms)
		return 0;
	hb = pch_ring_heartbeat_ns(&c->ring);
	now = pch_now_ns();
	if (hb != c->hb_seen) {
		c->hb_seen = hb;
		c->hb_since = now;
		return 0;
	}
	if (!hb || now - c->hb_since < (uint64_t)c->hung_ms * 1000000ull)
		return 0;
	set_err(c, "helper hung: its ring heartbeat stood still for %llu ms (stopped or "
		"deadlocked?)", (unsigned long long)((now - c->hb_since) / 1000000u));
	return -ETIME;
}

/* Let the helper connect to the source and serve pages.  0 or -errno. */
int pch_client_start(struct pch_client *c)
{
	/* the helper answers START once every channel to the source is open */
	return request_simple(c, PCH_CTL_START, CLIENT_START_TIMEOUT_MS, NULL);
}

/*
 * Ask for sync point epoch (greater than every epoch asked before);
 * SYNC_REACHED(epoch) follows on the ring.  0 or -errno.
 */
int pch_client_request_sync(struct pch_client *c, uint64_t epoch)
{
	struct pch_ctl_sync m;
	int ret;

	if (epoch <= c->last_sync_req) {
		set_err(c, "sync epoch %llu is not above %llu", (unsigned long long)epoch,
			(unsigned long long)c->last_sync_req);
		return -EINVAL;
	}
	memset(&m, 0, sizeof(m));
	m.epoch = epoch;
	ret = request(c, &m, sizeof(m), PCH_CTL_SYNC, NULL, 0, -1, NULL);
	/*
	 * Asked, unless the helper refused it: one that died meanwhile may
	 * have heard it or not, and pch_client_reattach asks its successor.
	 */
	if (!ret || ret == -EPIPE || ret == -ECONNRESET || ret == -ETIMEDOUT)
		c->last_sync_req = epoch;
	return ret;
}

/* Update what the client knows from one event taken off the ring. */
static void note_event(struct pch_client *c, const struct pch_ring_event *ev)
{
	pch_dbg(PCH_DBG_RING, "client: ring event %s code %d epoch %llu \"%s\"",
		pch_ring_type_name(ev->type), ev->code, (unsigned long long)ev->epoch, ev->text);
	switch (ev->type) {
	case PCH_RING_SYNC_REACHED:
		if (!c->have_sync || ev->epoch > c->sync_epoch)
			c->sync_epoch = ev->epoch;
		c->have_sync = true;
		break;
	case PCH_RING_COMPLETE:
		c->complete = true;
		break;
	default:
		break;
	}
}

/*
 * The control socket is readable while no request is outstanding: either the
 * helper closed it (-EPIPE), or a late reply to a request that timed out is
 * waiting (dropped, 0).  Anything else breaks the connection.
 */
static int drain_socket(struct pch_client *c)
{
	const struct pch_ctl_hdr *h = (const struct pch_ctl_hdr *)c->rx;
	int nfds = 0;
	int n;

	n = pch_seqpkt_recv(c->sock, c->rx, sizeof(c->rx), NULL, 0, &nfds, 0);
	if (n == -ETIMEDOUT || n == -EAGAIN)
		return 0;
	if (n == 0 || n == -ECONNRESET || n == -EPIPE) {
		set_err(c, "helper exited");
		return break_conn(c, -EPIPE);
	}
	if (n < 0) {
		set_err(c, "control socket: %s", strerror(-n));
		return break_conn(c, n);
	}
	if ((size_t)n >= sizeof(*h) && h->magic == PCH_CTL_MAGIC && h->type == PCH_CTL_REPLY &&
	    (int32_t)(h->seq - c->seq) <= 0) {
		pch_dbg(PCH_DBG_CTL, "client: dropping a late reply (seq %u)", h->seq);
		return 0;
	}
	set_err(c, "unsolicited packet from the helper (%d bytes)", n);
	return break_conn(c, -EPROTO);
}

/*
 * Take the next ring event, waiting at most timeout_ms (< 0: 5 s) for one.
 * 0, -ETIMEDOUT, -EPIPE (helper gone), -ETIME (helper hung: its heartbeat
 * stood still for the hung timeout), -EBADMSG (ring corrupt), -EINVAL (no
 * ring), or -errno.  Events already in the ring are returned even when the
 * helper has exited or hung since posting them.
 */
int pch_client_wait_event(struct pch_client *c, struct pch_ring_event *ev, int timeout_ms)
{
	struct pollfd pfd[2];
	uint64_t deadline, cnt;
	int ret, wait_ms;

	if (!c->have_ring) {
		set_err(c, "no ring set up");
		return -EINVAL;
	}
	if (timeout_ms < 0)
		timeout_ms = CLIENT_DEFAULT_TIMEOUT_MS;
	deadline = pch_now_ns() + (uint64_t)timeout_ms * 1000000ull;

	for (;;) {
		/* pop first: the helper may have posted and then exited */
		ret = pch_ring_pop(&c->ring, ev);
		if (ret == 0) {
			ev->text[sizeof(ev->text) - 1] = '\0';
			note_event(c, ev);
			return 0;
		}
		if (ret != -EAGAIN) {
			set_err(c, "event ring is corrupt: %s", strerror(-ret));
			return ret;
		}
		if (c->broken == -EPIPE) {
			/* already known gone, and nothing left on the ring */
			return -EPIPE;
		}
		ret = check_heartbeat(c);
		if (ret)
			return ret;

		/*
		 * Watch the socket for the helper going away.  Once the stream
		 * is broken by a bad packet, only its hang-up matters (POLLHUP
		 * is reported even when not asked for).
		 */
		pfd[0] = (struct pollfd){ .fd = c->ring.efd, .events = POLLIN };
		pfd[1] = (struct pollfd){ .fd = c->sock, .events = c->broken ? 0 : POLLIN };
		wait_ms = pch_ms_until(deadline);
		if (c->hung_ms) /* then look at the heartbeat */
			wait_ms = PCH_MIN(wait_ms, PCH_MIN(CLIENT_HUNG_CHECK_MS,
							  PCH_MAX(c->hung_ms / 4, 1)));
		ret = poll(pfd, 2, wait_ms);
		if (ret < 0) {
			if (errno == EINTR)
				continue;
			ret = -errno;
			set_err(c, "poll: %s", strerror(-ret));
			return ret;
		}
		if (ret == 0) {
			/* one last look: an event may have landed with the deadline */
			if (pch_ring_pop(&c->ring, ev) == 0) {
				ev->text[sizeof(ev->text) - 1] = '\0';
				note_event(c, ev);
				return 0;
			}
			if (pch_now_ns() < deadline)
				continue; /* a heartbeat look, not the deadline */
			set_err(c, "no event from the helper in %d ms", timeout_ms);
			return -ETIMEDOUT;
		}
		if (pfd[0].revents & POLLIN) {
			/* clear the eventfd; the events themselves are in the ring */
			if (read(c->ring.efd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
				pch_dbg(PCH_DBG_RING, "client: eventfd read: %s", strerror(errno));
		}
		if (pfd[1].revents) {
			/* only after the ring is empty (checked at the loop top) */
			if (pch_ring_pop(&c->ring, ev) == 0) {
				ev->text[sizeof(ev->text) - 1] = '\0';
				note_event(c, ev);
				return 0;
			}
			if (pfd[1].revents & (POLLHUP | POLLERR)) {
				set_err(c, "helper exited");
				return break_conn(c, -EPIPE);
			}
			ret = drain_socket(c);
			if (ret)
				return ret;
		}
	}
}

/*
 * Wait on the ring until done(c) holds or timeout_ms passes.  An ERROR event
 * fails the wait with its code (-EIO if the code is not a -errno) and text.
 */
static int wait_until(struct pch_client *c, bool (*done)(const struct pch_client *, uint64_t),
		      uint64_t arg, const char *what, int timeout_ms)
{
	struct pch_ring_event ev;
	uint64_t deadline;
	int ret;

	if (timeout_ms < 0)
		timeout_ms = CLIENT_DEFAULT_TIMEOUT_MS;
	deadline = pch_now_ns() + (uint64_t)timeout_ms * 1000000ull;

	while (!done(c, arg)) {
		ret = pch_client_wait_event(c, &ev, pch_ms_until(deadline));
		if (ret == -ETIMEDOUT) {
			set_err(c, "timed out after %d ms waiting for %s", timeout_ms, what);
			return ret;
		}
		if (ret)
			return ret;
		if (ev.type == PCH_RING_ERROR) {
			char lost[96] = "";

			/* pages that can never arrive were poisoned: they read as errors */
			if (ev.epoch)
				snprintf(lost, sizeof(lost), "; %llu pages could never arrive and "
					 "were poisoned", (unsigned long long)ev.epoch);
			set_err(c, "helper error while waiting for %s: %s (%s)%s", what,
				ev.text[0] ? ev.text : "no reason given",
				strerror(ev.code < 0 ? -ev.code : EIO), lost);
			return ev.code < 0 && ev.code >= -4095 ? ev.code : -EIO;
		}
	}
	return 0;
}

/* COMPLETE means every page is in: every sync point is reached too. */
static bool sync_done(const struct pch_client *c, uint64_t epoch)
{
	return c->complete || (c->have_sync && c->sync_epoch >= epoch);
}

static bool complete_done(const struct pch_client *c, uint64_t unused)
{
	return c->complete;
}

/*
 * Wait for SYNC_REACHED(epoch or later) (or COMPLETE), at most timeout_ms.
 * 0, -ETIMEDOUT, -EPIPE, or an ERROR event's code.
 */
int pch_client_wait_sync(struct pch_client *c, uint64_t epoch, int timeout_ms)
{
	char what[48];

	snprintf(what, sizeof(what), "SYNC_REACHED(%llu)", (unsigned long long)epoch);
	return wait_until(c, sync_done, epoch, what, timeout_ms);
}

/*
 * Wait for COMPLETE, at most timeout_ms.  0, -ETIMEDOUT, -EPIPE, or an ERROR
 * event's code.
 */
int pch_client_wait_complete(struct pch_client *c, int timeout_ms)
{
	return wait_until(c, complete_done, 0, "COMPLETE", timeout_ms);
}

/*
 * Fetch the helper's statistics; *json gets a malloc'ed NUL-terminated copy
 * of the reply text.  0 or -errno.
 */
int pch_client_stats(struct pch_client *c, char **json, int timeout_ms)
{
	*json = NULL;
	if (!(c->helper_features & PCH_CTL_F_STATS)) {
		set_err(c, "helper does not report statistics");
		return -EOPNOTSUPP;
	}
	return request_simple(c, PCH_CTL_STATS, timeout_ms, json);
}

/*
 * Ask the helper to stop and exit.  A helper that closes the socket instead
 * of replying did what was asked: 0.  0 or -errno.
 */
int pch_client_shutdown(struct pch_client *c)
{
	int ret = request_simple(c, PCH_CTL_SHUTDOWN, -1, NULL);

	return ret == -EPIPE ? 0 : ret;
}

/* The control socket, to poll for POLLHUP (helper gone). */
int pch_client_socket_fd(const struct pch_client *c)
{
	return c->sock;
}

/* The ring's eventfd (POLLIN: events to pop), or -1 before setup_ring. */
int pch_client_ring_fd(const struct pch_client *c)
{
	return c->have_ring ? c->ring.efd : -1;
}

/*
 * Last error of c as text ("" if none); with c NULL, why the calling thread's
 * last pch_client_connect() failed.
 */
const char *pch_client_error(const struct pch_client *c)
{
	return c ? c->err : connect_err;
}

/*
 * The helper died (a wait returned -EPIPE): hand everything to a new one
 * listening on path (started by the caller), within timeout_ms: connect
 * (retrying while the socket is not there yet), HELLO, the same blocks with
 * their memfds, the page state, the uffd, a new ring, START, and the sync
 * point still awaited, if any.  Needs pch_client_setup_state() before the
 * first START: the state tells the new helper what is in place.  The new
 * helper wakes the threads the old one left waiting and resumes the session
 * with the source.  0 or -errno.
 */
int pch_client_reattach(struct pch_client *c, const char *path, int timeout_ms)
{
	uint64_t deadline;
	uint32_t i;
	int fd = -1, ret;

	if (c->state_fd < 0 || c->uffd < 0 || !c->ring_nr) {
		set_err(c, "reattach: needs the page state, the uffd and the ring set up first");
		return -EINVAL;
	}
	if (timeout_ms < 0)
		timeout_ms = CLIENT_START_TIMEOUT_MS;
	deadline = pch_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	if (c->have_ring)
		pch_ring_close(&c->ring);
	c->have_ring = false;
	if (c->sock >= 0)
		close(c->sock);
	c->sock = -1;
	c->broken = 0;
	c->helper_features = 0;

	/*
	 * The new helper may not listen yet, and the dead one's listener may
	 * still take a connection for a moment as the kernel closes its files:
	 * retry until a helper answers HELLO.
	 */
	for (;;) {
		struct timespec ts = { 0, 50 * 1000000l };

		fd = pch_unix_connect(path, PCH_MAX(pch_ms_until(deadline), 1));
		if (fd >= 0) {
			c->sock = fd;
			c->broken = 0;
			ret = hello(c, PCH_MAX(pch_ms_until(deadline), 1));
			if (!ret)
				break;
			close(c->sock);
			c->sock = -1;
		} else {
			ret = fd;
			set_err(c, "reattach: connecting to %s: %s", path, strerror(-fd));
		}
		if (pch_ms_until(deadline) == 0)
			return ret;
		nanosleep(&ts, NULL);
	}
	if (!(c->helper_features & PCH_CTL_F_STATE)) {
		set_err(c, "reattach: the new helper does not take the page state");
		return break_conn(c, -EOPNOTSUPP);
	}
	for (i = 0; i < c->nr_blocks; i++) {
		struct pch_ctl_block m = c->blocks[i].msg;
		int bfd = c->blocks[i].fd;

		ret = request(c, &m, sizeof(m), PCH_CTL_BLOCK, bfd >= 0 ? &bfd : NULL,
			      bfd >= 0 ? 1 : 0, -1, NULL);
		if (ret)
			return ret;
	}
	{
		struct pch_ctl_state m = { .size = c->state_len };

		ret = request(c, &m, sizeof(m), PCH_CTL_STATE, &c->state_fd, 1, -1, NULL);
		if (ret)
			return ret;
	}
	ret = pch_client_send_uffd(c, c->uffd, c->uffd_features, c->uffd_ioctls);
	if (!ret)
		ret = pch_client_setup_ring(c, c->ring_nr);
	if (!ret)
		ret = pch_client_start(c);
	if (!ret && c->last_sync_req && !c->complete &&
	    (!c->have_sync || c->sync_epoch < c->last_sync_req)) {
		struct pch_ctl_sync m = { .epoch = c->last_sync_req };

		ret = request(c, &m, sizeof(m), PCH_CTL_SYNC, NULL, 0, -1, NULL);
	}
	if (!ret)
		c->reattaches++;
	return ret;
}

/* Close the socket, the ring and the page state and free c (NULL is fine). */
void pch_client_close(struct pch_client *c)
{
	if (!c)
		return;
	if (c->have_ring)
		pch_ring_close(&c->ring);
	if (c->sock >= 0)
		close(c->sock);
	if (c->state)
		munmap(c->state, c->state_len);
	if (c->state_fd >= 0)
		close(c->state_fd);
	free(c);
}

/*
 * Source side (pch-source --vmm-socket): HELLO, then one BLOCK carrying the
 * block's fd, then pch-source's REPLY; the connection is then closed.  The
 * same framing and checks as the helper's control socket, with a client of
 * its own that lives for this call only.  0 or -errno, the reason in
 * pch_client_error(NULL).
 */
int pch_client_source_handover(const char *path, const char *name, int fd, uint64_t length,
			       uint32_t page_size, int timeout_ms)
{
	struct pch_ctl_block m;
	struct pch_client *c;
	uint64_t deadline;
	size_t name_len;
	int sock, ret;

	if (!path || !name) {
		set_err(NULL, "source handover: no %s", path ? "block name" : "socket path");
		return -EINVAL;
	}
	name_len = strnlen(name, PCH_BLOCK_NAME_LEN);
	if (name_len == 0 || name_len >= PCH_BLOCK_NAME_LEN) {
		set_err(NULL, "source handover: block name must be 1..%d bytes",
			PCH_BLOCK_NAME_LEN - 1);
		return -EINVAL;
	}
	if (fd < 0) {
		set_err(NULL, "source handover: block %s: no fd", name);
		return -EBADF;
	}
	if (page_size < 4096 || !pch_is_pow2(page_size) || !length || length % page_size) {
		set_err(NULL, "source handover: block %s: length %llu is not a multiple of "
			"its %u-byte pages", name, (unsigned long long)length, page_size);
		return -EINVAL;
	}
	if (timeout_ms < 0)
		timeout_ms = CLIENT_DEFAULT_TIMEOUT_MS;
	deadline = pch_now_ns() + (uint64_t)timeout_ms * 1000000ull;

	c = client_new("pch-source");
	if (!c)
		return -ENOMEM;

	sock = pch_unix_connect(path, timeout_ms);
	if (sock < 0) {
		set_err(NULL, "connecting to pch-source at %s: %s", path, strerror(-sock));
		free(c);
		return sock;
	}
	c->sock = sock;
	ret = hello(c, pch_ms_until(deadline));
	if (ret)
		goto out;

	memset(&m, 0, sizeof(m));
	m.id = 0;
	m.page_size = page_size;
	m.backing = 0; /* pch-source detects it from the fd's file system */
	m.flags = PCH_CTL_BLOCK_F_FD;
	m.host_addr = 0;
	m.length = length;
	memcpy(m.name, name, name_len);
	ret = request(c, &m, sizeof(m), PCH_CTL_BLOCK, &fd, 1, pch_ms_until(deadline), NULL);
out:
	if (ret)
		set_err(NULL, "%s: %s", path, c->err);
	pch_client_close(c);
	return ret;
}
