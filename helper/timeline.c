// SPDX-License-Identifier: MIT
/*
 * timeline.c - --timeline FILE: pages in place, by path, and faults over
 * time.  Main samples the per-thread counters (relaxed loads, as the stats
 * do) every TIMELINE_PERIOD_MS into rows held in memory, grown by doubling
 * up to TIMELINE_MAX_ROWS, and writes them at exit.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helper_i.h"
#include "log.h"
#include "timeline.h"
#include "util.h"

struct tl_row {
	uint64_t t_us, inplace, bulk, urgent, faults;
};

struct timeline {
	struct tl_row *rows;
	size_t n, cap;
	uint64_t dropped;  /* rows past TIMELINE_MAX_ROWS (or when memory ran out) */
	uint64_t next_ns;  /* next row due */
	bool done;         /* the last row is in */
};

/* Sum one counter over the fault thread and the rx threads. */
#define SUM(h, field)                                                          \
	({                                                                     \
		uint64_t s_ = STAT_GET(&(h)->ft.st, field);                    \
		for (unsigned i_ = 0; i_ < (h)->nrx; i_++)                    \
			s_ += STAT_GET(&(h)->rx[i_].st, field);                \
		s_;                                                            \
	})

/*
 * Make room for a row; when no more fit, the last one (last) replaces the
 * one before.  The row, or NULL (counted as dropped).
 */
static struct tl_row *new_row(struct timeline *tl, bool last)
{
	struct tl_row *r;

	if (tl->n == tl->cap && last && tl->n == TIMELINE_MAX_ROWS) {
		tl->n--;
		tl->dropped++;
	}
	if (tl->n == tl->cap) {
		size_t cap = tl->cap ? tl->cap * 2 : 1024;

		cap = PCH_MIN(cap, (size_t)TIMELINE_MAX_ROWS);
		r = cap > tl->cap ? realloc(tl->rows, cap * sizeof(*r)) : NULL;
		if (!r) {
			tl->dropped++;
			return NULL;
		}
		tl->rows = r;
		tl->cap = cap;
	}
	return &tl->rows[tl->n++];
}

/* Record the counters now. */
static void add_row(struct helper *h, struct timeline *tl, uint64_t now, bool last)
{
	struct tl_row *r = new_row(tl, last);

	if (!r)
		return;
	r->t_us = now / 1000;
	r->inplace = pages_inplace(h);
	r->bulk = SUM(h, pages_bulk);
	r->urgent = SUM(h, pages_urgent);
	r->faults = SUM(h, faults);
}

/*
 * The rows, allocated once START has come, with the first row at START:
 * the threads start after it, so only the pages premarked were in place.
 * NULL before START, or without memory (the file gets the header only).
 */
static struct timeline *tl_get(struct helper *h)
{
	struct timeline *tl = h->tl;
	struct tl_row *r;

	if (tl || !h->o.timeline_file || !h->t_start_ns)
		return tl;
	tl = h->tl = calloc(1, sizeof(*tl));
	r = tl ? new_row(tl, false) : NULL;
	if (r) {
		*r = (struct tl_row){ .t_us = h->t_start_ns / 1000, .inplace = h->premarked };
		tl->next_ns = h->t_start_ns + TIMELINE_PERIOD_MS * 1000000ull;
	}
	return tl;
}

int timeline_tick(struct helper *h, int max_ms)
{
	struct timeline *tl = tl_get(h);
	uint64_t now, period = TIMELINE_PERIOD_MS * 1000000ull;

	if (!tl || tl->done)
		return max_ms;
	now = pch_now_ns();
	if (__atomic_load_n(&h->complete, __ATOMIC_ACQUIRE)) {
		add_row(h, tl, now, true);
		tl->done = true;
		return max_ms;
	}
	if (now >= tl->next_ns) {
		add_row(h, tl, now, false);
		/* on a 10 ms grid from START; a late round skips rows, not bunches them */
		tl->next_ns += period;
		if (tl->next_ns <= now)
			tl->next_ns = now + period - (now - tl->next_ns) % period;
	}
	return PCH_MIN(max_ms, (int)((tl->next_ns - now + 999999) / 1000000));
}

int timeline_write(struct helper *h)
{
	const char *path = h->o.timeline_file;
	struct timeline *tl = tl_get(h);
	size_t i;
	FILE *f;
	int ret = 0;

	if (!path)
		return 0;
	if (tl && !tl->done) {
		add_row(h, tl, pch_now_ns(), true);
		tl->done = true;
	}
	f = fopen(path, "w");
	if (!f) {
		ret = -errno;
		pch_err("--timeline %s: %s", path, strerror(errno));
		return ret;
	}
	fputs("t_us,pages_inplace,pages_bulk,pages_urgent,faults\n", f);
	for (i = 0; tl && i < tl->n; i++) {
		const struct tl_row *r = &tl->rows[i];

		fprintf(f, "%llu,%llu,%llu,%llu,%llu\n", (unsigned long long)r->t_us,
			(unsigned long long)r->inplace, (unsigned long long)r->bulk,
			(unsigned long long)r->urgent, (unsigned long long)r->faults);
	}
	if (ferror(f))
		ret = -EIO;
	if (fclose(f) && !ret)
		ret = -errno;
	if (ret)
		pch_err("--timeline %s: write failed: %s", path, strerror(-ret));
	else if (tl && tl->dropped)
		pch_warn("--timeline %s: %llu rows not kept (at most %u)", path,
			 (unsigned long long)tl->dropped, TIMELINE_MAX_ROWS);
	return ret;
}

void timeline_free(struct helper *h)
{
	if (h->tl)
		free(h->tl->rows);
	free(h->tl);
	h->tl = NULL;
}
