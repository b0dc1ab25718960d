// SPDX-License-Identifier: MIT
/*
 * gen-corpus.c - writes the seed corpus of tests/fuzz/corpus: a few valid
 * inputs per harness, against the table and session of fuzz.h.  Run once
 * from the top directory after a change to a message or to fuzz.h:
 *
 *   make && cc -std=gnu11 -D_GNU_SOURCE -Iinclude -Ilib -Itests/fuzz \
 *	tests/fuzz/gen-corpus.c build/lib/libpch.a \
 *	$(pkg-config --cflags --libs glib-2.0) -o build/gen-corpus && build/gen-corpus
 */
#include <errno.h>
#include <sys/stat.h>

#include "ctl.h"
#include "fuzz.h"
#include "pch/uffd-compat.h"

static void put(const char *dir, const char *name, const void *a, size_t alen, const void *b,
		size_t blen)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "tests/fuzz/corpus/%s", dir);
	mkdir("tests/fuzz/corpus", 0755);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "tests/fuzz/corpus/%s/%s", dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(a, 1, alen, f) != alen || (blen && fwrite(b, 1, blen, f) != blen) ||
	    fclose(f)) {
		perror(path);
		exit(1);
	}
}

static void hello(void)
{
	struct pch_hello_params p = { .kind = PCH_CHAN_PAGES, .index = 2, .count = 4,
				      .page_size = 4096, .nonce = 0x1234 };
	struct pch_refuse r;
	struct pch_hello h;

	pch_hello_build(&h, &p, fuzz_session(), false);
	put("fuzz_hello", "hello-pages", &h, sizeof(h), NULL, 0);
	pch_hello_build(&h, &p, fuzz_session(), true);
	put("fuzz_hello", "ack-pages", &h, sizeof(h), NULL, 0);
	p = (struct pch_hello_params){ .kind = PCH_CHAN_CONTROL, .count = 4, .page_size = 4096,
				       .flags = PCH_HELLO_F_RESUME };
	pch_hello_build(&h, &p, fuzz_session(), false);
	put("fuzz_hello", "hello-control-resume", &h, sizeof(h), NULL, 0);
	pch_refuse_build(&r, PCH_REFUSE_DUPLICATE, NULL);
	put("fuzz_hello", "refuse-duplicate", &r, sizeof(r), NULL, 0);
}

static void frame(void)
{
	uint64_t offs[3] = { 0, 4096, 3 * 4096 };
	uint64_t hoff[2] = { 0, 4ull << 20 };
	struct pch_frame_hdr h;

	/* the page data is not checked (any bytes are a page): left out */
	pch_frame_build(&h, PCH_FRAME_PAGES, 0, 0, 3, 0, 0);
	put("fuzz_frame", "pages-3", &h, sizeof(h), offs, sizeof(offs));
	pch_frame_build(&h, PCH_FRAME_PAGES, PCH_FRAME_F_URGENT, 1, 1, 0, 77);
	put("fuzz_frame", "pages-urgent", &h, sizeof(h), offs, 8);
	pch_frame_build(&h, PCH_FRAME_ZERO, 0, 2, 2, 0, 0);
	put("fuzz_frame", "zero-huge", &h, sizeof(h), hoff, sizeof(hoff));
	pch_frame_build(&h, PCH_FRAME_SYNC, 0, 0, 0, 0, 5);
	put("fuzz_frame", "sync", &h, sizeof(h), NULL, 0);
	pch_frame_build(&h, PCH_FRAME_END, 0, 0, 0, 0, 0);
	put("fuzz_frame", "end", &h, sizeof(h), NULL, 0);
	pch_frame_build(&h, PCH_FRAME_KEEPALIVE, PCH_FRAME_F_URGENT, 0, 0, 0, 0);
	put("fuzz_frame", "keepalive-urgent", &h, sizeof(h), NULL, 0);
}

static void req(void)
{
	struct pch_req r;

	pch_req_build(&r, 0, 8192, 4, 1);
	put("fuzz_req", "ram", &r, sizeof(r), NULL, 0);
	pch_req_build(&r, 1, 96 * 4096, 4, 2);
	put("fuzz_req", "rom-last", &r, sizeof(r), NULL, 0);
	pch_req_build(&r, 2, 2ull << 20, 1, 3);
	put("fuzz_req", "huge", &r, sizeof(r), NULL, 0);
}

