/* SPDX-License-Identifier: MIT */
/*
 * state.h - the received-pages state a VMM owns (PCH_CTL_STATE).
 *
 * The VMM creates a memfd of pch_state_size() bytes, writes the header and
 * one descriptor per RAM block (pch_state_init), and hands it to the helper,
 * which keeps its per-block page bitmaps in it: present (installed), zero
 * (the source said all-zero), inplace (present | zero | discarded) and
 * discarded (the VMM gave the page back: a balloon's MADV_DONTNEED or
 * MADV_REMOVE, or an unmap; it reads zero from then on).  Bits are only
 * ever set, atomically, after the fact they record, so when a helper dies
 * the memfd, still held by the VMM, says which pages a new helper need not
 * fetch again.  A page installed just before the crash whose bit was not
 * set yet is fetched again and its install finds it present (EEXIST): never
 * worse than that.  The VMM sets discarded bits itself before it discards
 * (pch_client_state_discard), so a REMOVE event a dying helper read but
 * never marked cannot let its successor put old content there.
 *
 * mapping (shared blocks): set before the helper maps a page for the VMM
 * (UFFDIO_CONTINUE of a page whose every byte is in the page cache, or
 * UFFDIO_COPY/ZEROPAGE into a hole), present only after.  A helper that
 * dies in between leaves mapping without present: the page may be mapped
 * and written by the guest since, so its successor never writes it again,
 * it only maps it (CONTINUE, EEXIST when mapped already).
 *
 * Layout (little-endian, every offset a multiple of 64 bytes):
 *   struct pch_state_hdr
 *   struct pch_state_block[nr_blocks]
 *   per block b, at blocks[b].offset: present, zero, inplace, discarded,
 *   mapping words, each ceil(npages / 64) u64 (bit i of word w = page 64 w + i)
 */
#ifndef PCH_STATE_H
#define PCH_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "pch/proto.h"

#define PCH_STATE_MAGIC 0x53484350u /* "PCHS" */
#define PCH_STATE_VERSION 1
#define PCH_STATE_BITMAPS 5 /* present, zero, inplace, discarded, mapping */
enum {
	PCH_STATE_PRESENT,
	PCH_STATE_ZERO,
	PCH_STATE_INPLACE,
	PCH_STATE_DISCARDED,
	PCH_STATE_MAPPING,
};

struct pch_state_hdr {
	uint32_t magic;      /* PCH_STATE_MAGIC, written by the VMM */
	uint16_t version;    /* PCH_STATE_VERSION */
	uint16_t nr_blocks;  /* 1..PCH_MAX_BLOCKS, as the BLOCK messages */
	uint64_t size;       /* bytes of the whole memfd */
	uint64_t generation; /* helpers that attached so far (the helper adds 1) */
	uint8_t pad[40];
};
_Static_assert(sizeof(struct pch_state_hdr) == 64, "pch_state_hdr size");

struct pch_state_block {
	uint64_t npages;
	uint32_t page_size;
	uint32_t reserved;
	uint64_t offset;     /* of this block's PCH_STATE_BITMAPS bitmaps, from the start */
	uint64_t words;      /* u64 words per bitmap: ceil(npages / 64) */
};
_Static_assert(sizeof(struct pch_state_block) == 32, "pch_state_block size");

static inline uint64_t pch_state_words(uint64_t npages)
{
	return (npages + 63) / 64;
}

static inline uint64_t pch_state_align(uint64_t v)
{
	return (v + 63) & ~63ull;
}

/* Bytes of the state for nr blocks of npages[i] pages each. */
static inline uint64_t pch_state_size(unsigned nr, const uint64_t *npages)
{
	uint64_t off = pch_state_align(sizeof(struct pch_state_hdr) +
				       (uint64_t)nr * sizeof(struct pch_state_block));
	unsigned i;

	for (i = 0; i < nr; i++)
		off += pch_state_align(PCH_STATE_BITMAPS * 8 * pch_state_words(npages[i]));
	return off;
}

/* Fill a zeroed state of pch_state_size() bytes: header and descriptors. */
static inline void pch_state_init(void *mem, unsigned nr, const uint64_t *npages,
				  const uint32_t *page_size)
{
	struct pch_state_hdr *h = (struct pch_state_hdr *)mem;
	struct pch_state_block *b = (struct pch_state_block *)(h + 1);
	uint64_t off = pch_state_align(sizeof(*h) + (uint64_t)nr * sizeof(*b));
	unsigned i;

	h->version = PCH_STATE_VERSION;
	h->nr_blocks = (uint16_t)nr;
	h->size = pch_state_size(nr, npages);
	for (i = 0; i < nr; i++) {
		b[i].npages = npages[i];
		b[i].page_size = page_size[i];
		b[i].offset = off;
		b[i].words = pch_state_words(npages[i]);
		off += pch_state_align(PCH_STATE_BITMAPS * 8 * b[i].words);
	}
	h->magic = PCH_STATE_MAGIC; /* last: a reader sees all or nothing */
}

#endif /* PCH_STATE_H */
