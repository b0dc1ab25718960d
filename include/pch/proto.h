/* SPDX-License-Identifier: MIT */
/*
 * proto.h - pch wire protocol between pch-helper and pch-source (TCP).
 *
 * Every struct here is fixed-width, little-endian, explicitly padded and
 * size-checked.  New fields go only at the end, behind a version bump.
 * docs/protocol.md describes each field and the message flows.
 *
 * Version history:
 *   1  first version: hello/ack, page frames, page requests, CONTROL messages.
 */
#ifndef PCH_PROTO_H
#define PCH_PROTO_H

#include <stddef.h>
#include <stdint.h>

/*
 * The wire is little-endian.  pch is built for little-endian hosts only
 * (x86_64, aarch64); a big-endian port adds conversions in lib/codec.c.
 */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
	       "pch wire structs are little-endian");

#define PCH_PROTO_VERSION 1

/* ------------------------------------------------------------------ */
/* Channel hello: the first bytes on every TCP connection.             */
/* ------------------------------------------------------------------ */

#define PCH_HELLO_MAGIC 0x48484350u /* "PCHH" */
#define PCH_ACK_MAGIC 0x41484350u /* "PCHA" */
#define PCH_REFUSE_MAGIC 0x52484350u /* "PCHR" */

enum pch_chan_kind {
	PCH_CHAN_CONTROL = 1, /* session control, one per session */
	PCH_CHAN_URGENT = 2,  /* fault requests and their pages, one */
	PCH_CHAN_PAGES = 3,   /* bulk page stream, index 0..count-1 */
};

#define PCH_SESSION_ID_LEN 16
#define PCH_KEY_LEN 32
#define PCH_AUTH_LEN 32 /* HMAC-SHA256 */
#define PCH_MAX_CHANNELS 64 /* PAGES channels per session */

/*
 * Sent by the helper (client) as the first 72 bytes of each connection, and
 * answered by the source with the same struct (magic PCH_ACK_MAGIC, the same
 * kind/index/count/nonce, its own auth) or with struct pch_refuse.
 */
struct pch_hello {
	uint32_t magic;     /* PCH_HELLO_MAGIC, or PCH_ACK_MAGIC in the reply */
	uint16_t version;   /* PCH_PROTO_VERSION */
	uint8_t kind;       /* enum pch_chan_kind */
	uint8_t flags;      /* PCH_HELLO_F_*: RESUME on a CONTROL hello only */
	uint16_t index;     /* PAGES: 0..count-1; CONTROL/URGENT: 0 */
	uint16_t count;     /* number of PAGES channels in the session */
	uint32_t page_size; /* smallest page size of the session, bytes */
	uint64_t nonce;     /* helper's random value; echoed by the ack */
	uint8_t session[PCH_SESSION_ID_LEN]; /* session id */
	/* HMAC-SHA256 with the session key over bytes [0, offsetof(auth)) */
	uint8_t auth[PCH_AUTH_LEN];
};
_Static_assert(sizeof(struct pch_hello) == 72, "pch_hello size");

/*
 * hello flags.  RESUME, on a CONTROL hello: the helper lost its channels and
 * comes back with the same session; the source drops whatever is left of the
 * old ones and starts the session again from the helper's HAVE bitmap.
 */
#define PCH_HELLO_F_RESUME 0x01u

/*
 * Keep-alives: each side sends one on a connection it has written nothing
 * on for this long, so silence means a broken connection, not an idle one.
 */
#define PCH_KEEPALIVE_MS 1000
/* Silence after which a connection is taken for lost (default). */
#define PCH_KEEPALIVE_TIMEOUT_MS 5000
_Static_assert(offsetof(struct pch_hello, auth) == 40, "pch_hello.auth");

/* Refusal, sent by the source instead of an ack; then it closes. */
struct pch_refuse {
	uint32_t magic;   /* PCH_REFUSE_MAGIC */
	uint16_t version; /* PCH_PROTO_VERSION */
	uint16_t reason;  /* enum pch_refuse_reason */
	char text[64];    /* NUL-terminated human-readable reason */
};
_Static_assert(sizeof(struct pch_refuse) == 72, "pch_refuse size");

enum pch_refuse_reason {
	PCH_REFUSE_MAGIC_BAD = 1,
	PCH_REFUSE_VERSION = 2,
	PCH_REFUSE_KIND = 3,
	PCH_REFUSE_INDEX = 4,     /* index >= count, or count disagrees */
	PCH_REFUSE_DUPLICATE = 5, /* that channel is already connected */
	PCH_REFUSE_SESSION = 6,   /* stale or unknown session id */
	PCH_REFUSE_AUTH = 7,      /* authenticator does not verify */
	PCH_REFUSE_PAGE_SIZE = 8,
	PCH_REFUSE_BUSY = 9,      /* too many connections */
	PCH_REFUSE_REPLAY = 10,   /* a verified hello whose nonce was seen before */
	PCH_REFUSE_MAX
};

/* ------------------------------------------------------------------ */
/* Page frames, on PAGES channels (bulk) and URGENT (answers).          */
/* ------------------------------------------------------------------ */

#define PCH_FRAME_MAGIC 0x46484350u /* "PCHF" */

enum pch_frame_type {
	PCH_FRAME_PAGES = 1, /* count offsets, then count pages of data */
	PCH_FRAME_ZERO = 2,  /* count offsets of all-zero pages, no data */
	PCH_FRAME_SYNC = 3,  /* sync point: arg = epoch, count = 0 */
	PCH_FRAME_END = 4,   /* no more bulk pages on this channel, count = 0 */
	PCH_FRAME_KEEPALIVE = 5, /* nothing; the channel is idle, not dead; count = 0 */
	PCH_FRAME_TYPE_MAX
};

