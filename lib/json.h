/* SPDX-License-Identifier: MIT */
/*
 * json.h - the few JsonBuilder helpers every pch program's report uses, so
 * that a latency object has the same keys and units everywhere.
 */
#ifndef PCH_JSON_H
#define PCH_JSON_H

#include <json-glib/json-glib.h>
#include <stdint.h>

#include "hist.h"

void pch_json_int(JsonBuilder *b, const char *name, uint64_t v);
void pch_json_double(JsonBuilder *b, const char *name, double v);
void pch_json_str(JsonBuilder *b, const char *name, const char *v);
/*
 * name: { count, p50, p90, p99, p999, mean, max } from a histogram in ns,
 * reported in microseconds.
 */
void pch_json_latency(JsonBuilder *b, const char *name, const struct pch_hist *h);

/* The builder's document as pretty-printed text (g_free it). */
char *pch_json_text(JsonBuilder *b);
/*
 * Write the builder's document to path atomically (a reader never sees
 * half a file).  0, or -EIO with the reason logged.
 */
int pch_json_write(JsonBuilder *b, const char *path);

#endif
