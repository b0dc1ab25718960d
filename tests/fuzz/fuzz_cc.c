// SPDX-License-Identifier: MIT
/*
 * fuzz_cc.c - a CONTROL channel message: the header, then for BLOCKS the
 * table as the helper decodes and matches it (helper/session.c), for HAVE
 * the bitmap as the source checks and imports it (source/control.c cc_have).
 * Input: the header, then the payload as far as the input goes.
 */
#include "bitmap.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct pch_blocktab *t = fuzz_table();
	static struct pch_blocktab got; /* 6 KiB: not on the stack */
	const struct pch_cc_have *hv;
	struct pch_bitmap bm;
	const char *why = NULL;
	struct pch_cc_hdr h;
	void *payload;
	int64_t n;

	if (size < sizeof(h))
		return 0;
	memcpy(&h, data, sizeof(h));
	if (pch_cc_check_hdr(&h, &why)) {
		FUZZ_ASSERT(why);
		return 0;
	}
	FUZZ_ASSERT(h.len <= PCH_CC_MAX_PAYLOAD);
	if (size - sizeof(h) < h.len)
		return 0; /* the channel would wait for more */
	/* an exact copy, aligned as the receiver's buffer is */
	payload = malloc(h.len ? h.len : 1);
	if (!payload)
		return 0;
	memcpy(payload, data + sizeof(h), h.len);

	switch (h.type) {
	case PCH_CC_BLOCKS:
		if (pch_blocktab_decode(&got, payload, h.len, &why)) {
			FUZZ_ASSERT(why && !got.count);
			break;
		}
		FUZZ_ASSERT(got.count >= 1 && got.count <= PCH_MAX_BLOCKS);
		why = NULL;
		if (pch_blocktab_match(&got, t, &why))
			FUZZ_ASSERT(why);
		break;
	case PCH_CC_HAVE:
		if (pch_cc_have_check(payload, h.len, t, &why)) {
			FUZZ_ASSERT(why);
			break;
		}
		hv = payload;
		if (pch_bitmap_init(&bm, t->b[hv->block].npages))
			break;
		n = pch_bitmap_import(&bm, hv->first_page, (const uint64_t *)(hv + 1),
				      hv->npages);
		/* a HAVE the check passed imports whole */
		FUZZ_ASSERT(n >= 0 && (uint64_t)n <= hv->npages);
		FUZZ_ASSERT(pch_bitmap_count(&bm) == (uint64_t)n);
		pch_bitmap_free(&bm);
		break;
	default:
		break;
	}
	free(payload);
	return 0;
}
