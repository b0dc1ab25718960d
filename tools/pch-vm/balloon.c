// SPDX-License-Identifier: MIT
/*
 * balloon.c - --workload balloon: while postcopy runs, a balloon thread
 * gives guest RAM back the way a VMM's balloon does, and unplugs the tail
 * of the RAM the way a hot-unplug does, so that the helper sees memory
 * events (UFFD_EVENT_REMOVE, UFFD_EVENT_UNMAP) among the faults.
 *
 *   discard  random ranges, a page to 256 KiB: MADV_DONTNEED on private
 *            RAM (anon, thp, hugetlb-private), MADV_REMOVE (punches the
 *            memfd) on shared RAM;
 *   reuse    now and then the guest takes a discarded page back: a marker
 *            word is written at its start (the rest must stay zero);
 *   unplug   once, after a few discards, the last 1/64 of the RAM (at
 *            least one page) is munmap()ed.  The vCPUs never touch that
 *            tail (unplugged memory is not the guest's any more), so the
 *            unmap cannot pull memory from under a running access.
 *
 * Every page the balloon touched has a state, set before the operation
 * that makes it true: verification then expects zeros on a discarded page,
 * zeros and the marker on a reused one, and skips unplugged ones.  Old
 * image content on a discarded page is the failure this exists to catch:
 * counted as stale_after_discard.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <json-glib/json-glib.h>

#include "pch/uffd-compat.h"

#include "json.h"
#include "log.h"
#include "util.h"
#include "pch-vm.h"

#define BAL_MAX_BYTES (256u << 10) /* largest discard */
#define BAL_SLEEP_US 2000          /* between discards */
#define BAL_UNPLUG_AFTER 8         /* discards before the tail is unplugged */
#define BAL_BUDGET_DIV 4           /* discard at most 1/4 of RAM, counted with repeats */
#define BAL_MARKER 0xba11000000000000ull

enum { BAL_NONE, BAL_DISCARDED, BAL_REUSED, BAL_UNPLUGGED };

struct vm_balloon {
	pthread_t thread;
	bool started, joined;
	uint8_t *state;          /* BAL_* per page; written by the balloon, read after its join */
	uint64_t unplug_first;   /* the tail: pages [unplug_first, npages) */
	uint64_t rng;
	/* counters: the balloon thread writes (relaxed), main reads */
	uint64_t discards, pages_discarded, pages_reused, pages_unplugged, errors;
	/* verification */
	uint64_t checked, stale_after_discard, wrong_after_discard, marker_bad;
	uint8_t *expect;         /* one page of the image */
};

uint64_t vm_balloon_uffd_features(void)
{
	return UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP;
}

int vm_balloon_init(struct vm *vm)
{
	struct vm_balloon *b = g_new0(struct vm_balloon, 1);
	uint64_t tail = PCH_MAX(vm->npages / 64, 1);

	if (vm->npages < 2 * tail + 1) {
		g_free(b);
		vm_fail(vm, "--workload balloon needs more RAM than %llu pages",
			(unsigned long long)vm->npages);
		return -EINVAL;
	}
	b->state = g_malloc0(vm->npages);
	b->expect = g_malloc(vm->cfg.image.page_size);
	b->unplug_first = vm->npages - tail;
	b->rng = (vm->cfg.image.seed ^ 0xba11005eedull) | 1;
	vm->balloon = b;
	/* the vCPUs stay off the tail that will be unplugged */
	vm->vcpu_pages = b->unplug_first;
	return 0;
}

static void count(uint64_t *c, uint64_t n)
{
	__atomic_store_n(c, *c + n, __ATOMIC_RELAXED);
}

static void set_state(struct vm_balloon *b, uint64_t first, uint64_t n, uint8_t s)
{
	uint64_t p;

	for (p = first; p < first + n; p++)
		__atomic_store_n(&b->state[p], s, __ATOMIC_RELEASE);
}

bool vm_balloon_touched(const struct vm *vm, uint64_t page)
{
	return vm->balloon && __atomic_load_n(&vm->balloon->state[page], __ATOMIC_ACQUIRE);
}

