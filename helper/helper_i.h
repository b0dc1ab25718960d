/* SPDX-License-Identifier: MIT */
/*
 * helper_i.h - pch-helper internals shared by its modules.
 *
 * Threads and what each owns:
 *   main   the control socket (VMM), the CONTROL channel, completion, stats
 *   fault  the uffd (event reads), the URGENT channel, page requests
 *   rx/N   a share of the PAGES channels, bulk installs
 * Page state lives in per-block atomic bitmaps that every thread may set; all
 * counters are per thread, merged by main when read.
 */
#ifndef PCH_HELPER_I_H
#define PCH_HELPER_I_H

#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "bitmap.h"
#include "codec.h"
#include "hist.h"
#include "probes.h"
#include "ring.h"
#include "auth.h"
#include "pch/proto.h"

#define HELPER_MAX_RX 8

/* Counters of one thread.  Only the owner writes (relaxed stores); main reads. */
struct hstats {
	uint64_t pages_bulk;     /* installed from PAGES channels */
	uint64_t pages_urgent;   /* installed from URGENT answers */
	uint64_t pages_zero;     /* learnt zero from ZERO frames (bulk or urgent) */
	uint64_t zero_installed; /* UFFDIO_ZEROPAGE done for a faulted zero page */
	uint64_t inplace;        /* pages this thread brought in place first */
	uint64_t bytes;          /* page data bytes received */
	uint64_t frames;
	uint64_t copy_ioctls;
	uint64_t eexist;         /* install found the page present: raced, woke */
	uint64_t eagain;         /* install retried */
	uint64_t faults;         /* uffd fault messages read */
	uint64_t faults_zero;    /* ... served at once with UFFDIO_ZEROPAGE */
	uint64_t faults_present; /* ... page already present: woke the thread */
	uint64_t faults_dup;     /* ... page already requested */
	uint64_t faults_late;    /* ... read after COMPLETE: woken */
	uint64_t faults_outside; /* ... outside every block: woken, reported */
	uint64_t requests;       /* PCH_REQ_PAGE sent */
	uint64_t requests_sweep; /* ... of them for pages no channel delivered */
	uint64_t events_other;   /* uffd messages other than faults */
	uint64_t uffd_reads;     /* reads (or completions) that returned messages */
	uint64_t faults_minor;   /* ... of them MINOR (page cache filled, not mapped) */
	uint64_t continue_ioctls;
	uint64_t bytes_inplace;  /* page data received straight into guest memory */
	uint64_t bytes_bounce;   /* ... received into a buffer, then copied in */
	uint64_t steals;         /* bulk pages given up mid-receive to a fault */
	uint64_t stashed;        /* urgent answers held while bulk wrote the page */
	uint64_t rescued;        /* bulk pages put in place from the bounce buffer */
	uint64_t events_remove;  /* UFFD_EVENT_REMOVE read (memory events on) */
	uint64_t events_unmap;   /* UFFD_EVENT_UNMAP read */
	uint64_t pages_discarded; /* pages those REMOVEs covered */
	uint64_t pages_unmapped; /* pages those UNMAPs covered */
	uint64_t pages_dropped_discarded; /* received, not installed: discarded or unmapped */
	uint64_t faults_discarded; /* faults on discarded pages: answered with zeros */
	uint64_t rx_aside;       /* times an rx thread stepped aside for a fault */
	uint64_t rx_aside_us;    /* ... and for how long in all */
	pthread_mutex_t hist_lock;
	struct pch_hist service; /* fault read -> page installed, ns */
};

#define STAT_ADD(s, field, n) \
	__atomic_store_n(&(s)->field, (s)->field + (n), __ATOMIC_RELAXED)
#define STAT_GET(s, field) __atomic_load_n(&(s)->field, __ATOMIC_RELAXED)

/*
 * Who may write a page of a shared (memfd, hugetlb) block's page cache.  The
 * helper writes page data into its own mapping of the memfd, where the VMM
 * cannot see it until UFFDIO_CONTINUE maps it; one writer at a time, and
 * never after it is mapped (the guest may have written it since).
 */
