// SPDX-License-Identifier: MIT
/*
 * vmm.c - pch-source --vmm-socket: the RAM block comes from a VMM (QEMU at
 * its switch to postcopy), handed over as a memfd on a Unix socket.
 *
 * The conversation uses the control protocol's framing and messages
 * (include/pch/ctl.h, docs/protocol.md "VMM socket of pch-source"): the VMM
 * sends HELLO (role VMM), we answer HELLO; it sends one BLOCK with its fd as
 * SCM_RIGHTS, we answer REPLY (0, or -errno and the reason) and close.  A
 * refused handover (garbage, no fd, a length the file does not have, an
 * unsealed memfd, another block name than --block-name) is answered with its
 * reason and logged, and we wait for the next VMM, until --vmm-timeout-s.
 * Every read has a deadline: a VMM that connects and says nothing is dropped
 * after --handshake-timeout-ms.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <glib.h>

#include "ctl.h"
#include "log.h"
#include "net.h"
#include "util.h"
#include "source_i.h"

#define VMM_WHY_LEN 200

int src_vmm_listen(struct src *s)
{
	int fd = pch_unix_listen(s->opt.vmm_socket);

	if (fd < 0) {
		pch_err("--vmm-socket %s: %s", s->opt.vmm_socket, strerror(-fd));
		return fd;
	}
	s->vmm_lfd = fd;
	pch_info("waiting up to %u s for a VMM to hand over its RAM on %s", s->opt.vmm_timeout_s,
		 s->opt.vmm_socket);
	return 0;
}

/* Answer a request of type req with status and text.  Errors are the VMM's problem. */
static void vmm_reply(int fd, uint32_t seq, uint16_t req_type, int status, const char *text)
{
	uint8_t buf[sizeof(struct pch_ctl_reply) + VMM_WHY_LEN];
	struct pch_ctl_reply *r = (struct pch_ctl_reply *)buf;
	size_t tl = text ? strnlen(text, VMM_WHY_LEN) : 0;

	memset(r, 0, sizeof(*r));
	r->hdr.magic = PCH_CTL_MAGIC;
	r->hdr.type = PCH_CTL_REPLY;
	r->hdr.len = (uint32_t)(sizeof(*r) + tl);
	r->hdr.seq = seq;
	r->req_type = req_type;
	r->status = status;
	r->text_len = (uint32_t)tl;
	if (tl)
		memcpy(r + 1, text, tl);
	(void)pch_seqpkt_send(fd, buf, sizeof(*r) + tl, NULL, 0, 1000);
}

static void close_fds(int *fds, int n)
{
	for (int i = 0; i < n; i++)
		close(fds[i]);
}

/*
 * Receive one packet of the expected type from the VMM before deadline.
 * Its fds go to fds (*nfds); *seq is its seq when it had our magic (so a
 * refusal reaches the request it answers), else 0.  Returns its length, or
 * -errno with why set (-EPIPE: the VMM closed the connection).
 */
static int vmm_recv(int fd, uint16_t type, void *buf, size_t cap, int *fds, int *nfds,
		    uint64_t deadline, char *why, uint32_t *seq)
{
	const struct pch_ctl_hdr *h = buf;
	int n, ret;

	*seq = 0;
	n = pch_seqpkt_recv(fd, buf, cap, fds, 4, nfds, pch_ms_until(deadline));
	if (n >= (int)sizeof(*h) && h->magic == PCH_CTL_MAGIC)
		*seq = h->seq;
	if (n == 0) {
		snprintf(why, VMM_WHY_LEN, "the VMM closed the connection before %s",
			 pch_ctl_req_name(type));
		return -EPIPE;
	}
	if (n == -ETIMEDOUT) {
		snprintf(why, VMM_WHY_LEN, "no %s from the VMM in time", pch_ctl_req_name(type));
		return n;
	}
	if (n < 0) {
		snprintf(why, VMM_WHY_LEN, "receiving %s: %s", pch_ctl_req_name(type),
			 strerror(-n));
		return n;
	}
	ret = pch_ctl_check_hdr(buf, (size_t)n);
	if (ret) {
		snprintf(why, VMM_WHY_LEN, "malformed packet of %d bytes (expected %s)", n,
			 pch_ctl_req_name(type));
		return ret;
	}
	if (h->type != type) {
		const char *name = pch_ctl_req_name(h->type);

		snprintf(why, VMM_WHY_LEN, "%s where %s was expected (this socket takes HELLO "
			 "then one BLOCK)", name ? name : "unknown message", pch_ctl_req_name(type));
		return -EPROTO;
	}
	ret = pch_ctl_check_len(h, (size_t)n, why, VMM_WHY_LEN);
	return ret ? ret : n;
}

