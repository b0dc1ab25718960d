// SPDX-License-Identifier: MIT
/*
 * needs.c - names, and the decision whether a case can run on a memory kind.
 *
 * Pure functions over a struct us_probe: the unit test feeds them a made-up
 * probe (tests/unit/test_uffd_suite.c).
 */
#include <stdio.h>
#include <string.h>

#include "suite.h"

static const char *const kind_names[] = {
	[US_ANON] = "anon",
	[US_SHMEM] = "shmem",
	[US_SHMEM_PRIVATE] = "shmem-private",
	[US_HUGETLB] = "hugetlb",
	[US_HUGETLB_SHARED] = "hugetlb-shared",
	[US_KIND_NONE] = "none",
};

const char *us_kind_name(enum us_kind k)
{
	return (unsigned)k <= US_KIND_NONE ? kind_names[k] : "?";
}

static const char *const feature_names[] = {
	"UFFD_FEATURE_PAGEFAULT_FLAG_WP",
	"UFFD_FEATURE_EVENT_FORK",
	"UFFD_FEATURE_EVENT_REMAP",
	"UFFD_FEATURE_EVENT_REMOVE",
	"UFFD_FEATURE_MISSING_HUGETLBFS",
	"UFFD_FEATURE_MISSING_SHMEM",
	"UFFD_FEATURE_EVENT_UNMAP",
	"UFFD_FEATURE_SIGBUS",
	"UFFD_FEATURE_THREAD_ID",
	"UFFD_FEATURE_MINOR_HUGETLBFS",
	"UFFD_FEATURE_MINOR_SHMEM",
	"UFFD_FEATURE_EXACT_ADDRESS",
	"UFFD_FEATURE_WP_HUGETLBFS_SHMEM",
	"UFFD_FEATURE_WP_UNPOPULATED",
	"UFFD_FEATURE_POISON",
	"UFFD_FEATURE_WP_ASYNC",
	"UFFD_FEATURE_MOVE",
};

/* bit: a single UFFD_FEATURE_* bit */
const char *us_feature_name(uint64_t bit)
{
	for (unsigned i = 0; i < sizeof(feature_names) / sizeof(feature_names[0]); i++)
		if (bit == 1ULL << i)
			return feature_names[i];
	return "UFFD_FEATURE_(unknown)";
}

static const char *const ioctl_names[] = {
	[_UFFDIO_REGISTER] = "UFFDIO_REGISTER",
	[_UFFDIO_UNREGISTER] = "UFFDIO_UNREGISTER",
	[_UFFDIO_WAKE] = "UFFDIO_WAKE",
	[_UFFDIO_COPY] = "UFFDIO_COPY",
	[_UFFDIO_ZEROPAGE] = "UFFDIO_ZEROPAGE",
	[_UFFDIO_MOVE] = "UFFDIO_MOVE",
	[_UFFDIO_WRITEPROTECT] = "UFFDIO_WRITEPROTECT",
	[_UFFDIO_CONTINUE] = "UFFDIO_CONTINUE",
	[_UFFDIO_POISON] = "UFFDIO_POISON",
};

/* nr: an _UFFDIO_* number */
const char *us_ioctl_name(unsigned nr)
{
	if (nr == _UFFDIO_API)
		return "UFFDIO_API";
	if (nr < sizeof(ioctl_names) / sizeof(ioctl_names[0]) && ioctl_names[nr])
		return ioctl_names[nr];
	return "UFFDIO_(unknown)";
}

const char *us_mode_name(unsigned mode)
{
	switch (mode) {
	case UFFDIO_REGISTER_MODE_MISSING: return "MISSING";
	case UFFDIO_REGISTER_MODE_WP: return "WP";
	case UFFDIO_REGISTER_MODE_MINOR: return "MINOR";
	}
	return "(several modes)";
}

static bool is_shmem(enum us_kind k)
{
	return k == US_SHMEM || k == US_SHMEM_PRIVATE;
}

static bool is_hugetlb(enum us_kind k)
{
	return k == US_HUGETLB || k == US_HUGETLB_SHARED;
}

uint64_t us_kind_features(enum us_kind k, unsigned mode)
{
	uint64_t f = 0;

	if (mode & UFFDIO_REGISTER_MODE_MISSING) {
		if (is_shmem(k))
			f |= UFFD_FEATURE_MISSING_SHMEM;
		if (is_hugetlb(k))
			f |= UFFD_FEATURE_MISSING_HUGETLBFS;
	}
	if (mode & UFFDIO_REGISTER_MODE_MINOR) {
		if (is_shmem(k))
			f |= UFFD_FEATURE_MINOR_SHMEM;
		if (is_hugetlb(k))
			f |= UFFD_FEATURE_MINOR_HUGETLBFS;
	}
	if (mode & UFFDIO_REGISTER_MODE_WP) {
		f |= UFFD_FEATURE_PAGEFAULT_FLAG_WP;
		if (is_shmem(k) || is_hugetlb(k))
			f |= UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
	}
	return f;
}

static int mode_index(unsigned mode)
{
	switch (mode) {
	case UFFDIO_REGISTER_MODE_MISSING: return US_MODE_MISSING;
	case UFFDIO_REGISTER_MODE_WP: return US_MODE_WP;
	case UFFDIO_REGISTER_MODE_MINOR: return US_MODE_MINOR;
	}
	return -1;
}

/* append "A, B" names of the bits of missing to buf */
static void name_bits(char *buf, size_t len, uint64_t missing, bool ioctls)
{
	size_t off = strlen(buf);

	for (unsigned i = 0; i < 64 && off < len; i++) {
		if (!(missing & (1ULL << i)))
			continue;
		off += snprintf(buf + off, len - off, "%s%s", off && buf[off - 1] != ' ' ? ", " : "",
				ioctls ? us_ioctl_name(i) : us_feature_name(1ULL << i));
	}
}

int us_decide(const struct us_probe *p, const struct us_case *c, enum us_kind k, char *why,
	      size_t len)
{
	uint64_t need, missing;
	int mi;

	why[0] = '\0';
	if (!p->uffd_ok) {
		snprintf(why, len, "userfaultfd unavailable: %s", p->uffd_why);
		return 1;
	}
	need = c->features;
	if (k != US_KIND_NONE)
		need |= us_kind_features(k, c->mode);
	missing = need & ~p->features;
	if (missing) {
		snprintf(why, len, "missing ");
		name_bits(why, len, missing, false);
		return 1;
	}
	if (k == US_KIND_NONE)
		return 0;
	if (!p->kind_ok[k]) {
		snprintf(why, len, "%s", p->kind_why[k]);
		return 1;
	}
	mi = mode_index(c->mode);
	if (mi < 0)
		return 0; /* no registration, or several modes: the case checks */
	if (p->reg_err[k][mi]) {
		snprintf(why, len, "UFFDIO_REGISTER_MODE_%s refused on %s: %s", us_mode_name(c->mode),
			 us_kind_name(k), strerror(p->reg_err[k][mi]));
		return 1;
	}
	missing = c->ioctls & ~p->reg_ioctls[k][mi];
	if (missing) {
		snprintf(why, len, "missing ");
		name_bits(why, len, missing, true);
		snprintf(why + strlen(why), len - strlen(why), " (%s registration on %s)",
			 us_mode_name(c->mode), us_kind_name(k));
		return 1;
	}
	return 0;
}
