// SPDX-License-Identifier: MIT
/*
 * codec.c - build and check the messages of include/pch/proto.h.
 *
 * Everything that arrives off the wire is hostile: each check copies nothing
 * it has not bounded, does its arithmetic so that it cannot wrap, and names
 * the first bad field in *why (a static string).  Errors:
 *   -EBADMSG  malformed (bad magic, unknown type or flag, field out of range)
 *   -EPROTO   well-formed but not acceptable (version, session, auth, seq)
 *   -E2BIG    over a limit (channels, pages, data, payload)
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "codec.h"
#include "util.h"

#define FAIL(err, text)                                                                            \
	do {                                                                                       \
		if (why)                                                                           \
			*why = (text);                                                             \
		return (err);                                                                      \
	} while (0)

static bool page_size_ok(uint64_t ps)
{
	return ps >= 4096 && pch_is_pow2(ps);
}

/* ------------------------------------------------------------------ */
/* RAM block table                                                      */
/* ------------------------------------------------------------------ */

/*
 * Add a block to t after checking name (non-empty, printable, NUL within
 * PCH_BLOCK_NAME_LEN, unique), page_size, size, backing and the block
 * count.  0, -EBADMSG or -E2BIG (too many blocks) with *why.
 */
int pch_blocktab_add(struct pch_blocktab *t, const char *name, uint64_t size, uint32_t page_size,
		     uint32_t backing, const char **why)
{
	struct pch_block *b;
	size_t len, i;

	if (t->count >= PCH_MAX_BLOCKS)
		FAIL(-E2BIG, "blocks: too many blocks");
	if (!name || !name[0])
		FAIL(-EBADMSG, "block: empty name");
	len = strnlen(name, PCH_BLOCK_NAME_LEN);
	if (len == PCH_BLOCK_NAME_LEN)
		FAIL(-EBADMSG, "block: name not NUL-terminated");
	/* Names end up in logs: no control characters. */
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c < 0x20 || c == 0x7f)
			FAIL(-EBADMSG, "block: control character in name");
	}
	for (i = 0; i < t->count; i++)
		if (!strcmp(t->b[i].name, name))
			FAIL(-EBADMSG, "block: duplicate name");
	if (!page_size_ok(page_size))
		FAIL(-EBADMSG, "block: page_size not a power of two >= 4096");
	if (!size || size % page_size)
		FAIL(-EBADMSG, "block: size not a non-zero multiple of page_size");
	if (backing < PCH_BACKING_ANON || backing >= PCH_BACKING_MAX)
		FAIL(-EBADMSG, "block: unknown backing");

	b = &t->b[t->count];
	memset(b, 0, sizeof(*b));
	memcpy(b->name, name, len);
	b->size = size;
	b->page_size = page_size;
	b->backing = backing;
	b->page_shift = (unsigned)__builtin_ctz(page_size);
	b->npages = size >> b->page_shift;
	if (!t->count || page_size < t->min_page_size)
		t->min_page_size = page_size;
	t->total_pages += b->npages;
	t->count++;
	return 0;
}

/*
 * Encode t as a PCH_CC_BLOCKS payload into buf (cap bytes).  Bytes written,
 * -EINVAL for an empty table, or -E2BIG when cap is too small.
 */
int pch_blocktab_encode(const struct pch_blocktab *t, void *buf, size_t cap)
{
	struct pch_cc_blocks hdr = {.count = t->count};
	unsigned char *p = buf;
	size_t need;
	uint32_t i;

	if (!t->count)
		return -EINVAL;
	if (t->count > PCH_MAX_BLOCKS)
		return -E2BIG;
	need = sizeof(hdr) + (size_t)t->count * sizeof(struct pch_wire_block);
	if (cap < need)
		return -E2BIG;

	memcpy(p, &hdr, sizeof(hdr));
	p += sizeof(hdr);
	for (i = 0; i < t->count; i++) {
		struct pch_wire_block wb;

		memset(&wb, 0, sizeof(wb));
		/* b->name is NUL-padded by pch_blocktab_add; copy it whole. */
		memcpy(wb.name, t->b[i].name, sizeof(wb.name));
		wb.name[sizeof(wb.name) - 1] = '\0';
		wb.size = t->b[i].size;
		wb.page_size = t->b[i].page_size;
		wb.backing = t->b[i].backing;
		memcpy(p, &wb, sizeof(wb));
		p += sizeof(wb);
	}
	return (int)need;
}