enum {
	OWN_FREE = 0,     /* nobody writes it; a hole, or data nobody vouches for */
	OWN_BULK = 1,     /* an rx thread is receiving into it */
	OWN_URG = 2,      /* pages_put is writing it (an answer, zeros, a rescue) */
	OWN_FULL = 3,     /* every byte is in: may be mapped (CONTINUE) */
	OWN_MASK = 3,
	OWN_STEAL = 0x80, /* a fault waits for it: bulk must not take it, and gives it up */
};

/* One RAM block: the VMM's address and the state of each page. */
struct hblock {
	struct pch_block d;       /* name, size, page size, npages */
	uint64_t host_addr;       /* in the VMM's address space */
	struct pch_bitmap present; /* installed (by us or by a racing path) */
	struct pch_bitmap zero;    /* known zero, not (yet) installed */
	struct pch_bitmap inplace; /* present | zero | discarded: counted once */
	/*
	 * Memory events: removed (MADV_DONTNEED/REMOVE) or unmapped by the VMM.
	 * Sticky; only zeros may be installed there (events.c).
	 */
	struct pch_bitmap discarded;
	/*
	 * Shared blocks: set before a page is mapped for the VMM, so a helper
	 * taking over never writes a page the guest may have written (state.h).
	 */
	struct pch_bitmap mapping;
	/* shared blocks only: received in place, mapped with UFFDIO_CONTINUE */
	uint8_t *local;            /* the helper's mapping of the block's memfd */
	uint8_t *own;              /* OWN_* per page, atomic */
	int fd;                    /* the memfd (block offset = file offset), or -1 */
	bool splice;               /* shmem: filled by splice/pwrite, not the mapping */
};

static inline bool hblock_shared(const struct hblock *b)
{
	return b->local != NULL;
}

enum chan_state { CHAN_IDLE, CHAN_STREAMING, CHAN_ENDED, CHAN_DEAD };

/* One PAGES channel, owned by one rx thread. */
struct rx_chan {
	int fd;
	unsigned index;
	int state;              /* enum chan_state; read by main (atomic) */
	uint64_t sync_epoch;    /* last SYNC seen; read by main (atomic) */
	uint64_t seq;           /* next expected frame seq */
	/* receive state machine: header, then offsets, then data */
	int part;               /* 0 header, 1 offsets, 2 data */
	size_t want, got;
	struct pch_frame_hdr hdr;
	uint64_t *offs;
	uint8_t *data;          /* bounce buffer: data of private blocks */
	/* a PAGES frame of a shared block is received in place, in pieces */
	bool in_place;          /* this frame's data goes to hblock.local */
	uint8_t *mine;          /* per page of the frame: 1 when we own it (OWN_BULK) */
	uint32_t settled;       /* pages of the frame fully received and settled */
	uint32_t mapped;        /* ... of them, mapped (CONTINUE) */
	size_t inflight_end;    /* recvmsg pieces: end of the piece being received */
	struct iovec *iov;
	struct msghdr msg;
	int pipe[2];            /* shmem frames: socket -> pipe -> memfd; -1 until needed */
	size_t pipe_cap;
	uint64_t bytes, frames, pages; /* owner-written, relaxed */
	uint64_t last_rx_ns;    /* last byte received; read by main (atomic) */
	bool silent_reported;   /* main only */
	char err[128];
};

struct helper;

struct rx_thread {
	struct helper *h;
	unsigned id;
	pthread_t tid;
	unsigned nchan;
	struct rx_chan *chan[PCH_MAX_CHANNELS];
	struct hstats st;
	bool started;
	bool populate_warned;
	int wake_efd;           /* fault -> rx: give up pages a fault wants */
	uint64_t wake_buf;
};

struct fault_thread {
	struct helper *h;
	pthread_t tid;
	struct hstats st;
	bool started;
	int sweep_efd;          /* main -> fault: request what is missing */
	int kick_efd;           /* rx -> fault: a page it waited for was given up */
};

