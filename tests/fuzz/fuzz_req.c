// SPDX-License-Identifier: MIT
/* fuzz_req.c - a page request as the source's URGENT channel checks it. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct pch_blocktab *t = fuzz_table();
	const struct pch_block *b;
	const char *why = NULL;
	struct pch_req r;

	if (size < sizeof(r))
		return 0;
	memcpy(&r, data, sizeof(r));
	if (pch_req_check(&r, t, &why)) {
		FUZZ_ASSERT(why);
		return 0;
	}
	/* what the sender then reads from the block must be inside it */
	FUZZ_ASSERT(r.block < t->count);
	b = &t->b[r.block];
	FUZZ_ASSERT(r.count >= 1 && r.count <= PCH_REQ_MAX_PAGES);
	FUZZ_ASSERT(!(r.offset & (b->page_size - 1)));
	FUZZ_ASSERT(r.offset < b->size && r.count * (uint64_t)b->page_size <= b->size - r.offset);
	return 0;
}
