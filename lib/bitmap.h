/* SPDX-License-Identifier: MIT */
/*
 * bitmap.h - atomic page-state bitmap.  Any thread may set bits; setting
 * reports whether this caller was first, so counters stay exact without locks.
 */
#ifndef PCH_BITMAP_H
#define PCH_BITMAP_H

#include <stdbool.h>
#include <stdint.h>

struct pch_bitmap {
	uint64_t *words; /* accessed only through __atomic builtins */
	uint64_t nbits;
	bool external;   /* words belong to someone else (shared memory): not freed */
};

/* Allocate a zeroed bitmap of nbits bits.  0 or -ENOMEM/-EINVAL. */
int pch_bitmap_init(struct pch_bitmap *b, uint64_t nbits);
void pch_bitmap_free(struct pch_bitmap *b);
/*
 * Move b into words (ceil(nbits / 64) words that the caller owns, e.g. in
 * shared memory): the bits of b are ORed into words, b's own storage is
 * freed, and from then on b reads and sets words.  nbits must equal b's.
 */
void pch_bitmap_move_to(struct pch_bitmap *b, uint64_t *words);

/* Test bit (acquire).  Bits >= nbits read as 0. */
bool pch_bitmap_test(const struct pch_bitmap *b, uint64_t bit);
/* Set bit (acq_rel); true if this call changed it from 0 to 1. */
bool pch_bitmap_set(struct pch_bitmap *b, uint64_t bit);
/* Clear bit; true if this call changed it from 1 to 0. */
bool pch_bitmap_clear(struct pch_bitmap *b, uint64_t bit);
/* Set [first, first+n); returns how many bits this call changed.  Clamped. */
uint64_t pch_bitmap_set_range(struct pch_bitmap *b, uint64_t first, uint64_t n);
/* Number of set bits. */
uint64_t pch_bitmap_count(const struct pch_bitmap *b);
/* First set / clear bit at or after from; nbits if none. */
uint64_t pch_bitmap_next_set(const struct pch_bitmap *b, uint64_t from);
uint64_t pch_bitmap_next_clear(const struct pch_bitmap *b, uint64_t from);
/* True when every bit in [first, first+n) is set. */
bool pch_bitmap_all_set(const struct pch_bitmap *b, uint64_t first, uint64_t n);

/*
 * OR nbits bits from words (bit i of the stream = bit i%64 of words[i/64],
 * little-endian) into bits [first, first+nbits).  first must be a multiple
 * of 64.  Returns the number of bits newly set, or -EINVAL if out of range.
 */
int64_t pch_bitmap_import(struct pch_bitmap *b, uint64_t first, const uint64_t *words,
			  uint64_t nbits);
/*
 * Copy bits [first, first+nbits) into words (same layout; trailing bits of
 * the last word are 0).  first multiple of 64.  0 or -EINVAL.
 */
int pch_bitmap_export(const struct pch_bitmap *b, uint64_t first, uint64_t *words,
		      uint64_t nbits);

#endif