/* Give pages [first, first + n) back: their content is gone, they read zero. */
static void discard(struct vm *vm, uint64_t first, uint64_t n)
{
	struct vm_balloon *b = vm->balloon;
	uint32_t ps = vm->cfg.image.page_size;
	int advice = vm->cfg.backing->shared ? MADV_REMOVE : MADV_DONTNEED;

	set_state(b, first, n, BAL_DISCARDED);
	/* first in the page state: no helper, even one taking over, refills them */
	vm_state_discard(vm, first, n);
	if (madvise(vm->ram + first * ps, n * ps, advice) < 0) {
		/* logged here, failed by main (vm_balloon_finish): vm_fail is main's */
		if (!b->errors)
			pch_err("balloon: %s of %llu pages at page %llu: %s",
				advice == MADV_REMOVE ? "MADV_REMOVE" : "MADV_DONTNEED",
				(unsigned long long)n, (unsigned long long)first, strerror(errno));
		count(&b->errors, 1);
		return;
	}
	count(&b->discards, 1);
	count(&b->pages_discarded, n);
}

/* The guest takes a discarded page back: it writes one word at its start. */
static void reuse(struct vm *vm, uint64_t page)
{
	struct vm_balloon *b = vm->balloon;
	volatile uint64_t *w = (volatile uint64_t *)(vm->ram + page * vm->cfg.image.page_size);

	__atomic_store_n(w, BAL_MARKER | page, __ATOMIC_RELAXED); /* a vCPU may read it */
	__atomic_store_n(&b->state[page], BAL_REUSED, __ATOMIC_RELEASE);
	count(&b->pages_reused, 1);
}

/* Hot-unplug: unmap the tail of the RAM (registered: an UNMAP event). */
static void unplug(struct vm *vm)
{
	struct vm_balloon *b = vm->balloon;
	uint32_t ps = vm->cfg.image.page_size;
	uint64_t n = vm->npages - b->unplug_first;

	set_state(b, b->unplug_first, n, BAL_UNPLUGGED);
	vm_state_discard(vm, b->unplug_first, n);
	if (munmap(vm->ram + b->unplug_first * ps, n * ps) < 0) {
		pch_err("balloon: munmap of the last %llu pages: %s", (unsigned long long)n,
			strerror(errno));
		count(&b->errors, 1);
		return;
	}
	count(&b->pages_unplugged, n);
	pch_info("balloon: unplugged the last %llu pages", (unsigned long long)n);
}

static void *balloon_main(void *arg)
{
	struct vm *vm = arg;
	struct vm_balloon *b = vm->balloon;
	uint32_t ps = vm->cfg.image.page_size;
	uint64_t max = PCH_MAX(BAL_MAX_BYTES / ps, 1), budget = vm->npages / BAL_BUDGET_DIV;
	bool unplugged = false;

	pch_thread_name("balloon");
	while (!vm_stopping(vm)) {
		struct timespec ts = { 0, BAL_SLEEP_US * 1000 };

		if (b->pages_discarded < budget) {
			uint64_t n = 1 + vm_rng_below(&b->rng, max);
			uint64_t first = vm_rng_below(&b->rng, vm->vcpu_pages - n + 1);

			discard(vm, first, n);
			if (vm_rng_below(&b->rng, 3) == 0)
				reuse(vm, first + vm_rng_below(&b->rng, n));
		}
		if (!unplugged && b->discards >= BAL_UNPLUG_AFTER) {
			unplug(vm);
			unplugged = true;
		}
		nanosleep(&ts, NULL);
	}
	return NULL;
}

int vm_balloon_start(struct vm *vm)
{
	int ret = pthread_create(&vm->balloon->thread, NULL, balloon_main, vm);

	if (ret) {
		vm_fail(vm, "balloon: pthread_create: %s", strerror(ret));
		return -ret;
	}
	vm->balloon->started = true;
	return 0;
}

int vm_balloon_join(struct vm *vm, int timeout_ms)
{
	struct vm_balloon *b = vm->balloon;
	struct timespec ts;

	if (!b || !b->started || b->joined)
		return 0;
	/* a discard waits until the helper reads its event: never forever */
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	if (pthread_timedjoin_np(b->thread, NULL, &ts)) {
		pch_warn("balloon: still blocked %d ms after stop (a memory event nobody reads?)",
			 timeout_ms);
		return -ETIMEDOUT;
	}
	b->joined = true;
	pch_info("balloon: %llu discards of %llu pages in all, %llu pages reused, "
		 "%llu unplugged", (unsigned long long)b->discards,
		 (unsigned long long)b->pages_discarded, (unsigned long long)b->pages_reused,
		 (unsigned long long)b->pages_unplugged);
	return 0;
}

