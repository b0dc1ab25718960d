// SPDX-License-Identifier: MIT
/* fault.c - pch-proxy's fault specs: parse, arm per connection, fire. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

#include "pch-proxy.h"

#define MAX_MS (1ull << 40)

static int bad(char *why, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(char *why, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, len, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int parse_chan(const char *s, struct px_fault *f, char *why, size_t len)
{
	uint64_t v;

	if (!strcmp(s, "control"))
		f->chan = PX_CH_CONTROL;
	else if (!strcmp(s, "urgent"))
		f->chan = PX_CH_URGENT;
	else if (!strcmp(s, "any-pages"))
		f->chan = PX_CH_ANY_PAGES;
	else if (!strncmp(s, "pages:", 6) && !pch_parse_u64(s + 6, 0, PCH_MAX_CHANNELS - 1, &v)) {
		f->chan = PX_CH_PAGES;
		f->index = (unsigned)v;
	} else {
		return bad(why, len, "channel '%s': expected control, urgent, pages:N (N < 64) "
				     "or any-pages", s);
	}
	return 0;
}

static int parse_action(const char *s, struct px_fault *f, char *why, size_t len)
{
	const char *eq = strchr(s, '=');
	size_t nl = eq ? (size_t)(eq - s) : strlen(s);

	f->action_ms = 0;
	if (nl == 3 && !strncmp(s, "cut", 3) && !eq) {
		f->action = PX_CUT;
	} else if (nl == 5 && !strncmp(s, "reset", 5) && !eq) {
		f->action = PX_RESET;
	} else if (nl == 5 && !strncmp(s, "stall", 5)) {
		f->action = PX_STALL;
		if (eq && pch_parse_u64(eq + 1, 1, MAX_MS, &f->action_ms))
			return bad(why, len, "action '%s': stall=MS wants MS >= 1", s);
	} else if (nl == 5 && !strncmp(s, "delay", 5) && eq) {
		f->action = PX_DELAY;
		if (pch_parse_u64(eq + 1, 1, MAX_MS, &f->action_ms))
			return bad(why, len, "action '%s': delay=MS wants MS >= 1", s);
	} else {
		return bad(why, len, "action '%s': expected cut, reset, stall, stall=MS or delay=MS",
			   s);
	}
	return 0;
}

static int parse_trigger(const char *s, struct px_fault *f, char *why, size_t len)
{
	if (!strncmp(s, "bytes=", 6)) {
		f->trigger = PX_AT_BYTES;
		if (pch_parse_size(s + 6, &f->at))
			return bad(why, len, "trigger '%s': bytes=N wants a byte count (1000000, 1M)",
				   s);
	} else if (!strncmp(s, "ms=", 3)) {
		f->trigger = PX_AT_MS;
		if (pch_parse_u64(s + 3, 0, MAX_MS, &f->at))
			return bad(why, len, "trigger '%s': ms=N wants milliseconds", s);
	} else {
		return bad(why, len, "trigger '%s': expected bytes=N or ms=N", s);
	}
	return 0;
}

int px_fault_parse(const char *s, struct px_fault *f, char *why, size_t len)
{
	g_autofree char *copy = g_strdup(s);
	char *at, *colon;
	int ret;

	/* the channel may hold a ':' itself (pages:N): split at the last ones */
	at = strrchr(copy, '@');
	if (!at)
		return bad(why, len, "'%s': expected CHANNEL:ACTION@TRIGGER", s);
	*at = '\0';
	colon = strrchr(copy, ':');
	if (!colon)
		return bad(why, len, "'%s': expected CHANNEL:ACTION@TRIGGER", s);
	*colon = '\0';
	ret = parse_chan(copy, f, why, len);
	if (!ret)
		ret = parse_action(colon + 1, f, why, len);
	if (!ret)
		ret = parse_trigger(at + 1, f, why, len);
	if (ret)
		return ret;
	f->spec = g_strdup(s);
	f->nfired = 0;
	return 0;
}

