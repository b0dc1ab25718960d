// SPDX-License-Identifier: MIT
/*
 * pch-badvmm - a VMM that gets everything wrong, for the integration tests:
 * connects to a pch-helper's control socket and sends one malformed or
 * out-of-order request after another.  Each must be answered with an error
 * whose text names what was wrong; the helper must keep answering.  Prints
 * one line per case; exit 0 when every case was refused as expected.
 *
 * One helper takes one VMM, and a uffd only once: a block announced after an
 * accepted uffd (refused at START) needs a helper of its own, --late-block.
 *
 * Two more modes leave a VMM's control connection open after the VMM has
 * exited, as a child that inherited it would, for the helper's pidfd to
 * notice: --fork-hold says HELLO as the VMM, forks a child that keeps the
 * connection and exits; --hold PID takes a copy of process PID's control
 * connection (pidfd_getfd: needs ptrace rights over PID, exit 77 without).
 * Either holder keeps it until the helper closes it (60 s at most).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <linux/userfaultfd.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <poll.h>
#include <dirent.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "net.h"
#include "ring.h"
#include "pch/ctl.h"
#include "pch/uffd-compat.h"

#define MiB (1ull << 20)
/* what a UFFDIO_REGISTER offers: anon MISSING, shmem MISSING|MINOR */
#define IOCTLS_ANON ((1ull << _UFFDIO_COPY) | (1ull << _UFFDIO_ZEROPAGE))
#define IOCTLS_MINOR (IOCTLS_ANON | (1ull << _UFFDIO_CONTINUE))

static int fd, seq, failures, refusals;
static char last[PCH_CTL_MAX_MSG + 1];
static uint32_t base_page;

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
	/* an answer to an earlier request would pass for this one's */
	if ((size_t)n < sizeof(*r) || r->hdr.magic != PCH_CTL_MAGIC || r->hdr.seq != (uint32_t)seq)
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

/* A refusal: status -err (any -errno when err is 0), want in its text. */
static void expect_err(const char *name, int status, int err, const char *want)
{
	bool ok = status < 0 && (!err || status == -err) && strstr(last, want);

	printf("%s %-28s status %d: %s\n", ok ? "refused" : "WRONG  ", name, status, last);
	if (!ok) {
		if (err && status != -err)
			printf("        expected status %d (%s)\n", -err, strerror(err));
		failures++;
	} else {
		refusals++;
	}
}

static void expect(const char *name, int status, const char *want)
{
	expect_err(name, status, 0, want);
}

/* A good request: status 0. */
static void expect_ok(const char *name, int status)
{
	if (status) {
		printf("WRONG   %-28s status %d: %s\n", name, status, last);
		failures++;
	} else {
		printf("ok      %s\n", name);
	}
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

/* A BLOCK named pc.ram; bfd rides with it unless it is -1. */
static int send_block(uint32_t id, uint64_t len, uint32_t backing, uint32_t page_size,
		      uint32_t flags, int bfd, size_t msglen)
{
	struct pch_ctl_block b = { 0 };

	hdr(&b.hdr, PCH_CTL_BLOCK, (uint32_t)msglen);
	b.id = id;
	b.page_size = page_size;
	b.backing = backing;
	b.flags = flags;
	b.host_addr = 0x7f0000000000ull; /* 1 GiB aligned: fits any page size */
	b.length = len;
	snprintf(b.name, sizeof(b.name), "pc.ram");
	return ask(&b, msglen, bfd >= 0 ? &bfd : NULL, bfd >= 0);
}

static int block(uint32_t id, uint64_t len, uint32_t backing, size_t msglen)
{
	return send_block(id, len, backing, 4096, 0, -1, msglen);
}

/* A shared block with its fd, as a VMM sends one. */
static int shared_block(uint32_t id, uint64_t len, uint32_t backing, uint32_t page_size, int bfd)
{
	return send_block(id, len, backing, page_size, PCH_CTL_BLOCK_F_FD, bfd,
			  sizeof(struct pch_ctl_block));
}

static int send_uffd(int uf, uint64_t ioctls)
{
	struct pch_ctl_uffd u = { 0 };

	hdr(&u.hdr, PCH_CTL_UFFD, sizeof(u));
	u.ioctls = ioctls;
	return ask(&u, sizeof(u), &uf, 1);
}

/*
 * A userfaultfd, by the syscall or, where vm.unprivileged_userfaultfd forbids
 * that, /dev/userfaultfd (as require_uffd probes).  Nothing is registered:
 * the helper checks the fd's kind and O_NONBLOCK, and trusts the ioctls the
 * UFFD message claims.  -1 if neither works.
 */
static int open_uffd(int flags)
{
	int uf = (int)syscall(SYS_userfaultfd, flags);

	if (uf < 0) {
		int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);

		if (dev >= 0) {
			uf = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
			close(dev);
		}
	}
	return uf;
}

