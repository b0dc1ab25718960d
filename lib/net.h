/* SPDX-License-Identifier: MIT */
/* net.h - sockets with deadlines: TCP for channels, SEQPACKET for control. */
#ifndef PCH_NET_H
#define PCH_NET_H

#include <stddef.h>
#include <stdint.h>

/* Split "host:port" ("[v6]:port" too); -EINVAL.  host is a static-size buf. */
int pch_parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port);

/* Listen on host:port (port 0: any); *bound gets the port.  fd or -errno. */
int pch_tcp_listen(const char *host, uint16_t port, uint16_t *bound);
/* Connect with a deadline; TCP_NODELAY set.  fd (blocking) or -errno. */
int pch_tcp_connect(const char *host, uint16_t port, int timeout_ms);

/*
 * Read/write exactly len bytes before timeout_ms elapses (whole call).
 * Returns 0, -ETIMEDOUT, -ECONNRESET on EOF (read), or -errno.
 */
int pch_read_full(int fd, void *buf, size_t len, int timeout_ms);
int pch_write_full(int fd, const void *buf, size_t len, int timeout_ms);

/*
 * May a listening socket be made at path?  Refused when its directory is
 * writable by others without the sticky bit (-EPERM), or writable by group
 * or others and owned by a uid neither ours nor root (-EPERM): whoever can
 * write there could replace the socket.  Refused when something is at path
 * already that is not a socket of ours (-EEXIST), or a socket somebody
 * listens on (-EADDRINUSE).  0 or -errno; why (why_len bytes) names the
 * path, and the mode and owner that made it unsafe.
 */
int pch_unix_path_check(const char *path, char *why, size_t why_len);
/*
 * Unix SOCK_SEQPACKET: listen (mode 0600; a stale socket at path is
 * unlinked only if it is ours and nobody listens on it, anything else there
 * fails with -EEXIST or -EADDRINUSE) / connect (retrying while the path is
 * missing or the backlog full, until timeout_ms).
 */
int pch_unix_listen(const char *path);
int pch_unix_connect(const char *path, int timeout_ms);
/* Accept with a deadline; fd or -ETIMEDOUT/-errno. */
int pch_accept(int lfd, int timeout_ms);

/*
 * Send one packet with up to 4 fds (SCM_RIGHTS), waiting at most timeout_ms
 * for room in the socket (a peer that stops reading cannot block us).
 * 0, -ETIMEDOUT, or -errno.
 */
int pch_seqpkt_send(int fd, const void *buf, size_t len, const int *fds, int nfds,
		    int timeout_ms);
/*
 * Receive one packet into buf (cap bytes) and up to maxfds fds, waiting at
 * most timeout_ms (-1: forever is refused; pass a deadline).  Returns the
 * packet length, 0 on orderly close, -EMSGSIZE if truncated (fds closed),
 * -ETIMEDOUT, or -errno.  *nfds gets the number of fds received; fds beyond
 * maxfds are closed and make the call fail with -EBADMSG.
 */
int pch_seqpkt_recv(int fd, void *buf, size_t cap, int *fds, int maxfds, int *nfds,
		    int timeout_ms);

#endif