/*
 * Decode a PCH_CC_BLOCKS payload of len bytes into t (t is emptied first and
 * left empty on failure).  0, -EBADMSG or -E2BIG with *why.
 */
int pch_blocktab_decode(struct pch_blocktab *t, const void *buf, size_t len, const char **why)
{
	struct pch_cc_blocks hdr;
	const unsigned char *p = buf;
	uint32_t i;
	int ret;

	memset(t, 0, sizeof(*t));
	if (len < sizeof(hdr))
		FAIL(-EBADMSG, "blocks: payload shorter than its header");
	memcpy(&hdr, p, sizeof(hdr));
	if (hdr.reserved)
		FAIL(-EBADMSG, "blocks: reserved not 0");
	if (!hdr.count)
		FAIL(-EBADMSG, "blocks: count 0");
	if (hdr.count > PCH_MAX_BLOCKS)
		FAIL(-E2BIG, "blocks: count over PCH_MAX_BLOCKS");
	/* count <= 64, so this cannot overflow. */
	if (len != sizeof(hdr) + (size_t)hdr.count * sizeof(struct pch_wire_block))
		FAIL(-EBADMSG, "blocks: length does not match count");

	p += sizeof(hdr);
	for (i = 0; i < hdr.count; i++, p += sizeof(struct pch_wire_block)) {
		struct pch_wire_block wb;

		/* add reads name with strnlen(PCH_BLOCK_NAME_LEN): bounded */
		memcpy(&wb, p, sizeof(wb));
		ret = pch_blocktab_add(t, wb.name, wb.size, wb.page_size, wb.backing, why);
		if (ret) {
			memset(t, 0, sizeof(*t));
			return ret;
		}
	}
	return 0;
}

static const char *const backing_names[PCH_BACKING_MAX] = {
	[PCH_BACKING_ANON] = "anon",
	[PCH_BACKING_MEMFD] = "memfd",
	[PCH_BACKING_HUGETLB] = "hugetlb",
	[PCH_BACKING_HUGETLB_PRIVATE] = "hugetlb-private",
	[PCH_BACKING_THP] = "thp",
};

const char *pch_backing_name(uint32_t backing)
{
	return backing < PCH_BACKING_MAX && backing_names[backing] ? backing_names[backing] : "?";
}

uint32_t pch_backing_parse(const char *name)
{
	uint32_t i;

	for (i = 1; i < PCH_BACKING_MAX; i++)
		if (!strcmp(name, backing_names[i]))
			return i;
	return 0;
}

/*
 * Compare the source's table with the VMM's: same count, and per block the
 * same name, size and page size in the same order.  0 or -EPROTO with *why.
 */
