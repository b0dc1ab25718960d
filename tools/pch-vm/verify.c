// SPDX-License-Identifier: MIT
/*
 * verify.c - after the migration, check every byte of guest RAM against what
 * the source served: the synthetic image (a function of seed, block and page
 * index) or an image file.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "util.h"
#include "pch-vm.h"

#define VERIFY_LOG_MAX 10          /* mismatches logged one by one */
#define VERIFY_FILE_CHUNK (4u << 20) /* image file read size */

/* Where the expected bytes come from. */
struct expect {
	const struct vm *vm;
	int fd;          /* image file, or -1 for the synthetic image */
	uint64_t fsize;  /* bytes in the file; beyond it pages read as zero */
	uint8_t *buf;    /* file: VERIFY_FILE_CHUNK bytes; synthetic: one page */
	uint64_t first;  /* file: first page held in buf */
	uint64_t npages; /* file: pages held in buf */
};

/* Load the chunk of the file holding page; 0 or -errno. */
static int expect_load(struct expect *e, uint64_t page)
{
	uint32_t ps = e->vm->cfg.image.page_size;
	uint64_t off = page * ps, want, done = 0;
	ssize_t n;

	e->first = page;
	e->npages = PCH_MIN((uint64_t)VERIFY_FILE_CHUNK / ps, e->vm->npages - page);
	want = e->npages * ps;
	memset(e->buf, 0, want);
	while (off + done < e->fsize && done < want) {
		n = pread(e->fd, e->buf + done, PCH_MIN(want - done, e->fsize - off - done),
			  (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break; /* file shrank: the rest reads as zero */
		done += (uint64_t)n;
	}
	return 0;
}

/* Expected contents of page (page_size bytes), or NULL on a read error. */
static const uint8_t *expect_page(struct expect *e, uint64_t page)
{
	uint32_t ps = e->vm->cfg.image.page_size;
	int ret;

	if (e->fd < 0) {
		pch_image_fill(&e->vm->cfg.image, 0, page, e->buf);
		return e->buf;
	}
	if (page < e->first || page >= e->first + e->npages) {
		ret = expect_load(e, page);
		if (ret) {
			pch_err("%s: read at page %llu: %s", e->vm->cfg.image_file,
				(unsigned long long)page, strerror(-ret));
			return NULL;
		}
	}
	return e->buf + (page - e->first) * ps;
}

/* Is page as expected?  The synthetic image checks without a copy. */
static int page_ok(struct expect *e, uint64_t page, const uint8_t *got)
{
	const uint8_t *want;

	if (e->fd < 0)
		return pch_image_verify(&e->vm->cfg.image, 0, page, got);
	want = expect_page(e, page);
	if (!want)
		return -EIO;
	return memcmp(want, got, e->vm->cfg.image.page_size) == 0;
}

/* Log one mismatch with the page index and the first differing byte. */
static void log_mismatch(struct vm *vm, struct expect *e, uint64_t page, const uint8_t *got,
			 bool resident)
{
	uint32_t ps = vm->cfg.image.page_size;
	const uint8_t *want = expect_page(e, page);
	uint32_t i = 0;

	if (!want)
		return;
	while (i < ps && want[i] == got[i])
		i++;
	pch_err("page %llu (offset 0x%llx): byte 0x%llx is 0x%02x, expected 0x%02x%s",
		(unsigned long long)page, (unsigned long long)page * ps,
		(unsigned long long)page * ps + i, got[i], want[i],
		resident ? "" : " (page never installed)");
}

/*
 * Record which pages are mapped, before the RAM is unregistered: after
 * that, vCPUs woken from a fault that was never served map zero pages, and
 * verification's own reads do too.  0 or -errno (logged).
 */
int vm_verify_snapshot(struct vm *vm)
{
	int ret;

	free(vm->resident);
	vm->resident = malloc(vm->npages);
	if (!vm->resident)
		return -ENOMEM;
	ret = vm_ram_residency(vm, vm->resident);
	if (ret) {
		pch_err("verify: no residency snapshot: %s", strerror(-ret));
		free(vm->resident);
		vm->resident = NULL;
	}
	return ret;
}

/* page_ok, or 2 when reading the page is a memory error (poisoned). */
static int page_ok_guarded(struct expect *e, uint64_t page, const uint8_t *got)
{
	sigjmp_buf jb;
	int ok;

	if (VM_GUARD_BEGIN(jb))
		return 2;
	ok = page_ok(e, page, got);
	VM_GUARD_END();
	return ok;
}

/*
 * Verify every page.  Pages the helper never installed read as zero (the
 * range is unregistered by now): correct for zero pages, which may travel
 * only as "known zero", and a mismatch, flagged as missing, for others.
 * 0, or -errno if the check itself could not run (the counts tell the rest).
 */
int vm_verify(struct vm *vm)
{
	uint32_t ps = vm->cfg.image.page_size;
	struct expect e = { .vm = vm, .fd = -1 };
	const unsigned char *resident = vm->resident;
	uint64_t page;
	struct stat st;
	int ret = 0, ok;

	vm->pages_verified = vm->pages_mismatched = vm->pages_missing = vm->pages_poisoned = 0;

	if (vm->cfg.image_file) {
		e.fd = open(vm->cfg.image_file, O_RDONLY | O_CLOEXEC);
		if (e.fd < 0 || fstat(e.fd, &st) < 0) {
			ret = -errno;
			pch_err("verify: %s: %s", vm->cfg.image_file, strerror(-ret));
			goto out;
		}
		e.fsize = (uint64_t)st.st_size;
		if (e.fsize != vm->cfg.ram_bytes)
			pch_warn("verify: %s has %llu bytes, RAM %llu: the rest must be zero",
				 vm->cfg.image_file, (unsigned long long)e.fsize,
				 (unsigned long long)vm->cfg.ram_bytes);
		e.buf = malloc(VERIFY_FILE_CHUNK > ps ? VERIFY_FILE_CHUNK : ps);
	} else {
		e.buf = malloc(ps);
	}
	if (!e.buf) {
		ret = -ENOMEM;
		pch_err("verify: out of memory");
		goto out;
	}

	for (page = 0; page < vm->npages; page++) {
		const uint8_t *got = vm->ram + page * ps;

		/* --workload balloon: discarded pages read zero, unplugged ones are gone */
		ok = vm->balloon ? vm_balloon_check_page(vm, page, got) : -1;
		if (ok == 2)
			continue;
		if (ok < 0)
			ok = page_ok_guarded(&e, page, got);
		if (ok == 2) {
			/* poisoned by the helper: an error, not wrong data */
			vm->pages_poisoned++;
			continue;
		}
		if (ok < 0) {
			ret = ok;
			goto out;
		}
		if (ok) {
			vm->pages_verified++;
			continue;
		}
		/* without a snapshot, "missing" cannot be told apart */
		if (resident && !(resident[page] & 1))
			vm->pages_missing++;
		if (vm->pages_mismatched++ < VERIFY_LOG_MAX)
			log_mismatch(vm, &e, page, got, !resident || (resident[page] & 1));
	}
	if (vm->pages_mismatched > VERIFY_LOG_MAX)
		pch_err("... and %llu more mismatched pages",
			(unsigned long long)(vm->pages_mismatched - VERIFY_LOG_MAX));

out:
	if (e.fd >= 0)
		close(e.fd);
	free(e.buf);
	return ret;
}
