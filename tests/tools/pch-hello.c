// SPDX-License-Identifier: MIT
/*
 * pch-hello - open one channel to a pch-source the way an attacker or a
 * confused peer would: any kind, index, count, version, session or key.
 * Prints "accepted" or "refused: REASON: TEXT".  Exit 0 accepted, 3 refused,
 * 4 closed by the source without an answer (--trickle-ms), 1 on any other
 * failure.  Also replays a captured hello byte for byte (--replay), sends a
 * hello one byte at a time (--trickle-ms, slowloris) and floods the source
 * with idle, trickling and garbage connections (--flood).  For the
 * integration tests.
 */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "codec.h"
#include "net.h"
#include "util.h"
#include "pch/uffd-compat.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/syscall.h>

/* 0 when this process can get a userfaultfd, 77 when it cannot. */
static int probe_uffd(void)
{
	struct uffdio_api api = { .api = UFFD_API };
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	if (fd < 0) {
		int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);

		if (dev >= 0) {
			fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
			close(dev);
		}
	}
	if (fd < 0 || ioctl(fd, UFFDIO_API, &api) < 0) {
		printf("userfaultfd unavailable: %s\n", strerror(errno));
		return 77;
	}
	printf("userfaultfd features 0x%llx\n", (unsigned long long)api.features);
	close(fd);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: pch-hello --connect HOST:PORT --key-file F [--kind control|urgent|pages]\n"
			"  [--index N] [--count N] [--page-size N] [--version N] [--wrong-key]\n"
			"  [--wrong-session] [--bad-magic] [--resume] [--nonce X] [--save FILE]\n"
			"  [--hold-ms N] [--trickle-ms N]\n"
			"  pch-hello --connect HOST:PORT --replay FILE [--trickle-ms N]\n"
			"  pch-hello --connect HOST:PORT --flood N --hold-ms M [--trickle-ms N]\n");
	exit(1);
}

/* Answer of the source, or how the connection ended; exit status as main's. */
static int read_answer(int fd, int hold)
{
	union {
		struct pch_hello ack;
		struct pch_refuse ref;
	} in;
	int rc = pch_read_full(fd, &in, sizeof(in), 10000);

	if (rc) {
		fprintf(stderr, "pch-hello: no answer: %s\n", strerror(-rc));
		return 1;
	}
	if (in.ref.magic == PCH_REFUSE_MAGIC) {
		in.ref.text[sizeof(in.ref.text) - 1] = '\0';
		printf("refused: %s: %s\n", pch_refuse_name(in.ref.reason), in.ref.text);
		return 3;
	}
	if (in.ack.magic != PCH_ACK_MAGIC) {
		fprintf(stderr, "pch-hello: answer is neither ack nor refusal\n");
		return 1;
	}
	printf("accepted\n");
	fflush(stdout);
	if (hold)
		usleep((useconds_t)hold * 1000);
	return 0;
}

/*
 * Slowloris: one byte of the hello every ms milliseconds.  If the source
 * closes first, prints "closed by peer after K bytes (T ms)" and returns 4.
 */
static int trickle(int fd, const struct pch_hello *h, int ms, int hold)
{
	uint64_t t0 = pch_now_ns();
	size_t k;

	for (k = 0; k < sizeof(*h); k++) {
		struct pollfd p = { .fd = fd, .events = POLLIN | POLLRDHUP };

		/* the source may answer (refuse) or close between two bytes */
		if (poll(&p, 1, ms) > 0) {
			char c;
			ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);

			if (n > 0)
				return read_answer(fd, hold);
			if (n == 0 || (n < 0 && errno != EAGAIN))
				break;
		}
		if (send(fd, (const char *)h + k, 1, MSG_NOSIGNAL) != 1)
			break;
	}
	if (k == sizeof(*h))
		return read_answer(fd, hold);
	printf("closed by peer after %zu bytes (%llu ms)\n", k,
	       (unsigned long long)((pch_now_ns() - t0) / 1000000));
	return 4;
}

/* A flood connection, and what it does. */
enum { FL_IDLE, FL_TRICKLE, FL_GARBAGE, FL_PARTIAL, FL_KINDS };
static const char *const fl_name[FL_KINDS] = { "idle", "trickle", "garbage", "partial" };

struct fl {
	int fd, kind;
	bool up, closed, refused;
	size_t sent;
};

/*
 * Open n connections at once (without waiting for each), a quarter each
 * idle (nothing sent), trickling (a byte every trickle_ms), garbage (72
 * random bytes) and partial (20 random bytes, then nothing); hold them
 * hold_ms from the start, then close them.  Prints one summary line.
 */