int pch_blocktab_match(const struct pch_blocktab *src, const struct pch_blocktab *vmm,
		       const char **why)
{
	uint32_t i;

	if (src->count != vmm->count)
		FAIL(-EPROTO, "blocks: block count differs");
	for (i = 0; i < src->count; i++) {
		const struct pch_block *a = &src->b[i], *b = &vmm->b[i];

		if (strncmp(a->name, b->name, PCH_BLOCK_NAME_LEN))
			FAIL(-EPROTO, "blocks: block name differs");
		if (a->size != b->size)
			FAIL(-EPROTO, "blocks: block size differs");
		if (a->page_size != b->page_size)
			FAIL(-EPROTO, "blocks: block page size differs");
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Hello, ack, refusal                                                  */
/* ------------------------------------------------------------------ */

static void hello_auth(const struct pch_hello *h, const struct pch_session *s,
		       uint8_t out[PCH_AUTH_LEN])
{
	pch_hmac_sha256(s->key, sizeof(s->key), h, offsetof(struct pch_hello, auth), out);
}

/* Fill h from p and the session; magic PCH_ACK_MAGIC when ack. */
void pch_hello_build(struct pch_hello *h, const struct pch_hello_params *p,
		     const struct pch_session *s, bool ack)
{
	memset(h, 0, sizeof(*h));
	h->magic = ack ? PCH_ACK_MAGIC : PCH_HELLO_MAGIC;
	h->version = PCH_PROTO_VERSION;
	h->kind = p->kind;
	h->index = p->index;
	h->count = p->count;
	h->page_size = p->page_size;
	h->nonce = p->nonce;
	h->flags = ack ? 0 : p->flags;
	memcpy(h->session, s->id, sizeof(h->session));
	hello_auth(h, s, h->auth);
}

#define HFAIL(err, rsn, text)                                                                      \
	do {                                                                                       \
		if (reason)                                                                        \
			*reason = (rsn);                                                           \
		FAIL(err, text);                                                                   \
	} while (0)

/*
 * Check a received hello (or ack) in the order magic, version, kind,
 * flags, count, index, page_size, session id, authenticator.
 * 0 with *p filled, or -EBADMSG/-E2BIG/-EPROTO with *reason and *why.
 * p, reason and why may be NULL.
 */
int pch_hello_check(const struct pch_hello *h, const struct pch_session *s, bool ack,
		    struct pch_hello_params *p, int *reason, const char **why)
{
	uint8_t mac[PCH_AUTH_LEN];

	if (reason)
		*reason = 0;
	if (ack) {
		if (h->magic == PCH_REFUSE_MAGIC)
			HFAIL(-EBADMSG, PCH_REFUSE_MAGIC_BAD, "ack: got a refusal");
		if (h->magic != PCH_ACK_MAGIC)
			HFAIL(-EBADMSG, PCH_REFUSE_MAGIC_BAD, "ack: bad magic");
	} else if (h->magic != PCH_HELLO_MAGIC) {
		HFAIL(-EBADMSG, PCH_REFUSE_MAGIC_BAD, "hello: bad magic");
	}
	if (h->version != PCH_PROTO_VERSION)
		HFAIL(-EPROTO, PCH_REFUSE_VERSION, "hello: unsupported version");
	if (h->kind < PCH_CHAN_CONTROL || h->kind > PCH_CHAN_PAGES)
		HFAIL(-EBADMSG, PCH_REFUSE_KIND, "hello: unknown channel kind");
	/* Other flags mean a feature this version lacks. */
	if (h->flags & ~PCH_HELLO_F_RESUME)
		HFAIL(-EBADMSG, PCH_REFUSE_VERSION, "hello: unknown flags");
	if ((h->flags & PCH_HELLO_F_RESUME) && (ack || h->kind != PCH_CHAN_CONTROL))
		HFAIL(-EBADMSG, PCH_REFUSE_VERSION, "hello: RESUME flags allowed on CONTROL only");
	if (!h->count)
		HFAIL(-EBADMSG, PCH_REFUSE_INDEX, "hello: channel count 0");
	if (h->count > PCH_MAX_CHANNELS)
		HFAIL(-E2BIG, PCH_REFUSE_INDEX, "hello: channel count over PCH_MAX_CHANNELS");
	if (h->kind == PCH_CHAN_PAGES) {
		if (h->index >= h->count)
			HFAIL(-EBADMSG, PCH_REFUSE_INDEX, "hello: index >= count");
	} else if (h->index) {
		HFAIL(-EBADMSG, PCH_REFUSE_INDEX, "hello: index not 0 on CONTROL/URGENT");
	}
	if (!page_size_ok(h->page_size))
		HFAIL(-EBADMSG, PCH_REFUSE_PAGE_SIZE,
		      "hello: page_size not a power of two >= 4096");
	/* The session id is not secret; only the authenticator needs care. */
	if (memcmp(h->session, s->id, sizeof(h->session)))
		HFAIL(-EPROTO, PCH_REFUSE_SESSION, "hello: stale session");
	hello_auth(h, s, mac);
	if (pch_memeq_ct(mac, h->auth, sizeof(mac)))
		HFAIL(-EPROTO, PCH_REFUSE_AUTH, "hello: authenticator does not verify");

	if (p) {
		p->kind = h->kind;
		p->index = h->index;
		p->count = h->count;
		p->page_size = h->page_size;
		p->nonce = h->nonce;
		p->flags = h->flags;
	}
	return 0;
}

/* Build a refusal; text NULL uses the reason's name.  Text is truncated. */
void pch_refuse_build(struct pch_refuse *r, int reason, const char *text)
{
	memset(r, 0, sizeof(*r));
	r->magic = PCH_REFUSE_MAGIC;
	r->version = PCH_PROTO_VERSION;
	r->reason = (uint16_t)reason;
	snprintf(r->text, sizeof(r->text), "%s", text ? text : pch_refuse_name(reason));
}

/* Name of a refusal reason, "?" if unknown. */
const char *pch_refuse_name(int reason)
{
	static const char *const names[PCH_REFUSE_MAX] = {
	    [PCH_REFUSE_MAGIC_BAD] = "bad magic",
	    [PCH_REFUSE_VERSION] = "unsupported version",
	    [PCH_REFUSE_KIND] = "bad channel kind",
	    [PCH_REFUSE_INDEX] = "bad channel index or count",
	    [PCH_REFUSE_DUPLICATE] = "duplicate channel",
	    [PCH_REFUSE_SESSION] = "stale or unknown session",
	    [PCH_REFUSE_AUTH] = "authentication failed",
	    [PCH_REFUSE_PAGE_SIZE] = "bad page size",
	    [PCH_REFUSE_BUSY] = "too many connections",
	    [PCH_REFUSE_REPLAY] = "replayed hello",
	};

	if (reason <= 0 || reason >= PCH_REFUSE_MAX || !names[reason])
		return "?";
	return names[reason];
}

/* Name of a channel kind, "?" if unknown. */
const char *pch_chan_kind_name(unsigned kind)
{
	static const char *const names[] = {
	    [PCH_CHAN_CONTROL] = "CONTROL",
	    [PCH_CHAN_URGENT] = "URGENT",
	    [PCH_CHAN_PAGES] = "PAGES",
	};

	if (kind >= PCH_ARRAY_SIZE(names) || !names[kind])
		return "?";
	return names[kind];
}

/* ------------------------------------------------------------------ */
/* Page frames                                                          */
/* ------------------------------------------------------------------ */

/*
 * Check a frame header in the order magic, type, flags, block, count and
 * data limits, arg, seq, URGENT permission.  0, -EBADMSG, -E2BIG (count or
 * data over the limit) or -EPROTO (seq mismatch, URGENT not allowed).
 */
int pch_frame_check_hdr(const struct pch_frame_hdr *h, const struct pch_blocktab *t,
			uint64_t expect_seq, bool urgent_ok, const char **why)
{
	bool urgent = h->flags & PCH_FRAME_F_URGENT;

	if (h->magic != PCH_FRAME_MAGIC)
		FAIL(-EBADMSG, "frame: bad magic");
	if (h->type < PCH_FRAME_PAGES || h->type >= PCH_FRAME_TYPE_MAX)
		FAIL(-EBADMSG, "frame: unknown type");
	if (h->flags & ~PCH_FRAME_F_URGENT)
		FAIL(-EBADMSG, "frame: unknown flags");

	switch (h->type) {
	case PCH_FRAME_PAGES:
	case PCH_FRAME_ZERO:
		if (h->block >= t->count)
			FAIL(-EBADMSG, "frame: block out of range");
		if (!h->count)
			FAIL(-EBADMSG, "frame: count 0");
		if (h->count > PCH_FRAME_MAX_PAGES)
			FAIL(-E2BIG, "frame: count over PCH_FRAME_MAX_PAGES");
		if (h->type == PCH_FRAME_PAGES) {
			uint64_t ps = t->b[h->block].page_size;
			uint64_t lim = PCH_MAX(ps, (uint64_t)PCH_FRAME_MAX_DATA);

			/* count <= 1024 and ps < 2^32: the product fits. */
			if ((uint64_t)h->count * ps > lim)
				FAIL(-E2BIG, "frame: data over PCH_FRAME_MAX_DATA");
		}
		if (h->count > t->b[h->block].npages)
			FAIL(-EBADMSG, "frame: count over block pages");
		if (!urgent && h->arg)
			FAIL(-EBADMSG, "frame: arg not 0");
		break;
	case PCH_FRAME_SYNC:
	case PCH_FRAME_END:
		if (h->count)
			FAIL(-EBADMSG, "frame: count not 0 on SYNC/END");
		if (h->block)
			FAIL(-EBADMSG, "frame: block not 0 on SYNC/END");
		if (urgent)
			FAIL(-EBADMSG, "frame: URGENT flag on SYNC/END");
		if (h->type == PCH_FRAME_END && h->arg)
			FAIL(-EBADMSG, "frame: arg not 0 on END");
		break;
	case PCH_FRAME_KEEPALIVE:
		/* on either kind of channel; URGENT's carry the URGENT flag */
		if (h->count || h->block || h->arg)
			FAIL(-EBADMSG, "frame: count, block or arg not 0 on KEEPALIVE");
		break;
	}

	if (h->seq != expect_seq)
		FAIL(-EPROTO, "frame: seq mismatch");
	if (urgent && !urgent_ok)
		FAIL(-EPROTO, "frame: URGENT flag not allowed on this channel");
	return 0;
}

/* Bytes of offsets after a checked header. */
size_t pch_frame_offsets_len(const struct pch_frame_hdr *h)
{
	return (size_t)h->count * sizeof(uint64_t);
}

/* Bytes of page data after a checked header (0 unless PAGES, or bad block). */
size_t pch_frame_data_len(const struct pch_frame_hdr *h, const struct pch_blocktab *t)
{
	if (h->type != PCH_FRAME_PAGES || h->block >= t->count)
		return 0;
	return (size_t)h->count * t->b[h->block].page_size;
}

/*
 * Check the count offsets of a (checked) frame: page aligned, inside the
 * block, strictly increasing.  0 or -EBADMSG with *why.
 */
int pch_frame_check_offsets(const struct pch_frame_hdr *h, const uint64_t *offs,
			    const struct pch_blocktab *t, const char **why)
{
	const struct pch_block *b;
	uint32_t i;

	if (h->block >= t->count)
		FAIL(-EBADMSG, "frame: block out of range");
	if (h->count > PCH_FRAME_MAX_PAGES)
		FAIL(-E2BIG, "frame: count over PCH_FRAME_MAX_PAGES");
	b = &t->b[h->block];
	for (i = 0; i < h->count; i++) {
		uint64_t off = offs[i];

		if (off & (b->page_size - 1))
			FAIL(-EBADMSG, "frame: offset not page aligned");
		/* aligned and < size, size a multiple of page_size: off + ps fits */
		if (off >= b->size)
			FAIL(-EBADMSG, "frame: offset out of range");
		if (i && off <= offs[i - 1])
			FAIL(-EBADMSG, "frame: offsets not increasing");
	}
	return 0;
}

/* Fill a frame header (reserved bits zero). */
void pch_frame_build(struct pch_frame_hdr *h, uint16_t type, uint16_t flags, uint32_t block,
		     uint32_t count, uint64_t seq, uint64_t arg)
{
	memset(h, 0, sizeof(*h));
	h->magic = PCH_FRAME_MAGIC;
	h->type = type;
	h->flags = flags;
	h->block = block;
	h->count = count;
	h->seq = seq;
	h->arg = arg;
}

/* ------------------------------------------------------------------ */
/* Page requests                                                        */
/* ------------------------------------------------------------------ */

/*
 * Check a page request: magic, type, flags, block, count (1..
 * PCH_REQ_MAX_PAGES), offset aligned and [offset, offset + count pages)
 * inside the block.  0, -EBADMSG or -E2BIG with *why.
 */
int pch_req_check(const struct pch_req *r, const struct pch_blocktab *t, const char **why)
{
	const struct pch_block *b;

	if (r->magic != PCH_REQ_MAGIC)
		FAIL(-EBADMSG, "req: bad magic");
	if (r->type != PCH_REQ_PAGE)
		FAIL(-EBADMSG, "req: unknown type");
	if (r->flags)
		FAIL(-EBADMSG, "req: unknown flags");
	if (r->block >= t->count)
		FAIL(-EBADMSG, "req: block out of range");
	if (!r->count)
		FAIL(-EBADMSG, "req: count 0");
	if (r->count > PCH_REQ_MAX_PAGES)
		FAIL(-E2BIG, "req: count over PCH_REQ_MAX_PAGES");
	b = &t->b[r->block];
	if (r->offset & (b->page_size - 1))
		FAIL(-EBADMSG, "req: offset not page aligned");
	/* count <= 64 pages of < 2^32 bytes: no overflow; no offset + len. */
	if (r->offset >= b->size || (uint64_t)r->count * b->page_size > b->size - r->offset)
		FAIL(-EBADMSG, "req: range out of block");
	return 0;
}

/*
 * Check that an URGENT answer frame answers request r (left pages of it
 * unanswered): id, block, page count, offsets within the request's range.
 * Offsets are checked (inside the block, increasing) already, so the
 * first and the last bound them all.  0 or -EPROTO with *why.
 */
int pch_frame_check_answer(const struct pch_frame_hdr *h, const uint64_t *offs,
			   const struct pch_req *r, uint32_t left, const struct pch_blocktab *t,
			   const char **why)
{
	uint64_t ps;

	if (h->arg != r->id)
		FAIL(-EPROTO, "answer: id is not the request's");
	if (h->block != r->block || r->block >= t->count)
		FAIL(-EPROTO, "answer: block is not the request's");
	if (!h->count || h->count > left || left > r->count)
		FAIL(-EPROTO, "answer: more pages than the request left unanswered");
	ps = t->b[r->block].page_size;
	/* r passed pch_req_check: r->offset + count pages is inside the block */
	if (offs[0] < r->offset || offs[h->count - 1] - r->offset >= (uint64_t)r->count * ps)
		FAIL(-EPROTO, "answer: page outside the request's range");
	return 0;
}

/* Fill a PCH_REQ_PAGE request. */
void pch_req_build(struct pch_req *r, uint32_t block, uint64_t offset, uint32_t count, uint64_t id)
{
	memset(r, 0, sizeof(*r));
	r->magic = PCH_REQ_MAGIC;
	r->type = PCH_REQ_PAGE;
	r->block = block;
	r->count = count;
	r->offset = offset;
	r->id = id;
}

/* ------------------------------------------------------------------ */
/* CONTROL messages                                                     */
/* ------------------------------------------------------------------ */

/*
 * Check a CONTROL header: magic, type, flags, reserved, len within
 * PCH_CC_MAX_PAYLOAD and right for the type (exact for fixed payloads, at
 * least the fixed part for BLOCKS and HAVE).  0, -EBADMSG or -E2BIG.
 */
int pch_cc_check_hdr(const struct pch_cc_hdr *h, const char **why)
{
	if (h->magic != PCH_CC_MAGIC)
		FAIL(-EBADMSG, "cc: bad magic");
	if (h->type < PCH_CC_BLOCKS || h->type >= PCH_CC_TYPE_MAX)
		FAIL(-EBADMSG, "cc: unknown type");
	if (h->flags)
		FAIL(-EBADMSG, "cc: unknown flags");
	if (h->reserved)
		FAIL(-EBADMSG, "cc: reserved not 0");
	if (h->len > PCH_CC_MAX_PAYLOAD)
		FAIL(-E2BIG, "cc: len over PCH_CC_MAX_PAYLOAD");

	switch (h->type) {
	case PCH_CC_BLOCKS:
		if (h->len < sizeof(struct pch_cc_blocks))
			FAIL(-EBADMSG, "cc: BLOCKS payload too short");
		break;
	case PCH_CC_HAVE:
		if (h->len < sizeof(struct pch_cc_have))
			FAIL(-EBADMSG, "cc: HAVE payload too short");
		break;
	case PCH_CC_START:
	case PCH_CC_DONE:
	case PCH_CC_KEEPALIVE:
		if (h->len)
			FAIL(-EBADMSG, "cc: START/DONE/KEEPALIVE carry no payload");
		break;
	case PCH_CC_SYNC_REQ:
		if (h->len != sizeof(struct pch_cc_sync))
			FAIL(-EBADMSG, "cc: SYNC_REQ payload size");
		break;
	case PCH_CC_ERROR:
		if (h->len != sizeof(struct pch_cc_error))
			FAIL(-EBADMSG, "cc: ERROR payload size");
		break;
	}
	return 0;
}

/* Fill a CONTROL header for len payload bytes. */
void pch_cc_build(struct pch_cc_hdr *h, uint16_t type, uint32_t len)
{
	memset(h, 0, sizeof(*h));
	h->magic = PCH_CC_MAGIC;
	h->type = type;
	h->len = len;
}

/*
 * Check a PCH_CC_HAVE payload: reserved 0, block in range, first_page a
 * multiple of 64, npages non-zero and [first_page, first_page + npages)
 * inside the block, len exactly header + ceil(npages / 64) words, and no
 * bit set past npages.  0, -EBADMSG or -E2BIG with *why.
 */
int pch_cc_have_check(const void *payload, size_t len, const struct pch_blocktab *t,
		      const char **why)
{
	const unsigned char *p = payload;
	struct pch_cc_have hv;
	uint64_t nwords;

	if (len > PCH_CC_MAX_PAYLOAD)
		FAIL(-E2BIG, "have: payload over PCH_CC_MAX_PAYLOAD");
	if (len < sizeof(hv))
		FAIL(-EBADMSG, "have: payload shorter than its header");
	memcpy(&hv, p, sizeof(hv));
	if (hv.reserved)
		FAIL(-EBADMSG, "have: reserved not 0");
	if (hv.block >= t->count)
		FAIL(-EBADMSG, "have: block out of range");
	if (hv.first_page % 64)
		FAIL(-EBADMSG, "have: first_page not a multiple of 64");
	if (!hv.npages)
		FAIL(-EBADMSG, "have: npages 0");
	if (hv.first_page >= t->b[hv.block].npages ||
	    hv.npages > t->b[hv.block].npages - hv.first_page)
		FAIL(-EBADMSG, "have: pages out of block");
	nwords = hv.npages / 64 + (hv.npages % 64 != 0);
	if ((len - sizeof(hv)) % 8 || (len - sizeof(hv)) / 8 != nwords)
		FAIL(-EBADMSG, "have: length does not match npages");
	if (hv.npages % 64) {
		uint64_t last;

		memcpy(&last, p + sizeof(hv) + (nwords - 1) * 8, 8);
		if (last >> (hv.npages % 64))
			FAIL(-EBADMSG, "have: bits set past npages");
	}
	return 0;
}