/* A shmem memfd of len bytes, sealed against shrinking when seal; exits on failure. */
static int new_memfd(const char *name, uint64_t len, bool seal)
{
	int m = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);

	if (m < 0 || ftruncate(m, (off_t)len) < 0 ||
	    (seal && fcntl(m, F_ADD_SEALS, F_SEAL_SHRINK) < 0)) {
		fprintf(stderr, "pch-badvmm: memfd %s: %s\n", name, strerror(errno));
		exit(1);
	}
	return m;
}

/*
 * An unlinked regular file of len bytes on a disk file system: a tmpfs file
 * would pass the helper's shmem check and be refused later, for its seals.
 * -1 when no directory at hand is off tmpfs.
 */
static int disk_file(uint64_t len, const char **where)
{
	static const char *const dirs[] = { "/tmp", "/var/tmp", "." };
	char path[64];
	size_t i;

	for (i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		struct statfs sfs;
		int f;

		snprintf(path, sizeof(path), "%s/pch-badvmm.XXXXXX", dirs[i]);
		f = mkostemp(path, O_CLOEXEC);
		if (f < 0)
			continue;
		unlink(path);
		if (fstatfs(f, &sfs) == 0 && sfs.f_type != TMPFS_MAGIC &&
		    ftruncate(f, (off_t)len) == 0) {
			*where = dirs[i];
			return f;
		}
		close(f);
	}
	return -1;
}

/*
 * Shared blocks (memfd, hugetlb) carry their memfd and private ones none;
 * the memfd must be shmem (hugetlbfs for hugetlb), as long as the block and
 * sealed against shrinking.  No case needs a huge page: a hugetlb block is
 * refused on its page size, or on its fd's file system, before anything is
 * mapped.  Then a good memfd block, a uffd whose registration cannot map it
 * (no CONTINUE), and one that can.  Blocks refused leave the table empty.
 */
