// SPDX-License-Identifier: MIT
/* stats.c - merge the threads' counters and render the helper's stats JSON. */
#include <json-glib/json-glib.h>
#include <string.h>

#include "helper_i.h"
#include "json.h"
#include "util.h"

#define F(x) offsetof(struct hstats, x)
static const size_t counter_fields[] = {
	F(pages_bulk), F(pages_urgent), F(pages_zero), F(zero_installed), F(inplace), F(bytes),
	F(frames), F(copy_ioctls), F(eexist), F(eagain), F(faults), F(faults_zero),
	F(faults_present), F(faults_dup), F(faults_late), F(faults_outside), F(requests), F(requests_sweep), F(events_other),
	F(uffd_reads), F(faults_minor), F(continue_ioctls), F(bytes_inplace), F(bytes_bounce),
	F(steals), F(stashed), F(rescued), F(events_remove), F(events_unmap), F(pages_discarded),
	F(pages_unmapped), F(pages_dropped_discarded), F(faults_discarded), F(rx_aside),
	F(rx_aside_us),
};
#undef F

static void add_thread(struct hstats *out, struct hstats *in)
{
	size_t i;

	for (i = 0; i < PCH_ARRAY_SIZE(counter_fields); i++) {
		uint64_t *d = (uint64_t *)((char *)out + counter_fields[i]);
		uint64_t *s = (uint64_t *)((char *)in + counter_fields[i]);

		*d += __atomic_load_n(s, __ATOMIC_RELAXED);
	}
	pthread_mutex_lock(&in->hist_lock);
	pch_hist_merge(&out->service, &in->service);
	pthread_mutex_unlock(&in->hist_lock);
}

void stats_merge(struct helper *h, struct hstats *out)
{
	unsigned i;

	memset(out, 0, sizeof(*out));
	pch_hist_init(&out->service);
	if (h->ft.h)
		add_thread(out, &h->ft.st);
	for (i = 0; i < h->nrx; i++)
		add_thread(out, &h->rx[i].st);
}

/*
 * Bytes of per-page state: the five page bitmaps of every block and the
 * ownership byte per page of a shared block.  vmm_only: only the bitmaps
 * that live in the VMM's STATE memfd (mapped here, the VMM's memory).
 */
static uint64_t state_bytes(const struct helper *h, bool vmm_only)
{
	uint64_t n = 0;
	unsigned i;

	for (i = 0; i < h->nblk; i++) {
		const struct hblock *b = &h->blk[i];
		const struct pch_bitmap *bm[] = { &b->present, &b->zero, &b->inplace,
						  &b->discarded, &b->mapping };
		unsigned j;

		for (j = 0; j < PCH_ARRAY_SIZE(bm); j++)
			if (bm[j]->words && (!vmm_only || bm[j]->external))
				n += (bm[j]->nbits + 63) / 64 * 8;
		if (!vmm_only && b->own)
			n += b->d.npages;
	}
	return n;
}

