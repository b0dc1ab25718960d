// SPDX-License-Identifier: MIT
/*
 * pch-badvmm - a VMM that gets everything wrong, for the integration tests:
 * connects to a pch-helper's control socket and sends one malformed or
 * out-of-order request after another.  Each must be answered with an error
 * whose text names what was wrong; the helper must keep answering.  Prints
 * one line per case; exit 0 when every case was refused as expected.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/userfaultfd.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "net.h"
#include "pch/ctl.h"

static int fd, seq, failures;
static char last[PCH_CTL_MAX_MSG + 1];

static void hdr(struct pch_ctl_hdr *h, uint16_t type, uint32_t len)
{
	h->magic = PCH_CTL_MAGIC;
	h->type = type;
	h->flags = 0;
	h->len = len;
	h->seq = (uint32_t)++seq;
}

/* Send one packet; return the reply's status, its text in last[]. */
static int ask(const void *msg, size_t len, const int *fds, int nfds)
{
	struct pch_ctl_reply *r = (struct pch_ctl_reply *)last;
	int got[4], ngot, n;

	if (pch_seqpkt_send(fd, msg, len, fds, nfds, 5000))
		return -EPIPE;
	n = pch_seqpkt_recv(fd, last, sizeof(last) - 1, got, 4, &ngot, 5000);
	if (n <= 0)
		return n == 0 ? -ECONNRESET : n;
	last[n] = '\0';
	if ((size_t)n < sizeof(*r) || r->hdr.magic != PCH_CTL_MAGIC)
		return -EBADMSG;
	if (r->hdr.type == PCH_CTL_HELLO)
		return 0;
	if (r->hdr.type != PCH_CTL_REPLY || r->text_len != (uint32_t)n - sizeof(*r))
		return -EBADMSG;
	{
		uint32_t tl = r->text_len;
		int status = r->status;

		memmove(last, last + sizeof(*r), tl);
		last[tl] = '\0';
		return status;
	}
}

static void expect(const char *name, int status, const char *want)
{
	bool ok = status < 0 && strstr(last, want);

	printf("%s %-28s status %d: %s\n", ok ? "refused" : "WRONG  ", name, status, last);
	if (!ok)
		failures++;
}

static void hello(uint16_t version, uint16_t role)
{
	struct pch_ctl_hello h = { 0 };

	hdr(&h.hdr, PCH_CTL_HELLO, sizeof(h));
	h.version = version;
	h.role = role;
	h.pid = (uint32_t)getpid();
	snprintf(h.name, sizeof(h.name), "pch-badvmm");
	if (version == PCH_CTL_VERSION) {
		if (ask(&h, sizeof(h), NULL, 0))
			failures++, printf("WRONG   hello refused: %s\n", last);
	} else {
		expect("hello with version 9", ask(&h, sizeof(h), NULL, 0), "version");
	}
}

/* A HELLO claiming a role this connection cannot have. */
static void wrong_role(uint16_t role, const char *name)
{
	struct pch_ctl_hello h = { 0 };

	hdr(&h.hdr, PCH_CTL_HELLO, sizeof(h));
	h.version = PCH_CTL_VERSION;
	h.role = role;
	snprintf(h.name, sizeof(h.name), "pch-badvmm");
	expect(name, ask(&h, sizeof(h), NULL, 0), "already connected");
}

static int block(uint32_t id, uint64_t len, uint32_t backing, size_t msglen)
{
	struct pch_ctl_block b = { 0 };

	hdr(&b.hdr, PCH_CTL_BLOCK, (uint32_t)msglen);
	b.id = id;
	b.page_size = 4096;
	b.backing = backing;
	b.host_addr = 0x7f0000000000ull;
	b.length = len;
	snprintf(b.name, sizeof(b.name), "pc.ram");
	return ask(&b, msglen, NULL, 0);
}

