// SPDX-License-Identifier: MIT
/*
 * pch-limit-uffd - the out-of-process 4 KiB userfaultfd fault round trip.
 *
 * The floor under pch's fault latency: one process (the faulter, like a
 * vCPU) reads anonymous (or shmem) pages one at a time from an area
 * registered for MISSING faults; a second process (the server, like
 * pch-helper) got the uffd over SCM_RIGHTS, waits for the fault message
 * (poll + read of the O_NONBLOCK uffd, or an io_uring READ) and installs
 * the page with UFFDIO_COPY from its own buffer.  Each round trip is timed
 * in the faulter from just before the access to just after it, so it
 * includes the first access to the new page.  No network, no pch code.
 *
 * Output: one JSON object, e.g.
 *   {"probe":"uffd_rtt","unit":"us","reader":"read","kind":"anon","p50":32.1,
 *    "p99":85.0,"p999":...,"max":...,"mean":...,"count":...,"per_s":...,
 *    "pinned":false,"faulter_cpu":1,"server_cpu":1,"same_cpu_frac":0.99,...}
 */
#include "limits.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <liburing.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pch/uffd-compat.h"

#define PAGE 4096ul
#define MSGS_PER_READ 16
#define SERVER_CPU 1
#define FAULTER_CPU 0

/* control messages on the socketpair, one byte each */
#define CTL_READY 'R'	/* server -> faulter: uffd received, reader armed */
#define CTL_NOURING 'U' /* server -> faulter: io_uring cannot wait on the uffd */
#define CTL_QUIT 'Q'	/* faulter -> server: done; reply with struct srv_report */

struct srv_report {
	int cpu;		 /* sched_getcpu() at the end */
	unsigned long long msgs; /* fault messages handled */
	unsigned long long eexist;
};

struct opts {
	double seconds;
	bool uring, shmem, pin;
	size_t area;
};

#define MAX_CPUS 1024

static pid_t main_pid, server_pid;
/*
 * One shared word: the CPU the server ran on when it installed the last
 * page.  The faulter reads it after each fault, so placement is known per
 * round trip, not just at the end.
 */
static _Atomic int *server_cpu_now;

/* on every exit path of the faulter: the server dies with it */
static void kill_server(void)
{
	if (getpid() != main_pid || server_pid <= 0)
		return;
	kill(server_pid, SIGKILL);
	lim_reap(server_pid, lim_now_ns() + 5000000000ull);
	server_pid = 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: pch-limit-uffd [--seconds S] [--reader read|uring] [--kind anon|shmem]\n"
		   "                      [--pin] [--area-mib M]\n"
		   "Out-of-process 4 KiB userfaultfd fault round trip (UFFDIO_COPY from a\n"
		   "second process); prints one JSON object.  --pin: faulter on CPU %d,\n"
		   "server on CPU %d.  Default: 3 s, read, anon, unpinned, 256 MiB area.\n",
		FAULTER_CPU, SERVER_CPU);
}

static void parse(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{ "seconds", required_argument, NULL, 's' },
		{ "reader", required_argument, NULL, 'r' },
		{ "kind", required_argument, NULL, 'k' },
		{ "pin", no_argument, NULL, 'p' },
		{ "area-mib", required_argument, NULL, 'a' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c;

	*o = (struct opts){ .seconds = 3, .area = 256ul << 20 };
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 's':
			o->seconds = lim_parse_seconds(optarg);
			break;
		case 'r':
			if (!strcmp(optarg, "uring"))
				o->uring = true;
			else if (strcmp(optarg, "read"))
				lim_fail("--reader: '%s' is neither read nor uring", optarg);
			break;
		case 'k':
			if (!strcmp(optarg, "shmem"))
				o->shmem = true;
			else if (strcmp(optarg, "anon"))
				lim_fail("--kind: '%s' is neither anon nor shmem", optarg);
			break;
		case 'p':
			o->pin = true;
			break;
		case 'a': {
			unsigned m;

			lim_parse_list("--area-mib", optarg, &m, 1);
			o->area = (size_t)m << 20;
			break;
		}
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind < argc)
		lim_fail("unexpected argument '%s'", argv[optind]);
}