static void shared_blocks(void)
{
	const uint64_t len = MiB, huge = 2 * MiB;
	int good = new_memfd("pc.ram", len, true);
	int shrt = new_memfd("short", len / 2, true);
	int unsealed = new_memfd("unsealed", len, false);
	int shmem2m = new_memfd("shmem-2m", huge, true);
	const char *where = NULL;
	int p[2], f, uf;

	expect_err("memfd block without its fd",
		   send_block(0, len, PCH_BACKING_MEMFD, base_page, 0, -1,
			      sizeof(struct pch_ctl_block)),
		   EINVAL, "shared (memfd) block must carry its memfd, got 0 fds");
	expect_err("anon block with an fd", shared_block(0, len, PCH_BACKING_ANON, base_page, good),
		   EINVAL, "private (anon) block must carry no fd");
	if (pipe(p) < 0) {
		perror("pch-badvmm: pipe");
		exit(1);
	}
	expect_err("memfd block with a pipe",
		   shared_block(0, len, PCH_BACKING_MEMFD, base_page, p[0]), EBADF,
		   "the fd is not a shmem memfd");
	close(p[0]);
	close(p[1]);
	f = disk_file(len, &where);
	if (f >= 0) {
		printf("        (a file in %s)\n", where);
		expect_err("memfd block with a disk file",
			   shared_block(0, len, PCH_BACKING_MEMFD, base_page, f), EBADF,
			   "the fd is not a shmem memfd");
		close(f);
	} else {
		printf("skipped memfd block with a disk file: "
		       "/tmp, /var/tmp and . are all tmpfs\n");
	}
	expect_err("memfd shorter than its block",
		   shared_block(0, len, PCH_BACKING_MEMFD, base_page, shrt), EINVAL,
		   "the memfd has 524288 bytes, the block 1048576");
	expect_err("memfd not sealed", shared_block(0, len, PCH_BACKING_MEMFD, base_page, unsealed),
		   EINVAL, "sealed against shrinking (F_SEAL_SHRINK");
	expect_err("hugetlb block of base pages",
		   shared_block(0, huge, PCH_BACKING_HUGETLB, base_page, shmem2m), EINVAL,
		   "does not fit a hugetlb block");
	expect_err("hugetlb block on shmem",
		   shared_block(0, huge, PCH_BACKING_HUGETLB, 2 * MiB, shmem2m), EBADF,
		   "the fd is not a hugetlbfs memfd");

	/* the helper took none of them: block 0 is still to come */
	expect_ok("memfd block 0", shared_block(0, len, PCH_BACKING_MEMFD, base_page, good));
	uf = open_uffd(O_CLOEXEC | O_NONBLOCK);
	if (uf < 0) {
		printf("WRONG   cannot open a userfaultfd: %s\n", strerror(errno));
		failures++;
	} else {
		expect_err("uffd without CONTINUE", send_uffd(uf, IOCTLS_ANON), EINVAL,
			   "UFFD: block pc.ram (memfd) needs UFFDIO_CONTINUE");
		expect_ok("uffd with CONTINUE", send_uffd(uf, IOCTLS_MINOR));
		close(uf);
	}
	close(good);
	close(shrt);
	close(unsealed);
	close(shmem2m);
}

/*
 * --late-block: a uffd taken while no block needs CONTINUE, then a memfd
 * block it cannot map.  Only START can see it; it must refuse and not start.
 */
static int late_block(void)
{
	struct pch_ctl_simple s = { 0 };
	struct pch_ctl_sync sy = { 0 };
	struct pch_ctl_ring rm = { 0 };
	struct pch_ring ring;
	int good = new_memfd("pc.ram", MiB, true);
	int uf = open_uffd(O_CLOEXEC | O_NONBLOCK), rfds[2], rc;

	if (uf < 0) {
		fprintf(stderr, "pch-badvmm: userfaultfd: %s\n", strerror(errno));
		return 1;
	}
	rc = pch_ring_create(&ring, 64);
	if (rc) {
		fprintf(stderr, "pch-badvmm: ring: %s\n", strerror(-rc));
		return 1;
	}
	hello(PCH_CTL_VERSION, PCH_CTL_ROLE_VMM);
	expect_ok("uffd before any block", send_uffd(uf, IOCTLS_ANON));
	expect_ok("memfd block after the uffd",
		  shared_block(0, MiB, PCH_BACKING_MEMFD, base_page, good));
	hdr(&rm.hdr, PCH_CTL_RING, sizeof(rm));
	rm.nr_entries = ring.nr;
	rm.size = ring.size;
	rfds[0] = ring.memfd;
	rfds[1] = ring.efd;
	expect_ok("ring", ask(&rm, sizeof(rm), rfds, 2));

	hdr(&s.hdr, PCH_CTL_START, sizeof(s));
	expect_err("start, block needs CONTINUE", ask(&s, sizeof(s), NULL, 0), EINVAL,
		   "START: block pc.ram (memfd) needs UFFDIO_CONTINUE");
	/* not started: nothing was connected, and the setup state is as it was */
	hdr(&sy.hdr, PCH_CTL_SYNC, sizeof(sy));
	sy.epoch = 1;
	expect_err("sync after refused start", ask(&sy, sizeof(sy), NULL, 0), EINVAL,
		   "SYNC: before START");
	expect_err("second uffd", send_uffd(uf, IOCTLS_MINOR), EEXIST, "UFFD: already received");
	hdr(&s.hdr, PCH_CTL_STATS, sizeof(s));
	if (ask(&s, sizeof(s), NULL, 0) || !strstr(last, "\"pages_total\"")) {
		printf("WRONG   stats after the refused start: %s\n", last);
		failures++;
	} else {
		printf("answered stats after %d refusals\n", refusals);
	}
	pch_ring_close(&ring);
	close(uf);
	close(good);
	printf("%d wrong answers\n", failures);
	return failures ? 1 : 0;
}

