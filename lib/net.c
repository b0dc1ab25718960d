// SPDX-License-Identifier: MIT
/* net.c - TCP and Unix SEQPACKET sockets where every wait has a deadline. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "net.h"
#include "util.h"

int pch_parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port)
{
	const char *colon, *h = s;
	size_t hl;
	uint64_t p;

	if (!s || !*s)
		return -EINVAL;
	if (*s == '[') {
		const char *rb = strchr(s, ']');

		if (!rb || rb[1] != ':')
			return -EINVAL;
		h = s + 1;
		hl = (size_t)(rb - h);
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return -EINVAL;
		hl = (size_t)(colon - s);
	}
	if (hl == 0 || hl >= hostlen)
		return -EINVAL;
	if (pch_parse_u64(colon + 1, 0, 65535, &p))
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	*port = (uint16_t)p;
	return 0;
}

static int resolve(const char *host, uint16_t port, int passive, struct addrinfo **res)
{
	struct addrinfo hints = { 0 };
	char pbuf[8];
	int rc;

	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
	snprintf(pbuf, sizeof(pbuf), "%u", port);
	rc = getaddrinfo(host, pbuf, &hints, res);
	if (rc)
		return rc == EAI_SYSTEM ? -errno : -EHOSTUNREACH;
	return 0;
}

int pch_tcp_listen(const char *host, uint16_t port, uint16_t *bound)
{
	struct addrinfo *res, *ai;
	int fd = -1, ret, one = 1;

	ret = resolve(host, port, 1, &res);
	if (ret)
		return ret;
	ret = -EADDRNOTAVAIL;
	for (ai = res; ai; ai = ai->ai_next) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);

		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			ret = -errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 128) < 0 ||
		    getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
			ret = -errno;
			close(fd);
			fd = -1;
			continue;
		}
		if (bound)
			*bound = ntohs(ss.ss_family == AF_INET6 ?
					       ((struct sockaddr_in6 *)&ss)->sin6_port :
					       ((struct sockaddr_in *)&ss)->sin_port);
		break;
	}
	freeaddrinfo(res);
	return fd >= 0 ? fd : ret;
}

static int wait_fd(int fd, short events, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = events };
	int rc;

	do
		rc = poll(&p, 1, timeout_ms);
	while (rc < 0 && errno == EINTR);
	if (rc < 0)
		return -errno;
	if (rc == 0)
		return -ETIMEDOUT;
	return p.revents;
}

int pch_tcp_connect(const char *host, uint16_t port, int timeout_ms)
{
	uint64_t deadline = pch_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	struct addrinfo *res, *ai;
	int fd = -1, ret, one = 1;

	ret = resolve(host, port, 0, &res);
	if (ret)
		return ret;
	ret = -ECONNREFUSED;
	for (ai = res; ai; ai = ai->ai_next) {
		int err = 0, rc;
		socklen_t el = sizeof(err);

		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0) {
			ret = -errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
			if (errno != EINPROGRESS) {
				ret = -errno;
				goto next;
			}
			rc = wait_fd(fd, POLLOUT, pch_ms_until(deadline));
			if (rc < 0) {
				ret = rc;
				goto next;
			}
			if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err) {
				ret = err ? -err : -errno;
				goto next;
			}
		}
		/* Back to blocking: every later wait goes through poll deadlines. */
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		freeaddrinfo(res);
		return fd;
next:
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return ret;
}

int pch_read_full(int fd, void *buf, size_t len, int timeout_ms)
{
	uint64_t deadline = pch_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	size_t done = 0;

	while (done < len) {
		ssize_t n;
		int rc = wait_fd(fd, POLLIN, pch_ms_until(deadline));

		if (rc < 0)
			return rc;
		n = recv(fd, (char *)buf + done, len - done, MSG_DONTWAIT);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			return -errno;
		}
		done += (size_t)n;
	}
	return 0;
}