/* --- server -------------------------------------------------------------- */

static int recv_fd(int sock)
{
	char byte;
	struct iovec iov = { &byte, 1 };
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *cm;
	int fd;

	if (recvmsg(sock, &mh, MSG_CMSG_CLOEXEC) <= 0)
		return -1;
	cm = CMSG_FIRSTHDR(&mh);
	if (!cm || cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
		return -1;
	memcpy(&fd, CMSG_DATA(cm), sizeof(fd));
	return fd;
}

struct server {
	int uffd, ctl;
	unsigned char *src;
	struct srv_report rep;
};

/* Handle n bytes of uffd messages: install each faulting page. */
static void serve_msgs(struct server *s, const struct uffd_msg *m, ssize_t n)
{
	for (ssize_t i = 0; i < n / (ssize_t)sizeof(*m); i++) {
		struct uffdio_copy cp;

		if (m[i].event != UFFD_EVENT_PAGEFAULT)
			lim_fail("unexpected uffd event %u", m[i].event);
		atomic_store_explicit(server_cpu_now, sched_getcpu(), memory_order_relaxed);
		cp = (struct uffdio_copy){ .dst = m[i].arg.pagefault.address & ~(PAGE - 1),
					   .src = (unsigned long)s->src,
					   .len = PAGE };
		if (ioctl(s->uffd, UFFDIO_COPY, &cp)) {
			if (errno != EEXIST)
				lim_fail("UFFDIO_COPY at 0x%llx: %s",
					 (unsigned long long)cp.dst, strerror(errno));
			s->rep.eexist++;
		}
		s->rep.msgs++;
	}
}

/* The faulter said quit (or went away): report and exit. */
static void __attribute__((noreturn)) server_quit(struct server *s)
{
	struct srv_report rep = s->rep;
	char q;

	/* take the QUIT: a unix socket closed with unread data resets its peer */
	if (read(s->ctl, &q, 1) != 1)
		_exit(1);
	rep.cpu = sched_getcpu();
	if (write(s->ctl, &rep, sizeof(rep)) != sizeof(rep))
		_exit(1);
	_exit(0);
}

static void ctl_ready(struct server *s, char what)
{
	if (write(s->ctl, &what, 1) != 1)
		lim_fail("write to the faulter: %s", strerror(errno));
}

static void __attribute__((noreturn)) serve_read(struct server *s, uint64_t deadline)
{
	struct uffd_msg m[MSGS_PER_READ];

	ctl_ready(s, CTL_READY);
	for (;;) {
		struct pollfd p[2] = { { s->uffd, POLLIN, 0 }, { s->ctl, POLLIN, 0 } };
		int r = poll(p, 2, 1000);

		if (r < 0 && errno != EINTR)
			lim_fail("poll: %s", strerror(errno));
		if (p[0].revents & (POLLERR | POLLNVAL))
			lim_fail("poll reports an error on the uffd");
		if (p[0].revents & POLLIN) {
			ssize_t n = read(s->uffd, m, sizeof(m));

			if (n < 0 && errno != EAGAIN)
				lim_fail("read uffd: %s", strerror(errno));
			if (n > 0)
				serve_msgs(s, m, n);
		}
		if (p[1].revents)
			server_quit(s);
		if (lim_now_ns() > deadline)
			lim_fail("still running past its deadline");
	}
}

enum { UD_UFFD = 1, UD_CTL = 2 };

static void __attribute__((noreturn)) serve_uring(struct server *s, uint64_t deadline)
{
	struct __kernel_timespec probe_ts = { .tv_nsec = 20 * 1000000ll };
	struct __kernel_timespec ts = { .tv_sec = 1 };
	struct uffd_msg m[MSGS_PER_READ];
	struct io_uring ring;
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe = NULL;
	int rc = io_uring_queue_init(8, &ring, 0);

	if (rc) {
		ctl_ready(s, CTL_NOURING);
		lim_fail("io_uring_queue_init: %s", strerror(-rc));
	}
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_read(sqe, s->uffd, m, sizeof(m), 0);
	io_uring_sqe_set_data64(sqe, UD_UFFD);
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_poll_add(sqe, s->ctl, POLLIN);
	io_uring_sqe_set_data64(sqe, UD_CTL);
	/* no fault can be pending yet: a READ that completes now cannot wait */
	rc = io_uring_submit_and_wait_timeout(&ring, &cqe, 1, &probe_ts, NULL);
	if (rc >= 0 && cqe && cqe->user_data == UD_UFFD) {
		ctl_ready(s, CTL_NOURING);
		lim_fail("io_uring READ of the uffd completed at once (%s)",
			 cqe->res < 0 ? strerror(-cqe->res) : "data");
	}
	ctl_ready(s, CTL_READY);
	for (;;) {
		unsigned head, seen = 0;
		bool rearm = false;

		rc = io_uring_submit_and_wait_timeout(&ring, &cqe, 1, &ts, NULL);
		if (rc < 0 && rc != -ETIME && rc != -EINTR)
			lim_fail("io_uring wait: %s", strerror(-rc));
		io_uring_for_each_cqe(&ring, head, cqe) {
			seen++;
			if (cqe->user_data == UD_CTL)
				server_quit(s);
			if (cqe->res < 0 && cqe->res != -EAGAIN)
				lim_fail("io_uring read uffd: %s", strerror(-cqe->res));
			if (cqe->res > 0)
				serve_msgs(s, m, cqe->res);
			rearm = true;
		}
		io_uring_cq_advance(&ring, seen);
		if (rearm) {
			sqe = io_uring_get_sqe(&ring);
			io_uring_prep_read(sqe, s->uffd, m, sizeof(m), 0);
			io_uring_sqe_set_data64(sqe, UD_UFFD);
		}
		if (lim_now_ns() > deadline)
			lim_fail("still running past its deadline");
	}
}

static void __attribute__((noreturn)) server_main(int ctl, const struct opts *o)
{
	struct server s = { .ctl = ctl };
	uint64_t deadline;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != main_pid)
		_exit(1);
	lim_prog = "pch-limit-uffd: server";
	if (o->pin)
		lim_pin(SERVER_CPU);
	s.src = aligned_alloc(PAGE, PAGE);
	if (!s.src)
		lim_fail("out of memory");
	lim_fill_nonzero(s.src, PAGE, 0x9e3779b97f4a7c15ull);
	s.uffd = recv_fd(ctl);
	if (s.uffd < 0)
		_exit(0); /* the faulter gave up before sending the uffd */
	deadline = lim_now_ns() + (uint64_t)((o->seconds + 30) * 1e9);
	if (o->uring)
		serve_uring(&s, deadline);
	serve_read(&s, deadline);
}