int main(int argc, char **argv)
{
	struct pch_ctl_uffd u = { 0 };
	struct pch_ctl_ring r = { 0 };
	struct pch_ctl_simple s = { 0 };
	struct pch_ctl_sync sy = { 0 };
	int p[2], fds[2], mfd, uf;

	if (argc == 3 && (!strcmp(argv[1], "--monitor") || !strcmp(argv[1], "--monitor-first"))) {
		bool first = !strcmp(argv[1], "--monitor-first");

		/* beside a running migration: a monitor may only look */
		fd = pch_unix_connect(argv[2], 10000);
		if (fd < 0) {
			fprintf(stderr, "pch-badvmm: connect %s: %s\n", argv[2], strerror(-fd));
			return 1;
		}
		/* with a VMM connected, nobody else may claim to be one */
		if (!first)
			wrong_role(PCH_CTL_ROLE_VMM, "second connection as VMM");
		hello(PCH_CTL_VERSION, PCH_CTL_ROLE_MONITOR);
		expect("block on a monitor", block(0, 1 << 20, PCH_BACKING_ANON,
						   sizeof(struct pch_ctl_block)), "monitor");
		hdr(&s.hdr, PCH_CTL_SHUTDOWN, sizeof(s));
		expect("shutdown on a monitor", ask(&s, sizeof(s), NULL, 0), "monitor");
		hdr(&s.hdr, PCH_CTL_STATS, sizeof(s));
		if (ask(&s, sizeof(s), NULL, 0) || !strstr(last, "\"pages_total\"")) {
			printf("WRONG   monitor stats: %s\n", last);
			failures++;
		}
		printf("%d wrong answers\n", failures);
		return failures ? 1 : 0;
	}
	if (argc != 2) {
		fprintf(stderr, "usage: pch-badvmm [--monitor|--monitor-first] CONTROL_SOCKET\n");
		return 2;
	}
	fd = pch_unix_connect(argv[1], 10000);
	if (fd < 0) {
		fprintf(stderr, "pch-badvmm: connect %s: %s\n", argv[1], strerror(-fd));
		return 1;
	}
	expect("block before hello", block(0, 1 << 20, PCH_BACKING_ANON, sizeof(struct pch_ctl_block)),
	       "before HELLO");
	hello(9, PCH_CTL_ROLE_VMM);
	hello(PCH_CTL_VERSION, PCH_CTL_ROLE_VMM);
	expect("block with id 5", block(5, 1 << 20, PCH_BACKING_ANON, sizeof(struct pch_ctl_block)),
	       "id 5");
	expect("block of 1000 bytes", block(0, 1000, PCH_BACKING_ANON, sizeof(struct pch_ctl_block)),
	       "BLOCK pc.ram");
	expect("block of 50-byte message", block(0, 1 << 20, PCH_BACKING_ANON, 50), "expected 112");
	expect("block with unknown backing", block(0, 1 << 20, 77, sizeof(struct pch_ctl_block)),
	       "backing 77");

	hdr(&u.hdr, PCH_CTL_UFFD, sizeof(u));
	expect("uffd without fd", ask(&u, sizeof(u), NULL, 0), "expected 1 fd");
	if (pipe(p))
		return 1;
	hdr(&u.hdr, PCH_CTL_UFFD, sizeof(u));
	expect("uffd that is a pipe", ask(&u, sizeof(u), p, 1), "not a userfaultfd");

	uf = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
	if (uf >= 0) {
		hdr(&u.hdr, PCH_CTL_UFFD, sizeof(u));
		expect("uffd that blocks", ask(&u, sizeof(u), &uf, 1), "O_NONBLOCK");
		fcntl(uf, F_SETFL, O_NONBLOCK);
		u.features = UFFD_FEATURE_EVENT_FORK;
		hdr(&u.hdr, PCH_CTL_UFFD, sizeof(u));
		expect("uffd with fork events", ask(&u, sizeof(u), &uf, 1), "not supported yet");
		u.features = 0;
		close(uf);
	}
	expect("block of 2^40 pages", block(0, 1ull << 52, PCH_BACKING_ANON,
					    sizeof(struct pch_ctl_block)), "at most");

	hdr(&r.hdr, PCH_CTL_RING, sizeof(r));
	expect("ring with one fd", ask(&r, sizeof(r), p, 1), "expected 2 fds");
	mfd = memfd_create("not-a-ring", MFD_CLOEXEC);
	if (mfd < 0 || ftruncate(mfd, 4096))
		return 1;
	fds[0] = mfd;
	fds[1] = p[0];
	hdr(&r.hdr, PCH_CTL_RING, sizeof(r));
	expect("ring with a pipe as eventfd", ask(&r, sizeof(r), fds, 2), "eventfd");
	fds[1] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	hdr(&r.hdr, PCH_CTL_RING, sizeof(r));
	expect("ring of zeros", ask(&r, sizeof(r), fds, 2), "RING:");

	hdr(&s.hdr, PCH_CTL_START, sizeof(s));
	expect("start without blocks", ask(&s, sizeof(s), NULL, 0), "missing RAM blocks");
	hdr(&sy.hdr, PCH_CTL_SYNC, sizeof(sy));
	sy.epoch = 1;
	expect("sync before start", ask(&sy, sizeof(sy), NULL, 0), "before START");
	hdr(&s.hdr, 99, sizeof(s));
	expect("unknown type 99", ask(&s, sizeof(s), NULL, 0), "unknown message type 99");
	hdr(&s.hdr, PCH_CTL_STATS, sizeof(s));
	expect("stats with an fd", ask(&s, sizeof(s), p, 1), "unexpected fds");

	/* still answering after all that */
	hdr(&s.hdr, PCH_CTL_STATS, sizeof(s));
	if (ask(&s, sizeof(s), NULL, 0) || !strstr(last, "\"pages_total\"")) {
		printf("WRONG   stats after the bad requests: %s\n", last);
		failures++;
	} else {
		printf("answered stats after %d refusals\n", seq - 3);
	}

	printf("%d wrong answers\n", failures);
	return failures ? 1 : 0;
}