int pch_write_full(int fd, const void *buf, size_t len, int timeout_ms)
{
	uint64_t deadline = pch_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	size_t done = 0;

	while (done < len) {
		ssize_t n;
		int rc = wait_fd(fd, POLLOUT, pch_ms_until(deadline));

		if (rc < 0)
			return rc;
		n = send(fd, (const char *)buf + done, len - done, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			return -errno;
		}
		done += (size_t)n;
	}
	return 0;
}

static int unix_addr(const char *path, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	strcpy(sa->sun_path, path);
	return 0;
}

/* Is somebody listening on the Unix socket at sa?  A stale one refuses. */
static bool unix_live(const struct sockaddr_un *sa)
{
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	bool live;

	if (fd < 0)
		return false;
	/* a full backlog (EAGAIN) is somebody too */
	live = connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0 || errno == EAGAIN;
	close(fd);
	return live;
}

/*
 * What is at path now: 0 nothing, 1 a stale socket of ours (to unlink), or
 * -EEXIST (not a socket, or another uid's) / -EADDRINUSE (live), why set.
 */
static int unix_existing(const char *path, const struct sockaddr_un *sa, char *why,
			 size_t why_len)
{
	struct stat st;

	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(why, why_len, "%s: %s", path, strerror(errno));
		return -errno;
	}
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(why, why_len, "%s exists and is not a socket (mode %06o): not removing it",
			 path, (unsigned)st.st_mode);
		return -EEXIST;
	}
	if (st.st_uid != geteuid()) {
		snprintf(why, why_len, "%s is a socket of uid %u, not ours (%u): not removing it",
			 path, (unsigned)st.st_uid, (unsigned)geteuid());
		return -EEXIST;
	}
	/*
	 * A predecessor killed a moment ago may still listen while the kernel
	 * tears it down (the socket goes with its last reference, which can
	 * outlive the process by a few ms): give it up to a second to go.
	 */
	for (int i = 0; unix_live(sa); i++) {
		if (i == 50) {
			snprintf(why, why_len, "%s: another process listens on it", path);
			return -EADDRINUSE;
		}
		usleep(20 * 1000);
	}
	return 1;
}

int pch_unix_path_check(const char *path, char *why, size_t why_len)
{
	struct sockaddr_un sa;
	struct stat st;
	char *dir, *slash;
	int ret;

	ret = unix_addr(path, &sa);
	if (ret) {
		snprintf(why, why_len, "%s: longer than a Unix socket path may be", path);
		return ret;
	}
	dir = strdup(path);
	if (!dir) {
		snprintf(why, why_len, "%s: out of memory", path);
		return -ENOMEM;
	}
	slash = strrchr(dir, '/');
	if (!slash)
		strcpy(dir, ".");
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	if (stat(dir, &st) < 0) {
		ret = -errno;
		snprintf(why, why_len, "%s: directory %s: %s", path, dir, strerror(-ret));
	} else if ((st.st_mode & S_IWOTH) && !(st.st_mode & S_ISVTX)) {
		snprintf(why, why_len, "%s: directory %s (mode %04o) is writable by others "
			 "and not sticky: anybody could replace the socket", path, dir,
			 (unsigned)(st.st_mode & 07777));
		ret = -EPERM;
	} else if ((st.st_mode & (S_IWGRP | S_IWOTH)) && st.st_uid != geteuid() && st.st_uid) {
		snprintf(why, why_len, "%s: directory %s (mode %04o) is writable by %s and "
			 "owned by uid %u, neither ours (%u) nor root", path, dir,
			 (unsigned)(st.st_mode & 07777), st.st_mode & S_IWOTH ? "others" : "its group",
			 (unsigned)st.st_uid, (unsigned)geteuid());
		ret = -EPERM;
	}
	free(dir);
	if (ret)
		return ret;
	ret = unix_existing(path, &sa, why, why_len);
	return ret < 0 ? ret : 0;
}

