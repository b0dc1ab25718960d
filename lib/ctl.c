// SPDX-License-Identifier: MIT
/*
 * ctl.c - stateless checks of control-socket messages (lib/ctl.h).  Moved
 * out of the helper's ctl_handle, do_bitmap and do_block unchanged, so that
 * they can be tested and fuzzed on their own.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "ctl.h"
#include "util.h"

/* Length rule of each request type the helper takes. */
static const struct {
	const char *name;
	size_t min_len; /* exact, unless variable */
	bool variable;  /* len may exceed min_len */
} req_types[PCH_CTL_TYPE_MAX] = {
	[PCH_CTL_HELLO] = { "HELLO", sizeof(struct pch_ctl_hello), false },
	[PCH_CTL_BLOCK] = { "BLOCK", sizeof(struct pch_ctl_block), false },
	[PCH_CTL_BITMAP] = { "BITMAP", sizeof(struct pch_ctl_bitmap), true },
	[PCH_CTL_UFFD] = { "UFFD", sizeof(struct pch_ctl_uffd), false },
	[PCH_CTL_RING] = { "RING", sizeof(struct pch_ctl_ring), false },
	[PCH_CTL_START] = { "START", sizeof(struct pch_ctl_simple), false },
	[PCH_CTL_SYNC] = { "SYNC", sizeof(struct pch_ctl_sync), false },
	[PCH_CTL_STATS] = { "STATS", sizeof(struct pch_ctl_simple), false },
	[PCH_CTL_SHUTDOWN] = { "SHUTDOWN", sizeof(struct pch_ctl_simple), false },
	[PCH_CTL_STATE] = { "STATE", sizeof(struct pch_ctl_state), false },
};

/* Header, magic and len == n.  0 or -EBADMSG. */
int pch_ctl_check_hdr(const void *msg, size_t n)
{
	struct pch_ctl_hdr h;

	if (n < sizeof(h))
		return -EBADMSG;
	memcpy(&h, msg, sizeof(h));
	if (h.magic != PCH_CTL_MAGIC || h.len != n)
		return -EBADMSG;
	return 0;
}

/* Name of a request type, NULL if unknown or REPLY. */
const char *pch_ctl_req_name(uint16_t type)
{
	return type < PCH_CTL_TYPE_MAX ? req_types[type].name : NULL;
}

/* Known request type and its length.  0 or -EINVAL with whybuf. */
int pch_ctl_check_len(const struct pch_ctl_hdr *h, size_t n, char *whybuf, size_t whylen)
{
	const char *name = pch_ctl_req_name(h->type);
	size_t min_len;

	if (!name) {
		snprintf(whybuf, whylen, "unknown message type %u", h->type);
		return -EINVAL;
	}
	min_len = req_types[h->type].min_len;
	if (n < min_len || (!req_types[h->type].variable && n != min_len)) {
		/* the helper's message had n as an int: packets are < 64 KiB */
		snprintf(whybuf, whylen, "%s: %d bytes, expected %zu", name, (int)n, min_len);
		return -EINVAL;
	}
	return 0;
}

/* BITMAP range and length against the block.  0 or -EINVAL with whybuf. */
int pch_ctl_bitmap_check(const struct pch_ctl_bitmap *m, uint64_t block_npages,
			 const char *name, char *whybuf, size_t whylen)
{
	size_t words = PCH_DIV_ROUND_UP(m->npages, 64);

	/* npages bounded by the block first, so words * 8 cannot wrap */
	if (m->first_page % 64 || m->npages > block_npages ||
	    m->first_page > block_npages - m->npages || m->hdr.len != sizeof(*m) + words * 8) {
		snprintf(whybuf, whylen, "BITMAP: range or length wrong for block %s", name);
		return -EINVAL;
	}
	return 0;
}

/* BLOCK flags, name, host address and size.  0, -EINVAL or -E2BIG with whybuf. */
int pch_ctl_block_check(const struct pch_ctl_block *m, char *whybuf, size_t whylen)
{
	char name[PCH_BLOCK_NAME_LEN + 1];

	memcpy(name, m->name, PCH_BLOCK_NAME_LEN);
	name[PCH_BLOCK_NAME_LEN] = '\0';
	/* the helper checked it against this host first; a fuzzer has not */
	if (!pch_is_pow2(m->page_size)) {
		snprintf(whybuf, whylen, "BLOCK %s: page size %u not a power of two", name,
			 m->page_size);
		return -EINVAL;
	}
	if (m->flags & ~PCH_CTL_BLOCK_F_FD) {
		snprintf(whybuf, whylen, "BLOCK %s: unknown flags 0x%x", name, m->flags);
		return -EINVAL;
	}
	if (!memchr(m->name, '\0', PCH_BLOCK_NAME_LEN)) {
		snprintf(whybuf, whylen, "BLOCK: name not NUL-terminated");
		return -EINVAL;
	}
	if (m->host_addr & (m->page_size - 1) || m->host_addr + m->length < m->host_addr) {
		snprintf(whybuf, whylen, "BLOCK %s: host address 0x%llx not page aligned or wraps",
			 name, (unsigned long long)m->host_addr);
		return -EINVAL;
	}
	/* page state costs 5 bits a page (+ a byte shared): bound it */
	if (m->length / m->page_size > PCH_CTL_BLOCK_MAX_PAGES) {
		snprintf(whybuf, whylen, "BLOCK %s: %llu pages, at most %llu", name,
			 (unsigned long long)(m->length / m->page_size),
			 (unsigned long long)PCH_CTL_BLOCK_MAX_PAGES);
		return -E2BIG;
	}
	return 0;
}
