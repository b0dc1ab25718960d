/* SPDX-License-Identifier: MIT */
/* log.h - logging for every pch program (stderr, one write per line). */
#ifndef PCH_LOG_H
#define PCH_LOG_H

#include <stdint.h>

/* debug subsystems, selected with -d MASK (names or a number) */
enum pch_dbg {
	PCH_DBG_UFFD = 1u << 0,
	PCH_DBG_CHAN = 1u << 1,
	PCH_DBG_RING = 1u << 2,
	PCH_DBG_CTL = 1u << 3,
	PCH_DBG_BPF = 1u << 4,
	PCH_DBG_SRC = 1u << 5,
	PCH_DBG_VM = 1u << 6,
	PCH_DBG_ALL = 0xffffffffu,
};

enum pch_log_level { PCH_LOG_ERR = 0, PCH_LOG_WARN, PCH_LOG_INFO, PCH_LOG_DBG };

/* Set the program name printed on every line, and the verbosity. */
void pch_log_init(const char *prog, int level, uint32_t dbg_mask);
/* Parse "uffd,chan" or "all" or a number into a mask; -EINVAL if unknown. */
int pch_log_parse_mask(const char *s, uint32_t *mask);
extern int pch_log_level;
extern uint32_t pch_log_dbg_mask;

void pch_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define pch_err(...) pch_log(PCH_LOG_ERR, __VA_ARGS__)
#define pch_warn(...) pch_log(PCH_LOG_WARN, __VA_ARGS__)
#define pch_info(...) \
	do { if (pch_log_level >= PCH_LOG_INFO) pch_log(PCH_LOG_INFO, __VA_ARGS__); } while (0)
#define pch_dbg(mask, ...) \
	do { if (pch_log_dbg_mask & (mask)) pch_log(PCH_LOG_DBG, __VA_ARGS__); } while (0)

#endif