struct helper_opts {
	const char *ctl_path;
	char src_host[256];
	uint16_t src_port;
	unsigned channels;
	unsigned rx_threads;
	const char *key_file;
	const char *stats_file;
	const char *timeline_file; /* --timeline: progress CSV (timeline.c) */
	const char *uffd_read;  /* "uring" or "poll" */
	const char *connect_order; /* NULL: natural; "shuffle" or "shuffle:SEED" */
	int connect_timeout_ms;
	int accept_timeout_ms;
	int timeout_s;          /* whole run, 0 = none besides the VMM's */
	int stall_ms;           /* report a fault pending longer than this */
	int silent_ms;          /* report a streaming channel silent this long */
	int chan_timeout_s;     /* ... and give it up after this long (0: never) */
	int rx_nice;            /* niceness added to rx threads */
	bool poison;            /* poison pages that can never arrive */
	int keepalive_ms;       /* CONTROL or URGENT silent this long: lost (0: never) */
	int resume_s;           /* reconnect for this long after losing the source (0: fail) */
	int max_resumes;        /* ... at most this many times per migration */
	uint64_t test_die_continue; /* tests: SIGKILL ourselves after this many CONTINUEs map */
	uid_t allow_uid;        /* the only uid the control socket serves */
	bool drop_privileges;   /* after listening: no new privileges, capabilities dropped */
	bool test_no_peerpidfd; /* tests: pin the VMM with pidfd_open, as before Linux 6.5 */
};

struct helper {
	struct helper_opts o;
	struct pch_session sess;

	/* from the VMM */
	int uffd;
	uint64_t uffd_features;
	uint64_t uffd_ioctls;            /* what the registration offers */
	bool events;                     /* EVENT_REMOVE/UNMAP on: installs take ev_lock */
	pthread_rwlock_t ev_lock;        /* read: an install; write: the fault thread reading */
	struct pch_blocktab vtab;        /* the VMM's table */
	struct hblock blk[PCH_MAX_BLOCKS];
	unsigned nblk;
	struct pch_ring ring;
	bool have_ring;
	struct pch_ring_event pending[16]; /* main: posts waiting for room */
	unsigned npending;
	uint64_t premarked;              /* pages the VMM had in place (or a dead helper put) */
	void *state;                     /* the VMM's page state memfd, mapped (pch/state.h) */
	size_t state_len;
	bool recovered;                  /* a helper served this migration before us */
	uint64_t poisoned;               /* pages that could never arrive, poisoned */
	uint8_t *zero_buf;               /* zeros, as large as the largest page */
	size_t zero_len;

	/* source channels */
	int cc_fd;                       /* CONTROL */
	int urgent_fd;
	struct rx_chan pages[PCH_MAX_CHANNELS];

	/* threads */
	struct fault_thread ft;
	struct rx_thread rx[HELPER_MAX_RX];
	unsigned nrx;
	/*
	 * Faults the fault thread is serving (atomic; published on each turn
	 * of its loop): while there are any, or one came recently, rx threads
	 * but the first step aside (rx.c), so the fault path has a CPU.
	 */
	unsigned faults_waiting;
	uint64_t last_fault_ns;          /* atomic: when the fault thread last read a fault */
	int wake_efd;                    /* any thread -> main: look again */
	int stop_efd;                    /* main -> all: stop */
	bool stop;                       /* atomic */
	const char *io_path;