/* frame flags */
#define PCH_FRAME_F_URGENT 0x0001u /* answers a request; arg = request id */

/* Limits a receiver enforces (a frame beyond them closes the channel). */
#define PCH_FRAME_MAX_PAGES 1024u
#define PCH_FRAME_MAX_DATA (1u << 20) /* or one page, if a page is larger */

/*
 * Followed by count uint64_t byte offsets into the block (page aligned,
 * strictly increasing), then, for PCH_FRAME_PAGES, count * page_size bytes.
 */
struct pch_frame_hdr {
	uint32_t magic; /* PCH_FRAME_MAGIC */
	uint16_t type;  /* enum pch_frame_type */
	uint16_t flags; /* PCH_FRAME_F_* */
	uint32_t block; /* index into the RAM block table */
	uint32_t count; /* pages in this frame */
	uint64_t seq;   /* per-channel frame number, from 0, +1 per frame */
	uint64_t arg;   /* SYNC: epoch; URGENT answers: request id; else 0 */
};
_Static_assert(sizeof(struct pch_frame_hdr) == 32, "pch_frame_hdr size");

/* ------------------------------------------------------------------ */
/* Page requests, helper -> source on the URGENT channel.               */
/* ------------------------------------------------------------------ */

#define PCH_REQ_MAGIC 0x51484350u /* "PCHQ" */
#define PCH_REQ_MAX_PAGES 64u

enum pch_req_type {
	PCH_REQ_PAGE = 1, /* send count pages from offset, now */
};

struct pch_req {
	uint32_t magic;  /* PCH_REQ_MAGIC */
	uint16_t type;   /* enum pch_req_type */
	uint16_t flags;  /* 0 */
	uint32_t block;  /* index into the RAM block table */
	uint32_t count;  /* pages, 1..PCH_REQ_MAX_PAGES */
	uint64_t offset; /* byte offset into the block, page aligned */
	uint64_t id;     /* echoed in the answer frame's arg */
};
_Static_assert(sizeof(struct pch_req) == 32, "pch_req size");

/* ------------------------------------------------------------------ */
/* CONTROL channel messages (both directions).                          */
/* ------------------------------------------------------------------ */

#define PCH_CC_MAGIC 0x43484350u /* "PCHC" */
#define PCH_CC_MAX_PAYLOAD (64u << 10)

enum pch_cc_type {
	PCH_CC_BLOCKS = 1,   /* source -> helper: RAM block table */
	PCH_CC_HAVE = 2,     /* helper -> source: pages already in place */
	PCH_CC_START = 3,    /* helper -> source: table accepted, stream */
	PCH_CC_SYNC_REQ = 4, /* helper -> source: put SYNC(epoch) on all PAGES */
	PCH_CC_DONE = 5,     /* helper -> source: every page is in place */
	PCH_CC_ERROR = 6,    /* either: fatal error, payload pch_cc_error */
	PCH_CC_KEEPALIVE = 7, /* either: nothing to say, still here; no payload */
	PCH_CC_TYPE_MAX
};

struct pch_cc_hdr {
	uint32_t magic; /* PCH_CC_MAGIC */
	uint16_t type;  /* enum pch_cc_type */
	uint16_t flags; /* 0 */
	uint32_t len;   /* payload bytes after this header */
	uint32_t reserved;
};
_Static_assert(sizeof(struct pch_cc_hdr) == 16, "pch_cc_hdr size");

#define PCH_BLOCK_NAME_LEN 64
#define PCH_MAX_BLOCKS 64

/* backing kinds (RAM block table, both here and on the control socket) */
enum pch_backing {
	PCH_BACKING_ANON = 1,
	PCH_BACKING_MEMFD = 2,
	PCH_BACKING_HUGETLB = 3,
	PCH_BACKING_HUGETLB_PRIVATE = 4,
	PCH_BACKING_THP = 5,
	PCH_BACKING_MAX
};

/* One entry of PCH_CC_BLOCKS. */
struct pch_wire_block {
	char name[PCH_BLOCK_NAME_LEN]; /* NUL-terminated, unique */
	uint64_t size;                 /* bytes, multiple of page_size */
	uint32_t page_size;            /* bytes, power of two >= 4096 */
	uint32_t backing;              /* enum pch_backing, as the source has it */
};
_Static_assert(sizeof(struct pch_wire_block) == 80, "pch_wire_block size");

/* PCH_CC_BLOCKS payload: this, then count struct pch_wire_block. */
struct pch_cc_blocks {
	uint32_t count; /* 1..PCH_MAX_BLOCKS */
	uint32_t reserved;
};
_Static_assert(sizeof(struct pch_cc_blocks) == 8, "pch_cc_blocks size");

/*
 * PCH_CC_HAVE payload: this, then ceil(npages / 64) uint64_t words, bit i of
 * the stream set when page first_page + i is already in place.
 */
struct pch_cc_have {
	uint32_t block;
	uint32_t reserved;
	uint64_t first_page; /* multiple of 64 */
	uint64_t npages;
};
_Static_assert(sizeof(struct pch_cc_have) == 24, "pch_cc_have size");

/* PCH_CC_SYNC_REQ payload */
struct pch_cc_sync {
	uint64_t epoch; /* > every epoch requested before */
};
_Static_assert(sizeof(struct pch_cc_sync) == 8, "pch_cc_sync size");

/* PCH_CC_ERROR payload */
struct pch_cc_error {
	int32_t code; /* -errno */
	uint32_t reserved;
	char text[120]; /* NUL-terminated */
};
_Static_assert(sizeof(struct pch_cc_error) == 128, "pch_cc_error size");

#endif /* PCH_PROTO_H */
