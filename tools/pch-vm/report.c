// SPDX-License-Identifier: MIT
/*
 * report.c - pch-vm's JSON report (--report FILE): the verification result,
 * the fault latency the vCPUs saw, and the migration's timeline.
 */
#include <errno.h>

#include <json-glib/json-glib.h>

#include "json.h"
#include "log.h"
#include "pch-vm.h"

/* Seconds between two monotonic stamps, or null when either is missing. */
static void add_span(JsonBuilder *b, const char *name, uint64_t from_ns, uint64_t to_ns)
{
	json_builder_set_member_name(b, name);
	if (from_ns && to_ns)
		json_builder_add_double_value(b, to_ns > from_ns ? (to_ns - from_ns) / 1e9 : 0.0);
	else
		json_builder_add_null_value(b);
}

/*
 * Write the report.  Counters of vCPUs that could not be joined are read
 * as they stand (they are blocked in a fault and not updating them).
 */
int vm_report_write(struct vm *vm)
{
	g_autoptr(JsonBuilder) b = json_builder_new();
	struct pch_hist *all;
	uint64_t accesses = 0, faults = 0, early = 0, poisoned = 0;
	unsigned i;

	all = g_new(struct pch_hist, 1);
	pch_hist_init(all);
	for (i = 0; i < vm->cfg.vcpus; i++) {
		const struct vm_vcpu *v = &vm->vcpu[i];

		pch_hist_merge(all, &v->hist);
		accesses += __atomic_load_n(&v->accesses, __ATOMIC_RELAXED);
		faults += __atomic_load_n(&v->faults, __ATOMIC_RELAXED);
		poisoned += __atomic_load_n(&v->poisoned, __ATOMIC_RELAXED);
		early += __atomic_load_n(&v->early_reads, __ATOMIC_RELAXED);
	}

	json_builder_begin_object(b);
	json_builder_set_member_name(b, "result");
	json_builder_add_string_value(b, vm->errors->len ? "fail" : "ok");
	pch_json_int(b, "ram_bytes", vm->cfg.ram_bytes);
	pch_json_int(b, "page_size", vm->cfg.image.page_size);
	pch_json_str(b, "backing", vm->cfg.backing->name);
	pch_json_int(b, "vcpus", vm->cfg.vcpus);
	json_builder_set_member_name(b, "workload");
	json_builder_add_string_value(b, vm_workload_name(vm->cfg.workload));
	pch_json_int(b, "seed", vm->cfg.image.seed);
	json_builder_set_member_name(b, "block_name");
	json_builder_add_string_value(b, vm->cfg.block_name);
	json_builder_set_member_name(b, "image_file");
	if (vm->cfg.image_file)
		json_builder_add_string_value(b, vm->cfg.image_file);
	else
		json_builder_add_null_value(b);
	pch_json_double(b, "precopy_seconds", vm->cfg.precopy_s);
	pch_json_int(b, "vcpu_delay_ms", vm->cfg.vcpu_delay_ms);
	json_builder_set_member_name(b, "verify_access");
	json_builder_add_boolean_value(b, vm->cfg.verify_access);

	pch_json_int(b, "pages_total", vm->npages);
	json_builder_set_member_name(b, "verified");
	json_builder_add_boolean_value(b, vm->verified);
	pch_json_int(b, "pages_verified", vm->pages_verified);
	pch_json_int(b, "pages_prefilled", vm->pages_prefilled);
	pch_json_int(b, "pages_mismatched", vm->pages_mismatched);
	pch_json_int(b, "pages_missing", vm->pages_missing);
	pch_json_int(b, "pages_poisoned", vm->pages_poisoned);
	pch_json_int(b, "helper_restarts", vm->helper_restarts);
	pch_json_int(b, "helper_takeover_max_ms", vm->helper_takeover_max_ns / 1000000);
	/* --workload balloon: unplugged pages are gone, not verified */
	pch_json_int(b, "pages_unplugged", vm_balloon_unplugged(vm));
	vm_balloon_report(vm, b);

	pch_json_int(b, "accesses", accesses);
	pch_json_int(b, "vcpu_faults", faults);
	pch_json_int(b, "vcpu_poisoned_accesses", poisoned);
	/* --verify-access: pages a vCPU saw mapped before their last byte */
	pch_json_int(b, "early_reads", early);
	pch_json_latency(b, "fault_latency_us", all);
	/* --fault-log: rows written, faults past its bound; rows + dropped == vcpu_faults */
	json_builder_set_member_name(b, "fault_log");
	if (vm->cfg.fault_log)
		json_builder_add_string_value(b, vm->cfg.fault_log);
	else
		json_builder_add_null_value(b);
	pch_json_int(b, "fault_log_rows", vm_faultlog_rows(vm));
	pch_json_int(b, "fault_log_dropped", vm_faultlog_dropped(vm));
	json_builder_set_member_name(b, "vcpu_blocked_us");
	json_builder_begin_array(b);
	for (i = 0; i < vm->cfg.vcpus; i++)
		json_builder_add_double_value(
			b, __atomic_load_n(&vm->vcpu[i].blocked_ns, __ATOMIC_RELAXED) / 1e3);
	json_builder_end_array(b);
	json_builder_set_member_name(b, "vcpu_accesses");
	json_builder_begin_array(b);
	for (i = 0; i < vm->cfg.vcpus; i++)
		json_builder_add_int_value(
			b, (gint64)__atomic_load_n(&vm->vcpu[i].accesses, __ATOMIC_RELAXED));
	json_builder_end_array(b);
	json_builder_set_member_name(b, "vcpu_fault_counts");
	json_builder_begin_array(b);
	for (i = 0; i < vm->cfg.vcpus; i++)
		json_builder_add_int_value(
			b, (gint64)__atomic_load_n(&vm->vcpu[i].faults, __ATOMIC_RELAXED));
	json_builder_end_array(b);
	json_builder_set_member_name(b, "vcpu_early_reads");
	json_builder_begin_array(b);
	for (i = 0; i < vm->cfg.vcpus; i++)
		json_builder_add_int_value(
			b, (gint64)__atomic_load_n(&vm->vcpu[i].early_reads, __ATOMIC_RELAXED));
	json_builder_end_array(b);

	/* thp: did the kernel give the RAM huge pages by the end? */
	if (vm->cfg.backing->thp) {
		json_builder_set_member_name(b, "thp");
		json_builder_begin_object(b);
		json_builder_set_member_name(b, "enabled");
		if (vm->thp_enabled[0])
			json_builder_add_string_value(b, vm->thp_enabled);
		else
			json_builder_add_null_value(b);
		json_builder_set_member_name(b, "anon_huge_kb");
		if (vm->thp_anon_huge_kb >= 0)
			json_builder_add_int_value(b, vm->thp_anon_huge_kb);
		else
			json_builder_add_null_value(b);
		json_builder_end_object(b);
	}

	/* CLOCK_MONOTONIC us when the vCPUs started: aligns --fault-log and the helper's --timeline */
	json_builder_set_member_name(b, "t0_us");
	if (vm->t_vcpu_ns)
		json_builder_add_int_value(b, (gint64)(vm->t_vcpu_ns / 1000));
	else
		json_builder_add_null_value(b);
	add_span(b, "t_start_to_complete_s", vm->t_start_ns, vm->t_complete_ns);
	/* COMPLETE during precopy: no postcopy phase at all */
	if (vm->t_complete_ns && vm->t_vcpu_ns >= vm->t_complete_ns)
		pch_json_double(b, "postcopy_s", 0.0);
	else
		add_span(b, "postcopy_s", vm->t_vcpu_ns, vm->t_complete_ns);
	json_builder_set_member_name(b, "verify_s");
	if (vm->verified)
		json_builder_add_double_value(b, vm->verify_s);
	else
		json_builder_add_null_value(b);

	json_builder_set_member_name(b, "errors");
	json_builder_begin_array(b);
	for (i = 0; i < vm->errors->len; i++)
		json_builder_add_string_value(b, g_ptr_array_index(vm->errors, i));
	json_builder_end_array(b);

	pch_json_int(b, "uffd_features", vm->uffd_features);
	pch_json_int(b, "uffd_features_available", vm->uffd_features_avail);
	json_builder_end_object(b);
	g_free(all);

	if (pch_json_write(b, vm->cfg.report))
		return -EIO;
	pch_info("report written to %s", vm->cfg.report);
	return 0;
}
