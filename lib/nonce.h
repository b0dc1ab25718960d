/* SPDX-License-Identifier: MIT */
/*
 * nonce.h - a bounded set of 64-bit nonces: the source's replay cache of
 * hello nonces (docs/protocol.md 2.1).  Not thread-safe: one owner (the
 * source's accept loop).
 *
 * The set never forgets: when it holds max nonces it refuses to add more
 * (-ENOSPC) rather than evict the oldest, because evicting a nonce would
 * make the hello that carried it replayable again.  Only hellos whose
 * authenticator verified are added, so only a holder of the session key
 * can fill it.
 */
#ifndef PCH_NONCE_H
#define PCH_NONCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pch_nonce_set {
	uint64_t *slot; /* open addressing, linear probing; 0: empty */
	size_t nslots;  /* a power of two, at least 2 * max */
	size_t n, max;  /* nonces held, and the most it holds */
	bool has_zero;  /* nonce 0, which cannot live in a slot */
};

/* An empty set that holds up to max (1 .. 2^24) nonces.  0 or -EINVAL/-ENOMEM. */
int pch_nonce_set_init(struct pch_nonce_set *s, size_t max);
void pch_nonce_set_free(struct pch_nonce_set *s);
/*
 * Add nonce.  0 if it was new (now held), -EEXIST if the set holds it
 * already, -ENOSPC if it was new but the set is full (not added).
 */
int pch_nonce_set_add(struct pch_nonce_set *s, uint64_t nonce);
/* True if the set holds nonce. */
bool pch_nonce_set_has(const struct pch_nonce_set *s, uint64_t nonce);

#endif
