/* SPDX-License-Identifier: MIT */
/*
 * image.h - the deterministic synthetic guest image.  Each page's bytes are a
 * function of (seed, block, page index), so the destination verifies every
 * byte without holding the image.  Fractions of zero pages and of pages that
 * repeat one byte are chosen per page by a hash, not by position.
 */
#ifndef PCH_IMAGE_H
#define PCH_IMAGE_H

#include <stdbool.h>
#include <stdint.h>

struct pch_image {
	uint64_t seed;
	double zero_frac;   /* fraction of all-zero pages, [0, 1] */
	double repeat_frac; /* fraction of one-byte pages (byte != 0), [0, 1] */
	uint32_t page_size; /* bytes, multiple of 8 */
};

enum pch_page_kind { PCH_PAGE_ZERO = 0, PCH_PAGE_REPEAT = 1, PCH_PAGE_RANDOM = 2 };

/* Kind of page idx of block. */
enum pch_page_kind pch_image_kind(const struct pch_image *im, uint32_t block, uint64_t idx);
/* Write page idx of block into buf (page_size bytes). */
void pch_image_fill(const struct pch_image *im, uint32_t block, uint64_t idx, void *buf);
/*
 * Compare buf with page idx of block without a scratch buffer.
 * True when equal.
 */
bool pch_image_verify(const struct pch_image *im, uint32_t block, uint64_t idx,
		      const void *buf);
/* True when the page_size bytes at buf are all zero. */
bool pch_page_is_zero(const void *buf, uint32_t page_size);

#endif
