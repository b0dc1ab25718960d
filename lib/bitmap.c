// SPDX-License-Identifier: MIT
/*
 * bitmap.c - atomic page-state bitmap.
 *
 * Every access to words[] goes through an __atomic builtin, so any thread may
 * set bits while others test, count or export them.  Bits at or beyond nbits
 * are never set (every writer masks them off), so whole-word operations such
 * as count and next_clear need no special case for the last word other than
 * clamping their result.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bitmap.h"

#define WORD_BITS 64u

static inline uint64_t nwords(uint64_t nbits)
{
	return nbits / WORD_BITS + (nbits % WORD_BITS != 0);
}

/* Mask of bits [lo, hi) within one word, 0 <= lo < hi <= 64. */
static inline uint64_t word_mask(unsigned lo, unsigned hi)
{
	uint64_t m = hi == WORD_BITS ? ~0ull : (1ull << hi) - 1;

	return m & ~((1ull << lo) - 1);
}

/* Mask of the valid bits of word w (all ones except in a partial last word). */
static inline uint64_t valid_mask(const struct pch_bitmap *b, uint64_t w)
{
	uint64_t end = b->nbits - w * WORD_BITS;

	return end >= WORD_BITS ? ~0ull : (1ull << end) - 1;
}

static inline uint64_t load_word(const struct pch_bitmap *b, uint64_t w)
{
	return __atomic_load_n(&b->words[w], __ATOMIC_ACQUIRE);
}

/* Allocate a zeroed bitmap of nbits bits.  0, -EINVAL (nbits 0) or -ENOMEM. */
int pch_bitmap_init(struct pch_bitmap *b, uint64_t nbits)
{
	b->words = NULL;
	b->nbits = 0;
	b->external = false;
	if (!nbits)
		return -EINVAL;
	/* calloc checks nmemb * size for overflow itself. */
	if (nwords(nbits) > SIZE_MAX / sizeof(uint64_t))
		return -ENOMEM;
	b->words = calloc(nwords(nbits), sizeof(uint64_t));
	if (!b->words)
		return -ENOMEM;
	b->nbits = nbits;
	return 0;
}

/* Free the words; the bitmap reads as empty afterwards.  Idempotent. */
void pch_bitmap_free(struct pch_bitmap *b)
{
	if (!b->external)
		free(b->words);
	b->words = NULL;
	b->nbits = 0;
	b->external = false;
}

void pch_bitmap_move_to(struct pch_bitmap *b, uint64_t *words)
{
	uint64_t i, n = nwords(b->nbits);

	for (i = 0; i < n; i++)
		__atomic_fetch_or(&words[i], load_word(b, i), __ATOMIC_ACQ_REL);
	if (!b->external)
		free(b->words);
	b->words = words;
	b->external = true;
}

/* Test bit with acquire ordering; bits >= nbits read as 0. */
bool pch_bitmap_test(const struct pch_bitmap *b, uint64_t bit)
{
	if (bit >= b->nbits)
		return false;
	return load_word(b, bit / WORD_BITS) & (1ull << (bit % WORD_BITS));
}

/* Set bit; true if this call changed it from 0 to 1.  Out of range: false. */
bool pch_bitmap_set(struct pch_bitmap *b, uint64_t bit)
{
	uint64_t m, old;

	if (bit >= b->nbits)
		return false;
	m = 1ull << (bit % WORD_BITS);
	old = __atomic_fetch_or(&b->words[bit / WORD_BITS], m, __ATOMIC_ACQ_REL);
	return !(old & m);
}

/* Clear bit; true if this call changed it from 1 to 0.  Out of range: false. */
bool pch_bitmap_clear(struct pch_bitmap *b, uint64_t bit)
{
	uint64_t m, old;

	if (bit >= b->nbits)
		return false;
	m = 1ull << (bit % WORD_BITS);
	old = __atomic_fetch_and(&b->words[bit / WORD_BITS], ~m, __ATOMIC_ACQ_REL);
	return old & m;
}

/*
 * Set [first, first+n), clamped to nbits; returns how many bits this call
 * changed from 0 to 1 (exact under concurrency: one fetch_or per word).
 */