	/* progress */
	uint64_t t_start_ns, t_complete_ns;
	uint64_t sync_asked, sync_reached;
	bool complete, failed;
	bool have_owner;                 /* main: a VMM said HELLO and is connected */
	unsigned nmonitors;              /* main: monitor connections open */
	uint64_t ctl_refused;            /* main: control connections of another uid, refused */
	int vmm_pid;                     /* main: the owner's pid (SO_PEERCRED), 0 before */
	int vmm_pidfd;                   /* main: ... pinned by this pidfd, -1 if not */
	const char *vmm_pinned_by;       /* main: "SO_PEERPIDFD", "pidfd_open" or NULL */
	bool sweep_started;              /* main asked the fault thread to sweep */
	bool urgent_dead;                /* set by the fault thread (atomic): bad stream */
	bool urgent_lost;                /* ... (atomic): connection lost, resume */
	char urgent_lost_why[96];        /* ... why, written before urgent_lost */
	uint64_t cc_last_rx_ns, cc_last_tx_ns; /* main: CONTROL traffic, for keep-alives */
	/* resume (docs/protocol.md 5.8); main only */
	bool cc_lost;                    /* a CONTROL send failed: pause */
	bool paused;                     /* the source is lost; reconnecting */
	char pause_why[160];
	uint64_t pause_t0_ns, pause_deadline_ns, next_attempt_ns;
	unsigned resume_attempts;        /* in this pause */
	unsigned resumes;                /* sessions resumed */
	uint64_t paused_ns, pause_max_ns; /* time spent paused: total, longest */
	uint64_t continues_mapped;       /* atomic: CONTINUEs that mapped (--test-die-continue) */
	bool fault_exited;               /* fault thread ended on an error (atomic) */
	bool vmm_gone;                   /* an install saw ESRCH: the VMM exited (atomic) */
	bool wake_failed;                /* a UFFDIO_WAKE failed: reported once (atomic) */
	char errors[8][160];
	unsigned nerrors;
	pthread_mutex_t err_lock;
	struct timeline *tl;             /* main: --timeline rows (timeline.c) */
};

