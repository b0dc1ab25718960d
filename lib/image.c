// SPDX-License-Identifier: MIT
/*
 * image.c - deterministic synthetic guest pages.
 *
 * A page's hash is h = mix(idx + mix(seed ^ mix(block))), mix being the
 * splitmix64 finaliser.  Nesting (rather than seed ^ mix(block) ^ mix(idx))
 * keeps pages (b, i) and (i, b) apart, and makes h a bijection of idx within
 * a block, so no two pages of a block share a hash.  The top 53 bits of h
 * pick the kind; a REPEAT page repeats 1 + h % 255.  A RANDOM page is cut
 * into segments of 512 words; segment j is a run of a fixed 64 KiB pool of
 * random words, from a start picked by mix(h + j), each word XORed with
 * k = mix(h ^ ~j): a copy with an XOR, which the compiler vectorises, so a
 * source fills pages at memory speed, as a real one reads RAM, instead of
 * spending its CPU on a hash per word (splitmix per word cost 12 % of the
 * page service's CPU in a 1 GiB transfer).
 */
#include <pthread.h>
#include <string.h>

#include "image.h"

static inline uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static inline uint64_t page_hash(const struct pch_image *im, uint32_t block, uint64_t idx)
{
	return mix(idx + mix(im->seed ^ mix(block)));
}

static enum pch_page_kind kind_of(const struct pch_image *im, uint64_t h)
{
	double u = (double)(h >> 11) * 0x1.0p-53;

	if (u < im->zero_frac)
		return PCH_PAGE_ZERO;
	if (u < im->zero_frac + im->repeat_frac)
		return PCH_PAGE_REPEAT;
	return PCH_PAGE_RANDOM;
}

static inline uint8_t repeat_byte(uint64_t h)
{
	return (uint8_t)(1 + h % 255);
}

/* Kind of page idx of block (ZERO, REPEAT or RANDOM). */
enum pch_page_kind pch_image_kind(const struct pch_image *im, uint32_t block, uint64_t idx)
{
	return kind_of(im, page_hash(im, block, idx));
}

#define POOL_WORDS 8192u /* 64 KiB: stays in cache */
#define SEG_WORDS 512u   /* a segment: 4 KiB */

static uint64_t pool[POOL_WORDS + SEG_WORDS];
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

static void pool_init(void)
{
	uint32_t i;

	for (i = 0; i < POOL_WORDS + SEG_WORDS; i++)
		pool[i] = mix(0x706368706f6f6cull + i); /* "pchpool" */
}

/* Start in the pool and XOR key of segment j of a RANDOM page of hash h. */
static inline const uint64_t *seg_src(uint64_t h, uint64_t j, uint64_t *key)
{
	*key = mix(h ^ ~j);
	return pool + mix(h + j) % POOL_WORDS;
}

/* Write page idx of block into buf (page_size bytes, any alignment). */
void pch_image_fill(const struct pch_image *im, uint32_t block, uint64_t idx, void *buf)
{
	uint64_t h = page_hash(im, block, idx);
	size_t i, nw = im->page_size / 8;
	unsigned char *p = buf;

	switch (kind_of(im, h)) {
	case PCH_PAGE_ZERO:
		memset(buf, 0, im->page_size);
		break;
	case PCH_PAGE_REPEAT:
		memset(buf, repeat_byte(h), im->page_size);
		break;
	case PCH_PAGE_RANDOM:
		pthread_once(&pool_once, pool_init);
		for (i = 0; i < nw; i += SEG_WORDS) {
			size_t n = nw - i < SEG_WORDS ? nw - i : SEG_WORDS, w;
			uint64_t k;
			const uint64_t *src = seg_src(h, i / SEG_WORDS, &k);
			unsigned char *dst = p + i * 8;

			for (w = 0; w < n; w++) {
				uint64_t v = src[w] ^ k;

				memcpy(dst + w * 8, &v, 8);
			}
		}
		break;
	}
}

/* True when every 8-byte word of buf (nw words) equals pat. */
static bool words_equal(const unsigned char *p, size_t nw, uint64_t pat)
{
	size_t i;

	/* OR the differences of 8 words before branching: fewer branches. */
	for (i = 0; i + 8 <= nw; i += 8) {
		uint64_t w[8], d = 0;

		memcpy(w, p + i * 8, sizeof(w));
		for (unsigned j = 0; j < 8; j++)
			d |= w[j] ^ pat;
		if (d)
			return false;
	}
	for (; i < nw; i++) {
		uint64_t w;

		memcpy(&w, p + i * 8, 8);
		if (w != pat)
			return false;
	}
	return true;
}

/* Compare buf with page idx of block, without a scratch buffer. */
bool pch_image_verify(const struct pch_image *im, uint32_t block, uint64_t idx, const void *buf)
{
	uint64_t h = page_hash(im, block, idx);
	size_t i, nw = im->page_size / 8;
	const unsigned char *p = buf;

	switch (kind_of(im, h)) {
	case PCH_PAGE_ZERO:
		return pch_page_is_zero(buf, im->page_size);
	case PCH_PAGE_REPEAT:
		return words_equal(p, nw, repeat_byte(h) * 0x0101010101010101ull);
	case PCH_PAGE_RANDOM:
		pthread_once(&pool_once, pool_init);
		for (i = 0; i < nw; i += SEG_WORDS) {
			size_t n = nw - i < SEG_WORDS ? nw - i : SEG_WORDS, w;
			uint64_t k, d = 0;
			const uint64_t *src = seg_src(h, i / SEG_WORDS, &k);
			const unsigned char *q = p + i * 8;

			/* OR the differences: no branch per word, so it vectorises */
			for (w = 0; w < n; w++) {
				uint64_t v;

				memcpy(&v, q + w * 8, 8);
				d |= v ^ src[w] ^ k;
			}
			if (d)
				return false;
		}
		return true;
	}
	return false;
}

/* True when the page_size bytes at buf are all zero (any size, alignment). */
bool pch_page_is_zero(const void *buf, uint32_t page_size)
{
	const unsigned char *p = buf;
	size_t i, nw = page_size / 8;

	if (!words_equal(p, nw, 0))
		return false;
	for (i = nw * 8; i < page_size; i++)
		if (p[i])
			return false;
	return true;
}
