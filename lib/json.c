// SPDX-License-Identifier: MIT
/* json.c - shared JsonBuilder helpers for the programs' reports. */
#include <errno.h>

#include "json.h"
#include "log.h"
#include "util.h"

void pch_json_int(JsonBuilder *b, const char *name, uint64_t v)
{
	json_builder_set_member_name(b, name);
	json_builder_add_int_value(b, (gint64)v);
}

void pch_json_double(JsonBuilder *b, const char *name, double v)
{
	json_builder_set_member_name(b, name);
	json_builder_add_double_value(b, v);
}

void pch_json_str(JsonBuilder *b, const char *name, const char *v)
{
	json_builder_set_member_name(b, name);
	json_builder_add_string_value(b, v);
}

void pch_json_latency(JsonBuilder *b, const char *name, const struct pch_hist *h)
{
	static const struct {
		const char *key;
		double q;
	} qs[] = { { "p50", 0.5 }, { "p90", 0.9 }, { "p99", 0.99 }, { "p999", 0.999 } };
	size_t i;

	json_builder_set_member_name(b, name);
	json_builder_begin_object(b);
	pch_json_int(b, "count", h->count);
	for (i = 0; i < PCH_ARRAY_SIZE(qs); i++)
		pch_json_double(b, qs[i].key, pch_hist_quantile(h, qs[i].q) / 1e3);
	pch_json_double(b, "mean", pch_hist_mean(h) / 1e3);
	pch_json_double(b, "max", h->count ? h->max / 1e3 : 0.0);
	json_builder_end_object(b);
}

char *pch_json_text(JsonBuilder *b)
{
	JsonGenerator *g = json_generator_new();
	JsonNode *root = json_builder_get_root(b);
	char *text;

	json_generator_set_pretty(g, TRUE);
	json_generator_set_root(g, root);
	text = json_generator_to_data(g, NULL);
	json_node_unref(root);
	g_object_unref(g);
	return text;
}

int pch_json_write(JsonBuilder *b, const char *path)
{
	char *text = pch_json_text(b);
	GError *err = NULL;
	int rc = 0;

	if (!g_file_set_contents(path, text, -1, &err)) {
		pch_err("%s: %s", path, err->message);
		g_error_free(err);
		rc = -EIO;
	}
	g_free(text);
	return rc;
}
