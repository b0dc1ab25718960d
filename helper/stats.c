// SPDX-License-Identifier: MIT
/* stats.c - merge the threads' counters and render the helper's stats JSON. */
#include <json-glib/json-glib.h>
#include <string.h>

#include "helper_i.h"
#include "util.h"

#define F(x) offsetof(struct hstats, x)
static const size_t counter_fields[] = {
	F(pages_bulk), F(pages_urgent), F(pages_zero), F(zero_installed), F(inplace), F(bytes),
	F(frames), F(copy_ioctls), F(eexist), F(eagain), F(faults), F(faults_zero),
	F(faults_present), F(faults_dup), F(faults_late), F(requests), F(requests_sweep), F(events_other),
	F(uffd_reads),
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

static void add_latency(JsonBuilder *b, const char *name, const struct pch_hist *hist)
{
	static const struct {
		const char *key;
		double q;
	} qs[] = { { "p50", 0.5 }, { "p90", 0.9 }, { "p99", 0.99 }, { "p999", 0.999 } };
	size_t i;

	json_builder_set_member_name(b, name);
	json_builder_begin_object(b);
	json_builder_set_member_name(b, "count");
	json_builder_add_int_value(b, (gint64)hist->count);
	for (i = 0; i < PCH_ARRAY_SIZE(qs); i++) {
		json_builder_set_member_name(b, qs[i].key);
		json_builder_add_double_value(b, pch_hist_quantile(hist, qs[i].q) / 1000.0);
	}
	json_builder_set_member_name(b, "max");
	json_builder_add_double_value(b, hist->count ? hist->max / 1000.0 : 0.0);
	json_builder_set_member_name(b, "mean");
	json_builder_add_double_value(b, pch_hist_mean(hist) / 1000.0);
	json_builder_end_object(b);
}

static void add_int(JsonBuilder *b, const char *k, uint64_t v)
{
	json_builder_set_member_name(b, k);
	json_builder_add_int_value(b, (gint64)v);
}

static void add_double(JsonBuilder *b, const char *k, double v)
{
	json_builder_set_member_name(b, k);
	json_builder_add_double_value(b, v);
}

static void add_str(JsonBuilder *b, const char *k, const char *v)
{
	json_builder_set_member_name(b, k);
	json_builder_add_string_value(b, v);
}

char *stats_json(struct helper *h)
{
	static const char *const chan_state[] = { "idle", "streaming", "ended", "dead" };
	struct hstats *s = g_malloc0(sizeof(*s));
	JsonBuilder *b = json_builder_new();
	JsonGenerator *g;
	JsonNode *root;
	uint64_t end, total = pages_total(h), inplace = pages_inplace(h);
	double secs;
	unsigned i;
	char *out;

	stats_merge(h, s);
	end = h->t_complete_ns ? h->t_complete_ns : pch_now_ns();
	secs = h->t_start_ns ? (end - h->t_start_ns) / 1e9 : 0.0;

	json_builder_begin_object(b);
	add_str(b, "result", h->failed ? "fail" : h->complete ? "ok" : "running");
	add_str(b, "io_path", h->io_path ? h->io_path : "none");
	add_int(b, "pages_total", total);
	add_int(b, "pages_inplace", inplace);
	add_int(b, "pages_premarked", h->premarked);
	add_int(b, "pages_bulk", s->pages_bulk);
	add_int(b, "pages_urgent", s->pages_urgent);
	add_int(b, "pages_zero", s->pages_zero);
	add_int(b, "zero_installed", s->zero_installed);
	add_int(b, "bytes", s->bytes);
	add_int(b, "frames", s->frames);
	add_int(b, "copy_ioctls", s->copy_ioctls);
	add_int(b, "faults", s->faults);
	add_int(b, "faults_zero", s->faults_zero);
	add_int(b, "faults_present", s->faults_present);
	add_int(b, "faults_dup", s->faults_dup);
	add_int(b, "faults_late", s->faults_late);
	add_int(b, "requests", s->requests);
	add_int(b, "requests_sweep", s->requests_sweep);
	add_int(b, "eexist", s->eexist);
	add_int(b, "eagain", s->eagain);
	add_int(b, "events_other", s->events_other);
	add_int(b, "uffd_reads", s->uffd_reads);
	add_int(b, "sync_reached", h->sync_reached);
	add_double(b, "duration_s", secs);
	add_double(b, "bulk_gbps", secs > 0 ? s->bytes / secs / 1e9 : 0.0);
	add_latency(b, "service_latency_us", &s->service);

	json_builder_set_member_name(b, "channels");
	json_builder_begin_array(b);
	for (i = 0; i < h->o.channels; i++) {
		struct rx_chan *c = &h->pages[i];
		int st = __atomic_load_n(&c->state, __ATOMIC_ACQUIRE);

		json_builder_begin_object(b);
		add_int(b, "index", i);
		add_str(b, "state", chan_state[st & 3]);
		add_int(b, "bytes", __atomic_load_n(&c->bytes, __ATOMIC_RELAXED));
		add_int(b, "frames", __atomic_load_n(&c->frames, __ATOMIC_RELAXED));
		add_int(b, "pages", __atomic_load_n(&c->pages, __ATOMIC_RELAXED));
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

	root = json_builder_get_root(b);
	g = json_generator_new();
	json_generator_set_pretty(g, TRUE);
	json_generator_set_root(g, root);
	out = json_generator_to_data(g, NULL);
	json_node_unref(root);
	g_object_unref(g);
	g_object_unref(b);
	g_free(s);
	return out;
}
