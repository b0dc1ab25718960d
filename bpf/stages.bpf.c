// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * stages.bpf.c - where the time of one userfaultfd fault goes: the USDT
 * probes of pch-helper and pch-source (lib/probes.h) between two
 * tracepoints of the faulting thread.
 *
 *   page_fault_user (tid, page)             the vCPU thread faults
 *     -> fault_read (page, ptid)             queue: the helper read the uffd
 *     -> request_sent (page, id)             decide: the request is queued
 *     -> [request_received, page_sent (id)]  (source traced: its service)
 *     -> page_arrived (id, URGENT)           network: the answer is in
 *     -> page_installed (range holds page)   install: UFFDIO_COPY done
 *     -> sched_switch next_pid = tid         wake: the thread runs again
 *
 * One entry per faulting thread (a thread waits for one fault at a time)
 * keyed by tid; the page address (4 KiB aligned) and the request id point
 * to it.  fault_read finds its thread by ptid (UFFD_FEATURE_THREAD_ID),
 * else by the last thread that faulted on the page.
 *
 * The thread "runs again" at its first switch-in after it was switched
 * out asleep (S: handle_userfault() sleeps TASK_INTERRUPTIBLE) since the
 * fault.  The install's ioctl wakes it before page_installed fires: when
 * it is switched in first, install ends there and wake is 0.  When it
 * never left the CPU (the page landed before it slept) wake is 0 too.
 * A thread that runs again before the answer is installed was served by
 * another path (bulk install, zero page, a duplicate fault): counted by
 * where it was, never in the stages.
 *
 * The tables are LRU hashes: when full, the oldest entry goes, and that
 * fault is counted as unmatched where it is next looked up.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>

#include "stages.h"
#include "target.bpf.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* -- COMMAND or every process: the USDT probes too are of targets only */
const volatile bool usdt_filter = false;
/* -p without --vm: faults of any process until the first one is matched */
const volatile bool learn_vm = false;

#define PAGE_MASK_4K (~0xfffull)
#define SWEEP_BIT (1ull << 63)

enum fstate {
	FS_FAULT,     /* page_fault_user seen */
	FS_READ,      /* fault_read */
	FS_REQ,       /* request_sent */
	FS_ARRIVED,   /* page_arrived */
	FS_INSTALLED, /* page_installed, thread off CPU: waiting for switch-in */
	FS_DONE,      /* accounted */
};

struct flt {
	__u64 page;
	__u64 id;
	__u64 t_fault, t_read, t_req, t_srecv, t_ssent, t_arr, t_inst, t_run;
	__u64 state;    /* enum fstate, changed by move() where threads race */
	__u32 tgid;
	__u8 out;       /* switched out since the fault, not yet in again */
	__u8 slept;     /* switched out in S since the fault */
	__u8 ran_early; /* switched in (after a sleep) before page_installed */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32); /* tid */
	__type(value, struct flt);
} thr SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64); /* page address */
	__type(value, __u32); /* the last thread that faulted on it */
} page_tid SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* request id */
	__type(value, __u32); /* faulting tid */
} req_tid SEC(".maps");

/*
 * A fault whose thread ran and faulted again between the install's ioctl
 * (which woke it) and page_installed (the helper was preempted by the
 * thread it woke): kept here for page_installed, by tid.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct flt);
} parked SEC(".maps");

/* helper thread -> faulting tid whose answer it is installing */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u32);
} installing SEC(".maps");

/* pch-helper / pch-source processes: their own page faults are not the VM's */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u8);
} pch_procs SEC(".maps");

struct lat_hist hist[ST_NR] = {};
struct stages_counts counts = {};
__u32 vm_tgid = 0; /* the VM, once a fault_read matched one of its faults */

static __always_inline __u64 dt(__u64 a, __u64 b)
{
	return b > a ? b - a : 0;
}

/*
 * f from state from to state to, if no other CPU moved it first: the
 * faulting thread and the helper's threads race on the same fault (a
 * 64-bit cmpxchg: clang's default BPF target has no 32-bit one).
 */
static __always_inline bool move(struct flt *f, __u64 from, __u64 to)
{
	return __sync_val_compare_and_swap(&f->state, from, to) == from;
}

/* A USDT probe fired: true when it is to be handled. */
static __always_inline bool usdt_enter(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u8 one = 1;

	if (usdt_filter && !is_target(tgid))
		return false;
	if (!bpf_map_lookup_elem(&pch_procs, &tgid))
		bpf_map_update_elem(&pch_procs, &tgid, &one, BPF_ANY);
	return true;
}

