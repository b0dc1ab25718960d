// SPDX-License-Identifier: MIT
/*
 * faultlog.c - --fault-log FILE: every fault a vCPU took, one CSV row each,
 * for latency CDFs and timelines.  The vCPUs record into their own buffers
 * (no lock, no allocation on the fault path); main writes the file after
 * the run.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "log.h"
#include "util.h"
#include "pch-vm.h"

int vm_faultlog_init(struct vm *vm)
{
	uint64_t cap = VM_FAULT_LOG_MAX / PCH_MAX(vm->cfg.vcpus, 1u);
	unsigned i;

	if (!vm->cfg.fault_log)
		return 0;
	for (i = 0; i < vm->cfg.vcpus; i++) {
		struct vm_vcpu *v = &vm->vcpu[i];
		/* reserved, not touched: a run with few faults uses little memory */
		void *p = mmap(NULL, cap * sizeof(*v->flog), PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

		if (p == MAP_FAILED) {
			pch_err("--fault-log: vcpu/%u: cannot map %llu samples: %s", i,
				(unsigned long long)cap, strerror(errno));
			return -ENOMEM;
		}
		v->flog = p;
		v->flog_cap = cap;
	}
	return 0;
}

uint64_t vm_faultlog_rows(const struct vm *vm)
{
	uint64_t n = 0;
	unsigned i;

	for (i = 0; vm->vcpu && i < vm->cfg.vcpus; i++)
		n += __atomic_load_n(&vm->vcpu[i].flog_n, __ATOMIC_ACQUIRE);
	return n;
}

uint64_t vm_faultlog_dropped(const struct vm *vm)
{
	uint64_t n = 0;
	unsigned i;

	for (i = 0; vm->vcpu && i < vm->cfg.vcpus; i++)
		n += __atomic_load_n(&vm->vcpu[i].flog_dropped, __ATOMIC_RELAXED);
	return n;
}

int vm_faultlog_write(struct vm *vm)
{
	const char *path = vm->cfg.fault_log;
	static char buf[1 << 20];
	unsigned i;
	FILE *f;
	int ret = 0;

	if (!path)
		return 0;
	f = fopen(path, "w");
	if (!f) {
		ret = -errno;
		pch_err("--fault-log %s: %s", path, strerror(errno));
		return ret;
	}
	setvbuf(f, buf, _IOFBF, sizeof(buf));
	fputs("t_us,lat_us,vcpu,page\n", f);
	for (i = 0; i < vm->cfg.vcpus; i++) {
		const struct vm_vcpu *v = &vm->vcpu[i];
		uint64_t j, n = __atomic_load_n(&v->flog_n, __ATOMIC_ACQUIRE);

		for (j = 0; j < n; j++) {
			const struct vm_fault_sample *s = &v->flog[j];
			/* latency to 0.1 us, rounded */
			uint64_t lat = (s->lat_ns + 50) / 100;

			fprintf(f, "%llu,%llu.%u,%u,%llu\n", (unsigned long long)(s->t_ns / 1000),
				(unsigned long long)(lat / 10), (unsigned)(lat % 10), i,
				(unsigned long long)s->page);
		}
	}
	if (ferror(f))
		ret = -EIO;
	if (fclose(f) && !ret)
		ret = -errno;
	if (ret)
		pch_err("--fault-log %s: write failed: %s", path, strerror(-ret));
	else if (vm_faultlog_dropped(vm))
		pch_warn("--fault-log %s: %llu faults not logged (at most %llu are kept)", path,
			 (unsigned long long)vm_faultlog_dropped(vm),
			 (unsigned long long)VM_FAULT_LOG_MAX);
	return ret;
}

void vm_faultlog_free(struct vm *vm)
{
	unsigned i;

	for (i = 0; vm->vcpu && i < vm->cfg.vcpus; i++) {
		struct vm_vcpu *v = &vm->vcpu[i];

		if (v->flog)
			munmap(v->flog, v->flog_cap * sizeof(*v->flog));
		v->flog = NULL;
		v->flog_cap = 0;
	}
}