/* The HELLO exchange.  0 or -errno with why. */
static int vmm_hello(int fd, uint64_t deadline, char *why)
{
	union {
		struct pch_ctl_hello m;
		uint8_t raw[PCH_CTL_MAX_MSG];
	} *u = NULL;
	struct pch_ctl_hello r;
	int fds[4], nfds = 0, n, ret;
	uint32_t seq;

	u = malloc(sizeof(*u));
	if (!u) {
		snprintf(why, VMM_WHY_LEN, "out of memory");
		return -ENOMEM;
	}
	n = vmm_recv(fd, PCH_CTL_HELLO, u->raw, sizeof(u->raw), fds, &nfds, deadline, why, &seq);
	close_fds(fds, nfds);
	if (n < 0) {
		ret = n;
		goto out;
	}
	if (nfds) {
		snprintf(why, VMM_WHY_LEN, "HELLO carries %d fds, expected none", nfds);
		ret = -EINVAL;
		goto out;
	}
	ret = pch_ctl_hello_check(&u->m, why, VMM_WHY_LEN);
	if (ret)
		goto out;
	if (u->m.role != PCH_CTL_ROLE_VMM) {
		snprintf(why, VMM_WHY_LEN, "HELLO: role %u, this socket takes a VMM (%u)", u->m.role,
			 PCH_CTL_ROLE_VMM);
		ret = -EINVAL;
		goto out;
	}
	memset(&r, 0, sizeof(r));
	r.hdr.magic = PCH_CTL_MAGIC;
	r.hdr.type = PCH_CTL_HELLO;
	r.hdr.len = sizeof(r);
	r.hdr.seq = u->m.hdr.seq;
	r.version = PCH_CTL_VERSION;
	r.pid = (uint32_t)getpid();
	snprintf(r.name, sizeof(r.name), "pch-source");
	ret = pch_seqpkt_send(fd, &r, sizeof(r), NULL, 0, pch_ms_until(deadline));
	if (ret)
		snprintf(why, VMM_WHY_LEN, "sending HELLO: %s", strerror(-ret));
	else
		pch_dbg(PCH_DBG_SRC, "VMM: HELLO from \"%.31s\" pid %u", u->m.name, u->m.pid);
out:
	if (ret && ret != -EPIPE)
		vmm_reply(fd, seq, PCH_CTL_HELLO, ret, why);
	free(u);
	return ret;
}

/*
 * Check the block's fd against the BLOCK that carried it (m) and the
 * options: a regular file on tmpfs or hugetlbfs (a memfd; a huge page
 * size that is the block's), at least length bytes, sealed against
 * shrinking.  0 or -errno with why.
 */