/* Every stage of f, now that the thread runs at t_run (f moved to FS_DONE). */
static __always_inline void account_full(struct flt *live)
{
	/*
	 * On a copy: page_fault_user of the thread's next fault rewrites the
	 * entry in place, maybe on another CPU while we read it.  Every time
	 * set and in order, or no sample, so a torn copy never reaches the
	 * histograms (seen with -p, before the copy: an install stage as long
	 * as the uptime, its t_arr read as 0 after it was checked).
	 */
	struct flt c = *live, *f = &c;
	__u64 inst = f->t_inst && f->t_inst < f->t_run ? f->t_inst : f->t_run;

	if (!f->t_fault || !f->t_read || !f->t_req || !f->t_arr || !f->t_run ||
	    f->t_fault > f->t_read || f->t_read > f->t_req || f->t_req > f->t_arr ||
	    f->t_arr > inst || inst > f->t_run) {
		__sync_fetch_and_add(&counts.inconsistent, 1);
		return;
	}
	lat_record(&hist[ST_QUEUE], dt(f->t_fault, f->t_read));
	lat_record(&hist[ST_DECIDE], dt(f->t_read, f->t_req));
	lat_record(&hist[ST_NETWORK], dt(f->t_req, f->t_arr));
	lat_record(&hist[ST_INSTALL], dt(f->t_arr, inst));
	lat_record(&hist[ST_WAKE], dt(inst, f->t_run));
	lat_record(&hist[ST_TOTAL], dt(f->t_fault, f->t_run));
	if (f->t_srecv && f->t_ssent && f->t_req <= f->t_srecv && f->t_srecv <= f->t_ssent &&
	    f->t_ssent <= f->t_arr) {
		lat_record(&hist[ST_SRC_TO], f->t_srecv - f->t_req);
		lat_record(&hist[ST_SRC_SERVE], f->t_ssent - f->t_srecv);
		lat_record(&hist[ST_SRC_BACK], f->t_arr - f->t_ssent);
	}
	__sync_fetch_and_add(&counts.full, 1);
}

#define READ_ONCE_STATE(f) (*(volatile __u64 *)&(f)->state)

/* The fault's thread runs again (switched in after sleeping) at now. */
static __always_inline void thread_runs(struct flt *f, __u64 now)
{
	switch (READ_ONCE_STATE(f)) {
	case FS_FAULT:
		/* maybe not a uffd fault at all: decided when fault_read comes */
		f->ran_early = 1;
		f->t_run = now;
		break;
	case FS_READ:
		if (move(f, FS_READ, FS_DONE))
			__sync_fetch_and_add(&counts.other_no_request, 1);
		break;
	case FS_REQ:
		if (move(f, FS_REQ, FS_DONE))
			__sync_fetch_and_add(&counts.other_raced, 1);
		break;
	case FS_ARRIVED:
		/* the install's wake-up, or bulk's: page_installed tells */
		if (!f->ran_early) {
			f->t_run = now;
			f->ran_early = 1;
		}
		/* unless page_installed moved it on meanwhile */
		if (move(f, FS_INSTALLED, FS_DONE))
			account_full(f);
		break;
	case FS_INSTALLED:
		f->t_run = now;
		if (move(f, FS_INSTALLED, FS_DONE))
			account_full(f);
		break;
	}
}

/* exceptions:page_fault_user has no BTF type of its own: its format */
struct page_fault_user_args {
	__u64 common;
	unsigned long address;
	unsigned long ip;
	unsigned long error_code;
};

