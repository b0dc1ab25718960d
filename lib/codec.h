/* SPDX-License-Identifier: MIT */
/*
 * codec.h - build and check every message of include/pch/proto.h.  The check
 * functions treat their input as hostile: on failure they return -EBADMSG
 * (malformed), -EPROTO (well-formed but not acceptable: version, session,
 * authenticator, duplicate) or -E2BIG (over a limit), and set *why to a
 * static string naming the field that was wrong.
 */
#ifndef PCH_CODEC_H
#define PCH_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pch/proto.h"

struct pch_session;

/* One RAM block as both ends agree on it. */
struct pch_block {
	char name[PCH_BLOCK_NAME_LEN];
	uint64_t size;      /* bytes */
	uint32_t page_size; /* bytes */
	uint32_t backing;   /* enum pch_backing */
	uint64_t npages;    /* size / page_size */
	unsigned page_shift;
};

struct pch_blocktab {
	uint32_t count;
	struct pch_block b[PCH_MAX_BLOCKS];
	uint64_t total_pages;
	uint32_t min_page_size;
};

/*
 * Add a block (name, size, page_size, backing) to a table, checking the name
 * (non-empty, NUL within PCH_BLOCK_NAME_LEN, unique), page_size (power of two
 * >= 4096), size (non-zero multiple of page_size) and the block count.
 */
int pch_blocktab_add(struct pch_blocktab *t, const char *name, uint64_t size,
		     uint32_t page_size, uint32_t backing, const char **why);

/* Encode a table as a PCH_CC_BLOCKS payload into buf; bytes written or -E2BIG. */
int pch_blocktab_encode(const struct pch_blocktab *t, void *buf, size_t cap);
/* Decode a PCH_CC_BLOCKS payload (len bytes). */
int pch_blocktab_decode(struct pch_blocktab *t, const void *buf, size_t len,
			const char **why);
/* "anon", "memfd", "hugetlb", "hugetlb-private", "thp"; "?" when unknown. */
const char *pch_backing_name(uint32_t backing);
/* The enum pch_backing of a name above, or 0 when unknown. */
uint32_t pch_backing_parse(const char *name);

/*
 * Compare what the source announced with what the VMM registered: same
 * count, names, sizes and page sizes, in the same order (backing may differ).
 * 0 or -EPROTO with *why naming the difference (static text).
 */
int pch_blocktab_match(const struct pch_blocktab *src, const struct pch_blocktab *vmm,
		       const char **why);

/* Parameters of a hello (the helper's view of the channel it opens). */
struct pch_hello_params {
	uint8_t kind;
	uint16_t index;
	uint16_t count;
	uint32_t page_size;
	uint64_t nonce;
	uint8_t flags;  /* PCH_HELLO_F_*; checked by pch_hello_check */
};

/* Fill h (magic PCH_HELLO_MAGIC or PCH_ACK_MAGIC when ack) and its auth. */
void pch_hello_build(struct pch_hello *h, const struct pch_hello_params *p,
		     const struct pch_session *s, bool ack);
/*
 * Check a received hello (ack false) or ack (ack true) against the session:
 * magic, version, kind, index < count (0 for CONTROL/URGENT), count in
 * 1..PCH_MAX_CHANNELS, page_size, flags zero, session id, then the
 * authenticator.  On success *p gets the fields.  On failure *reason gets
 * the enum pch_refuse_reason.
 */
int pch_hello_check(const struct pch_hello *h, const struct pch_session *s, bool ack,
		    struct pch_hello_params *p, int *reason, const char **why);
/* Build a refusal with reason and text. */
void pch_refuse_build(struct pch_refuse *r, int reason, const char *text);
/* Name of a refusal reason ("duplicate channel", ...). */
const char *pch_refuse_name(int reason);
/* Name of a channel kind ("CONTROL", ...), "?" if unknown. */
const char *pch_chan_kind_name(unsigned kind);

/*
 * Check a frame header: magic, type, flags, block < count, count limits for
 * the type (PAGES/ZERO 1..PCH_FRAME_MAX_PAGES and data within
 * PCH_FRAME_MAX_DATA or one page; SYNC/END count 0), seq == expect_seq,
 * URGENT flag only when urgent_ok.  0 or -errno with *why.
 */
int pch_frame_check_hdr(const struct pch_frame_hdr *h, const struct pch_blocktab *t,
			uint64_t expect_seq, bool urgent_ok, const char **why);
/* Bytes of offsets and data that follow a checked header. */
size_t pch_frame_offsets_len(const struct pch_frame_hdr *h);
size_t pch_frame_data_len(const struct pch_frame_hdr *h, const struct pch_blocktab *t);
/*
 * Check count offsets of a frame: each page aligned, < block size, strictly
 * increasing.  0 or -EBADMSG with *why.
 */
int pch_frame_check_offsets(const struct pch_frame_hdr *h, const uint64_t *offs,
			    const struct pch_blocktab *t, const char **why);
/* Fill a frame header. */
void pch_frame_build(struct pch_frame_hdr *h, uint16_t type, uint16_t flags, uint32_t block,
		     uint32_t count, uint64_t seq, uint64_t arg);

/* Check a page request against the table (magic, type, block, count, offset range). */
int pch_req_check(const struct pch_req *r, const struct pch_blocktab *t, const char **why);
void pch_req_build(struct pch_req *r, uint32_t block, uint64_t offset, uint32_t count,
		   uint64_t id);

/*
 * Check that a PAGES or ZERO frame on URGENT (header and offsets checked)
 * answers the request r the helper sent, of which left pages are not
 * answered yet: arg == r->id, the same block, no more pages than left, and
 * every offset inside [r->offset, r->offset + r->count pages).  0 or
 * -EPROTO with *why.
 */
int pch_frame_check_answer(const struct pch_frame_hdr *h, const uint64_t *offs,
			   const struct pch_req *r, uint32_t left, const struct pch_blocktab *t,
			   const char **why);

/* Check a CONTROL message header (magic, type, len <= PCH_CC_MAX_PAYLOAD). */
int pch_cc_check_hdr(const struct pch_cc_hdr *h, const char **why);
void pch_cc_build(struct pch_cc_hdr *h, uint16_t type, uint32_t len);
/*
 * Check a PCH_CC_HAVE payload of len bytes against the table: block, first
 * page multiple of 64, range within the block, len == header + words.
 */
int pch_cc_have_check(const void *payload, size_t len, const struct pch_blocktab *t,
		      const char **why);

#endif
