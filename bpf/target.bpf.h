/* SPDX-License-Identifier: MIT */
/*
 * target.bpf.h - BPF side shared by the tools: which processes are traced
 * (the loader puts -p PID or the COMMAND's pid in targets; with
 * follow_children, every task a traced task forks is traced too, until
 * it exits), and recording into a struct lat_hist.
 */
#ifndef PCH_BPF_TARGET_H
#define PCH_BPF_TARGET_H

#include <bpf/bpf_core_read.h>

#include "hist_bpf.h"

/* tunables, set by the loader before load */
const volatile bool follow_children = false;
const volatile bool trace_all = false; /* no target: every process */

/*
 * tgids traced.  Forks add their child: that is a process, or a thread
 * (the tracepoint cannot tell); a thread's id never matches a tgid check
 * of another process unless reused.  Exits remove them (target_exit), so
 * that the map holds the live tasks of the traced tree only: a long
 * COMMAND (make check) forks far more than 16384 tasks in its life, and a
 * pid the kernel reuses must not be traced by mistake.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u8);
} targets SEC(".maps");

static __always_inline bool is_target(__u32 tgid)
{
	return trace_all || bpf_map_lookup_elem(&targets, &tgid);
}

SEC("tracepoint/sched/sched_process_fork")
int handle_fork(struct trace_event_raw_sched_process_fork *ctx)
{
	__u32 parent = bpf_get_current_pid_tgid() >> 32;
	__u32 child = ctx->child_pid;
	__u8 one = 1;

	if (follow_children && bpf_map_lookup_elem(&targets, &parent))
		bpf_map_update_elem(&targets, &child, &one, BPF_ANY);
	return 0;
}

/*
 * A task exits: a thread's own entry goes; the process's when its last
 * thread exits (signal->live, already decremented when this tracepoint
 * fires).  Only what forks added: -p PID stays, whatever happens.
 */
SEC("tracepoint/sched/sched_process_exit")
int target_exit(void *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id, tgid = id >> 32;
	struct task_struct *task = (void *)bpf_get_current_task();

	if (!follow_children)
		return 0;
	if (tid != tgid)
		bpf_map_delete_elem(&targets, &tid);
	if (!BPF_CORE_READ(task, signal, live.counter))
		bpf_map_delete_elem(&targets, &tgid);
	return 0;
}

static __always_inline void lat_record(struct lat_hist *h, __u64 ns)
{
	__u64 s = lat_log2_slot(ns), f = lat_fine_slot(ns);

	/* hide what clang knows of the bounds, so that the masks below stay */
	asm volatile("" : "+r"(s), "+r"(f));

	__sync_fetch_and_add(&h->count, 1);
	__sync_fetch_and_add(&h->sum_ns, ns);
	if (ns > h->max_ns)
		h->max_ns = ns; /* racy between CPUs: a max may be lost, rarely */
	/* the verifier cannot follow the slot functions' bounds: mask */
	__sync_fetch_and_add(&h->log2_us[s & (LAT_LOG2_ALLOC - 1)], 1);
	__sync_fetch_and_add(&h->fine[f & (LAT_FINE_ALLOC - 1)], 1);
}

#endif /* PCH_BPF_TARGET_H */