char *stats_json(struct helper *h)
{
	static const char *const chan_state[] = { "idle", "streaming", "ended", "dead" };
	struct hstats *s = g_malloc0(sizeof(*s));
	JsonBuilder *b = json_builder_new();
	uint64_t end, total = pages_total(h), inplace = pages_inplace(h);
	uint64_t bulk_bounce = 0;
	double secs;
	unsigned i;
	char *out;

	stats_merge(h, s);
	for (i = 0; i < h->nrx; i++)
		bulk_bounce += STAT_GET(&h->rx[i].st, bytes_bounce);
	end = h->t_complete_ns ? h->t_complete_ns : pch_now_ns();
	secs = h->t_start_ns ? (end - h->t_start_ns) / 1e9 : 0.0;

	json_builder_begin_object(b);
	pch_json_str(b, "result", h->failed ? "fail" : h->complete ? "ok" : "running");
	pch_json_str(b, "io_path", h->io_path ? h->io_path : "none");
	pch_json_int(b, "pages_total", total);
	pch_json_int(b, "pages_inplace", inplace);
	pch_json_int(b, "pages_premarked", h->premarked);
	/* per-page state (docs/protocol.md, "Helper memory bound"); _vmm: of it, in the STATE memfd */
	pch_json_int(b, "state_bytes", state_bytes(h, false));
	pch_json_int(b, "state_bytes_vmm", state_bytes(h, true));
	pch_json_int(b, "pages_poisoned", h->poisoned);
	pch_json_int(b, "control_refused", h->ctl_refused);
	pch_json_int(b, "vmm_pid", (uint64_t)h->vmm_pid);
	pch_json_str(b, "vmm_pinned_by", h->vmm_pinned_by ? h->vmm_pinned_by : "none");
	pch_json_int(b, "resumes", h->resumes);
	pch_json_int(b, "paused_ms", (h->paused_ns + (h->paused ? pch_now_ns() - h->pause_t0_ns : 0)) /
					     1000000);
	pch_json_int(b, "pause_max_ms", h->pause_max_ns / 1000000);
	pch_json_int(b, "pages_bulk", s->pages_bulk);
	pch_json_int(b, "pages_urgent", s->pages_urgent);
	pch_json_int(b, "pages_zero", s->pages_zero);
	pch_json_int(b, "zero_installed", s->zero_installed);
	pch_json_int(b, "bytes", s->bytes);
	pch_json_int(b, "frames", s->frames);
	pch_json_int(b, "copy_ioctls", s->copy_ioctls);
	pch_json_int(b, "faults", s->faults);
	pch_json_int(b, "faults_zero", s->faults_zero);
	pch_json_int(b, "faults_present", s->faults_present);
	pch_json_int(b, "faults_dup", s->faults_dup);
	pch_json_int(b, "faults_late", s->faults_late);
	pch_json_int(b, "faults_outside", s->faults_outside);
	pch_json_int(b, "requests", s->requests);
	pch_json_int(b, "requests_sweep", s->requests_sweep);
	pch_json_int(b, "eexist", s->eexist);
	pch_json_int(b, "eagain", s->eagain);
	pch_json_int(b, "events_other", s->events_other);
	/* memory events (docs/protocol.md, "Memory events") */
	json_builder_set_member_name(b, "memory_events");
	json_builder_add_boolean_value(b, h->events);
	pch_json_int(b, "events_remove", s->events_remove);
	pch_json_int(b, "events_unmap", s->events_unmap);
	pch_json_int(b, "pages_discarded", s->pages_discarded);
	pch_json_int(b, "pages_unmapped", s->pages_unmapped);
	pch_json_int(b, "pages_dropped_discarded", s->pages_dropped_discarded);
	pch_json_int(b, "faults_discarded", s->faults_discarded);
	pch_json_int(b, "uffd_reads", s->uffd_reads);
	pch_json_int(b, "faults_minor", s->faults_minor);
	pch_json_int(b, "continue_ioctls", s->continue_ioctls);
	pch_json_int(b, "steals", s->steals);
	pch_json_int(b, "rx_aside", s->rx_aside);
	pch_json_int(b, "rx_aside_us", s->rx_aside_us);
	pch_json_int(b, "stashed", s->stashed);
	pch_json_int(b, "rescued", s->rescued);
	/*
	 * Page data crosses memory once into a receive buffer and once more
	 * into guest memory (UFFDIO_COPY, or a copy into a shared block), or
	 * once only when received in place: the second copy is saved.
	 */
	json_builder_set_member_name(b, "copies");
	json_builder_begin_object(b);
	pch_json_int(b, "inplace_bytes", s->bytes_inplace);
	pch_json_int(b, "bounce_bytes", s->bytes_bounce);
	pch_json_int(b, "bulk_bounce_bytes", bulk_bounce);
	pch_json_int(b, "saved_bytes", s->bytes_inplace);
	json_builder_end_object(b);
	pch_json_int(b, "sync_reached", h->sync_reached);
	pch_json_double(b, "duration_s", secs);
	pch_json_double(b, "bulk_gbps", secs > 0 ? s->bytes / secs / 1e9 : 0.0);
	pch_json_latency(b, "service_latency_us", &s->service);

	json_builder_set_member_name(b, "blocks");
	json_builder_begin_array(b);
	for (i = 0; i < h->nblk; i++) {
		json_builder_begin_object(b);
		pch_json_str(b, "name", h->blk[i].d.name);
		pch_json_str(b, "backing", pch_backing_name(h->blk[i].d.backing));
		pch_json_int(b, "page_size", h->blk[i].d.page_size);
		pch_json_int(b, "pages", h->blk[i].d.npages);
		pch_json_str(b, "install", hblock_shared(&h->blk[i]) ? "in-place+continue" :
					   "copy");
		json_builder_end_object(b);
	}
	json_builder_end_array(b);

	json_builder_set_member_name(b, "channels");
	json_builder_begin_array(b);
	for (i = 0; i < h->o.channels; i++) {
		struct rx_chan *c = &h->pages[i];
		int st = __atomic_load_n(&c->state, __ATOMIC_ACQUIRE);

		json_builder_begin_object(b);
		pch_json_int(b, "index", i);
		pch_json_str(b, "state", chan_state[st & 3]);
		pch_json_int(b, "bytes", __atomic_load_n(&c->bytes, __ATOMIC_RELAXED));
		pch_json_int(b, "frames", __atomic_load_n(&c->frames, __ATOMIC_RELAXED));
		pch_json_int(b, "pages", __atomic_load_n(&c->pages, __ATOMIC_RELAXED));
		json_builder_end_object(b);
	}
	json_builder_end_array(b);

	json_builder_set_member_name(b, "errors");
	json_builder_begin_array(b);
	pthread_mutex_lock(&h->err_lock);
	for (i = 0; i < h->nerrors; i++)
		json_builder_add_string_value(b, h->errors[i]);
	pthread_mutex_unlock(&h->err_lock);
	json_builder_end_array(b);
	json_builder_end_object(b);

	out = pch_json_text(b);
	g_object_unref(b);
	g_free(s);
	return out;
}
