#!/bin/bash
# Memory events during postcopy: pch-vm --workload balloon discards random
# ranges (MADV_DONTNEED), takes some pages back (a marker word), and unplugs
# the tail of the RAM (munmap) while the vCPUs fault.  The helper reads
# UFFD_EVENT_REMOVE and UFFD_EVENT_UNMAP in order with the faults: a
# discarded page must read zero (or zero and the marker), never its old
# content (stale_after_discard), and unplugged pages count as settled.
# Private backings: anon, thp, hugetlb-private; shared ones are refused
# with a reason.
# timeout: 240
. "$(dirname "$0")/../lib/common.sh"
require_uffd

# balloon ARGS...: a balloon migration; skips when the kernel lacks the events
balloon() {
	"$BIN/pch-migrate" --no-progress --json "$T/report.json" --workload balloon "$@" \
		>"$T/migrate.out" 2>"$T/migrate.log" || {
		grep -q "needs userfaultfd features this kernel does not offer: EVENT_REMOVE" \
			"$T/migrate.log" && skip "the kernel lacks UFFD_FEATURE_EVENT_REMOVE/UNMAP"
		cat "$T/migrate.out"
		tail -n 60 "$T/migrate.log"
		fail "pch-migrate --workload balloon $* failed"
	}
	cat "$T/migrate.out"
	R=$T/report.json
	expect_json "$R" '(.errors | length) == 0' '.errors'
	expect_json "$R" '.result == "ok" and .pages_mismatched == 0 and .stale_after_discard == 0' \
		'{result, pages_mismatched, stale_after_discard, balloon: .vm.balloon}'
	expect_json "$R" '.vm.balloon.discards > 0 and .vm.balloon.pages_unplugged > 0 and
		.vm.balloon.wrong_after_discard == 0 and .vm.balloon.marker_bad == 0' '.vm.balloon'
	expect_json "$R" '.helper.memory_events and .helper.events_remove > 0 and
		.helper.events_unmap > 0 and .helper.pages_discarded > 0 and
		.helper.pages_unmapped == .vm.balloon.pages_unplugged' \
		'.helper | {memory_events, events_remove, events_unmap, pages_discarded, pages_unmapped}'
	# every page verified but the unplugged ones
	expect_json "$R" '.pages_verified + .vm.pages_unplugged == .pages_total' \
		'{pages_verified, pages_total, u: .vm.pages_unplugged}'
	log "ok $*: $(jq -c '{b: .vm.balloon | {discards, pages_discarded, pages_reused,
		pages_unplugged}, h: .helper | {events_remove, events_unmap, pages_dropped_discarded,
		faults_discarded, eagain}}' "$R")"
}

balloon --backing anon --ram 128M --channels 4 --vcpus 2 --bulk-rate 200 --timeout-s 90
balloon --backing anon --ram 64M --channels 2 --vcpus 2 --uffd-read poll --rx-threads 2 \
	--seed 7 --timeout-s 90
balloon --backing thp --ram 128M --channels 4 --vcpus 2 --bulk-rate 200 --timeout-s 90

# a shared block cannot take memory events yet: refused at UFFD, with the reason
if "$BIN/pch-migrate" --no-progress --json "$T/memfd.json" --workload balloon --backing memfd \
	--ram 32M --timeout-s 30 >"$T/memfd.out" 2>"$T/memfd.log"; then
	fail "a balloon on memfd RAM was accepted"
fi
grep -q "supported on private blocks only" "$T/memfd.log" ||
	{ tail -n 30 "$T/memfd.log"; fail "memfd balloon: no reason given for the refusal"; }
log "ok: memfd balloon refused with a reason"

reserve_hugepages 64
balloon --backing hugetlb-private --ram 128M --channels 2 --vcpus 2 --bulk-rate 100 --timeout-s 90