static bool matches(const struct px_fault *f, const struct px_conn *c)
{
	if (!c->is_pch)
		return false;
	switch (f->chan) {
	case PX_CH_CONTROL:
	case PX_CH_URGENT:
		return c->chan == f->chan;
	case PX_CH_PAGES:
		return c->chan == PX_CH_PAGES && c->index == f->index;
	case PX_CH_ANY_PAGES:
		return c->chan == PX_CH_PAGES;
	}
	return false;
}

/*
 * A fault fires once in all, on the first matching connection to reach its
 * trigger: a helper that reconnects after it (docs/protocol.md 5.8) gets a
 * clean relay, so a test injects one failure, not one per reconnect.
 */
static bool spent(const struct px_fault *f)
{
	return f->nfired;
}

void px_fault_arm(struct px *px, struct px_conn *c)
{
	unsigned i;

	for (i = 0; i < px->nfaults; i++)
		if (matches(&px->fault[i], c) && !spent(&px->fault[i]))
			c->armed |= 1u << i;
}

uint64_t px_fault_read_cap(const struct px *px, const struct px_conn *c)
{
	uint64_t cap = UINT64_MAX, in = c->d[PX_DOWN].in;
	unsigned i;

	for (i = 0; i < px->nfaults; i++) {
		const struct px_fault *f = &px->fault[i];

		if (!(c->armed & (1u << i)) || f->trigger != PX_AT_BYTES || spent(f))
			continue;
		cap = PCH_MIN(cap, f->at > in ? f->at - in : 0);
	}
	return cap;
}

uint64_t px_fault_next_ns(const struct px *px, const struct px_conn *c)
{
	uint64_t next = UINT64_MAX;
	unsigned i;

	for (i = 0; i < px->nfaults; i++) {
		const struct px_fault *f = &px->fault[i];

		if (!(c->armed & (1u << i)) || f->trigger != PX_AT_MS || spent(f))
			continue;
		next = PCH_MIN(next, c->t_accept_ns + f->at * 1000000ull);
	}
	return next;
}

static bool reached(const struct px_fault *f, const struct px_conn *c, uint64_t now)
{
	if (f->trigger == PX_AT_BYTES)
		return c->d[PX_DOWN].out >= f->at;
	return now >= c->t_accept_ns + f->at * 1000000ull;
}

/* Do what f says to c; the log line says what happened. */
static void fire(struct px *px, struct px_fault *f, struct px_conn *c, uint64_t now)
{
	char what[160];

	f->nfired++;
	snprintf(what, sizeof(what), "fault %s: fired on %s (conn %u) at byte %llu source->helper "
				     "(%llu helper->source), %.3f s after connect",
		 f->spec, c->name, c->id, (unsigned long long)c->d[PX_DOWN].out,
		 (unsigned long long)c->d[PX_UP].out, (now - c->t_accept_ns) / 1e9);
	switch (f->action) {
	case PX_CUT:
	case PX_RESET:
		pch_info("%s: %s", what, f->action == PX_CUT ? "cut (FIN)" : "reset (RST)");
		px_conn_close(px, c, f->action == PX_RESET, "%s by fault %s",
			      f->action == PX_CUT ? "cut" : "reset", f->spec);
		break;
	case PX_STALL:
		c->stalled = true;
		c->stall_until_ns = f->action_ms ? now + f->action_ms * 1000000ull : 0;
		if (f->action_ms)
			pch_info("%s: stalled for %llu ms", what, (unsigned long long)f->action_ms);
		else
			pch_info("%s: stalled for good", what);
		break;
	case PX_DELAY:
		c->delay_ns = f->action_ms * 1000000ull;
		pch_info("%s: every chunk delayed %llu ms from now on", what,
			 (unsigned long long)f->action_ms);
		break;
	}
}

void px_fault_check(struct px *px, struct px_conn *c, uint64_t now)
{
	unsigned i;

	for (i = 0; i < px->nfaults && c->open && c->identified; i++) {
		struct px_fault *f = &px->fault[i];

		if (!(c->armed & (1u << i)))
			continue;
		if (spent(f)) {
			c->armed &= ~(1u << i);
			continue;
		}
		if (!reached(f, c, now))
			continue;
		c->armed &= ~(1u << i);
		fire(px, f, c, now);
	}
}