/* --- faulter ------------------------------------------------------------- */

static int open_uffd(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	int e = errno, dev;

	if (fd >= 0)
		return fd;
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		close(dev);
		if (fd >= 0)
			return fd;
	}
	lim_skip("userfaultfd: %s (and /dev/userfaultfd: %s)", strerror(e), strerror(errno));
}

static void send_fd(int sock, int fd)
{
	char byte = 'F';
	struct iovec iov = { &byte, 1 };
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);

	memset(&u, 0, sizeof(u));
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(fd));
	if (sendmsg(sock, &mh, 0) != 1)
		lim_fail("send the uffd to the server: %s", strerror(errno));
}

/* Read exactly len bytes from the server within timeout_ms. */
static void ctl_read(int ctl, void *buf, size_t len, int timeout_ms, const char *what)
{
	struct pollfd p = { ctl, POLLIN, 0 };
	ssize_t n;

	if (poll(&p, 1, timeout_ms) <= 0)
		lim_fail("server: no %s within %d ms", what, timeout_ms);
	n = read(ctl, buf, len);
	if (n != (ssize_t)len)
		lim_fail("server: %s: %s", what, n < 0 ? strerror(errno) : "short read or EOF");
}

/* Make every page of the area missing again (not timed). */
static void rearm(unsigned char *area, size_t len, int memfd)
{
	if (memfd >= 0) {
		if (fallocate(memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t)len))
			lim_fail("fallocate(PUNCH_HOLE) on the shmem area: %s", strerror(errno));
	} else if (madvise(area, len, MADV_DONTNEED)) {
		lim_fail("madvise(MADV_DONTNEED): %s", strerror(errno));
	}
}