static int vmm_check_fd(const struct src *s, const struct pch_ctl_block *m, const char *name,
			int fd, char *why)
{
	struct statfs sfs;
	struct stat st;
	int seals;

	if (fstat(fd, &st) < 0 || fstatfs(fd, &sfs) < 0) {
		snprintf(why, VMM_WHY_LEN, "BLOCK %s: fstat of its fd: %s", name, strerror(errno));
		return -EBADF;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(why, VMM_WHY_LEN, "BLOCK %s: its fd is not a memfd or file (mode 0%o)",
			 name, (unsigned)(st.st_mode & S_IFMT));
		return -EINVAL;
	}
	if ((unsigned long)sfs.f_type != TMPFS_MAGIC && (unsigned long)sfs.f_type != HUGETLBFS_MAGIC) {
		snprintf(why, VMM_WHY_LEN, "BLOCK %s: its fd is not on tmpfs or hugetlbfs (a memfd "
			 "or shared memory file)", name);
		return -EINVAL;
	}
	if ((unsigned long)sfs.f_type == HUGETLBFS_MAGIC && (uint64_t)st.st_blksize != m->page_size) {
		snprintf(why, VMM_WHY_LEN, "BLOCK %s: page size %u, but its hugetlbfs pages are "
			 "%ld bytes", name, m->page_size, (long)st.st_blksize);
		return -EINVAL;
	}
	if ((unsigned long)sfs.f_type == TMPFS_MAGIC && m->page_size != 4096) {
		snprintf(why, VMM_WHY_LEN, "BLOCK %s: page size %u, but a tmpfs memfd has 4096-byte "
			 "pages", name, m->page_size);
		return -EINVAL;
	}
	if ((uint64_t)st.st_size < m->length) {
		snprintf(why, VMM_WHY_LEN, "BLOCK %s: length %llu, but its fd has only %lld bytes",
			 name, (unsigned long long)m->length, (long long)st.st_size);
		return -EINVAL;
	}
	seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0 || !(seals & F_SEAL_SHRINK)) {
		snprintf(why, VMM_WHY_LEN, "BLOCK %s: the memfd must be sealed against shrinking "
			 "(F_SEAL_SHRINK; QEMU: memory-backend-memfd with seal=on)", name);
		return -EINVAL;
	}
	return 0;
}

/*
 * The BLOCK: check it and its fd, then open the backend from it.  0 or
 * -errno with why.
 */
static int vmm_block(struct src *s, int fd, uint64_t deadline, char *why)
{
	union {
		struct pch_ctl_block m;
		uint8_t raw[PCH_CTL_MAX_MSG];
	} *u = NULL;
	char name[PCH_BLOCK_NAME_LEN], what[PCH_BLOCK_NAME_LEN + 16];
	int fds[4], nfds = 0, n, ret;
	const struct pch_ctl_block *m;
	uint32_t seq;

	u = malloc(sizeof(*u));
	if (!u) {
		snprintf(why, VMM_WHY_LEN, "out of memory");
		return -ENOMEM;
	}
	m = &u->m;
	n = vmm_recv(fd, PCH_CTL_BLOCK, u->raw, sizeof(u->raw), fds, &nfds, deadline, why, &seq);
	if (n < 0) {
		ret = n;
		goto out;
	}
	ret = pch_ctl_block_check(m, why, VMM_WHY_LEN);
	if (ret)
		goto out;
	memcpy(name, m->name, sizeof(name)); /* NUL-terminated: checked */
	ret = -EINVAL;
	if (m->id != 0) {
		snprintf(why, VMM_WHY_LEN, "BLOCK %s: id %u, pch-source serves one block (id 0)",
			 name, m->id);
		goto out;
	}
	if (!name[0]) {
		snprintf(why, VMM_WHY_LEN, "BLOCK: empty name");
		goto out;
	}
	if (!(m->flags & PCH_CTL_BLOCK_F_FD) || nfds != 1) {
		snprintf(why, VMM_WHY_LEN, "BLOCK %s: %d fds%s, expected its memfd (one fd and "
			 "flag FD)", name, nfds, m->flags & PCH_CTL_BLOCK_F_FD ? "" : ", no flag FD");
		ret = -EBADF;
		goto out;
	}
	if (m->page_size < 4096 || !m->length || m->length % m->page_size) {
		snprintf(why, VMM_WHY_LEN, "BLOCK %s: length %llu is not a positive multiple of "
			 "its %u-byte pages", name, (unsigned long long)m->length, m->page_size);
		goto out;
	}
	if (m->backing && m->backing != PCH_BACKING_MEMFD && m->backing != PCH_BACKING_HUGETLB) {
		snprintf(why, VMM_WHY_LEN, "BLOCK %s: backing %u, expected 0 (detect), memfd or "
			 "hugetlb", name, m->backing);
		goto out;
	}
	if (s->opt.block_name_set && strcmp(name, s->opt.block_name)) {
		snprintf(why, VMM_WHY_LEN, "BLOCK %s: --block-name is %s", name, s->opt.block_name);
		goto out;
	}
	if (s->opt.ram_set && m->length != s->opt.ram) {
		snprintf(why, VMM_WHY_LEN, "BLOCK %s: %llu bytes, but --ram is %llu", name,
			 (unsigned long long)m->length, (unsigned long long)s->opt.ram);
		goto out;
	}
	if (s->opt.page_size_set && m->page_size != s->opt.page_size) {
		snprintf(why, VMM_WHY_LEN, "BLOCK %s: %u-byte pages, but --page-size is %u", name,
			 m->page_size, s->opt.page_size);
		goto out;
	}
	ret = vmm_check_fd(s, m, name, fds[0], why);
	if (ret)
		goto out;
	snprintf(what, sizeof(what), "VMM block %s", name);
	ret = src_backend_open_fd(&s->be, &s->opt, fds[0], what, m->length, m->page_size);
	nfds = 0; /* the backend took it */
	if (ret) {
		snprintf(why, VMM_WHY_LEN, "BLOCK %s: serving it: %s", name, strerror(-ret));
		goto out;
	}
	if (m->backing && m->backing != s->be.backing) {
		snprintf(why, VMM_WHY_LEN, "BLOCK %s: backing %s, but its fd is %s", name,
			 pch_backing_name(m->backing), pch_backing_name(s->be.backing));
		src_backend_close(&s->be);
		ret = -EINVAL;
		goto out;
	}
	g_free(s->opt.block_name);
	s->opt.block_name = g_strdup(name);
	vmm_reply(fd, seq, PCH_CTL_BLOCK, 0, NULL);
	pch_info("VMM handed over RAM block %s: %llu bytes, %u-byte pages, %s", name,
		 (unsigned long long)m->length, m->page_size, pch_backing_name(s->be.backing));
out:
	close_fds(fds, nfds);
	if (ret && ret != -EPIPE)
		vmm_reply(fd, seq, PCH_CTL_BLOCK, ret, why);
	free(u);
	return ret;
}