static void cc(void)
{
	uint8_t buf[8 + PCH_MAX_BLOCKS * sizeof(struct pch_wire_block)];
	struct {
		struct pch_cc_have hv;
		uint64_t w[2];
	} have = { { .block = 1, .first_page = 64, .npages = 36 }, { 0xf0f0f0f0full, 0 } };
	struct pch_cc_sync sy = { .epoch = 1 };
	struct pch_cc_hdr h;
	int n;

	n = pch_blocktab_encode(fuzz_table(), buf, sizeof(buf));
	if (n < 0)
		exit(1);
	pch_cc_build(&h, PCH_CC_BLOCKS, (uint32_t)n);
	put("fuzz_cc", "blocks", &h, sizeof(h), buf, (size_t)n);
	pch_cc_build(&h, PCH_CC_HAVE, sizeof(have.hv) + 8);
	put("fuzz_cc", "have-rom-tail", &h, sizeof(h), &have, sizeof(have.hv) + 8);
	have.hv = (struct pch_cc_have){ .block = 0, .first_page = 128, .npages = 128 };
	have.w[0] = ~0ull;
	have.w[1] = 1;
	pch_cc_build(&h, PCH_CC_HAVE, sizeof(have));
	put("fuzz_cc", "have-ram", &h, sizeof(h), &have, sizeof(have));
	pch_cc_build(&h, PCH_CC_SYNC_REQ, sizeof(sy));
	put("fuzz_cc", "sync-req", &h, sizeof(h), &sy, sizeof(sy));
	pch_cc_build(&h, PCH_CC_START, 0);
	put("fuzz_cc", "start", &h, sizeof(h), NULL, 0);
}

static void ctl_hdr(struct pch_ctl_hdr *h, uint16_t type, uint32_t len, uint32_t seq)
{
	*h = (struct pch_ctl_hdr){ PCH_CTL_MAGIC, type, 0, len, seq };
}

static void ctl(void)
{
	struct pch_ctl_hello hello = { .version = PCH_CTL_VERSION, .role = PCH_CTL_ROLE_VMM,
				       .pid = 1, .features = PCH_CTL_F_RING, .name = "pch-vm" };
	struct pch_ctl_block blk = { .id = 0, .page_size = 4096, .backing = PCH_BACKING_ANON,
				     .host_addr = 0x7f0000000000ull, .length = 1 << 20,
				     .name = "extra.ram" };
	struct {
		struct pch_ctl_bitmap m;
		uint64_t w[2];
	} bm = { { .block = 1, .first_page = 0, .npages = 100 }, { ~0ull, 0xfull } };
	struct pch_ctl_simple start = { 0 };
	struct pch_ctl_sync sync = { .epoch = 3 };
	struct pch_ctl_uffd uffd = { .features = UFFD_FEATURE_EVENT_REMOVE, .ioctls = 0x1c };
	struct pch_ctl_state state = { 0 };
	const struct pch_blocktab *t = fuzz_table();
	uint64_t npages[PCH_MAX_BLOCKS];
	uint32_t psz[PCH_MAX_BLOCKS];
	unsigned i;
	void *mem;

	ctl_hdr(&hello.hdr, PCH_CTL_HELLO, sizeof(hello), 1);
	put("fuzz_ctl", "hello", &hello, sizeof(hello), NULL, 0);
	ctl_hdr(&blk.hdr, PCH_CTL_BLOCK, sizeof(blk), 2);
	put("fuzz_ctl", "block-anon", &blk, sizeof(blk), NULL, 0);
	blk.backing = PCH_BACKING_HUGETLB;
	blk.flags = PCH_CTL_BLOCK_F_FD;
	blk.page_size = 2u << 20;
	blk.length = 16u << 20;
	strcpy(blk.name, "huge.extra");
	put("fuzz_ctl", "block-hugetlb", &blk, sizeof(blk), NULL, 0);
	ctl_hdr(&bm.m.hdr, PCH_CTL_BITMAP, sizeof(bm), 3);
	put("fuzz_ctl", "bitmap-rom", &bm, sizeof(bm), NULL, 0);
	ctl_hdr(&start.hdr, PCH_CTL_START, sizeof(start), 4);
	put("fuzz_ctl", "start", &start, sizeof(start), NULL, 0);
	ctl_hdr(&sync.hdr, PCH_CTL_SYNC, sizeof(sync), 5);
	put("fuzz_ctl", "sync", &sync, sizeof(sync), NULL, 0);
	sync.epoch = 8; /* above the 7 the harness has asked */
	put("fuzz_ctl", "sync-8", &sync, sizeof(sync), NULL, 0);
	ctl_hdr(&uffd.hdr, PCH_CTL_UFFD, sizeof(uffd), 6);
	put("fuzz_ctl", "uffd", &uffd, sizeof(uffd), NULL, 0);
	for (i = 0; i < t->count; i++) {
		npages[i] = t->b[i].npages;
		psz[i] = t->b[i].page_size;
	}
	state.size = pch_state_size(t->count, npages);
	ctl_hdr(&state.hdr, PCH_CTL_STATE, sizeof(state), 7);
	put("fuzz_ctl", "state", &state, sizeof(state), NULL, 0);
	mem = calloc(1, state.size);
	if (!mem)
		exit(1);
	pch_state_init(mem, t->count, npages, psz);
	/* a fresh state of the fixed table: header, descriptors, bitmaps */
	put("fuzz_ctl", "state-layout", mem, state.size, NULL, 0);
	free(mem);
}

int main(void)
{
	hello();
	frame();
	req();
	cc();
	ctl();
	return 0;
}