/* Keep fd c until its other end closes (60 s at most); 0 if it did. */
static int hold_until_closed(int c)
{
	struct pollfd p = { .fd = c, .events = POLLIN };
	char b[64];
	int i;

	for (i = 0; i < 600; i++) {
		if (poll(&p, 1, 100) > 0) {
			if (p.revents & (POLLHUP | POLLERR))
				return 0;
			if (recv(c, b, sizeof(b), MSG_DONTWAIT) == 0)
				return 0;
		}
	}
	return 1;
}

/* --fork-hold: HELLO as the VMM, then a child holds the connection, we exit. */
static int fork_hold(void)
{
	struct pch_ctl_simple s = { 0 };
	pid_t child;

	hello(PCH_CTL_VERSION, PCH_CTL_ROLE_VMM);
	/* answered once the helper has pinned us (it does at HELLO) */
	hdr(&s.hdr, PCH_CTL_STATS, sizeof(s));
	if (failures || ask(&s, sizeof(s), NULL, 0))
		return 1;
	child = fork();
	if (child < 0) {
		perror("pch-badvmm: fork");
		return 1;
	}
	if (child == 0)
		_exit(hold_until_closed(fd));
	printf("vmm %d exits, child %d holds its control connection\n", (int)getpid(), (int)child);
	return 0;
}

/*
 * --hold PID: copy PID's connection to the control socket at path into
 * this process (pidfd_getfd), then keep it until the helper closes it.
 */
static int hold_other(int pid, const char *path)
{
	char dir[64];
	struct dirent *e;
	int pidfd, c = -1;
	DIR *d;

	pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0) {
		fprintf(stderr, "pch-badvmm: pidfd_open %d: %s\n", pid, strerror(errno));
		return 1;
	}
	snprintf(dir, sizeof(dir), "/proc/%d/fd", pid);
	d = opendir(dir);
	if (!d) {
		fprintf(stderr, "pch-badvmm: %s: %s\n", dir, strerror(errno));
		return 1;
	}
	while (c < 0 && (e = readdir(d))) {
		struct sockaddr_un sa;
		socklen_t sl = sizeof(sa);
		int type, n;
		socklen_t tl = sizeof(type);

		if (e->d_name[0] == '.')
			continue;
		n = (int)syscall(SYS_pidfd_getfd, pidfd, atoi(e->d_name), 0);
		if (n < 0) {
			if (errno == EPERM) {
				printf("SKIP: pidfd_getfd: no ptrace rights over pid %d\n", pid);
				return 77;
			}
			continue;
		}
		if (getsockopt(n, SOL_SOCKET, SO_TYPE, &type, &tl) == 0 && type == SOCK_SEQPACKET &&
		    getpeername(n, (struct sockaddr *)&sa, &sl) == 0 && sa.sun_family == AF_UNIX &&
		    !strcmp(sa.sun_path, path)) {
			printf("holding fd %s of pid %d, its connection to %s\n", e->d_name, pid, path);
			fflush(stdout);
			c = n;
		} else {
			close(n);
		}
	}
	closedir(d);
	if (c < 0) {
		fprintf(stderr, "pch-badvmm: pid %d has no connection to %s\n", pid, path);
		return 1;
	}
	return hold_until_closed(c);
}

