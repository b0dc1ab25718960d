/* SPDX-License-Identifier: MIT */
/*
 * ring.h - the shared-memory event ring, helper (producer) -> VMM (consumer).
 *
 * The VMM creates a memfd holding struct pch_ring_hdr followed by nr_entries
 * struct pch_ring_event, plus an eventfd, and hands both to the helper
 * (PCH_CTL_RING).  The helper writes an event at index head % nr_entries,
 * then publishes head + 1 with a store-release, then writes 1 to the eventfd.
 * The consumer loads head with load-acquire, reads the event, and publishes
 * tail + 1 with a store-release.  head and tail are free-running 64-bit
 * counters, each on its own cache line.  Neither side trusts the other's
 * index: head - tail > nr_entries means the ring is corrupt.
 *
 * The producer also stores its CLOCK_MONOTONIC time in heartbeat_ns at
 * least every PCH_RING_HEARTBEAT_MS while it runs, so a consumer can tell a
 * hung or stopped helper from a quiet one: it watches the value change
 * (its own clock, not the value, measures the silence: the two may sit in
 * different time namespaces).  0 until the first beat.
 *
 * Version history:
 *   1  first version; heartbeat_ns added later in the producer line's
 *      padding (0 from a producer without it: no heartbeat to watch).
 */
#ifndef PCH_RING_H
#define PCH_RING_H

#include <stddef.h>
#include <stdint.h>

#define PCH_RING_MAGIC 0x45484350u /* "PCHE" */
#define PCH_RING_VERSION 1
#define PCH_RING_MAX_ENTRIES 4096u
#define PCH_RING_HEARTBEAT_MS 250u /* the producer beats at least this often */

struct pch_ring_hdr {
	/* cache line 0: written once by the creator */
	uint32_t magic;      /* PCH_RING_MAGIC */
	uint16_t version;    /* PCH_RING_VERSION */
	uint16_t entry_size; /* sizeof(struct pch_ring_event) */
	uint32_t nr_entries; /* power of two, 2..PCH_RING_MAX_ENTRIES */
	uint32_t reserved0;
	uint8_t pad0[48];
	/* cache line 1: producer index, producer heartbeat */
	uint64_t head;
	uint64_t heartbeat_ns;
	uint8_t pad1[48];
	/* cache line 2: consumer index */
	uint64_t tail;
	uint8_t pad2[56];
};
_Static_assert(sizeof(struct pch_ring_hdr) == 192, "pch_ring_hdr size");
_Static_assert(offsetof(struct pch_ring_hdr, head) == 64, "ring head line");
_Static_assert(offsetof(struct pch_ring_hdr, tail) == 128, "ring tail line");
_Static_assert(offsetof(struct pch_ring_hdr, heartbeat_ns) == 72, "ring heartbeat");

enum pch_ring_type {
	PCH_RING_SYNC_REACHED = 1, /* epoch: every page before SYNC(epoch) in */
	PCH_RING_COMPLETE = 2,     /* every page in place; ranges unregistered */
	PCH_RING_ERROR = 3,        /* code: -errno; text: what failed; epoch: pages poisoned */
	PCH_RING_PAUSED = 4,       /* the source is lost, reconnecting; text: why; epoch: resumes so far */
	PCH_RING_RESUMED = 5,      /* streaming again; epoch: resumes so far (this one included) */
	PCH_RING_TYPE_MAX
};

struct pch_ring_event {
	uint16_t type;  /* enum pch_ring_type */
	uint16_t flags; /* 0 */
	int32_t code;   /* ERROR: -errno; else 0 */
	uint64_t epoch; /* SYNC_REACHED: the epoch; ERROR: pages poisoned (never to arrive) */
	uint64_t time_ns; /* CLOCK_MONOTONIC when posted */
	char text[40];  /* NUL-terminated */
};
_Static_assert(sizeof(struct pch_ring_event) == 64, "pch_ring_event size");

#define PCH_RING_BYTES(n) \
	(sizeof(struct pch_ring_hdr) + (size_t)(n) * sizeof(struct pch_ring_event))

#endif /* PCH_RING_H */