/* main.c */
void helper_error(struct helper *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void helper_kick(struct helper *h);
/* An install found the VMM's mm gone (ESRCH): say so once, stop serving. */
void helper_vmm_gone(struct helper *h);
static inline bool helper_stopping(struct helper *h)
{
	return __atomic_load_n(&h->stop, __ATOMIC_ACQUIRE);
}

/* pages.c */
enum put_kind { PUT_BULK, PUT_URGENT, PUT_ZERO }; /* counted as pages_bulk, _urgent, neither */
/* Find the block and page of a VMM address; -EINVAL when outside every block. */
int pages_lookup(struct helper *h, uint64_t addr, unsigned *blk, uint64_t *page);
/*
 * Install count pages at the given (strictly increasing) offsets of block blk
 * from data with UFFDIO_COPY, in contiguous runs; pages already present are
 * skipped, EEXIST is accounted and woken, EAGAIN retried.  Counts go to st
 * (as bulk or urgent pages).  0, or -errno when the VMM is gone (-ESRCH,
 * -ENOENT) or the ioctl failed otherwise.
 */
int pages_install(struct helper *h, struct hstats *st, unsigned blk, const uint64_t *offs,
		  uint32_t count, const uint8_t *data, bool urgent);
/*
 * Shared blocks: put one page in place from src (NULL: zeros) and map it:
 * a hole is filled with UFFDIO_COPY (UFFDIO_ZEROPAGE for zero shmem), a
 * page the page cache holds is written and CONTINUEd.  Counted as kind.
 * 0 when the page is in place, 1 when someone else is writing it (an rx
 * thread is asked to give it up; call again later), -errno on failure.
 */
int pages_put(struct helper *h, struct hstats *st, unsigned blk, uint64_t page, const void *src,
	      enum put_kind kind);
/*
 * Shared blocks: map n pages from first with UFFDIO_CONTINUE, all of which
 * hold every byte (OWN_FULL); pages already mapped are woken.  Counted as
 * kind.  0 or -errno.
 */
int pages_continue(struct helper *h, struct hstats *st, unsigned blk, uint64_t first, uint64_t n,
		   enum put_kind kind);
/* Page state byte of a shared block's page. */
static inline uint8_t pages_own(const struct hblock *b, uint64_t page)
{
	return __atomic_load_n(&b->own[page], __ATOMIC_ACQUIRE);
}
/* Mark pages known zero (no install); counts in st. */
void pages_mark_zero(struct helper *h, struct hstats *st, unsigned blk, const uint64_t *offs,
		     uint32_t count);
/*
 * Install one zero page the way the block allows (UFFDIO_ZEROPAGE; a copy of
 * zeros for private hugetlb, which has no ZEROPAGE; zeros written and
 * CONTINUEd for shared blocks); EEXIST woken.  0, 1 (shared: busy, as
 * pages_put) or -errno.
 */
int pages_zeropage(struct helper *h, struct hstats *st, unsigned blk, uint64_t page);
/* Wake threads waiting on one page.  0 or -errno. */
int pages_wake(struct helper *h, unsigned blk, uint64_t page);
/* Pages in place (merged over threads, plus premarked). */
uint64_t pages_inplace(struct helper *h);
uint64_t pages_total(struct helper *h);
/*
 * Wake main only when every page may be in place: the rest of its checks
 * run on its 100 ms tick, not once per frame.
 */
void pages_kick_if_all_in(struct helper *h);
/* Largest page data a frame may carry for this session's blocks. */
size_t pages_frame_cap(struct helper *h);

/* rx.c */
int rx_start(struct helper *h);
/* Ask every rx thread to give up the pages faults now wait for. */
void rx_kick_all(struct helper *h);
void rx_join(struct helper *h);

/* fault.c */
/* Its eventfds and counters, before any rx thread may kick it. */
int fault_prepare(struct helper *h);
int fault_start(struct helper *h);
void fault_join(struct helper *h);
/* Ask the fault thread to request every page still missing. */
void fault_sweep(struct helper *h);
/* Tell the fault thread that an rx thread gave up a page it wanted. */
void fault_kick(struct helper *h);

/* session.c */
/*
 * Connect and authenticate every channel, check the source's block table.
 * resume: CONTROL first, flagged PCH_HELLO_F_RESUME.
 */
int session_connect(struct helper *h, bool resume);
/* Send HAVE for premarked pages, then START. */
int session_start(struct helper *h);
int session_sync_req(struct helper *h, uint64_t epoch);
int session_done(struct helper *h);
/* PCH_CC_KEEPALIVE: nothing else was sent on CONTROL for a while. */
int session_keepalive(struct helper *h);
void session_close(struct helper *h);

/* events.c */
/*
 * At UFFD (FORK and REMAP refused before, pch_ctl_uffd_check): refuse
 * memory events with shared blocks; turn event handling on when REMOVE or
 * UNMAP is among features.  0 or -EOPNOTSUPP with why.
 */
int events_setup(struct helper *h, uint64_t features, char *whybuf, size_t whylen);
/* At BLOCK: may a block (shared or not) live with these uffd features?  0 or -EOPNOTSUPP. */
int events_block_ok(const struct pch_block *d, bool shared, uint64_t features, char *whybuf,
		    size_t whylen);
void events_free(struct helper *h);
/*
 * The calling thread reads the uffd itself when its own install sees
 * EAGAIN: fn reads it and returns how many events it marked.
 */
void events_set_drain(int (*fn)(void *arg), void *arg);
/*
 * An install holding the read side got EAGAIN: drop it, let the events be
 * read, retake it.  The caller then looks at the discarded state again and
 * retries.  false when it has waited too long in all (*waited_ns) or the
 * helper stops.
 */
bool events_eagain(struct helper *h, struct hstats *st, uint64_t *waited_ns);
/*
 * Fault thread, write side held: mark what a REMOVE or UNMAP message
 * covers.  true when m was such an event.
 */
bool events_mark(struct helper *h, struct hstats *st, const struct uffd_msg *m);
/* Installs of page content: hold these across the discarded check and the ioctl. */
static inline void events_install_begin(struct helper *h)
{
	if (h->events)
		pthread_rwlock_rdlock(&h->ev_lock);
}
static inline void events_install_end(struct helper *h)
{
	if (h->events)
		pthread_rwlock_unlock(&h->ev_lock);
}
static inline bool events_discarded(const struct hblock *b, uint64_t page)
{
	return b->discarded.nbits && pch_bitmap_test(&b->discarded, page);
}

/* stats.c */
void stats_merge(struct helper *h, struct hstats *out);
/* The stats JSON (g_free it). */
char *stats_json(struct helper *h);

#endif /* PCH_HELPER_I_H */
