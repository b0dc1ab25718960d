// SPDX-License-Identifier: MIT
/*
 * fuzz_ctl.c - a control-socket packet as the helper checks it (lib/ctl.c,
 * called from helper/main.c ctl_handle): header and length per type, then
 * for BITMAP the range rule and the import into the block's bitmap
 * (do_bitmap), for BLOCK the field checks and the table entry (do_block),
 * with the page-size rule of a host with 4 KiB base pages and 2 MiB and
 * 1 GiB huge pages; for HELLO, STATE, SYNC and UFFD their field checks
 * (do_hello, do_state, do_sync, do_uffd).  Input: one packet, or, when it
 * starts with PCH_STATE_MAGIC, the contents of a STATE memfd whose layout
 * is checked against the fixed table (do_state after its mmap).
 */
#include <errno.h>

#include "bitmap.h"
#include "ctl.h"
#include "fuzz.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* do_block's checks before pch_ctl_block_check, on a fixed host */
static int block_precheck(const struct pch_ctl_block *m)
{
	bool huge;

	if (!m->backing || m->backing >= PCH_BACKING_MAX)
		return -EINVAL;
	huge = m->backing == PCH_BACKING_HUGETLB || m->backing == PCH_BACKING_HUGETLB_PRIVATE;
	if (huge ? m->page_size != (2u << 20) && m->page_size != (1u << 30)
		 : m->page_size != 4096)
		return -EINVAL;
	return 0;
}

/*
 * A STATE memfd's contents (an aligned copy, as the helper's mapping is):
 * a layout that passes must keep every block's bitmaps inside it.
 */
static void state_layout(const struct pch_blocktab *t, const uint8_t *data, size_t size)
{
	const struct pch_state_block *sb;
	char whybuf[512] = "";
	uint64_t *mem;
	unsigned i;

	if (size < sizeof(struct pch_state_hdr) + t->count * sizeof(*sb))
		return;
	mem = malloc(size);
	if (!mem)
		return;
	memcpy(mem, data, size);
	sb = (const struct pch_state_block *)((const struct pch_state_hdr *)(void *)mem + 1);
	if (pch_ctl_state_layout_check((const void *)mem, sb, size, t, whybuf, sizeof(whybuf))) {
		FUZZ_ASSERT(whybuf[0]);
	} else {
		for (i = 0; i < t->count; i++) {
			FUZZ_ASSERT(sb[i].offset % 64 == 0 && sb[i].offset <= size);
			FUZZ_ASSERT(PCH_STATE_BITMAPS * 8 * sb[i].words <= size - sb[i].offset);
			FUZZ_ASSERT(sb[i].words * 64 >= t->b[i].npages);
		}
	}
	free(mem);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct pch_blocktab *t = fuzz_table();
	static struct pch_blocktab tab; /* 6 KiB: not on the stack */
	const struct pch_ctl_bitmap *bmsg;
	const struct pch_ctl_block *blk;
	const struct pch_ctl_hdr *h;
	char whybuf[512] = "";
	struct pch_bitmap bm;
	const char *why;
	void *msg;
	int64_t n;

	if (size >= sizeof(struct pch_state_hdr) &&
	    ((const struct pch_state_hdr *)(const void *)data)->magic == PCH_STATE_MAGIC) {
		state_layout(t, data, size);
		return 0;
	}
	if (pch_ctl_check_hdr(data, size))
		return 0;
	/* an exact, aligned copy as ctl_handle's receive buffer is */
	msg = malloc(size);
	if (!msg)
		return 0;
	memcpy(msg, data, size);
	h = msg;
	if (pch_ctl_check_len(h, size, whybuf, sizeof(whybuf))) {
		FUZZ_ASSERT(whybuf[0]);
		goto out;
	}
	FUZZ_ASSERT(pch_ctl_req_name(h->type));

	switch (h->type) {
	case PCH_CTL_BITMAP:
		bmsg = msg;
		if (bmsg->block >= t->count)
			break;
		if (pch_ctl_bitmap_check(bmsg, t->b[bmsg->block].npages, t->b[bmsg->block].name,
					 whybuf, sizeof(whybuf))) {
			FUZZ_ASSERT(whybuf[0]);
			break;
		}
		FUZZ_ASSERT(size == sizeof(*bmsg) + PCH_DIV_ROUND_UP(bmsg->npages, 64) * 8);
		if (pch_bitmap_init(&bm, t->b[bmsg->block].npages))
			break;
		n = pch_bitmap_import(&bm, bmsg->first_page, (const uint64_t *)(bmsg + 1),
				      bmsg->npages);
		FUZZ_ASSERT(n >= 0 && (uint64_t)n <= bmsg->npages);
		pch_bitmap_free(&bm);
		break;
	case PCH_CTL_BLOCK:
		blk = msg;
		if (block_precheck(blk))
			break;
		if (pch_ctl_block_check(blk, whybuf, sizeof(whybuf))) {
			FUZZ_ASSERT(whybuf[0]);
			break;
		}
		/* checked on a copy, as do_block does */
		tab = *t;
		why = NULL;
		if (pch_blocktab_add(&tab, blk->name, blk->length, blk->page_size, blk->backing,
				     &why))
			FUZZ_ASSERT(why);
		else
			FUZZ_ASSERT(tab.count == t->count + 1 &&
				    tab.b[t->count].npages <= PCH_CTL_BLOCK_MAX_PAGES);
		break;
	case PCH_CTL_HELLO:
		if (pch_ctl_hello_check(msg, whybuf, sizeof(whybuf)))
			FUZZ_ASSERT(whybuf[0]);
		else
			FUZZ_ASSERT(((const struct pch_ctl_hello *)msg)->version == PCH_CTL_VERSION);
		break;
	case PCH_CTL_STATE: {
		const struct pch_ctl_state *st = msg;

		if (pch_ctl_state_check(st, whybuf, sizeof(whybuf))) {
			FUZZ_ASSERT(whybuf[0]);
			break;
		}
		if (pch_ctl_state_size_check(st, t, whybuf, sizeof(whybuf)))
			FUZZ_ASSERT(whybuf[0]);
		else
			FUZZ_ASSERT(st->size >= sizeof(struct pch_state_hdr));
		break;
	}
	case PCH_CTL_SYNC: {
		const struct pch_ctl_sync *sy = msg;
		/* a helper that has asked for 7 already */
		if (pch_ctl_sync_check(sy, 7, whybuf, sizeof(whybuf)))
			FUZZ_ASSERT(whybuf[0] && sy->epoch <= 7);
		else
			FUZZ_ASSERT(sy->epoch > 7);
		break;
	}
	case PCH_CTL_UFFD:
		if (pch_ctl_uffd_check(msg, whybuf, sizeof(whybuf)))
			FUZZ_ASSERT(whybuf[0]);
		break;
	default:
		break;
	}
out:
	free(msg);
	return 0;
}
