// SPDX-License-Identifier: MIT
/* stats.c - pch-source's statistics JSON, written once at exit. */
#include <errno.h>
#include <string.h>

#include <json-glib/json-glib.h>

#include "json.h"
#include "log.h"
#include "source_i.h"

/* Add one thread's counters into dst. */
void src_stats_add(struct src_stats *dst, const struct src_stats *a)
{
	dst->pages_bulk += a->pages_bulk;
	dst->pages_zero += a->pages_zero;
	dst->pages_hole += a->pages_hole;
	dst->bytes_bulk += a->bytes_bulk;
	dst->frames_bulk += a->frames_bulk;
	dst->requests += a->requests;
	dst->pages_urgent += a->pages_urgent;
	dst->urgent_zero += a->urgent_zero;
	dst->bytes_urgent += a->bytes_urgent;
	dst->frames_urgent += a->frames_urgent;
}

/*
 * Write the statistics to path (atomically: a reader never sees half a
 * file).  Call after every thread is joined.  bulk_gbps is in GB/s (10^9
 * bytes/s, as pch-helper reports it) over bulk_s, the time from START until
 * every channel sent END or died (or until exit).
 * Returns 0 or -EIO (logged).
 */
int src_stats_write(struct src *s, const char *path, const struct src_stats *tot,
		    bool ok, double duration_s, double bulk_s)
{
	g_autoptr(JsonBuilder) b = json_builder_new();
	unsigned i;

	json_builder_begin_object(b);
	pch_json_str(b, "result", ok ? "ok" : "fail");
	pch_json_int(b, "channels", s->opt.channels);
	pch_json_str(b, "backend", s->be.ops ? s->be.ops->name : "none");
	pch_json_str(b, "backing", s->be.ops ? pch_backing_name(s->be.backing) : "none");
	pch_json_str(b, "block", s->opt.block_name);
	pch_json_int(b, "page_size", s->be.page_size);
	pch_json_int(b, "pages_total", s->be.npages);
	pch_json_int(b, "pages_skipped", s->skip.words ? pch_bitmap_count(&s->skip) : 0);
	pch_json_int(b, "pages_bulk", tot->pages_bulk);
	pch_json_int(b, "pages_zero", tot->pages_zero);
	pch_json_int(b, "pages_hole", tot->pages_hole);
	pch_json_int(b, "bytes_bulk", tot->bytes_bulk);
	pch_json_int(b, "frames_bulk", tot->frames_bulk);
	pch_json_int(b, "requests", tot->requests);
	pch_json_int(b, "resumes", s->resumes);
	pch_json_int(b, "pages_urgent", tot->pages_urgent);
	pch_json_int(b, "pages_urgent_zero", tot->urgent_zero);
	pch_json_int(b, "bytes_urgent", tot->bytes_urgent);
	pch_json_int(b, "frames_urgent", tot->frames_urgent);
	pch_json_int(b, "channels_dead", __atomic_load_n(&s->senders_dead, __ATOMIC_ACQUIRE));
	pch_json_int(b, "sync_points", __atomic_load_n(&s->nepochs, __ATOMIC_ACQUIRE));
	pch_json_double(b, "duration_s", duration_s);
	pch_json_double(b, "bulk_s", bulk_s);
	pch_json_double(b, "bulk_gbps", bulk_s > 0 ? tot->bytes_bulk / bulk_s / 1e9 : 0.0);

	json_builder_set_member_name(b, "refused");
	json_builder_begin_object(b);
	pthread_mutex_lock(&s->lock);
	for (i = 1; i < PCH_REFUSE_MAX; i++)
		if (s->refused[i])
			pch_json_int(b, pch_refuse_name(i), s->refused[i]);
	json_builder_end_object(b);
	pch_json_int(b, "handshake_failed", s->handshake_failed);
	pch_json_int(b, "handshake_timeouts", s->handshake_timeouts);
	pch_json_int(b, "handshake_evicted", s->handshake_evicted);
	pch_json_int(b, "stale_channels", s->stale_channels);
	pch_json_int(b, "connections", s->connections);
	pch_json_int(b, "half_open_max", s->half_open_max);
	pthread_mutex_unlock(&s->lock);

	json_builder_set_member_name(b, "per_channel");
	json_builder_begin_array(b);
	for (i = 0; s->senders && i < s->opt.channels; i++) {
		const struct src_stats *st = &s->senders[i].st;

		json_builder_begin_object(b);
		pch_json_int(b, "index", i);
		pch_json_int(b, "pages", st->pages_bulk);
		pch_json_int(b, "pages_zero", st->pages_zero);
		pch_json_int(b, "bytes", st->bytes_bulk);
		pch_json_int(b, "frames", st->frames_bulk);
		json_builder_end_object(b);
	}
	json_builder_end_array(b);

	json_builder_set_member_name(b, "errors");
	json_builder_begin_array(b);
	pthread_mutex_lock(&s->err_lock);
	for (i = 0; i < s->nerrors; i++)
		json_builder_add_string_value(b, s->errors[i]);
	pthread_mutex_unlock(&s->err_lock);
	json_builder_end_array(b);
	json_builder_end_object(b);

	return pch_json_write(b, path);
}