static bool all_zero(const uint8_t *p, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

int vm_balloon_check_page(struct vm *vm, uint64_t page, const uint8_t *got)
{
	struct vm_balloon *b = vm->balloon;
	uint32_t ps = vm->cfg.image.page_size;
	uint8_t s = b ? b->state[page] : BAL_NONE;
	size_t from = 0;
	uint64_t marker = 0;

	switch (s) {
	case BAL_NONE:
		return -1;
	case BAL_UNPLUGGED:
		return 2;
	case BAL_REUSED:
		memcpy(&marker, got, sizeof(marker));
		if (marker != (BAL_MARKER | page)) {
			if (b->marker_bad++ < 5)
				pch_err("balloon: page %llu: reused, marker 0x%016llx, expected 0x%016llx",
					(unsigned long long)page, (unsigned long long)marker,
					(unsigned long long)(BAL_MARKER | page));
		}
		from = sizeof(marker);
		break;
	default:
		break;
	}
	b->checked++;
	if (all_zero(got + from, ps - from))
		return s == BAL_REUSED && marker != (BAL_MARKER | page) ? 0 : 1;
	/* not zero: the source's old content, or something else entirely */
	pch_image_fill(&vm->cfg.image, 0, page, b->expect);
	if (!memcmp(got + from, b->expect + from, ps - from)) {
		if (b->stale_after_discard++ < 10)
			pch_err("balloon: page %llu was discarded%s, yet holds its old content: "
				"stale after discard", (unsigned long long)page,
				s == BAL_REUSED ? " and reused" : "");
	} else if (b->wrong_after_discard++ < 10) {
		pch_err("balloon: page %llu was discarded%s, yet is neither zero nor its old "
			"content", (unsigned long long)page, s == BAL_REUSED ? " and reused" : "");
	}
	return 0;
}

uint64_t vm_balloon_unplugged(const struct vm *vm)
{
	return vm->balloon ? __atomic_load_n(&vm->balloon->pages_unplugged, __ATOMIC_RELAXED) : 0;
}

void vm_balloon_finish(struct vm *vm)
{
	struct vm_balloon *b = vm->balloon;

	if (!b)
		return;
	if (b->errors)
		vm_fail(vm, "balloon: %llu discards or unplugs failed (see the log)",
			(unsigned long long)b->errors);
	if (b->stale_after_discard)
		vm_fail(vm, "balloon: %llu discarded pages hold their old content "
			"(stale_after_discard): an install landed after the discard",
			(unsigned long long)b->stale_after_discard);
	if (b->wrong_after_discard || b->marker_bad)
		vm_fail(vm, "balloon: %llu discarded pages are neither zero nor old content, "
			"%llu reused pages lost their marker",
			(unsigned long long)b->wrong_after_discard, (unsigned long long)b->marker_bad);
}

void vm_balloon_report(const struct vm *vm, struct _JsonBuilder *jb)
{
	const struct vm_balloon *b = vm->balloon;

	if (!b)
		return;
	json_builder_set_member_name(jb, "balloon");
	json_builder_begin_object(jb);
	pch_json_int(jb, "discards", __atomic_load_n(&b->discards, __ATOMIC_RELAXED));
	pch_json_int(jb, "pages_discarded", __atomic_load_n(&b->pages_discarded, __ATOMIC_RELAXED));
	pch_json_int(jb, "pages_reused", __atomic_load_n(&b->pages_reused, __ATOMIC_RELAXED));
	pch_json_int(jb, "pages_unplugged", __atomic_load_n(&b->pages_unplugged, __ATOMIC_RELAXED));
	pch_json_int(jb, "pages_checked", b->checked);
	pch_json_int(jb, "stale_after_discard", b->stale_after_discard);
	pch_json_int(jb, "wrong_after_discard", b->wrong_after_discard);
	pch_json_int(jb, "marker_bad", b->marker_bad);
	pch_json_int(jb, "errors", __atomic_load_n(&b->errors, __ATOMIC_RELAXED));
	json_builder_end_object(jb);
	/* at the top level too, where a test looks first */
	pch_json_int(jb, "stale_after_discard", b->stale_after_discard);
}

void vm_balloon_free(struct vm *vm)
{
	if (!vm->balloon)
		return;
	g_free(vm->balloon->state);
	g_free(vm->balloon->expect);
	g_free(vm->balloon);
	vm->balloon = NULL;
}