int pch_unix_listen(const char *path)
{
	struct sockaddr_un sa;
	char why[16];
	mode_t old;
	int fd, ret;

	ret = unix_addr(path, &sa);
	if (ret)
		return ret;
	/* a stale socket from a dead helper goes; nothing else does */
	ret = unix_existing(path, &sa, why, sizeof(why));
	if (ret < 0)
		return ret;
	if (ret && unlink(path) < 0 && errno != ENOENT)
		return -errno;
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	old = umask(077);
	ret = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (ret < 0 || chmod(path, 0600) < 0 || listen(fd, 8) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	return fd;
}

int pch_unix_connect(const char *path, int timeout_ms)
{
	uint64_t deadline = pch_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	struct sockaddr_un sa;
	int fd, ret;

	ret = unix_addr(path, &sa);
	if (ret)
		return ret;
	for (;;) {
		fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0)
			return -errno;
		/*
		 * Non-blocking: a Unix connect to a full backlog fails with EAGAIN
		 * at once instead of sleeping past our deadline.
		 */
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
			return fd;
		}
		ret = -errno;
		close(fd);
		/* Not listening yet, or busy: retry until the deadline. */
		if ((ret != -ENOENT && ret != -ECONNREFUSED && ret != -EAGAIN) ||
		    pch_now_ns() >= deadline)
			return ret == -EAGAIN ? -ETIMEDOUT : ret;
		usleep(10000);
	}
}

int pch_accept(int lfd, int timeout_ms)
{
	int rc = wait_fd(lfd, POLLIN, timeout_ms), fd;

	if (rc < 0)
		return rc;
	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int pch_seqpkt_send(int fd, const void *buf, size_t len, const int *fds, int nfds,
		    int timeout_ms)
{
	uint64_t deadline;
	union {
		char buf[CMSG_SPACE(4 * sizeof(int))];
		struct cmsghdr align;
	} cbuf;
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;

	if (nfds < 0 || nfds > 4)
		return -EINVAL;
	if (nfds) {
		struct cmsghdr *c;

		memset(&cbuf, 0, sizeof(cbuf));
		msg.msg_control = cbuf.buf;
		msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
	}
	deadline = pch_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	for (;;) {
		int rc;

		n = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n >= 0)
			break;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return -errno;
		rc = wait_fd(fd, POLLOUT, pch_ms_until(deadline));
		if (rc < 0)
			return rc;
	}
	return (size_t)n == len ? 0 : -EIO;
}

int pch_seqpkt_recv(int fd, void *buf, size_t cap, int *fds, int maxfds, int *nfds,
		    int timeout_ms)
{
	union {
		char buf[CMSG_SPACE(8 * sizeof(int))];
		struct cmsghdr align;
	} cbuf;
	struct iovec iov = { .iov_base = buf, .iov_len = cap };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = cbuf.buf, .msg_controllen = sizeof(cbuf.buf) };
	struct cmsghdr *c;
	int rc, got = 0, bad = 0;
	ssize_t n;

	*nfds = 0;
	rc = wait_fd(fd, POLLIN, timeout_ms);
	if (rc < 0)
		return rc;
	do
		n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EAGAIN ? -ETIMEDOUT : -errno;
	/* Collect every fd that came, so none leaks whatever happens next. */
	for (c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		int *p, k, cnt;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
			bad = 1;
			continue;
		}
		cnt = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		p = (int *)CMSG_DATA(c);
		for (k = 0; k < cnt; k++) {
			if (got < maxfds)
				fds[got++] = p[k];
			else {
				close(p[k]);
				bad = 1;
			}
		}
	}
	if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC) || bad) {
		while (got > 0)
			close(fds[--got]);
		return (msg.msg_flags & MSG_TRUNC) ? -EMSGSIZE : -EBADMSG;
	}
	*nfds = got;
	return (int)n;
}
