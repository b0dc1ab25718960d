// SPDX-License-Identifier: MIT
/* test_ring.c - Check suite for lib/ring.c. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ring.h"

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

START_TEST(test_create_bad_nr)
{
	struct pch_ring r;

	ck_assert_int_eq(pch_ring_create(&r, 0), -EINVAL);
	ck_assert_int_eq(pch_ring_create(&r, 1), -EINVAL);
	ck_assert_int_eq(pch_ring_create(&r, 3), -EINVAL);
	ck_assert_int_eq(pch_ring_create(&r, 100), -EINVAL);
	ck_assert_int_eq(pch_ring_create(&r, PCH_RING_MAX_ENTRIES * 2), -EINVAL);
	ck_assert_int_eq(r.memfd, -1);
	ck_assert_int_eq(pch_ring_create(&r, PCH_RING_MAX_ENTRIES), 0);
	ck_assert_uint_eq(r.size, PCH_RING_BYTES(PCH_RING_MAX_ENTRIES));
	pch_ring_close(&r);
	pch_ring_close(&r); /* idempotent */
}
END_TEST

START_TEST(test_create_layout)
{
	struct pch_ring r;
	struct stat st;
	int seals;

	ck_assert_int_eq(pch_ring_create(&r, 8), 0);
	ck_assert_uint_eq(r.hdr->magic, PCH_RING_MAGIC);
	ck_assert_uint_eq(r.hdr->version, PCH_RING_VERSION);
	ck_assert_uint_eq(r.hdr->entry_size, sizeof(struct pch_ring_event));
	ck_assert_uint_eq(r.hdr->nr_entries, 8);
	ck_assert_uint_eq(r.hdr->head, 0);
	ck_assert_uint_eq(r.hdr->tail, 0);
	ck_assert_int_eq(fstat(r.memfd, &st), 0);
	ck_assert_int_eq(st.st_size, (off_t)PCH_RING_BYTES(8));
	seals = fcntl(r.memfd, F_GET_SEALS);
	ck_assert(seals & F_SEAL_SHRINK);
	ck_assert(seals & F_SEAL_GROW);
	ck_assert_int_ne(ftruncate(r.memfd, 64), 0); /* sealed */
	ck_assert(fcntl(r.memfd, F_GETFD) & FD_CLOEXEC);
	ck_assert(fcntl(r.efd, F_GETFL) & O_NONBLOCK);
	pch_ring_close(&r);
}
END_TEST

START_TEST(test_empty_full)
{
	struct pch_ring r;
	struct pch_ring_event ev;
	unsigned i;

	ck_assert_int_eq(pch_ring_create(&r, 4), 0);
	ck_assert_int_eq(pch_ring_pop(&r, &ev), -EAGAIN);
	for (i = 0; i < 4; i++)
		ck_assert_int_eq(pch_ring_postf(&r, PCH_RING_SYNC_REACHED, 0, i, "e%u", i), 0);
	ck_assert_int_eq(pch_ring_postf(&r, PCH_RING_SYNC_REACHED, 0, 99, "full"), -ENOSPC);
	ck_assert_int_eq(pch_ring_pop(&r, &ev), 0);
	ck_assert_uint_eq(ev.epoch, 0);
	ck_assert_str_eq(ev.text, "e0");
	ck_assert_uint_ne(ev.time_ns, 0);
	ck_assert_int_eq(pch_ring_postf(&r, PCH_RING_COMPLETE, 0, 4, "e4"), 0);
	ck_assert_int_eq(pch_ring_postf(&r, PCH_RING_COMPLETE, 0, 5, "x"), -ENOSPC);
	for (i = 1; i <= 4; i++) {
		ck_assert_int_eq(pch_ring_pop(&r, &ev), 0);
		ck_assert_uint_eq(ev.epoch, i);
	}
	ck_assert_uint_eq(ev.type, PCH_RING_COMPLETE);
	ck_assert_int_eq(pch_ring_pop(&r, &ev), -EAGAIN);
	pch_ring_close(&r);
}
END_TEST