SEC("tracepoint/exceptions/page_fault_user")
int on_fault(struct page_fault_user_args *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id, tgid = id >> 32;
	struct flt nf = {}, *f;
	__u32 *t;

	if (!is_target(tgid) && !(learn_vm && !vm_tgid))
		return 0;
	if (bpf_map_lookup_elem(&pch_procs, &tgid))
		return 0;
	f = bpf_map_lookup_elem(&thr, &tid);
	/* a new fault: the thread ran again, so its last fault was served */
	if (f) {
		if (move(f, FS_READ, FS_DONE))
			__sync_fetch_and_add(&counts.other_no_request, 1);
		else if (f->state == FS_ARRIVED) {
			/* page_installed may not have fired yet: it decides */
			if (!f->ran_early) {
				f->t_run = bpf_ktime_get_ns();
				f->ran_early = 1;
			}
			bpf_map_update_elem(&parked, &tid, f, BPF_ANY);
		} else if (move(f, FS_REQ, FS_DONE))
			/* never installed by its answer: another path did */
			__sync_fetch_and_add(&counts.other_raced, 1);
		else if (f->state == FS_INSTALLED)
			__sync_fetch_and_add(&counts.abandoned, 1);
	}
	nf.page = ctx->address & PAGE_MASK_4K;
	nf.t_fault = bpf_ktime_get_ns();
	nf.tgid = tgid;
	nf.state = FS_FAULT;
	__sync_fetch_and_add(&counts.faults, 1);
	/*
	 * In place when there: an update would free the old element to the
	 * LRU, where another CPU holding a pointer to it could write into
	 * whatever entry reuses it.
	 */
	if (f)
		*f = nf;
	else if (bpf_map_update_elem(&thr, &tid, &nf, BPF_ANY))
		__sync_fetch_and_add(&counts.lost, 1);
	t = bpf_map_lookup_elem(&page_tid, &nf.page);
	if (t)
		*t = tid;
	else if (bpf_map_update_elem(&page_tid, &nf.page, &tid, BPF_ANY))
		__sync_fetch_and_add(&counts.lost, 1);
	return 0;
}

SEC("tracepoint/sched/sched_switch")
int on_switch(struct trace_event_raw_sched_switch *ctx)
{
	__u32 prev = ctx->prev_pid, next = ctx->next_pid;
	struct flt *f;

	f = bpf_map_lookup_elem(&thr, &prev);
	if (f && f->state < FS_DONE) {
		f->out = 1;
		if (((__u64)ctx->prev_state & 0xff) == 0x1 /* S */)
			f->slept = 1;
	}
	f = bpf_map_lookup_elem(&thr, &next);
	if (f && f->state < FS_DONE && f->out) {
		f->out = 0;
		/* after a sleep; once installed, after any time off the CPU */
		if (f->slept || f->state == FS_INSTALLED)
			thread_runs(f, bpf_ktime_get_ns());
	}
	return 0;
}

/* The thread of a fault on page: ptid when it is that thread's, else the last one. */
static __always_inline struct flt *find_fault(__u64 page, __u32 ptid, __u32 *tidp)
{
	struct flt *f;
	__u32 *t;

	if (ptid) {
		f = bpf_map_lookup_elem(&thr, &ptid);
		if (f && f->page == page) {
			*tidp = ptid;
			return f;
		}
	}
	t = bpf_map_lookup_elem(&page_tid, &page);
	if (!t)
		return NULL;
	*tidp = *t;
	f = bpf_map_lookup_elem(&thr, t);
	return f && f->page == page ? f : NULL;
}

SEC("usdt")
int BPF_USDT(fault_read, __u64 addr, __u64 flags, __u32 ptid)
{
	__u64 page = addr & PAGE_MASK_4K;
	struct flt *f;
	__u32 tid;

	if (!usdt_enter())
		return 0;
	__sync_fetch_and_add(&counts.reads, 1);
	f = find_fault(page, ptid, &tid);
	if (!f || f->state != FS_FAULT) {
		__sync_fetch_and_add(&counts.reads_unmatched, 1);
		return 0;
	}
	__sync_fetch_and_add(&counts.reads_matched, 1);
	if (learn_vm && !vm_tgid) {
		__u8 one = 1;

		vm_tgid = f->tgid;
		bpf_map_update_elem(&targets, &vm_tgid, &one, BPF_ANY);
	}
	if (f->ran_early) {
		/* slept and ran again before this read: someone else served it */
		if (move(f, FS_FAULT, FS_DONE))
			__sync_fetch_and_add(&counts.other_before_read, 1);
		return 0;
	}
	f->t_read = bpf_ktime_get_ns();
	move(f, FS_FAULT, FS_READ);
	return 0;
}

SEC("usdt")
int BPF_USDT(request_sent, __u64 addr, __u32 count, __u64 id)
{
	struct flt *f;
	__u32 tid;

	if (!usdt_enter())
		return 0;
	__sync_fetch_and_add(&counts.requests, 1);
	f = find_fault(addr & PAGE_MASK_4K, 0, &tid);
	if (!f || f->state != FS_READ)
		return 0;
	__sync_fetch_and_add(&counts.requests_fault, 1);
	f->t_req = bpf_ktime_get_ns();
	f->id = id & ~SWEEP_BIT;
	if (!move(f, FS_READ, FS_REQ))
		return 0; /* ran again meanwhile: served */
	if (bpf_map_update_elem(&req_tid, &f->id, &tid, BPF_ANY))
		__sync_fetch_and_add(&counts.lost, 1);
	return 0;
}