static int flood(const char *host, uint16_t port, int n, int hold_ms, int trickle_ms)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV }, *ai;
	uint64_t t0 = pch_now_ns(), end = t0 + (uint64_t)hold_ms * 1000000ull, next_byte = 0;
	unsigned up = 0, closed = 0, refused = 0, failed = 0, per[FL_KINDS] = { 0 };
	struct pollfd *p = calloc((size_t)n, sizeof(*p));
	struct fl *f = calloc((size_t)n, sizeof(*f));
	char pstr[8], junk[72];
	int i;

	snprintf(pstr, sizeof(pstr), "%u", port);
	if (!p || !f || getaddrinfo(host, pstr, &hints, &ai)) {
		fprintf(stderr, "pch-hello: flood: cannot resolve %s or no memory\n", host);
		return 1;
	}
	for (i = 0; i < n; i++) {
		f[i].kind = i % FL_KINDS;
		per[f[i].kind]++;
		f[i].fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (f[i].fd < 0 || (connect(f[i].fd, ai->ai_addr, ai->ai_addrlen) < 0 &&
				    errno != EINPROGRESS)) {
			if (f[i].fd >= 0)
				close(f[i].fd);
			f[i].fd = -1;
			f[i].closed = true;
			failed++;
		}
	}
	freeaddrinfo(ai);
	for (;;) {
		uint64_t now = pch_now_ns();
		int ms;

		if (now >= end)
			break;
		ms = (int)((end - now) / 1000000) + 1;
		if (trickle_ms && next_byte)
			ms = PCH_MIN(ms, (int)(next_byte > now ? (next_byte - now) / 1000000 + 1 : 0));
		for (i = 0; i < n; i++) {
			p[i].fd = f[i].closed ? -1 : f[i].fd;
			p[i].events = f[i].up ? POLLIN | POLLRDHUP : POLLOUT;
		}
		if (poll(p, (nfds_t)n, ms) < 0 && errno != EINTR)
			break;
		now = pch_now_ns();
		for (i = 0; i < n; i++) {
			struct fl *c = &f[i];
			char buf[128];
			ssize_t r;

			if (c->closed || !p[i].revents)
				continue;
			if (!c->up) {
				int err = 0;
				socklen_t sl = sizeof(err);

				getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &sl);
				if (err) {
					c->closed = true;
					failed++;
					continue;
				}
				c->up = true;
				up++;
				if (c->kind == FL_GARBAGE || c->kind == FL_PARTIAL) {
					pch_random_bytes(junk, sizeof(junk));
					c->sent = (size_t)send(c->fd, junk,
							       c->kind == FL_GARBAGE ? 72 : 20,
							       MSG_NOSIGNAL | MSG_DONTWAIT);
				}
				continue;
			}
			r = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (r > 0) {
				if (r >= 4 && *(uint32_t *)buf == PCH_REFUSE_MAGIC && !c->refused) {
					c->refused = true;
					refused++;
				}
				continue;
			}
			if (r == 0 || errno != EAGAIN) {
				c->closed = true;
				closed++;
			}
		}
		if (trickle_ms && now >= next_byte) {
			for (i = 0; i < n; i++)
				if (f[i].up && !f[i].closed && f[i].kind == FL_TRICKLE &&
				    f[i].sent < 71 &&
				    send(f[i].fd, "P", 1, MSG_NOSIGNAL | MSG_DONTWAIT) == 1)
					f[i].sent++;
			next_byte = now + (uint64_t)trickle_ms * 1000000ull;
		}
	}
	printf("flood: %d connections (%u %s, %u %s, %u %s, %u %s): %u up, %u failed to connect, "
	       "%u closed by the source (%u with a refusal) within %d ms\n",
	       n, per[0], fl_name[0], per[1], fl_name[1], per[2], fl_name[2], per[3], fl_name[3],
	       up, failed, closed, refused, hold_ms);
	for (i = 0; i < n; i++)
		if (f[i].fd >= 0)
			close(f[i].fd);
	free(p);
	free(f);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "connect", 1, 0, 'c' },   { "key-file", 1, 0, 'k' },   { "kind", 1, 0, 'K' },
		{ "index", 1, 0, 'i' },     { "count", 1, 0, 'n' },      { "page-size", 1, 0, 'p' },
		{ "version", 1, 0, 'V' },   { "wrong-key", 0, 0, 'w' },  { "wrong-session", 0, 0, 's' },
		{ "bad-magic", 0, 0, 'm' }, { "hold-ms", 1, 0, 'h' },    { "resume", 0, 0, 'r' },
		{ "nonce", 1, 0, 'N' },     { "save", 1, 0, 'S' },       { "replay", 1, 0, 'R' },
		{ "trickle-ms", 1, 0, 't' }, { "flood", 1, 0, 'F' },     { 0, 0, 0, 0 }
	};
	struct pch_hello_params p = { .kind = PCH_CHAN_PAGES, .count = 4, .page_size = 4096 };
	const char *addr = NULL, *keyf = NULL, *save = NULL, *replay = NULL;
	int version = PCH_PROTO_VERSION, hold = 0, wrong_key = 0, wrong_sess = 0, bad_magic = 0;
	int trickle_ms = 0, nflood = 0, have_nonce = 0;
	struct pch_session s;
	struct pch_hello h;
	char host[256];
	uint16_t port;
	int c, fd, rc;

	if (argc == 2 && !strcmp(argv[1], "--probe-uffd"))
		return probe_uffd();
	if (argc == 3 && !strcmp(argv[1], "--new-key")) {
		rc = pch_session_create(argv[2], &s);
		if (rc)
			fprintf(stderr, "pch-hello: %s: %s\n", argv[2], strerror(-rc));
		return rc ? 1 : 0;
	}
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'c': addr = optarg; break;
		case 'k': keyf = optarg; break;
		case 'K':
			p.kind = !strcmp(optarg, "control") ? PCH_CHAN_CONTROL :
				 !strcmp(optarg, "urgent")  ? PCH_CHAN_URGENT :
				 !strcmp(optarg, "pages")   ? PCH_CHAN_PAGES :
							      (uint8_t)atoi(optarg);
			break;
		case 'i': p.index = (uint16_t)atoi(optarg); break;
		case 'n': p.count = (uint16_t)atoi(optarg); break;
		case 'p': p.page_size = (uint32_t)atoi(optarg); break;
		case 'V': version = atoi(optarg); break;
		case 'w': wrong_key = 1; break;
		case 's': wrong_sess = 1; break;
		case 'm': bad_magic = 1; break;
		case 'h': hold = atoi(optarg); break;
		case 'r': p.flags |= PCH_HELLO_F_RESUME; break;
		case 'N': p.nonce = strtoull(optarg, NULL, 0); have_nonce = 1; break;
		case 'S': save = optarg; break;
		case 'R': replay = optarg; break;
		case 't': trickle_ms = atoi(optarg); break;
		case 'F': nflood = atoi(optarg); break;
		default: usage();
		}
	}
	if (!addr || pch_parse_hostport(addr, host, sizeof(host), &port))
		usage();
	if (nflood > 0)
		return flood(host, port, nflood, hold ? hold : 1000, trickle_ms);
	if (replay) {
		/* a hello captured elsewhere (pch-proxy --dump-hellos), sent as it is */
		FILE *f = fopen(replay, "rb");

		if (!f || fread(&h, 1, sizeof(h), f) != sizeof(h)) {
			fprintf(stderr, "pch-hello: %s: not 72 bytes\n", replay);
			return 1;
		}
		fclose(f);
	} else {
		if (!keyf)
			usage();
		rc = pch_session_load(keyf, &s);
		if (rc) {
			fprintf(stderr, "pch-hello: %s: %s\n", keyf, strerror(-rc));
			return 1;
		}
		if (wrong_key)
			s.key[0] ^= 0x5a;
		if (wrong_sess)
			s.id[0] ^= 0x5a;
		if (!have_nonce)
			pch_random_bytes(&p.nonce, sizeof(p.nonce));
		pch_hello_build(&h, &p, &s, false);
		if (version != PCH_PROTO_VERSION || bad_magic) {
			/* re-sign what we tampered with, so only that field is wrong */
			h.version = (uint16_t)version;
			if (bad_magic)
				h.magic ^= 1;
			pch_hmac_sha256(s.key, sizeof(s.key), &h, offsetof(struct pch_hello, auth),
					h.auth);
		}
	}
	if (save) {
		FILE *f = fopen(save, "wb");

		if (!f || fwrite(&h, 1, sizeof(h), f) != sizeof(h) || fclose(f)) {
			fprintf(stderr, "pch-hello: --save %s: %s\n", save, strerror(errno));
			return 1;
		}
	}
	fd = pch_tcp_connect(host, port, 5000);
	if (fd < 0) {
		fprintf(stderr, "pch-hello: connect %s: %s\n", addr, strerror(-fd));
		return 1;
	}
	if (trickle_ms > 0) {
		rc = trickle(fd, &h, trickle_ms, hold);
		close(fd);
		return rc;
	}
	rc = pch_write_full(fd, &h, sizeof(h), 5000);
	if (rc) {
		fprintf(stderr, "pch-hello: sending the hello: %s\n", strerror(-rc));
		return 1;
	}
	rc = read_answer(fd, hold);
	close(fd);
	return rc;
}
