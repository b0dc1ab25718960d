// SPDX-License-Identifier: MIT
/*
 * pch-hello - open one channel to a pch-source the way an attacker or a
 * confused peer would: any kind, index, count, version, session or key.
 * Prints "accepted" or "refused: REASON: TEXT".  Exit 0 accepted, 3 refused,
 * 1 on any other failure.  For the integration tests.
 */
#include <errno.h>
#include <getopt.h>
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
			"  [--wrong-session] [--bad-magic] [--hold-ms N]\n");
	exit(1);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "connect", 1, 0, 'c' },   { "key-file", 1, 0, 'k' }, { "kind", 1, 0, 'K' },
		{ "index", 1, 0, 'i' },     { "count", 1, 0, 'n' },    { "page-size", 1, 0, 'p' },
		{ "version", 1, 0, 'V' },   { "wrong-key", 0, 0, 'w' }, { "wrong-session", 0, 0, 's' },
		{ "bad-magic", 0, 0, 'm' }, { "hold-ms", 1, 0, 'h' },   { 0, 0, 0, 0 }
	};
	struct pch_hello_params p = { .kind = PCH_CHAN_PAGES, .count = 4, .page_size = 4096 };
	const char *addr = NULL, *keyf = NULL;
	int version = PCH_PROTO_VERSION, hold = 0, wrong_key = 0, wrong_sess = 0, bad_magic = 0;
	union {
		struct pch_hello ack;
		struct pch_refuse ref;
	} in;
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
		default: usage();
		}
	}
	if (!addr || !keyf || pch_parse_hostport(addr, host, sizeof(host), &port))
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
	pch_random_bytes(&p.nonce, sizeof(p.nonce));
	pch_hello_build(&h, &p, &s, false);
	if (version != PCH_PROTO_VERSION || bad_magic) {
		/* re-sign what we tampered with, so only that field is wrong */
		h.version = (uint16_t)version;
		if (bad_magic)
			h.magic ^= 1;
		pch_hmac_sha256(s.key, sizeof(s.key), &h, offsetof(struct pch_hello, auth), h.auth);
	}
	fd = pch_tcp_connect(host, port, 5000);
	if (fd < 0) {
		fprintf(stderr, "pch-hello: connect %s: %s\n", addr, strerror(-fd));
		return 1;
	}
	rc = pch_write_full(fd, &h, sizeof(h), 5000);
	if (!rc)
		rc = pch_read_full(fd, &in, sizeof(in), 10000);
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
	close(fd);
	return 0;
}