uint64_t pch_bitmap_set_range(struct pch_bitmap *b, uint64_t first, uint64_t n)
{
	uint64_t end, changed = 0;

	if (first >= b->nbits || !n)
		return 0;
	end = n > b->nbits - first ? b->nbits : first + n;

	while (first < end) {
		uint64_t w = first / WORD_BITS;
		unsigned lo = first % WORD_BITS;
		unsigned hi =
		    end - w * WORD_BITS >= WORD_BITS ? WORD_BITS : (unsigned)(end - w * WORD_BITS);
		uint64_t m = word_mask(lo, hi), old;

		old = __atomic_fetch_or(&b->words[w], m, __ATOMIC_ACQ_REL);
		changed += (uint64_t)__builtin_popcountll(m & ~old);
		first = (w + 1) * WORD_BITS;
	}
	return changed;
}

/* Number of set bits (a snapshot word by word, not atomic as a whole). */
uint64_t pch_bitmap_count(const struct pch_bitmap *b)
{
	uint64_t w, n = 0, nw = nwords(b->nbits);

	for (w = 0; w < nw; w++)
		n += (uint64_t)__builtin_popcountll(load_word(b, w));
	return n;
}

/*
 * First bit at or after from whose value is 1 (want_set) or 0; nbits if
 * none.  Clear bits are found by scanning the inverted word, with the bits
 * past nbits masked off.
 */
static uint64_t next_bit(const struct pch_bitmap *b, uint64_t from, bool want_set)
{
	uint64_t w, nw = nwords(b->nbits);

	if (from >= b->nbits)
		return b->nbits;
	w = from / WORD_BITS;
	for (uint64_t m = ~0ull << (from % WORD_BITS); w < nw; w++, m = ~0ull) {
		uint64_t v = load_word(b, w);

		if (!want_set)
			v = ~v & valid_mask(b, w);
		v &= m;
		if (v) {
			uint64_t bit = w * WORD_BITS + (uint64_t)__builtin_ctzll(v);

			return bit < b->nbits ? bit : b->nbits;
		}
	}
	return b->nbits;
}

/* First set bit at or after from; nbits if none. */
uint64_t pch_bitmap_next_set(const struct pch_bitmap *b, uint64_t from)
{
	return next_bit(b, from, true);
}

/* First clear bit at or after from; nbits if none. */
uint64_t pch_bitmap_next_clear(const struct pch_bitmap *b, uint64_t from)
{
	return next_bit(b, from, false);
}

/*
 * True when every bit in [first, first+n) is set.  An empty range is true;
 * a range reaching past nbits is false (those bits read as 0).
 */
bool pch_bitmap_all_set(const struct pch_bitmap *b, uint64_t first, uint64_t n)
{
	if (!n)
		return true;
	if (first >= b->nbits || n > b->nbits - first)
		return false;
	return next_bit(b, first, false) >= first + n;
}

static bool range_ok(const struct pch_bitmap *b, uint64_t first, uint64_t nbits)
{
	return first % WORD_BITS == 0 && first <= b->nbits && nbits <= b->nbits - first;
}

/*
 * OR nbits bits from words into [first, first+nbits); first multiple of 64.
 * Bits of the last word beyond nbits are ignored.  Newly set count or -EINVAL.
 */
int64_t pch_bitmap_import(struct pch_bitmap *b, uint64_t first, const uint64_t *words,
			  uint64_t nbits)
{
	uint64_t i, n = nwords(nbits), base = first / WORD_BITS, changed = 0;

	if (!range_ok(b, first, nbits))
		return -EINVAL;
	for (i = 0; i < n; i++) {
		uint64_t m, old;

		/* words often points into a received payload: any alignment */
		memcpy(&m, (const unsigned char *)words + i * 8, 8);
		if (i == n - 1 && nbits % WORD_BITS)
			m &= (1ull << (nbits % WORD_BITS)) - 1;
		if (!m)
			continue;
		old = __atomic_fetch_or(&b->words[base + i], m, __ATOMIC_ACQ_REL);
		changed += (uint64_t)__builtin_popcountll(m & ~old);
	}
	return (int64_t)changed;
}

/*
 * Copy bits [first, first+nbits) into words, trailing bits of the last word
 * 0; first multiple of 64.  0 or -EINVAL.
 */
int pch_bitmap_export(const struct pch_bitmap *b, uint64_t first, uint64_t *words, uint64_t nbits)
{
	uint64_t i, n = nwords(nbits), base = first / WORD_BITS;

	if (!range_ok(b, first, nbits))
		return -EINVAL;
	for (i = 0; i < n; i++) {
		uint64_t v = load_word(b, base + i);

		if (i == n - 1 && nbits % WORD_BITS)
			v &= (1ull << (nbits % WORD_BITS)) - 1;
		words[i] = v;
	}
	return 0;
}