START_TEST(test_wraparound)
{
	struct pch_ring r;
	struct pch_ring_event ev;
	uint64_t posted = 0, popped = 0;
	unsigned round;

	ck_assert_int_eq(pch_ring_create(&r, 8), 0);
	/* batches of 1..8 events, so head crosses the boundary at every phase */
	for (round = 0; round < 1000; round++) {
		unsigned n = 1 + round % 8, i;

		for (i = 0; i < n; i++) {
			ck_assert_int_eq(pch_ring_postf(&r, PCH_RING_SYNC_REACHED, -(int)i, posted,
							"ev %llu", (unsigned long long)posted),
					 0);
			posted++;
		}
		for (i = 0; i < n; i++) {
			char want[40];

			ck_assert_int_eq(pch_ring_pop(&r, &ev), 0);
			ck_assert_uint_eq(ev.epoch, popped);
			ck_assert_int_eq(ev.code, -(int)i);
			snprintf(want, sizeof(want), "ev %llu", (unsigned long long)popped);
			ck_assert_str_eq(ev.text, want);
			popped++;
		}
		ck_assert_int_eq(pch_ring_pop(&r, &ev), -EAGAIN);
	}
	ck_assert_uint_eq(r.hdr->head, posted);
	ck_assert_uint_eq(r.hdr->tail, popped);
	ck_assert_uint_gt(posted, 8 * 100);
	pch_ring_close(&r);
}
END_TEST

START_TEST(test_post_fields)
{
	struct pch_ring r;
	struct pch_ring_event ev, in;

	ck_assert_int_eq(pch_ring_create(&r, 2), 0);
	memset(&in, 'A', sizeof(in)); /* text not NUL-terminated */
	in.type = PCH_RING_ERROR;
	in.flags = 0;
	in.code = -EIO;
	in.epoch = 7;
	in.time_ns = 12345;
	ck_assert_int_eq(pch_ring_post(&r, &in), 0);
	ck_assert_int_eq(pch_ring_pop(&r, &ev), 0);
	ck_assert_uint_eq(ev.time_ns, 12345); /* kept when set */
	ck_assert_int_eq(ev.code, -EIO);
	ck_assert_uint_eq(strlen(ev.text), sizeof(ev.text) - 1);

	/* long text is truncated and terminated */
	ck_assert_int_eq(pch_ring_postf(&r, PCH_RING_ERROR, -EINVAL, 0, "%s",
					"0123456789012345678901234567890123456789xyz"),
			 0);
	ck_assert_int_eq(pch_ring_pop(&r, &ev), 0);
	ck_assert_uint_eq(strlen(ev.text), 39);
	ck_assert_str_eq(pch_ring_type_name(PCH_RING_SYNC_REACHED), "SYNC_REACHED");
	ck_assert_str_eq(pch_ring_type_name(PCH_RING_COMPLETE), "COMPLETE");
	ck_assert_str_eq(pch_ring_type_name(PCH_RING_ERROR), "ERROR");
	ck_assert_str_eq(pch_ring_type_name(0), "?");
	ck_assert_str_eq(pch_ring_type_name(PCH_RING_TYPE_MAX), "?");
	ck_assert_str_eq(pch_ring_type_name(0xffff), "?");
	pch_ring_close(&r);
}
END_TEST

START_TEST(test_corrupt_indices)
{
	struct pch_ring r;
	struct pch_ring_event ev;

	ck_assert_int_eq(pch_ring_create(&r, 4), 0);
	/* head too far ahead of tail */
	r.hdr->head = 5;
	ck_assert_int_eq(pch_ring_pop(&r, &ev), -EBADMSG);
	ck_assert_int_eq(pch_ring_postf(&r, PCH_RING_COMPLETE, 0, 0, "x"), -EBADMSG);
	/* tail ahead of head (wraps to a huge difference) */
	r.hdr->head = 3;
	r.hdr->tail = 4;
	ck_assert_int_eq(pch_ring_pop(&r, &ev), -EBADMSG);
	ck_assert_int_eq(pch_ring_postf(&r, PCH_RING_COMPLETE, 0, 0, "x"), -EBADMSG);
	/* huge but consistent free-running counters are fine */
	r.hdr->head = UINT64_MAX;
	r.hdr->tail = UINT64_MAX - 1;
	ck_assert_int_eq(pch_ring_pop(&r, &ev), 0);
	ck_assert_int_eq(pch_ring_pop(&r, &ev), -EAGAIN);
	ck_assert_int_eq(pch_ring_postf(&r, PCH_RING_COMPLETE, 0, 42, "wrap"), 0);
	ck_assert_uint_eq(r.hdr->head, 0); /* wrapped past 2^64 */
	ck_assert_int_eq(pch_ring_pop(&r, &ev), 0);
	ck_assert_uint_eq(ev.epoch, 42);
	pch_ring_close(&r);
}
END_TEST

