/* SPDX-License-Identifier: MIT */
/*
 * ctl.h - the stateless checks of control-socket messages (include/pch/ctl.h)
 * that the helper makes before acting on one: header, length per type,
 * BITMAP range and BLOCK fields.  What depends on the helper's state (role,
 * START, blocks announced, fds, this host's page sizes) stays in the helper.
 * Every input is hostile; every check is bounded by the packet length.
 */
#ifndef PCH_LIB_CTL_H
#define PCH_LIB_CTL_H

#include <stddef.h>
#include <stdint.h>

#include "pch/ctl.h"
#include "pch/state.h"

struct pch_blocktab;

/* Largest page count of one block the helper keeps state for (16 TiB of 4 KiB). */
#define PCH_CTL_BLOCK_MAX_PAGES (1ull << 32)

/*
 * Check a received packet of n bytes: at least a header and at most
 * PCH_CTL_MAX_MSG, the control magic, flags 0 and hdr.len == n.  0,
 * -EBADMSG or -E2BIG (the connection is to be dropped).
 */
int pch_ctl_check_hdr(const void *msg, size_t n);

/*
 * Name of a request type the helper takes ("HELLO", ...), NULL for an
 * unknown type and for REPLY.
 */
const char *pch_ctl_req_name(uint16_t type);

/*
 * Check the type and length of a packet of n bytes whose header passed
 * pch_ctl_check_hdr: a known request type, n exactly its struct size (at
 * least it, for BITMAP), then, n covering them, the fields that must be 0:
 * flags and reserved of START, STATS and SHUTDOWN, reserved of RING and
 * BITMAP.  h is the whole packet.  0 or -EINVAL with the reason in whybuf.
 */
int pch_ctl_check_len(const struct pch_ctl_hdr *h, size_t n, char *whybuf, size_t whylen);

/*
 * Check a BITMAP (length already checked) against the npages of its block:
 * at most PCH_CTL_BITMAP_MAX_PAGES bits (-E2BIG), first_page a multiple of
 * 64, the range inside the block, hdr.len exactly the header and
 * ceil(npages / 64) words (-EINVAL); name is the block's name for the
 * reason in whybuf.
 */
int pch_ctl_bitmap_check(const struct pch_ctl_bitmap *m, uint64_t block_npages,
			 const char *name, char *whybuf, size_t whylen);

/*
 * Check the fields of a BLOCK (length already checked; the caller checks
 * page_size against this host's page sizes first): page_size a power of
 * two (never reached from the helper), flags known, name
 * NUL-terminated, host_addr page aligned and host_addr + length not
 * wrapping, at most PCH_CTL_BLOCK_MAX_PAGES pages.  0, -EINVAL or -E2BIG
 * with the reason in whybuf.
 */
int pch_ctl_block_check(const struct pch_ctl_block *m, char *whybuf, size_t whylen);

/*
 * Check a HELLO (length already checked): version PCH_CTL_VERSION, then a
 * known role, then a name NUL-terminated within its 32 bytes and without
 * control characters (it is logged; UTF-8 is fine).  0, -EPROTO (version)
 * or -EINVAL with whybuf.
 */
int pch_ctl_hello_check(const struct pch_ctl_hello *m, char *whybuf, size_t whylen);

/* Check a STATE's own fields: flags and reserved 0.  0 or -EINVAL with whybuf. */
int pch_ctl_state_check(const struct pch_ctl_state *m, char *whybuf, size_t whylen);

/*
 * Check a STATE's size against the blocks announced before it (t, at least
 * one): exactly pch_state_size() of their page counts.  0 or -EINVAL.
 */
int pch_ctl_state_size_check(const struct pch_ctl_state *m, const struct pch_blocktab *t,
			     char *whybuf, size_t whylen);

/*
 * Check the layout a STATE memfd of size bytes says it has (sh, then
 * t->count descriptors sb) against the blocks t: magic, version, block
 * count and size in the header; per block its npages, page size, words, a
 * 64-byte aligned offset and its PCH_STATE_BITMAPS bitmaps inside size.
 * sh and sb are read once each field; a caller with memory the VMM can
 * still write passes a copy.  0 or -EINVAL with whybuf.
 */
int pch_ctl_state_layout_check(const struct pch_state_hdr *sh, const struct pch_state_block *sb,
			       uint64_t size, const struct pch_blocktab *t, char *whybuf,
			       size_t whylen);

/*
 * Check a SYNC's epoch against the highest asked before (asked): strictly
 * above it (so never 0).  0 or -EINVAL with whybuf.
 */
int pch_ctl_sync_check(const struct pch_ctl_sync *m, uint64_t asked, char *whybuf,
		       size_t whylen);

/*
 * Check the uffd features of an UFFD whatever the blocks: EVENT_FORK and
 * EVENT_REMAP are refused.  0 or -EOPNOTSUPP with whybuf.
 */
int pch_ctl_uffd_check(const struct pch_ctl_uffd *m, char *whybuf, size_t whylen);

#endif
