// SPDX-License-Identifier: MIT
/*
 * vcpu.c - vCPU-like threads: they read guest RAM while it is still
 * arriving, and time every access that hits a page not yet resident, i.e.
 * the fault latency as the guest would see it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "util.h"
#include "pch-vm.h"

/* splitmix64: turns (seed, vCPU index) into well-mixed xorshift states. */
static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/*
 * --verify-access: the access to page returned, so the page is mapped and
 * must hold every byte the source sent.  A difference means it became
 * visible before its last byte arrived.  Once the vCPUs are told to stop,
 * pch-vm may have unregistered the RAM (after a failure) and a page that
 * never came reads as zeros: no longer the helper's doing, not counted.
 */
static void check_access(struct vm_vcpu *v, uint64_t page, const uint8_t *p)
{
	struct vm *vm = v->vm;
	uint32_t ps = vm->cfg.image.page_size, i;
	int expected = 0;

	pch_image_fill(&vm->cfg.image, 0, page, v->expect);
	/* a page the balloon discarded reads zeros: verified at the end instead */
	if (!memcmp(v->expect, p, ps) || vm_stopping(vm) || vm_balloon_touched(vm, page))
		return;
	__atomic_store_n(&v->early_reads, v->early_reads + 1, __ATOMIC_RELAXED);
	/* only the first is reported: claim the slot, fill it, publish it */
	if (!__atomic_compare_exchange_n(&vm->early_claimed, &expected, 1, false,
					 __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		return;
	for (i = 0; i < ps && v->expect[i] == p[i]; i++)
		;
	/* the rest of the page may have landed since the memcmp: offset -1 */
	vm->early = (struct vm_early_read){
		.vcpu = v->idx,
		.page = page,
		.offset = i < ps ? (int64_t)i : -1,
		.got = i < ps ? p[i] : 0,
		.want = i < ps ? v->expect[i] : 0,
	};
	__atomic_store_n(&vm->early_published, 1, __ATOMIC_RELEASE);
}

/*
 * Read one u64 of page (at word).  The page's residency (mapped in this
 * process) tells first whether the load will fault (or find the page just
 * installed: the race is part of what the guest sees), so it is timed and
 * recorded.
 */
static void touch(struct vm_vcpu *v, uint64_t page, uint32_t word)
{
	const struct vm *vm = v->vm;
	uint32_t ps = vm->cfg.image.page_size;
	uint8_t *p = vm->ram + page * ps;
	volatile uint64_t *q = (volatile uint64_t *)(p + (size_t)word * 8);
	struct timespec t0, t1;
	sigjmp_buf jb;
	uint64_t ns;

	if (VM_GUARD_BEGIN(jb)) {
		/* a poisoned page: the helper could never get it (a memory error) */
		__atomic_store_n(&v->poisoned, v->poisoned + 1, __ATOMIC_RELAXED);
		__atomic_store_n(&v->accesses, v->accesses + 1, __ATOMIC_RELAXED);
		return;
	}
	if (vm_ram_resident(vm, page)) {
		v->sink += __atomic_load_n(q, __ATOMIC_RELAXED); /* guest memory: a balloon may write it */
	} else {
		clock_gettime(CLOCK_MONOTONIC, &t0);
		v->sink += __atomic_load_n(q, __ATOMIC_RELAXED); /* guest memory: a balloon may write it */
		clock_gettime(CLOCK_MONOTONIC, &t1);
		ns = (uint64_t)(t1.tv_sec - t0.tv_sec) * 1000000000ull + (uint64_t)t1.tv_nsec -
		     (uint64_t)t0.tv_nsec;
		pch_hist_add(&v->hist, ns);
		if (v->flog)
			vm_faultlog_add(v, (uint64_t)t0.tv_sec * 1000000000ull + (uint64_t)t0.tv_nsec,
					ns, page);
		__atomic_store_n(&v->faults, v->faults + 1, __ATOMIC_RELAXED);
		__atomic_store_n(&v->blocked_ns, v->blocked_ns + ns, __ATOMIC_RELAXED);
	}
	if (vm->cfg.verify_access)
		check_access(v, page, p);
	VM_GUARD_END();
	__atomic_store_n(&v->accesses, v->accesses + 1, __ATOMIC_RELAXED);
}

/* seq: read the first word of every page of this vCPU's slice, once. */
static void run_seq(struct vm_vcpu *v)
{
	const struct vm *vm = v->vm;
	uint64_t n = vm->npages, nv = vm->cfg.vcpus;
	uint64_t first = v->idx * n / nv, end = (v->idx + 1) * n / nv;
	uint64_t page;

	for (page = first; page < end && !vm_stopping(vm); page++)
		touch(v, page, 0);
}

/* random and hotset: pick pages until the migration is complete. */
static void run_random(struct vm_vcpu *v, bool hotset)
{
	const struct vm *vm = v->vm;
	uint32_t words = vm->cfg.image.page_size / 8;
	uint64_t page;

	while (!vm_stopping(vm)) {
		if (hotset && vm_rng_below(&v->rng, 10) < 9)
			page = vm->hot_first + vm_rng_below(&v->rng, vm->hot_pages);
		else
			page = vm_rng_below(&v->rng, vm->vcpu_pages);
		touch(v, page, (uint32_t)vm_rng_below(&v->rng, words));
	}
}

static void *vcpu_main(void *arg)
{
	struct vm_vcpu *v = arg;
	char name[16];

	snprintf(name, sizeof(name), "vcpu/%u", v->idx);
	pch_thread_name(name);

	switch (v->vm->cfg.workload) {
	case VM_WL_NONE:
		break;
	case VM_WL_SEQ:
		run_seq(v);
		break;
	case VM_WL_RANDOM:
	case VM_WL_BALLOON:
		run_random(v, false);
		break;
	case VM_WL_HOTSET:
		run_random(v, true);
		break;
	}
	pch_dbg(PCH_DBG_VM, "%s: %llu accesses, %llu faults", name,
		(unsigned long long)v->accesses, (unsigned long long)v->faults);
	return NULL;
}

/* Start the vCPU threads.  0 or -errno (logged). */
int vm_vcpus_start(struct vm *vm)
{
	uint64_t mix;
	unsigned i;
	int ret;

	for (i = 0; i < vm->cfg.vcpus; i++) {
		struct vm_vcpu *v = &vm->vcpu[i];

		/* state from (seed, i); xorshift must not start at 0 */
		mix = vm->cfg.image.seed ^ ((uint64_t)(i + 1) << 32);
		v->rng = splitmix64(&mix) | 1;
		if (vm->cfg.verify_access && !v->expect) {
			v->expect = malloc(vm->cfg.image.page_size);
			if (!v->expect) {
				pch_err("vcpu/%u: no memory for --verify-access", i);
				return -ENOMEM;
			}
		}
		ret = pthread_create(&v->thread, NULL, vcpu_main, v);
		if (ret) {
			pch_err("vcpu/%u: pthread_create: %s", i, strerror(ret));
			return -ret;
		}
		v->started = true;
	}
	return 0;
}

/* Ask every vCPU to stop after its current access. */
void vm_vcpus_stop(struct vm *vm)
{
	__atomic_store_n(&vm->stop, 1, __ATOMIC_RELAXED);
}

/*
 * Join every started vCPU within timeout_ms in total.  0, or -ETIMEDOUT if
 * some are still blocked (on a page that never came).
 */
int vm_vcpus_join(struct vm *vm, int timeout_ms)
{
	uint64_t deadline_ns = pch_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	struct timespec ts;
	unsigned i;
	int ret = 0;

	/* pthread_timedjoin_np takes a CLOCK_REALTIME deadline */
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	for (i = 0; i < vm->cfg.vcpus; i++) {
		struct vm_vcpu *v = &vm->vcpu[i];

		if (!v->started || v->joined)
			continue;
		if (pthread_timedjoin_np(v->thread, NULL, &ts) == 0) {
			v->joined = true;
			continue;
		}
		pch_warn("vcpu/%u still blocked %d ms after stop", i,
			 timeout_ms - pch_ms_until(deadline_ns));
		ret = -ETIMEDOUT;
	}
	return ret;
}

/*
 * Turn the first early read into the run's failure (once).  The vCPU that
 * saw it published it with a release store; the others only counted.
 */
void vm_vcpus_check_early(struct vm *vm)
{
	const struct vm_early_read *e = &vm->early;
	uint64_t total = 0;
	unsigned i;

	if (!__atomic_load_n(&vm->early_published, __ATOMIC_ACQUIRE))
		return;
	for (i = 0; i < vm->cfg.vcpus; i++)
		total += __atomic_load_n(&vm->vcpu[i].early_reads, __ATOMIC_RELAXED);
	if (e->offset >= 0)
		vm_fail(vm, "vcpu/%u: page %llu was mapped before its last byte arrived: "
			"byte %lld is 0x%02x, expected 0x%02x (%llu early reads in all)", e->vcpu,
			(unsigned long long)e->page, (long long)e->offset, e->got, e->want,
			(unsigned long long)total);
	else
		vm_fail(vm, "vcpu/%u: page %llu was mapped before its last byte arrived "
			"(complete by the second look; %llu early reads in all)", e->vcpu,
			(unsigned long long)e->page, (unsigned long long)total);
	__atomic_store_n(&vm->early_published, 0, __ATOMIC_RELAXED);
}

/* Free the vCPUs' buffers. */
void vm_vcpus_free(struct vm *vm)
{
	unsigned i;

	for (i = 0; vm->vcpu && i < vm->cfg.vcpus; i++) {
		free(vm->vcpu[i].expect);
		vm->vcpu[i].expect = NULL;
	}
}