/* Dup a created ring's fds and attach a second view to them. */
static int attach_dup(const struct pch_ring *src, struct pch_ring *dst)
{
	return pch_ring_attach(dst, dup(src->memfd), dup(src->efd));
}

START_TEST(test_attach_ok)
{
	struct pch_ring a, b;
	struct pch_ring_event ev;

	ck_assert_int_eq(pch_ring_create(&a, 16), 0);
	ck_assert_int_eq(attach_dup(&a, &b), 0);
	ck_assert_uint_eq(b.nr, 16);
	ck_assert_int_eq(pch_ring_postf(&b, PCH_RING_SYNC_REACHED, 0, 3, "hi"), 0);
	ck_assert_int_eq(pch_ring_wait(&a, 1000), 0);
	ck_assert_int_eq(pch_ring_pop(&a, &ev), 0);
	ck_assert_uint_eq(ev.epoch, 3);
	ck_assert_str_eq(ev.text, "hi");
	ck_assert_int_eq(pch_ring_wait(&a, 0), -ETIMEDOUT); /* cleared */
	pch_ring_close(&b);
	pch_ring_close(&a);
}
END_TEST

/* The producer's heartbeat reaches the consumer's mapping; 0 is never stored. */
START_TEST(test_heartbeat)
{
	struct pch_ring a, b;

	ck_assert_int_eq(pch_ring_create(&a, 8), 0);
	ck_assert_uint_eq(pch_ring_heartbeat_ns(&a), 0);
	ck_assert_int_eq(attach_dup(&a, &b), 0);
	pch_ring_heartbeat(&b, 12345);
	ck_assert_uint_eq(pch_ring_heartbeat_ns(&a), 12345);
	pch_ring_heartbeat(&b, 0);
	ck_assert_uint_eq(pch_ring_heartbeat_ns(&a), 1);
	/* the heartbeat is not the head: posting still works, attach still checks */
	ck_assert_int_eq(pch_ring_postf(&b, PCH_RING_COMPLETE, 0, 0, "done"), 0);
	ck_assert_uint_eq(__atomic_load_n(&a.hdr->head, __ATOMIC_ACQUIRE), 1);
	pch_ring_close(&b);
	pch_ring_close(&a);
}
END_TEST

/* Make a ring, corrupt one header field through the mapping, attach. */
#define ATTACH_CORRUPT(stmt)                                                                       \
	do {                                                                                       \
		struct pch_ring a, b;                                                              \
		ck_assert_int_eq(pch_ring_create(&a, 8), 0);                                       \
		stmt;                                                                              \
		ck_assert_int_eq(attach_dup(&a, &b), -EBADMSG);                                    \
		ck_assert_int_eq(b.memfd, -1);                                                     \
		ck_assert_ptr_null(b.hdr);                                                         \
		pch_ring_close(&a);                                                                \
	} while (0)

START_TEST(test_attach_bad_header)
{
	ATTACH_CORRUPT(a.hdr->magic = 0x12345678);
	ATTACH_CORRUPT(a.hdr->version = 2);
	ATTACH_CORRUPT(a.hdr->entry_size = 32);
	ATTACH_CORRUPT(a.hdr->nr_entries = 6);
	ATTACH_CORRUPT(a.hdr->nr_entries = 1);
	ATTACH_CORRUPT(a.hdr->nr_entries = 0);
	ATTACH_CORRUPT(a.hdr->nr_entries = PCH_RING_MAX_ENTRIES * 2);
	ATTACH_CORRUPT(a.hdr->nr_entries = 16); /* more than the memfd holds */
	ATTACH_CORRUPT(a.hdr->reserved0 = 1);
	ATTACH_CORRUPT(a.hdr->pad0[5] = 1);
	ATTACH_CORRUPT(a.hdr->head = 9);
	ATTACH_CORRUPT((a.hdr->head = 1, a.hdr->tail = 2));
}
END_TEST

