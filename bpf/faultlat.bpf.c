// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * faultlat.bpf.c - how long a user page fault keeps its thread off the CPU
 * when it blocks (a userfaultfd wait), from tracepoints only.
 *
 * A fault starts at exceptions:page_fault_user of a traced thread.  It is a
 * blocking fault when that thread is then switched out asleep (sched_switch,
 * prev_state S: handle_userfault() sleeps TASK_INTERRUPTIBLE for a user
 * fault; with any_sleep also D) before it makes a system call (any
 * raw_syscalls:sys_enter of the thread means it went back to user space
 * since the fault: the fault is forgotten).  It ends when the thread is
 * switched in again (sched_switch next_pid): latency = switch-in - fault.
 * A thread that blocks again before returning (woken without its page:
 * the fault is retried and waits anew) counts another wait, measured from
 * the switch-in that ended the previous one: the helper also reads one
 * uffd message per wait.
 *
 * With per_thread (-T), each wait also goes into its thread's own
 * histogram (faultlat.h: struct faultlat_thread, a bounded map).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "faultlat.h"
#include "target.bpf.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

const volatile __u32 target_tid = 0; /* -t: one thread only */
const volatile bool any_sleep = false;
const volatile bool per_thread = false;

struct fault {
	__u64 ts;
	__u64 addr;
	__u32 blocked; /* FL_STATE_* it went to sleep in, 0: running */
	__u32 waits; /* waits of this fault so far */
	__u32 tgid; /* of the faulting thread, for -T */
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32); /* tid */
	__type(value, struct fault);
} faults SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FL_THREADS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32); /* tid */
	__type(value, struct faultlat_thread);
} threads SEC(".maps");

struct lat_hist hist = {};
struct faultlat_counts counts = {};
/* a new entry of threads: too large for the BPF stack */
const struct faultlat_thread thread_zero = {};

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
	__u32 tid = (__u32)id;
	struct fault f = { .ts = bpf_ktime_get_ns(), .addr = ctx->address, .tgid = id >> 32 };

	if (!is_target(id >> 32) || (target_tid && tid != target_tid))
		return 0;
	__sync_fetch_and_add(&counts.faults, 1);
	if (bpf_map_update_elem(&faults, &tid, &f, BPF_ANY))
		__sync_fetch_and_add(&counts.lost, 1);
	return 0;
}

SEC("tracepoint/raw_syscalls/sys_enter")
int on_sys_enter(void *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct fault *f = bpf_map_lookup_elem(&faults, &tid);

	if (f)
		bpf_map_delete_elem(&faults, &tid);
	return 0;
}

/* -T: a wait of thread tid (switched in: not the current task) */
static __always_inline void thread_record(struct trace_event_raw_sched_switch *ctx, __u32 tid,
					  __u32 tgid, __u64 ns)
{
	struct faultlat_thread *t = bpf_map_lookup_elem(&threads, &tid);
	__u64 d, f;

	if (!t) {
		bpf_map_update_elem(&threads, &tid, &thread_zero, BPF_NOEXIST);
		t = bpf_map_lookup_elem(&threads, &tid);
		if (!t) {
			__sync_fetch_and_add(&counts.threads_lost, 1);
			return;
		}
	}
	d = fl_dist_slot(ns);
	f = fl_fine_slot(ns);
	/* as lat_record: keep the checks below from being optimised out */
	asm volatile("" : "+r"(d), "+r"(f));
	/* one thread is switched in on one CPU at a time: plain adds */
	t->tgid = tgid;
	bpf_probe_read_kernel(t->comm, sizeof(t->comm), ctx->next_comm);
	t->count++;
	t->sum_ns += ns;
	if (ns > t->max_ns)
		t->max_ns = ns;
	if (d < FL_DIST_N) /* always: for the verifier */
		t->dist[d]++;
	t->fine[f & (FL_FINE_N - 1)]++;
}

SEC("tracepoint/sched/sched_switch")
int on_switch(struct trace_event_raw_sched_switch *ctx)
{
	__u32 prev = ctx->prev_pid, next = ctx->next_pid;
	__u64 state = (__u64)ctx->prev_state & 0xff;
	struct fault *f;

	f = bpf_map_lookup_elem(&faults, &prev);
	if (f && !f->blocked &&
	    (state == FL_STATE_S || (any_sleep && state == FL_STATE_D)))
		f->blocked = (__u32)state;
	f = bpf_map_lookup_elem(&faults, &next);
	if (f && f->blocked) {
		__u64 now = bpf_ktime_get_ns();

		lat_record(&hist, now - f->ts);
		if (per_thread)
			thread_record(ctx, next, f->tgid, now - f->ts);
		if (!f->waits++)
			__sync_fetch_and_add(&counts.faults_blocked, 1);
		if (f->blocked == FL_STATE_S)
			__sync_fetch_and_add(&counts.blocked_s, 1);
		else
			__sync_fetch_and_add(&counts.blocked_d, 1);
		f->ts = now;
		f->blocked = 0;
	}
	return 0;
}

SEC("tracepoint/sched/sched_process_exit")
int on_exit(void *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	bpf_map_delete_elem(&faults, &tid);
	return 0;
}