int main(int argc, char **argv)
{
	struct pch_ctl_uffd u = { 0 };
	struct pch_ctl_ring r = { 0 };
	struct pch_ctl_simple s = { 0 };
	struct pch_ctl_sync sy = { 0 };
	int p[2], fds[2], mfd, uf;

	base_page = (uint32_t)sysconf(_SC_PAGESIZE);
	if (argc == 3 && !strcmp(argv[1], "--late-block")) {
		fd = pch_unix_connect(argv[2], 10000);
		if (fd < 0) {
			fprintf(stderr, "pch-badvmm: connect %s: %s\n", argv[2], strerror(-fd));
			return 1;
		}
		return late_block();
	}
	if (argc == 4 && !strcmp(argv[1], "--hold"))
		return hold_other(atoi(argv[2]), argv[3]);
	if (argc == 3 && !strcmp(argv[1], "--fork-hold")) {
		fd = pch_unix_connect(argv[2], 10000);
		if (fd < 0) {
			fprintf(stderr, "pch-badvmm: connect %s: %s\n", argv[2], strerror(-fd));
			return 1;
		}
		return fork_hold();
	}
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
		fprintf(stderr, "usage: pch-badvmm [--monitor|--monitor-first|--late-block|"
				"--fork-hold|--hold PID] CONTROL_SOCKET\n");
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
	fds[0] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	hdr(&u.hdr, PCH_CTL_UFFD, sizeof(u));
	expect("uffd that is an eventfd", ask(&u, sizeof(u), fds, 1), "not a userfaultfd");
	close(fds[0]);
	hdr(&u.hdr, PCH_CTL_UFFD, sizeof(u));
	expect("uffd with an extra fd", ask(&u, sizeof(u), p, 2), "expected 1 fd, got 2");

	uf = open_uffd(O_CLOEXEC);
	if (uf >= 0) {
		hdr(&u.hdr, PCH_CTL_UFFD, sizeof(u));
		expect("uffd that blocks", ask(&u, sizeof(u), &uf, 1), "O_NONBLOCK");
		fcntl(uf, F_SETFL, O_NONBLOCK);
		u.features = UFFD_FEATURE_EVENT_FORK;
		hdr(&u.hdr, PCH_CTL_UFFD, sizeof(u));
		expect("uffd with fork events", ask(&u, sizeof(u), &uf, 1), "EVENT_FORK");
		u.features = UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_REMOVE;
		hdr(&u.hdr, PCH_CTL_UFFD, sizeof(u));
		expect("uffd with remap events", ask(&u, sizeof(u), &uf, 1), "EVENT_REMAP");
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
	{
		struct pch_ring bad;

		/* a good ring, but the message says another size than its header */
		if (pch_ring_create(&bad, 64))
			return 1;
		hdr(&r.hdr, PCH_CTL_RING, sizeof(r));
		r.nr_entries = 128;
		r.size = bad.size;
		fds[0] = bad.memfd;
		fds[1] = bad.efd;
		expect("ring message disagreeing with its header", ask(&r, sizeof(r), fds, 2),
		       "the message says 128 entries");
		pch_ring_close(&bad);
		r.nr_entries = 0;
		r.size = 0;
	}

	hdr(&s.hdr, PCH_CTL_START, sizeof(s));
	expect("start without blocks", ask(&s, sizeof(s), NULL, 0), "missing RAM blocks");
	hdr(&sy.hdr, PCH_CTL_SYNC, sizeof(sy));
	sy.epoch = 1;
	expect("sync before start", ask(&sy, sizeof(sy), NULL, 0), "before START");
	hdr(&s.hdr, 99, sizeof(s));
	expect("unknown type 99", ask(&s, sizeof(s), NULL, 0), "unknown message type 99");
	hdr(&s.hdr, PCH_CTL_STATS, sizeof(s));
	expect("stats with an fd", ask(&s, sizeof(s), p, 1), "unexpected fds");
	shared_blocks();

	/* still answering after all that */
	hdr(&s.hdr, PCH_CTL_STATS, sizeof(s));
	if (ask(&s, sizeof(s), NULL, 0) || !strstr(last, "\"pages_total\"")) {
		printf("WRONG   stats after the bad requests: %s\n", last);
		failures++;
	} else {
		printf("answered stats after %d refusals\n", refusals);
	}

	printf("%d wrong answers\n", failures);
	return failures ? 1 : 0;
}
