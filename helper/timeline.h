/* SPDX-License-Identifier: MIT */
/*
 * timeline.h - pch-helper --timeline FILE: the migration's progress every
 * 10 ms from START to COMPLETE (or the end), as CSV
 * t_us,pages_inplace,pages_bulk,pages_urgent,faults.  Sampled by main from
 * counters the threads keep anyway; nothing on the fault or bulk path.
 */
#ifndef PCH_HELPER_TIMELINE_H
#define PCH_HELPER_TIMELINE_H

struct helper;

#define TIMELINE_PERIOD_MS 10
/* Rows kept: one hour at one per period; later ones are counted, not kept. */
#define TIMELINE_MAX_ROWS (3600u * 1000u / TIMELINE_PERIOD_MS)

/*
 * Main loop, every round: once START has come, record a row when one is
 * due, and a last one when the migration is complete.  Returns how long
 * main may sleep (ms, at most max_ms) before the next row is due.
 */
int timeline_tick(struct helper *h, int max_ms);
/*
 * At exit: a last row if the migration ended without COMPLETE, then write
 * h->o.timeline_file (just the header if START never came).  0 or -errno
 * (logged).  Without --timeline: nothing, 0.
 */
int timeline_write(struct helper *h);
void timeline_free(struct helper *h);

#endif
