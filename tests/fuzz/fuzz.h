/* SPDX-License-Identifier: MIT */
/*
 * fuzz.h - what the libFuzzer harnesses of tests/fuzz share: the fixed RAM
 * block table and session they check input against, and FUZZ_ASSERT for the
 * invariants a check that passed promises (a broken one is a real bug).
 */
#ifndef PCH_FUZZ_H
#define PCH_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "codec.h"

#define FUZZ_ASSERT(cond)                                                                          \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__,      \
				#cond);                                                            \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/*
 * The table every harness checks against: 4 KiB and 2 MiB pages, a block
 * whose page count is a multiple of 64 and one whose count is not.
 */
static inline const struct pch_blocktab *fuzz_table(void)
{
	static struct pch_blocktab t;
	static int done;
	const char *why = NULL;

	if (!done) {
		if (pch_blocktab_add(&t, "pc.ram", 1ull << 20, 4096, PCH_BACKING_ANON, &why) ||
		    pch_blocktab_add(&t, "pc.rom", 100 * 4096, 4096, PCH_BACKING_MEMFD, &why) ||
		    pch_blocktab_add(&t, "huge.ram", 8ull << 20, 2u << 20, PCH_BACKING_HUGETLB,
				     &why)) {
			fprintf(stderr, "fuzz table: %s\n", why);
			abort();
		}
		done = 1;
	}
	return &t;
}

/* A fixed test session: id 0x11..., key 0x22... */
static inline const struct pch_session *fuzz_session(void)
{
	static struct pch_session s;

	memset(s.id, 0x11, sizeof(s.id));
	memset(s.key, 0x22, sizeof(s.key));
	return &s;
}

#endif
