// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * uffdtop.bpf.c - userfaultfd ioctls by type and result, user page faults
 * and io_uring completions, per process, from tracepoints only.
 *
 * The ioctl command numbers come from the loader (rodata), which has them
 * from <linux/userfaultfd.h> and include/pch/uffd-compat.h.  An ioctl is
 * counted at sys_exit_ioctl, with its result and the bytes the kernel
 * reports done (the s64 copy/zeropage/mapped/updated/move field that ends
 * each of these argument structs).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "uffdtop.h"
#include "target.bpf.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define EEXIST_ 17
#define EAGAIN_ 11

const volatile __u32 cmd[UT_NIOCTL] = {}; /* the UFFDIO_* numbers, by kind */

struct inflight {
	__u64 arg;
	__u32 kind;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32); /* tid */
	__type(value, struct inflight);
} calls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct uffdtop_key);
	__type(value, struct uffdtop_val);
} counts SEC(".maps");

/* a process's name (its main thread's), kept past its exit for the report */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, char[16]);
} comms SEC(".maps");

__u64 dropped = 0; /* counts map full */

static __always_inline void add(__u32 tgid, __u32 kind, __u32 result, __u64 bytes)
{
	struct uffdtop_key k = { .tgid = tgid, .kind = (__u16)kind, .result = (__u16)result };
	struct uffdtop_val *v = bpf_map_lookup_elem(&counts, &k);

	if (!v) {
		struct uffdtop_val zero = {};
		struct task_struct *task = (void *)bpf_get_current_task();
		char comm[16];

		BPF_CORE_READ_STR_INTO(&comm, task, group_leader, comm);
		bpf_map_update_elem(&comms, &tgid, &comm, BPF_NOEXIST);
		bpf_map_update_elem(&counts, &k, &zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&counts, &k);
		if (!v) {
			__sync_fetch_and_add(&dropped, 1);
			return;
		}
	}
	__sync_fetch_and_add(&v->count, 1);
	if (bytes)
		__sync_fetch_and_add(&v->bytes, bytes);
}

SEC("tracepoint/syscalls/sys_enter_ioctl")
int on_ioctl_enter(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id, c = (__u32)ctx->args[1], k;
	struct inflight in = { .arg = ctx->args[2] };

	if (!is_target(id >> 32))
		return 0;
	for (k = 0; k < UT_NIOCTL; k++)
		if (cmd[k] && c == cmd[k])
			break;
	if (k == UT_NIOCTL)
		return 0;
	in.kind = k;
	bpf_map_update_elem(&calls, &tid, &in, BPF_ANY);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_ioctl")
int on_ioctl_exit(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id, result;
	struct inflight *in = bpf_map_lookup_elem(&calls, &tid);
	long ret = ctx->ret;
	__s64 done = 0;

	if (!in)
		return 0;
	/* COPY and MOVE: dst, src, len, mode, then the count; the others: range, mode */
	if (in->kind != UT_WAKE)
		bpf_probe_read_user(&done, sizeof(done),
				    (void *)(in->arg + (in->kind == UT_COPY || in->kind == UT_MOVE ?
							32 : 24)));
	result = ret == 0 ? UR_OK : ret == -EEXIST_ ? UR_EEXIST : ret == -EAGAIN_ ? UR_EAGAIN :
								       UR_OTHER;
	add(id >> 32, in->kind, result, done > 0 ? (__u64)done : 0);
	bpf_map_delete_elem(&calls, &tid);
	return 0;
}

/* the name after exec, which a COMMAND's first events predate */
SEC("tracepoint/sched/sched_process_exec")
int on_exec(void *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	char comm[16];

	if (!is_target(tgid))
		return 0;
	bpf_get_current_comm(&comm, sizeof(comm));
	bpf_map_update_elem(&comms, &tgid, &comm, BPF_ANY);
	return 0;
}

SEC("tracepoint/exceptions/page_fault_user")
int on_fault(void *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;

	if (is_target(tgid))
		add(tgid, UT_FAULT, UR_OK, 0);
	return 0;
}

SEC("tracepoint/io_uring/io_uring_complete")
int on_cqe(struct trace_event_raw_io_uring_complete *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;

	if (is_target(tgid))
		add(tgid, UT_CQE, ctx->res < 0 ? UR_OTHER : UR_OK, 0);
	return 0;
}
