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

#include "codec.h"
#include "ctl.h"
#include "util.h"
#include "pch/uffd-compat.h"

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

/* Header, size, magic, flags 0 and len == n.  0, -EBADMSG or -E2BIG. */
int pch_ctl_check_hdr(const void *msg, size_t n)
{
	struct pch_ctl_hdr h;

	if (n < sizeof(h))
		return -EBADMSG;
	if (n > PCH_CTL_MAX_MSG)
		return -E2BIG;
	memcpy(&h, msg, sizeof(h));
	if (h.magic != PCH_CTL_MAGIC || h.flags || h.len != n)
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
	/* fields that must be 0 (STATE's: pch_ctl_state_check), now that n covers them */
	switch (h->type) {
	case PCH_CTL_START:
	case PCH_CTL_STATS:
	case PCH_CTL_SHUTDOWN: {
		const struct pch_ctl_simple *m = (const void *)h;

		if (m->flags || m->reserved) {
			snprintf(whybuf, whylen, "%s: flags or reserved not 0", name);
			return -EINVAL;
		}
		break;
	}
	case PCH_CTL_RING:
		if (((const struct pch_ctl_ring *)(const void *)h)->reserved) {
			snprintf(whybuf, whylen, "RING: reserved not 0");
			return -EINVAL;
		}
		break;
	case PCH_CTL_BITMAP:
		if (((const struct pch_ctl_bitmap *)(const void *)h)->reserved) {
			snprintf(whybuf, whylen, "BITMAP: reserved not 0");
			return -EINVAL;
		}
		break;
	}
	return 0;
}

/* BITMAP range and length against the block.  0 or -EINVAL with whybuf. */
int pch_ctl_bitmap_check(const struct pch_ctl_bitmap *m, uint64_t block_npages,
			 const char *name, char *whybuf, size_t whylen)
{
	size_t words = PCH_DIV_ROUND_UP(m->npages, 64);

	if (m->npages > PCH_CTL_BITMAP_MAX_PAGES) {
		snprintf(whybuf, whylen, "BITMAP: %llu pages for block %s, at most %llu a packet",
			 (unsigned long long)m->npages, name,
			 (unsigned long long)PCH_CTL_BITMAP_MAX_PAGES);
		return -E2BIG;
	}
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

/* HELLO version, role, then name.  0, -EPROTO or -EINVAL with whybuf. */
int pch_ctl_hello_check(const struct pch_ctl_hello *m, char *whybuf, size_t whylen)
{
	size_t i;

	if (m->version != PCH_CTL_VERSION) {
		snprintf(whybuf, whylen, "HELLO: control protocol version %u, helper speaks %u",
			 m->version, PCH_CTL_VERSION);
		return -EPROTO;
	}
	if (m->role != PCH_CTL_ROLE_VMM && m->role != PCH_CTL_ROLE_MONITOR) {
		snprintf(whybuf, whylen, "HELLO: unknown role %u", m->role);
		return -EINVAL;
	}
	/* the name goes to the log: a C string, no control characters (as block names) */
	if (!memchr(m->name, '\0', sizeof(m->name))) {
		snprintf(whybuf, whylen, "HELLO: name not NUL-terminated");
		return -EINVAL;
	}
	for (i = 0; m->name[i]; i++) {
		unsigned char c = (unsigned char)m->name[i];

		if (c < 0x20 || c == 0x7f) {
			snprintf(whybuf, whylen, "HELLO: character 0x%02x in name", c);
			return -EINVAL;
		}
	}
	return 0;
}

/* STATE flags and reserved.  0 or -EINVAL with whybuf. */
int pch_ctl_state_check(const struct pch_ctl_state *m, char *whybuf, size_t whylen)
{
	if (m->flags || m->reserved) {
		snprintf(whybuf, whylen, "STATE: expected one fd and no flags");
		return -EINVAL;
	}
	return 0;
}

/* STATE size against the blocks.  0 or -EINVAL with whybuf. */
int pch_ctl_state_size_check(const struct pch_ctl_state *m, const struct pch_blocktab *t,
			     char *whybuf, size_t whylen)
{
	uint64_t npages[PCH_MAX_BLOCKS], need;
	unsigned i;

	for (i = 0; i < t->count && i < PCH_MAX_BLOCKS; i++)
		npages[i] = t->b[i].npages;
	need = pch_state_size(i, npages);
	if (m->size != need) {
		snprintf(whybuf, whylen, "STATE: %llu bytes, the %u blocks need %llu",
			 (unsigned long long)m->size, t->count, (unsigned long long)need);
		return -EINVAL;
	}
	return 0;
}

/* STATE memfd header and descriptors.  0 or -EINVAL with whybuf. */
int pch_ctl_state_layout_check(const struct pch_state_hdr *sh, const struct pch_state_block *sb,
			       uint64_t size, const struct pch_blocktab *t, char *whybuf,
			       size_t whylen)
{
	unsigned i;

	if (sh->magic != PCH_STATE_MAGIC || sh->version != PCH_STATE_VERSION ||
	    sh->nr_blocks != t->count || sh->size != size) {
		snprintf(whybuf, whylen, "STATE: header does not describe the %u blocks announced",
			 t->count);
		return -EINVAL;
	}
	for (i = 0; i < t->count; i++) {
		uint64_t w = pch_state_words(t->b[i].npages);

		/* npages = size >> page shift < 2^52: 5 * 8 * w cannot wrap */
		if (sb[i].npages != t->b[i].npages || sb[i].page_size != t->b[i].page_size ||
		    sb[i].words != w || sb[i].offset % 64 || sb[i].offset > size ||
		    PCH_STATE_BITMAPS * 8 * w > size - sb[i].offset) {
			snprintf(whybuf, whylen, "STATE: block %u descriptor does not match BLOCK %s",
				 i, t->b[i].name);
			return -EINVAL;
		}
	}
	return 0;
}

/* SYNC epoch above the last asked.  0 or -EINVAL with whybuf. */
int pch_ctl_sync_check(const struct pch_ctl_sync *m, uint64_t asked, char *whybuf,
		       size_t whylen)
{
	if (m->epoch <= asked) {
		snprintf(whybuf, whylen, "SYNC: epoch %llu not above %llu",
			 (unsigned long long)m->epoch, (unsigned long long)asked);
		return -EINVAL;
	}
	return 0;
}

/* UFFD features refused whatever the blocks.  0 or -EOPNOTSUPP with whybuf. */
int pch_ctl_uffd_check(const struct pch_ctl_uffd *m, char *whybuf, size_t whylen)
{
	if (m->features & UFFD_FEATURE_EVENT_FORK) {
		snprintf(whybuf, whylen, "UFFD: features 0x%llx include EVENT_FORK: a forked VMM's "
			 "memory is not served by this helper", (unsigned long long)m->features);
		return -EOPNOTSUPP;
	}
	if (m->features & UFFD_FEATURE_EVENT_REMAP) {
		snprintf(whybuf, whylen, "UFFD: features 0x%llx include EVENT_REMAP: guest RAM "
			 "that moves (mremap) is not supported; use EVENT_REMOVE and EVENT_UNMAP",
			 (unsigned long long)m->features);
		return -EOPNOTSUPP;
	}
	return 0;
}