int src_vmm_wait(struct src *s)
{
	uint64_t until = pch_now_ns() + (uint64_t)s->opt.vmm_timeout_s * 1000000000ull;
	char why[VMM_WHY_LEN];
	unsigned refused = 0;

	if (until > s->deadline_ns)
		until = s->deadline_ns;
	for (;;) {
		struct pollfd pfd[2] = { { s->vmm_lfd, POLLIN, 0 }, { s->sig_fd, POLLIN, 0 } };
		uint64_t conn_deadline;
		int fd, ret, rc;

		rc = poll(pfd, 2, pch_ms_until(until));
		if (rc < 0 && errno != EINTR) {
			pch_err("--vmm-socket %s: poll: %s", s->opt.vmm_socket, strerror(errno));
			return -errno;
		}
		if (pfd[1].revents) {
			struct signalfd_siginfo si = { 0 };

			if (read(s->sig_fd, &si, sizeof(si)) < 0) {
				/* nothing: the signal is why we stop either way (number 0) */
			}
			pch_err("signal %u while waiting for a VMM on %s", si.ssi_signo,
				s->opt.vmm_socket);
			return -EINTR;
		}
		if (rc <= 0 || !pfd[0].revents) {
			if (pch_now_ns() < until)
				continue;
			pch_err("no VMM handed over its RAM on %s within %u s%s%s", s->opt.vmm_socket,
				s->opt.vmm_timeout_s, refused ? " (refused: " : "",
				refused ? "see above)" : "");
			return -ETIMEDOUT;
		}
		fd = pch_accept(s->vmm_lfd, 0);
		if (fd < 0)
			continue;
		conn_deadline = pch_now_ns() + (uint64_t)s->opt.handshake_timeout_ms * 1000000ull;
		if (conn_deadline > until)
			conn_deadline = until;
		why[0] = '\0';
		ret = vmm_hello(fd, conn_deadline, why);
		if (!ret)
			ret = vmm_block(s, fd, conn_deadline, why);
		close(fd);
		if (!ret)
			break;
		refused++;
		pch_err("--vmm-socket %s: refused a handover: %s", s->opt.vmm_socket, why);
		src_record_error(s, "VMM handover refused: %s", why);
	}
	close(s->vmm_lfd);
	s->vmm_lfd = -1;
	unlink(s->opt.vmm_socket);
	return 0;
}
