// SPDX-License-Identifier: MIT
/* log.c - one line per call, one write(2) per line, safe from any thread. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

int pch_log_level = PCH_LOG_INFO;
uint32_t pch_log_dbg_mask;
static char log_prog[32] = "pch";

void pch_log_init(const char *prog, int level, uint32_t dbg_mask)
{
	snprintf(log_prog, sizeof(log_prog), "%s", prog);
	pch_log_level = level;
	pch_log_dbg_mask = dbg_mask;
	if (dbg_mask && pch_log_level < PCH_LOG_DBG)
		pch_log_level = PCH_LOG_DBG;
}

static const struct {
	const char *name;
	uint32_t bit;
} dbg_names[] = {
	{ "uffd", PCH_DBG_UFFD }, { "chan", PCH_DBG_CHAN }, { "ring", PCH_DBG_RING },
	{ "ctl", PCH_DBG_CTL },	  { "bpf", PCH_DBG_BPF },   { "src", PCH_DBG_SRC },
	{ "vm", PCH_DBG_VM },	  { "all", PCH_DBG_ALL },
};

int pch_log_parse_mask(const char *s, uint32_t *mask)
{
	char buf[256], *tok, *save = NULL;
	uint64_t v;

	if (pch_parse_u64(s, 0, UINT32_MAX, &v) == 0) {
		*mask = (uint32_t)v;
		return 0;
	}
	if (strlen(s) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, s);
	*mask = 0;
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		size_t i;

		for (i = 0; i < PCH_ARRAY_SIZE(dbg_names); i++)
			if (!strcmp(tok, dbg_names[i].name))
				break;
		if (i == PCH_ARRAY_SIZE(dbg_names))
			return -EINVAL;
		*mask |= dbg_names[i].bit;
	}
	return 0;
}

void pch_log(int level, const char *fmt, ...)
{
	static const char *const lvl[] = { "error: ", "warning: ", "", "debug: " };
	char line[1024];
	int saved = errno, n, m;
	uint64_t t = pch_now_ns();
	va_list ap;

	if (level > pch_log_level)
		return;
	n = snprintf(line, sizeof(line), "%s[%llu.%06llu]: %s", log_prog,
		     (unsigned long long)(t / 1000000000ull),
		     (unsigned long long)(t % 1000000000ull / 1000), lvl[level & 3]);
	va_start(ap, fmt);
	m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	n += m;
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, n) < 0) {
		/* nowhere left to report it */
	}
	errno = saved;
}
