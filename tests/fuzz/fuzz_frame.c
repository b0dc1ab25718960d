// SPDX-License-Identifier: MIT
/*
 * fuzz_frame.c - a page frame as the helper receives it (helper/rx.c on
 * PAGES channels, helper/fault.c on URGENT): the header, then, only if it
 * passed, its offsets, then the length of its data; on URGENT, whether it
 * answers a fixed request (pch_frame_check_answer).  Input: the header,
 * then the offsets and data as far as the input goes.
 */
#include "fuzz.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct pch_blocktab *t = fuzz_table();
	struct pch_frame_hdr h;
	const struct pch_block *b;
	const char *why = NULL;
	size_t olen, dlen, rest;
	uint64_t *offs;
	uint32_t i;
	int urgent;

	if (size < sizeof(h))
		return 0;
	memcpy(&h, data, sizeof(h));
	rest = size - sizeof(h);

	/* seq 0 expected; PAGES channels refuse URGENT, the URGENT channel takes it */
	for (urgent = 0; urgent < 2; urgent++)
		if (!pch_frame_check_hdr(&h, t, 0, urgent, &why))
			break;
	if (urgent == 2) {
		FUZZ_ASSERT(why);
		return 0;
	}
	if (h.type != PCH_FRAME_PAGES && h.type != PCH_FRAME_ZERO) {
		FUZZ_ASSERT(!h.count && !pch_frame_data_len(&h, t));
		return 0;
	}
	FUZZ_ASSERT(h.block < t->count && h.count >= 1 && h.count <= PCH_FRAME_MAX_PAGES);
	b = &t->b[h.block];

	olen = pch_frame_offsets_len(&h);
	FUZZ_ASSERT(olen == (size_t)h.count * sizeof(uint64_t));
	if (rest < olen)
		return 0; /* the channel would wait for more */
	/* an exact copy: ASan sees any read past the count */
	offs = malloc(olen);
	if (!offs)
		return 0;
	memcpy(offs, data + sizeof(h), olen);
	rest -= olen;
	if (pch_frame_check_offsets(&h, offs, t, &why)) {
		FUZZ_ASSERT(why);
		free(offs);
		return 0;
	}
	for (i = 0; i < h.count; i++) {
		FUZZ_ASSERT(!(offs[i] & (b->page_size - 1)));
		FUZZ_ASSERT(offs[i] + b->page_size <= b->size);
		FUZZ_ASSERT(!i || offs[i] > offs[i - 1]);
	}
	if (urgent) {
		/* as fault.c's request table: 64 pages of block 0 at 64 KiB, 40 unanswered */
		struct pch_req r;

		pch_req_build(&r, 0, 64 << 10, 64, h.arg & 1 ? h.arg : 1);
		if (!pch_frame_check_answer(&h, offs, &r, 40, t, &why)) {
			FUZZ_ASSERT(h.arg == r.id && h.block == 0 && h.count <= 40);
			for (i = 0; i < h.count; i++)
				FUZZ_ASSERT(offs[i] >= r.offset &&
					    offs[i] < r.offset + (uint64_t)r.count * 4096);
		} else {
			FUZZ_ASSERT(why);
		}
	}
	free(offs);

	dlen = pch_frame_data_len(&h, t);
	if (h.type == PCH_FRAME_ZERO) {
		FUZZ_ASSERT(!dlen);
		return 0;
	}
	FUZZ_ASSERT(dlen == (size_t)h.count * b->page_size);
	FUZZ_ASSERT(dlen <= PCH_MAX((size_t)PCH_FRAME_MAX_DATA, (size_t)b->page_size));
	(void)rest; /* the data itself is not checked: any bytes are a page */
	return 0;
}