/* The fault waiting for request id, in state st; NULL when none. */
static __always_inline struct flt *find_req(__u64 id, __u8 st, __u32 *tidp)
{
	struct flt *f;
	__u32 *t;

	id &= ~SWEEP_BIT;
	t = bpf_map_lookup_elem(&req_tid, &id);
	if (!t)
		return NULL;
	*tidp = *t;
	f = bpf_map_lookup_elem(&thr, t);
	return f && f->state == st && f->id == id ? f : NULL;
}

SEC("usdt")
int BPF_USDT(request_received, __u32 block, __u64 offset, __u32 count, __u64 id)
{
	struct flt *f;
	__u32 tid;

	if (!usdt_enter())
		return 0;
	f = find_req(id, FS_REQ, &tid);
	if (f) {
		__sync_fetch_and_add(&counts.src_received, 1);
		f->t_srecv = bpf_ktime_get_ns();
	}
	return 0;
}

SEC("usdt")
int BPF_USDT(page_sent, __u32 block, __u64 offset, __u32 count, __u64 id, __u64 bytes)
{
	struct flt *f;
	__u32 tid;

	if (!usdt_enter())
		return 0;
	f = find_req(id, FS_REQ, &tid);
	if (f && f->t_srecv)
		f->t_ssent = bpf_ktime_get_ns();
	return 0;
}

SEC("usdt")
int BPF_USDT(page_arrived, __u32 block, __u64 offset, __u32 count, __u64 id, __u16 type,
	     __u32 urgent)
{
	__u32 me = (__u32)bpf_get_current_pid_tgid();
	struct flt *f;
	__u32 tid;

	if (!usdt_enter() || !urgent)
		return 0;
	__sync_fetch_and_add(&counts.arrived, 1);
	f = find_req(id, FS_REQ, &tid);
	if (!f) {
		bpf_map_delete_elem(&installing, &me);
		return 0;
	}
	f->t_arr = bpf_ktime_get_ns();
	if (!move(f, FS_REQ, FS_ARRIVED)) {
		bpf_map_delete_elem(&installing, &me);
		return 0; /* ran again meanwhile: raced */
	}
	bpf_map_update_elem(&installing, &me, &tid, BPF_ANY);
	return 0;
}

SEC("usdt")
int BPF_USDT(page_installed, __u64 addr, __s64 len, __u32 kind, __u32 err)
{
	__u32 me = (__u32)bpf_get_current_pid_tgid();
	__u64 now, end;
	struct flt *f;
	__u32 *t;

	if (!usdt_enter())
		return 0;
	/* the answer this thread is installing; else a fault on addr's page */
	t = bpf_map_lookup_elem(&installing, &me);
	if (!t)
		t = bpf_map_lookup_elem(&page_tid, &addr);
	if (!t)
		return 0;
	f = bpf_map_lookup_elem(&thr, t);
	if (!f || f->state != FS_ARRIVED)
		f = bpf_map_lookup_elem(&parked, t);
	if (!f || f->state != FS_ARRIVED)
		return 0;
	end = addr + (len > 0 ? (__u64)len : 0);
	if (f->page >= addr && f->page < end) {
		now = bpf_ktime_get_ns();
		f->t_inst = now;
		if (f->ran_early) {
			/* switched in while the ioctl woke it: install ends there */
			if (move(f, FS_ARRIVED, FS_DONE))
				account_full(f);
		} else if (!f->out) {
			/* on a CPU: it never waited, or not any more */
			f->t_run = now;
			if (move(f, FS_ARRIVED, FS_DONE)) {
				__sync_fetch_and_add(&counts.no_wait, 1);
				account_full(f);
			}
		} else if (move(f, FS_ARRIVED, FS_INSTALLED) && f->ran_early &&
			   move(f, FS_INSTALLED, FS_DONE)) {
			/* switched in just now, having seen FS_ARRIVED */
			account_full(f);
		}
		bpf_map_delete_elem(&installing, &me);
		return 0;
	}
	if (err && addr == f->page) {
		/* EEXIST: another path put the page in place first */
		if (move(f, FS_ARRIVED, FS_DONE))
			__sync_fetch_and_add(&counts.other_raced, 1);
		bpf_map_delete_elem(&installing, &me);
	}
	return 0;
}

SEC("tracepoint/sched/sched_process_exit")
int on_exit(void *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	bpf_map_delete_elem(&thr, &tid);
	return 0;
}
