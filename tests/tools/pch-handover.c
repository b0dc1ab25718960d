// SPDX-License-Identifier: MIT
/*
 * pch-handover - for tests: play the source VMM (QEMU at its switch to
 * postcopy) handing its RAM block to pch-source --vmm-socket.
 *
 * Creates a sealed memfd of --size bytes filled with the synthetic image
 * (--seed, same defaults as pch-source, so pch-vm verifies every byte) and
 * hands it over with pch_client_source_handover().  --bad KIND sends a
 * wrong handover instead, to check pch-source refuses it with a reason:
 *   length    a BLOCK length larger than the memfd
 *   unsealed  a memfd without F_SEAL_SHRINK
 *   name      block name "other.ram"
 *   no-fd     a BLOCK without its fd (raw protocol; the library refuses)
 *   garbage   a packet of random bytes instead of HELLO (raw)
 *   silent    connect and send nothing (pch-source drops us after its
 *             --handshake-timeout-ms; we wait for it to close)
 * Prints "ok" or "refused: <reason>" on stdout.  Exit 0 when the handover
 * went as asked (accepted, or refused for --bad), 1 otherwise, 2 on usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "pch/client.h"
#include "pch/ctl.h"
#include "image.h"
#include "net.h"
#include "util.h"

static void usage(void)
{
	fprintf(stderr, "usage: pch-handover --socket PATH --size SIZE [--seed S] [--name NAME]\n"
			"  [--timeout-ms MS] [--bad length|unsealed|name|no-fd|garbage|silent]\n");
	exit(2);
}

/* A memfd of size bytes holding the image, sealed unless !seal.  fd or exit. */
static int make_memfd(const struct pch_image *im, uint64_t size, bool seal)
{
	uint8_t *map;
	uint64_t i;
	int fd;

	fd = memfd_create("pch-handover", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0 || ftruncate(fd, (off_t)size) < 0) {
		fprintf(stderr, "pch-handover: memfd of %llu bytes: %s\n",
			(unsigned long long)size, strerror(errno));
		exit(1);
	}
	map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		fprintf(stderr, "pch-handover: mmap: %s\n", strerror(errno));
		exit(1);
	}
	/* zero pages stay holes, as in a guest's RAM */
	for (i = 0; i < size / im->page_size; i++)
		if (pch_image_kind(im, 0, i) != PCH_PAGE_ZERO)
			pch_image_fill(im, 0, i, map + i * im->page_size);
	munmap(map, size);
	if (seal && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0) {
		fprintf(stderr, "pch-handover: F_ADD_SEALS: %s\n", strerror(errno));
		exit(1);
	}
	return fd;
}

/* Raw protocol for what the library will not send.  0 (a REPLY refused it) or 1. */
static int raw(const char *path, const char *bad, uint64_t size, int timeout_ms)
{
	uint8_t buf[512];
	struct pch_ctl_hello h;
	struct pch_ctl_block b;
	const struct pch_ctl_reply *r = (const void *)buf;
	int sock, n, nfds;

	sock = pch_unix_connect(path, timeout_ms);
	if (sock < 0) {
		fprintf(stderr, "pch-handover: connect %s: %s\n", path, strerror(-sock));
		return 1;
	}
	if (!strcmp(bad, "silent")) {
		/* pch-source must give up on us: a refusal, or at least a close */
		n = pch_seqpkt_recv(sock, buf, sizeof(buf), NULL, 0, &nfds, timeout_ms);
		if (n == 0) {
			printf("refused: closed\n");
			return 0;
		}
	} else if (!strcmp(bad, "garbage")) {
		for (n = 0; n < 100; n++)
			buf[n] = (uint8_t)(n * 37 + 11);
		pch_seqpkt_send(sock, buf, 100, NULL, 0, timeout_ms);
	} else {
		memset(&h, 0, sizeof(h));
		h.hdr = (struct pch_ctl_hdr){ PCH_CTL_MAGIC, PCH_CTL_HELLO, 0, sizeof(h), 1 };
		h.version = PCH_CTL_VERSION;
		h.role = PCH_CTL_ROLE_VMM;
		snprintf(h.name, sizeof(h.name), "pch-handover");
		pch_seqpkt_send(sock, &h, sizeof(h), NULL, 0, timeout_ms);
		n = pch_seqpkt_recv(sock, buf, sizeof(buf), NULL, 0, &nfds, timeout_ms);
		if (n != (int)sizeof(h)) {
			fprintf(stderr, "pch-handover: no HELLO back (%d)\n", n);
			return 1;
		}
		memset(&b, 0, sizeof(b));
		b.hdr = (struct pch_ctl_hdr){ PCH_CTL_MAGIC, PCH_CTL_BLOCK, 0, sizeof(b), 2 };
		b.page_size = 4096;
		b.flags = PCH_CTL_BLOCK_F_FD; /* says it has one, sends none */
		b.length = size;
		snprintf(b.name, sizeof(b.name), "pc.ram");
		pch_seqpkt_send(sock, &b, sizeof(b), NULL, 0, timeout_ms);
	}
	if (strcmp(bad, "silent"))
		n = pch_seqpkt_recv(sock, buf, sizeof(buf) - 1, NULL, 0, &nfds, timeout_ms);
	if (n < (int)sizeof(*r) || r->hdr.type != PCH_CTL_REPLY || r->status >= 0) {
		printf("no refusal (%d)\n", n);
		return 1;
	}
	buf[n] = '\0';
	printf("refused: %.*s\n", (int)r->text_len, (const char *)(r + 1));
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "socket", 1, 0, 'S' }, { "size", 1, 0, 's' },	      { "seed", 1, 0, 'e' },
		{ "name", 1, 0, 'n' },	 { "timeout-ms", 1, 0, 't' }, { "bad", 1, 0, 'b' },
		{ 0, 0, 0, 0 }
	};
	struct pch_image im = { .seed = 1, .zero_frac = 0.1, .repeat_frac = 0.05,
				.page_size = 4096 };
	const char *path = NULL, *name = "pc.ram", *bad = NULL;
	uint64_t size = 0, len, v;
	int c, fd, ret, timeout_ms = 5000;

	while ((c = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
		switch (c) {
		case 'S':
			path = optarg;
			break;
		case 's':
			if (pch_parse_size(optarg, &size) || !size || size % 4096)
				usage();
			break;
		case 'e':
			if (pch_parse_u64(optarg, 0, UINT64_MAX, &im.seed))
				usage();
			break;
		case 'n':
			name = optarg;
			break;
		case 't':
			if (pch_parse_u64(optarg, 1, 600000, &v))
				usage();
			timeout_ms = (int)v;
			break;
		case 'b':
			bad = optarg;
			break;
		default:
			usage();
		}
	}
	if (!path || !size || optind < argc)
		usage();
	if (bad && (!strcmp(bad, "no-fd") || !strcmp(bad, "garbage") || !strcmp(bad, "silent")))
		return raw(path, bad, size, timeout_ms);
	if (bad && strcmp(bad, "length") && strcmp(bad, "unsealed") && strcmp(bad, "name"))
		usage();

	fd = make_memfd(&im, size, !(bad && !strcmp(bad, "unsealed")));
	len = bad && !strcmp(bad, "length") ? size * 2 : size;
	if (bad && !strcmp(bad, "name"))
		name = "other.ram";
	ret = pch_client_source_handover(path, name, fd, len, 4096, timeout_ms);
	close(fd);
	if (ret) {
		printf("refused: %s\n", pch_client_error(NULL));
		return bad ? 0 : 1;
	}
	printf("ok\n");
	return bad ? 1 : 0;
}