int main(int argc, char **argv)
{
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg;
	struct srv_report rep;
	static size_t fcpu[MAX_CPUS], scpu[MAX_CPUS];
	size_t same = 0;
	int fmode = 0, smode = 0;
	struct opts o;
	struct lim_pct pct;
	unsigned char *area;
	uint64_t *lat, busy = 0, t_end;
	size_t cap, n = 0, npages;
	int sv[2], uffd, memfd = -1, status;
	char ready;

	lim_init("pch-limit-uffd");
	parse(argc, argv, &o);
	main_pid = getpid();
	server_cpu_now = mmap(NULL, sizeof(*server_cpu_now), PROT_READ | PROT_WRITE,
			      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (server_cpu_now == MAP_FAILED)
		lim_fail("mmap a shared page: %s", strerror(errno));
	atomic_store(server_cpu_now, -1);
	if (o.pin && sysconf(_SC_NPROCESSORS_ONLN) < 2)
		lim_fail("--pin needs 2 CPUs, this machine has %ld",
			 sysconf(_SC_NPROCESSORS_ONLN));
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
		lim_fail("socketpair: %s", strerror(errno));
	fflush(NULL);
	server_pid = fork();
	if (server_pid < 0)
		lim_fail("fork: %s", strerror(errno));
	if (!server_pid) {
		close(sv[0]);
		server_main(sv[1], &o);
	}
	close(sv[1]);
	atexit(kill_server);
	if (o.pin)
		lim_pin(FAULTER_CPU);

	uffd = open_uffd();
	if (o.shmem)
		api.features = UFFD_FEATURE_MISSING_SHMEM;
	if (ioctl(uffd, UFFDIO_API, &api)) {
		if (o.shmem && errno == EINVAL)
			lim_skip("userfaultfd: no UFFD_FEATURE_MISSING_SHMEM");
		lim_fail("UFFDIO_API: %s", strerror(errno));
	}
	if (o.shmem) {
		memfd = memfd_create("pch-limit-uffd", MFD_CLOEXEC);
		if (memfd < 0 || ftruncate(memfd, (off_t)o.area))
			lim_fail("memfd of %zu MiB: %s", o.area >> 20, strerror(errno));
		area = mmap(NULL, o.area, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	} else {
		area = mmap(NULL, o.area, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
			    0);
	}
	if (area == MAP_FAILED)
		lim_fail("mmap %zu MiB: %s", o.area >> 20, strerror(errno));
	/* no huge pages: every fault is one 4 KiB page */
	madvise(area, o.area, MADV_NOHUGEPAGE);
	reg = (struct uffdio_register){ .range = { (unsigned long)area, o.area },
					.mode = UFFDIO_REGISTER_MODE_MISSING };
	if (ioctl(uffd, UFFDIO_REGISTER, &reg))
		lim_fail("UFFDIO_REGISTER %s area: %s", o.shmem ? "shmem" : "anon",
			 strerror(errno));
	if (!(reg.ioctls & (1ull << _UFFDIO_COPY)))
		lim_skip("userfaultfd: UFFDIO_COPY not offered on a %s area",
			 o.shmem ? "shmem" : "anon");

	send_fd(sv[0], uffd);
	/* the server holds the only uffd now: if it dies, faults resolve */
	close(uffd);
	ctl_read(sv[0], &ready, 1, 5000, "ready message");
	if (ready == CTL_NOURING) {
		lim_reap(server_pid, lim_now_ns() + 5000000000ull);
		server_pid = 0;
		lim_skip("io_uring cannot read the O_NONBLOCK userfaultfd here (the server says why)");
	}
	if (ready != CTL_READY)
		lim_fail("server: unexpected message '%c'", ready);

	npages = o.area / PAGE;
	cap = 1u << 16;
	lat = malloc(cap * sizeof(*lat));
	if (!lat)
		lim_fail("out of memory");
	/* a server that stops answering (but lives) must not hold us in a fault */
	alarm((unsigned)o.seconds + 60);
	t_end = lim_now_ns() + (uint64_t)(o.seconds * 1e9);
	for (size_t pass = 0;; pass++) {
		uint64_t t_pass = lim_now_ns(), now = t_pass;
		bool done = false;

		if (pass)
			rearm(area, o.area, memfd);
		t_pass = lim_now_ns();
		for (size_t i = 0; i < npages; i++) {
			uint64_t t0 = lim_now_ns(), t1;
			unsigned char v = *(volatile unsigned char *)(area + i * PAGE);

			t1 = lim_now_ns();
			{
				int fc = sched_getcpu(), sc = atomic_load_explicit(
								 server_cpu_now, memory_order_relaxed);

				fcpu[(unsigned)fc % MAX_CPUS]++;
				scpu[(unsigned)sc % MAX_CPUS]++;
				same += fc == sc;
			}
			if (!v)
				lim_fail("page %zu: read 0, the server's content was not installed", i);
			if (n == cap) {
				cap *= 2;
				lat = realloc(lat, cap * sizeof(*lat));
				if (!lat)
					lim_fail("out of memory");
			}
			lat[n++] = t1 - t0;
			now = t1;
			if (!(i & 63) && now >= t_end) {
				done = true;
				break;
			}
		}
		busy += now - t_pass;
		if (done)
			break;
	}

	ready = CTL_QUIT;
	if (write(sv[0], &ready, 1) != 1)
		lim_fail("tell the server to quit: %s", strerror(errno));
	ctl_read(sv[0], &rep, sizeof(rep), 5000, "report");
	status = lim_reap(server_pid, lim_now_ns() + 5000000000ull);
	server_pid = 0;
	if (status < 0 || !WIFEXITED(status) || WEXITSTATUS(status))
		lim_fail("server: exited abnormally (status 0x%x)", status);
	if (rep.msgs != n)
		fprintf(stderr, "%s: note: %llu fault messages for %zu accesses\n", lim_prog,
			rep.msgs, n);

	for (int c = 0; c < MAX_CPUS; c++) {
		if (fcpu[c] > fcpu[fmode])
			fmode = c;
		if (scpu[c] > scpu[smode])
			smode = c;
	}
	lim_percentiles(lat, n, &pct);
	printf("{\"probe\":\"uffd_rtt\",\"unit\":\"us\",\"reader\":\"%s\",\"kind\":\"%s\","
	       "\"p50\":%.2f,\"p99\":%.2f,\"p999\":%.2f,\"max\":%.2f,\"mean\":%.2f,"
	       "\"count\":%zu,\"per_s\":%.0f,\"seconds\":%.3f,\"pinned\":%s,"
	       "\"faulter_cpu\":%d,\"server_cpu\":%d,\"same_cpu_frac\":%.3f,"
	       "\"server_cpu_end\":%d,\"eexist\":%llu}\n",
	       o.uring ? "uring" : "read", o.shmem ? "shmem" : "anon", pct.p50_us, pct.p99_us,
	       pct.p999_us, pct.max_us, pct.mean_us, pct.count,
	       busy ? (double)n * 1e9 / (double)busy : 0.0, (double)busy / 1e9,
	       o.pin ? "true" : "false", fmode, smode, n ? (double)same / (double)n : 0.0, rep.cpu,
	       rep.eexist);
	free(lat);
	return 0;
}
