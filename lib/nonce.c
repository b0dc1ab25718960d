// SPDX-License-Identifier: MIT
/*
 * nonce.c - a bounded set of 64-bit nonces (the source's replay cache).
 *
 * A fixed open-addressing table, allocated once, at most half full: a
 * lookup is a few probes, and adding never allocates.  Nonces are hashed
 * through a 64-bit finalizer, so a peer with a poor random generator
 * (sequential nonces) does not make long probe runs.
 */
#include <errno.h>
#include <stdlib.h>

#include "nonce.h"

#define NONCE_MAX_MAX (1u << 24)

/* splitmix64's finalizer: every input bit moves every output bit. */
static uint64_t mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

int pch_nonce_set_init(struct pch_nonce_set *s, size_t max)
{
	size_t n = 2;

	s->slot = NULL;
	s->n = s->nslots = 0;
	s->has_zero = false;
	if (!max || max > NONCE_MAX_MAX)
		return -EINVAL;
	while (n < 2 * max)
		n <<= 1;
	s->slot = calloc(n, sizeof(*s->slot));
	if (!s->slot)
		return -ENOMEM;
	s->nslots = n;
	s->max = max;
	return 0;
}

void pch_nonce_set_free(struct pch_nonce_set *s)
{
	free(s->slot);
	s->slot = NULL;
	s->n = s->nslots = s->max = 0;
	s->has_zero = false;
}

/* The slot that holds nonce, or the empty slot where it would go. */
static size_t find(const struct pch_nonce_set *s, uint64_t nonce)
{
	size_t mask = s->nslots - 1, i = (size_t)mix(nonce) & mask;

	/* never full: at most half the slots are used, so this ends */
	while (s->slot[i] && s->slot[i] != nonce)
		i = (i + 1) & mask;
	return i;
}

bool pch_nonce_set_has(const struct pch_nonce_set *s, uint64_t nonce)
{
	if (!s->slot)
		return false;
	if (!nonce)
		return s->has_zero;
	return s->slot[find(s, nonce)] == nonce;
}

int pch_nonce_set_add(struct pch_nonce_set *s, uint64_t nonce)
{
	size_t i;

	if (!s->slot)
		return -ENOSPC;
	if (!nonce) {
		if (s->has_zero)
			return -EEXIST;
	} else {
		i = find(s, nonce);
		if (s->slot[i] == nonce)
			return -EEXIST;
	}
	/* a replay is a replay even when full: -EEXIST was checked first */
	if (s->n >= s->max)
		return -ENOSPC;
	if (!nonce)
		s->has_zero = true;
	else
		s->slot[i] = nonce;
	s->n++;
	return 0;
}