/* A memfd with a valid-looking header but built by hand. */
static int hand_memfd(size_t size, unsigned seals, uint32_t nr)
{
	struct pch_ring_hdr h;
	int fd = memfd_create("test-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)size), 0);
	memset(&h, 0, sizeof(h));
	h.magic = PCH_RING_MAGIC;
	h.version = PCH_RING_VERSION;
	h.entry_size = sizeof(struct pch_ring_event);
	h.nr_entries = nr;
	if (size >= sizeof(h))
		ck_assert_int_eq(pwrite(fd, &h, sizeof(h), 0), (ssize_t)sizeof(h));
	else
		ck_assert_int_eq(pwrite(fd, &h, size, 0), (ssize_t)size);
	if (seals)
		ck_assert_int_eq(fcntl(fd, F_ADD_SEALS, seals), 0);
	return fd;
}

START_TEST(test_attach_bad_memfd)
{
	struct pch_ring r;
	int efd;

	/* the control case: a hand-built ring attaches */
	efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ck_assert_int_eq(pch_ring_attach(&r, hand_memfd(PCH_RING_BYTES(4), F_SEAL_SHRINK, 4), efd),
			 0);
	pch_ring_close(&r);

	/* too small for the header */
	efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ck_assert_int_eq(pch_ring_attach(&r, hand_memfd(100, F_SEAL_SHRINK, 4), efd), -EBADMSG);
	ck_assert_int_eq(r.efd, -1);
	/* header fine, entries cut short */
	efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ck_assert_int_eq(
	    pch_ring_attach(&r, hand_memfd(PCH_RING_BYTES(4) - 1, F_SEAL_SHRINK, 4), efd),
	    -EBADMSG);
	/* empty */
	efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ck_assert_int_eq(pch_ring_attach(&r, hand_memfd(0, F_SEAL_SHRINK, 4), efd), -EBADMSG);
	/* not sealed against shrinking: the peer could SIGBUS us */
	efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ck_assert_int_eq(pch_ring_attach(&r, hand_memfd(PCH_RING_BYTES(4), 0, 4), efd), -EBADMSG);
	/* not a regular file */
	efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ck_assert_int_eq(pch_ring_attach(&r, eventfd(0, EFD_CLOEXEC), efd), -EBADMSG);
	/* bad fds; nothing leaks, nothing crashes */
	ck_assert_int_eq(pch_ring_attach(&r, -1, -1), -EBADF);
	efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ck_assert_int_eq(pch_ring_attach(&r, hand_memfd(PCH_RING_BYTES(4), F_SEAL_SHRINK, 4), -1),
			 -EBADF);
	close(efd);
}
END_TEST

START_TEST(test_attach_takes_fds)
{
	struct pch_ring r;
	int memfd = hand_memfd(64, F_SEAL_SHRINK, 4);
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

	ck_assert_int_eq(pch_ring_attach(&r, memfd, efd), -EBADMSG);
	/* both fds closed even on failure */
	ck_assert_int_eq(fcntl(memfd, F_GETFD), -1);
	ck_assert_int_eq(errno, EBADF);
	ck_assert_int_eq(fcntl(efd, F_GETFD), -1);
}
END_TEST

START_TEST(test_wait_timeout)
{
	struct pch_ring r;
	struct pch_ring_event ev;
	uint64_t t0;

	ck_assert_int_eq(pch_ring_create(&r, 4), 0);
	t0 = now_ms();
	ck_assert_int_eq(pch_ring_wait(&r, 100), -ETIMEDOUT);
	ck_assert_uint_ge(now_ms() - t0, 90);
	/* two posts, one wait clears both signals */
	ck_assert_int_eq(pch_ring_postf(&r, PCH_RING_COMPLETE, 0, 0, "a"), 0);
	ck_assert_int_eq(pch_ring_postf(&r, PCH_RING_COMPLETE, 0, 0, "b"), 0);
	ck_assert_int_eq(pch_ring_wait(&r, 0), 0);
	ck_assert_int_eq(pch_ring_wait(&r, 0), -ETIMEDOUT);
	ck_assert_int_eq(pch_ring_pop(&r, &ev), 0);
	ck_assert_int_eq(pch_ring_pop(&r, &ev), 0);
	ck_assert_int_eq(pch_ring_pop(&r, &ev), -EAGAIN);
	pch_ring_close(&r);
}
END_TEST

/* A blocking eventfd, or a pipe, could block the producer forever: refused. */
START_TEST(test_attach_bad_eventfd)
{
	struct pch_ring r, a;
	int p[2];

	ck_assert_int_eq(pch_ring_create(&r, 8), 0);
	ck_assert_int_eq(pch_ring_attach(&a, dup(r.memfd), eventfd(0, EFD_CLOEXEC)), -EBADMSG);
	ck_assert_int_eq(pipe2(p, O_NONBLOCK), 0);
	close(p[1]);
	ck_assert_int_eq(pch_ring_attach(&a, dup(r.memfd), p[0]), -EBADMSG);
	ck_assert_int_eq(pch_ring_attach(&a, dup(r.memfd), dup(r.efd)), 0);
	pch_ring_close(&a);
	pch_ring_close(&r);
}
END_TEST

#define XPROC_EVENTS 5000u

/*
 * Producer in a forked child, attached through the same fd numbers (the
 * child inherits them; it dups so attach owns its copies).  The child first
 * sleeps, so the parent's wait times out, then streams more events than the
 * ring holds, retrying on -ENOSPC.
 */
START_TEST(test_two_processes)
{
	struct pch_ring r;
	struct pch_ring_event ev;
	uint64_t got = 0, t0;
	int status, ret;
	pid_t pid;

	ck_assert_int_eq(pch_ring_create(&r, 8), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (!pid) {
		struct pch_ring c;
		uint64_t i;

		if (pch_ring_attach(&c, dup(r.memfd), dup(r.efd)))
			_exit(2);
		pch_ring_close(&r); /* the inherited view; c is the child's own */
		usleep(500 * 1000); /* well after the parent's 100 ms wait */
		for (i = 0; i < XPROC_EVENTS; i++) {
			while ((ret = pch_ring_postf(&c, PCH_RING_SYNC_REACHED, 0, i, "n=%llu",
						     (unsigned long long)i)) == -ENOSPC)
				usleep(50);
			if (ret)
				_exit(3);
		}
		while ((ret = pch_ring_postf(&c, PCH_RING_COMPLETE, 0, 0, "done")) == -ENOSPC)
			usleep(50);
		if (ret)
			_exit(4);
		pch_ring_close(&c);
		_exit(0);
	}

	/* nothing posted yet: the wait must time out */
	t0 = now_ms();
	ck_assert_int_eq(pch_ring_wait(&r, 100), -ETIMEDOUT);
	ck_assert_uint_ge(now_ms() - t0, 90);

	for (;;) {
		ret = pch_ring_pop(&r, &ev);
		if (ret == -EAGAIN) {
			ret = pch_ring_wait(&r, 5000);
			ck_assert_int_eq(ret, 0);
			continue;
		}
		ck_assert_int_eq(ret, 0);
		if (ev.type == PCH_RING_COMPLETE)
			break;
		ck_assert_uint_eq(ev.type, PCH_RING_SYNC_REACHED);
		ck_assert_uint_eq(ev.epoch, got);
		got++;
	}
	ck_assert_uint_eq(got, XPROC_EVENTS);
	ck_assert_str_eq(ev.text, "done");
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	ck_assert_int_eq(pch_ring_pop(&r, &ev), -EAGAIN);
	pch_ring_close(&r);
}
END_TEST

static Suite *ring_suite(void)
{
	Suite *s = suite_create("ring");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_create_bad_nr);
	tcase_add_test(tc, test_create_layout);
	tcase_add_test(tc, test_empty_full);
	tcase_add_test(tc, test_wraparound);
	tcase_add_test(tc, test_post_fields);
	tcase_add_test(tc, test_corrupt_indices);
	tcase_add_test(tc, test_attach_ok);
	tcase_add_test(tc, test_heartbeat);
	tcase_add_test(tc, test_attach_bad_header);
	tcase_add_test(tc, test_attach_bad_memfd);
	tcase_add_test(tc, test_attach_takes_fds);
	tcase_add_test(tc, test_wait_timeout);
	tcase_add_test(tc, test_two_processes);
	tcase_add_test(tc, test_attach_bad_eventfd);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(ring_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
