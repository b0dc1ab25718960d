/* SPDX-License-Identifier: MIT */
/*
 * source_i.h - private to pch-source: the session state shared by the accept
 * loop, the CONTROL loop (main thread), the urgent thread and the bulk
 * senders.
 *
 * Threads and what they own:
 *   main      options, CONTROL (both ways), the global deadline, signals, exit
 *   accept    the listener and every handshake, in one poll loop (accept.c)
 *   urgent    reads requests from URGENT and writes their answers there
 *   bulk i    writes frames on PAGES channel i
 * Each channel has exactly one writer thread, so per-channel frame seq
 * numbers need no lock.  A thread that hits a fatal error calls src_fail();
 * main then tells the helper (PCH_CC_ERROR) and shuts everything down.  A
 * PAGES channel that fails is only closed: the session goes on without it
 * (docs/protocol.md 5.2).
 */
#ifndef PCH_SOURCE_I_H
#define PCH_SOURCE_I_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "pch/proto.h"
#include "auth.h"
#include "bitmap.h"
#include "codec.h"
#include "image.h"
#include "nonce.h"
#include "probes.h"

/* A sender that makes no progress for this long fails its channel. */
#define SRC_SEND_STALL_MS 30000
/* Poll tick for every wait that must notice shutdown. */
#define SRC_TICK_MS 100
/*
 * At most this many connections wait in handshake (half-open: accepted,
 * hello not handled yet); a new one evicts the one waiting longest.
 */
#define SRC_MAX_HALF_OPEN 64
/*
 * Replay cache: hello nonces whose authenticator verified in this process.
 * Full, it refuses new hellos instead of forgetting old nonces (lib/nonce.h);
 * 16384 is 248 rounds of 66 channels, above what the helper's limits allow
 * one migration (docs/protocol.md 2.1).  256 KiB.
 */
#define SRC_REPLAY_CACHE 16384u
/* Largest bulk chunk, bytes, unless one page is larger (1 GiB pages). */
#define SRC_MAX_CHUNK_BYTES (256u << 20)
/*
 * Default chunk: 64 pages, but at most this many bytes when pages are big,
 * so a 2 MiB-page image is still cut into chunks the urgent hint can steer.
 */
#define SRC_DEFAULT_CHUNK_PAGES 64u
#define SRC_DEFAULT_CHUNK_BYTES (4u << 20)
/*
 * Page data one send round generates at most (or one frame's, if larger):
 * bounds each thread's scratch buffer whatever the chunk or request size.
 */
#define SRC_TX_ROUND_BYTES (8u << 20)
/* --test-slow-frames sends page data in pieces of this many bytes. */
#define SRC_SLOW_PIECE (64u << 10)

/* Command line, after parsing and range checks. */
struct src_opts {
	char *listen;
	char *port_file;
	char *key_file;
	unsigned channels;
	uint64_t ram;
	bool ram_set;          /* --ram given: with --file, the size it must have */
	char *file;
	uint64_t seed;
	double zero_frac;
	double repeat_frac;
	uint32_t page_size;
	bool page_size_set;    /* --page-size given: a hugetlbfs file must agree */
	uint32_t backing;      /* --backing, enum pch_backing; 0: not given */
	char *block_name;
	uint32_t chunk_pages;
	bool chunk_pages_set;  /* --chunk-pages given; else a default by page size */
	bool zero_first;
	int corrupt_channel;   /* tests: PAGES channel whose 3rd batch is corrupt, -1 */
	uint64_t slow_frames;  /* tests: bulk PAGES frames sent slowly, over all channels */
	unsigned slow_ms;      /* tests: sleep before each SRC_SLOW_PIECE piece of their data */
	double bulk_rate_mbps; /* MB/s (10^6 bytes), whole session; 0: unlimited */
	int handshake_timeout_ms;
	unsigned timeout_s;
	unsigned resume_s;     /* after losing the helper, wait this long for it (0: fail) */
	unsigned keepalive_ms; /* CONTROL silent this long after START: lost (0: never) */
	char *stats;
	char *vmm_socket;      /* --vmm-socket: the RAM block comes from a VMM */
	unsigned vmm_timeout_s; /* ... within this long */
	bool block_name_set;   /* --block-name given: a VMM's block must agree */
};

/* ------------------------------------------------------------------ */
/* Page backends (backend.c)                                          */
/* ------------------------------------------------------------------ */

struct src_backend;

struct src_backend_ops {
	/* Required: short name for logs ("synthetic", "file"). */
	const char *name;
	/* Required: true when page idx is all zero bytes. */
	bool (*is_zero)(const struct src_backend *be, uint64_t idx);
	/*
	 * Required: the page_size bytes of page idx.  A backend that generates
	 * pages writes them into scratch (page_size bytes) and returns scratch;
	 * one that maps the image returns a pointer into its mapping, so the
	 * data goes to the socket without a copy.
	 */
	const void *(*page)(const struct src_backend *be, uint64_t idx, void *scratch);
	/*
	 * Optional: whether page idx lies in a hole of the backing file (never
	 * written: it reads as zeros, and reading it through the mapping
	 * would allocate it, a shmem page or a huge page for every hole).
	 * Sets *hole and returns the first page after idx whose answer may
	 * differ (at most npages).  Without it every page is read.
	 */
	uint64_t (*extent)(const struct src_backend *be, uint64_t idx, bool *hole);
	/* Optional: release what open took. */
	void (*close)(struct src_backend *be);
};

struct src_backend {
	const struct src_backend_ops *ops;
	uint64_t size;      /* bytes, multiple of page_size */
	uint32_t page_size;
	uint32_t backing;   /* enum pch_backing, for the block table */
	uint64_t npages;
	struct pch_image image; /* synthetic */
	const uint8_t *map;     /* file: read-only mapping of size bytes */
	size_t map_len;
	int fd;
};

int src_backend_open(struct src_backend *be, const struct src_opts *o);
int src_backend_open_fd(struct src_backend *be, const struct src_opts *o, int fd,
			const char *what, uint64_t size, uint32_t page_size);
void src_backend_close(struct src_backend *be);

/* ------------------------------------------------------------------ */
/* Channels and frame batches (frame.c)                               */
/* ------------------------------------------------------------------ */

/* Channel slots: CONTROL, URGENT, then PAGES 0..N-1. */
enum { SRC_SLOT_CONTROL = 0, SRC_SLOT_URGENT = 1, SRC_SLOT_PAGES0 = 2 };
enum src_slot_state { SLOT_FREE = 0, SLOT_PENDING, SLOT_READY };

struct src_chan {
	int fd;
	enum src_slot_state state; /* under src.lock */
	char name[24];             /* "CONTROL", "URGENT", "PAGES 3" */
	char peer[64];             /* "127.0.0.1:40000" */
	uint64_t seq;              /* next frame seq; only the writer thread */
};

struct src;

/*
 * A batch of frames for one channel.  Adding frames only records headers and
 * offsets; src_tx_send reads the pages and writes the batch in rounds of at
 * most SRC_TX_ROUND_BYTES of page data (one frame at least), each round one
 * sendmsg (or a few, past IOV_MAX).  Buffers are sized once for the largest
 * page range a caller adds, so nothing is allocated on the hot path.
 */
struct src_tx {
	struct src *src;
	struct src_chan *ch;
	uint32_t max_pages; /* largest range src_tx_add_pages accepts */
	bool bulk;          /* a PAGES channel: --test-slow-frames applies */

	struct pch_frame_hdr *hdr;
	const uint64_t **offs; /* each frame's offsets; NULL for SYNC, END */
	unsigned nhdr, cap_hdr;
	uint64_t *zoff, *doff; /* offsets of zero / data pages of the range */
	struct iovec *iov;     /* one round */
	unsigned niov, cap_iov;
	uint8_t *scratch;      /* generated page data of one round */
	uint32_t scratch_pages;
	bool have_range;  /* a page range was added to this batch */
	size_t bytes;     /* bytes in the batch */

	/* what the batch holds, for the caller's counters */
	unsigned frames;
	uint64_t pages_data, pages_zero;
	uint64_t pages_hole; /* of pages_zero: holes, known zero unread */
};

/* What src_tx_add_pages puts in the batch. */
#define SRC_TX_ZERO 0x1u
#define SRC_TX_DATA 0x2u

int src_tx_init(struct src_tx *tx, struct src *s, struct src_chan *ch, uint32_t max_pages);
void src_tx_free(struct src_tx *tx);
void src_tx_reset(struct src_tx *tx);
/* Add a frame without pages (SYNC, END). */
void src_tx_add_empty(struct src_tx *tx, uint16_t type, uint64_t arg);
/* ... with frame flags (a KEEPALIVE on URGENT carries PCH_FRAME_F_URGENT). */
void src_tx_add_empty_flags(struct src_tx *tx, uint16_t type, uint16_t flags, uint64_t arg);
void src_tx_add_pages(struct src_tx *tx, uint64_t first, uint64_t n, unsigned what,
		      const struct pch_bitmap *skip, uint16_t flags, uint64_t arg);
int src_tx_send(struct src_tx *tx);

/* ------------------------------------------------------------------ */
/* Session                                                            */
/* ------------------------------------------------------------------ */

/* Counters of one thread; merged after the threads are joined. */
struct src_stats {
	uint64_t pages_bulk; /* data pages sent on PAGES */
	uint64_t pages_zero; /* zero pages announced on PAGES */
	uint64_t pages_hole; /* ... of which holes of the backing file, never read */
	uint64_t bytes_bulk; /* everything written on PAGES */
	uint64_t frames_bulk;
	uint64_t requests;
	uint64_t pages_urgent;
	uint64_t urgent_zero;
	uint64_t bytes_urgent;
	uint64_t frames_urgent;
};

/* One bulk sender thread, owning PAGES channel index. */
struct src_sender {
	struct src *src;
	unsigned index;
	pthread_t thread;
	bool started;
	struct src_stats st;
};

/* Bulk pass: a claim bitmap over chunks and the cursor where claims start. */
struct src_pass {
	unsigned what; /* SRC_TX_* */
	struct pch_bitmap claim;
	uint64_t cursor; /* atomic: chunk to try next */
};

#define SRC_NO_HINT UINT64_MAX

struct src {
	struct src_opts opt;
	struct pch_session sess;
	struct pch_blocktab tab;
	struct src_backend be;
	uint64_t t_start_ns;
	uint64_t deadline_ns; /* --timeout-s from t_start_ns */

	int lfd;     /* listener */
	int vmm_lfd; /* --vmm-socket listener, until a VMM handed its RAM over */
	int wake_fd; /* eventfd: a channel arrived, or a thread failed */
	int sig_fd;  /* signalfd for SIGINT/SIGTERM */
	pthread_t accept_thread;
	bool accept_started;

	/* channel slots; state, nhandshakes and refusal counts under lock */
	pthread_mutex_t lock;
	struct src_chan *chans; /* 2 + channels */
	unsigned nchans;
	unsigned nready;
	unsigned nhandshakes;  /* connections in handshake now (accept loop) */
	uint64_t refused[PCH_REFUSE_MAX];
	uint64_t handshake_failed; /* closed, silent or evicted before a hello */
	uint64_t handshake_timeouts; /* ... of them: no hello by the deadline */
	uint64_t handshake_evicted;  /* ... of them: evicted from a full table */
	/*
	 * Paused (a generation ended) and no CONTROL has come back yet: a
	 * resuming helper connects CONTROL first and waits for its ack, so any
	 * other channel now is a late one of the lost connections (under lock).
	 */
	bool await_control;
	uint64_t stale_channels;     /* such channels, closed without an ack */
	uint64_t connections;        /* accepted */
	unsigned half_open_max;      /* most connections in handshake at once */
	struct pch_nonce_set nonces; /* replay cache; accept loop only */

	pthread_mutex_t ctl_lock; /* one CONTROL message at a time */
	bool ctl_error_sent;      /* atomic: no (more) PCH_CC_ERROR to send */

	/* bulk plan */
	struct pch_bitmap skip; /* pages the helper has: never sent in bulk */
	uint64_t nchunks;
	struct src_pass pass[2];
	unsigned npasses;
	uint64_t hint;          /* atomic: chunk an urgent request asks for next */
	uint64_t slow_left;     /* atomic: --test-slow-frames frames still to slow */
	struct src_sender *senders;
	unsigned senders_done;  /* atomic: senders that sent END */
	unsigned senders_dead;  /* atomic: PAGES channels that failed */
	unsigned senders_over;  /* atomic: done + dead */
	uint64_t t_bulk_start_ns, t_bulk_end_ns;

	/* sync points: epochs requested so far, in order, under sync_lock */
	pthread_mutex_t sync_lock;
	pthread_cond_t sync_cond;
	uint64_t *epochs;
	unsigned nepochs; /* written under sync_lock, read atomically */
	unsigned epochs_cap;

	pthread_t urgent_thread;
	bool urgent_started;
	struct src_stats urgent_st;
	uint64_t requests_live; /* atomic copy of urgent_st.requests, for logs */

	bool started; /* START received */
	bool done;    /* DONE received */
	bool stop;    /* atomic: every thread winds down, the process exits */
	bool gen_stop; /* atomic: the threads of this session wind down (resume) */
	bool failed;  /* atomic: a thread hit a fatal error */
	/*
	 * The helper is lost (a connection closed, reset, silent) or comes back
	 * with a RESUME hello: main ends this generation of the session and
	 * waits for the helper's new channels (docs/protocol.md 5.8).
	 */
	bool lost;    /* atomic */
	char lost_why[160]; /* under err_lock */
	unsigned resumes;   /* main: generations started after the first */
	uint64_t cc_last_rx_ns, cc_last_tx_ns; /* CONTROL traffic, for keep-alives */

	pthread_mutex_t err_lock;
	char **errors; /* NULL-terminated, for the stats */
	unsigned nerrors;
};

/* The threads of the current session should wind down (exit or resume). */
static inline bool src_stopping(const struct src *s)
{
	return __atomic_load_n(&s->stop, __ATOMIC_ACQUIRE) ||
	       __atomic_load_n(&s->gen_stop, __ATOMIC_ACQUIRE);
}

/* The process is shutting down (the listener and handshakes end too). */
static inline bool src_exiting(const struct src *s)
{
	return __atomic_load_n(&s->stop, __ATOMIC_ACQUIRE);
}

/* Log an error, record it for the stats, mark the session failed, wake main. */
void src_fail(struct src *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/*
 * The helper is lost: a connection to it closed, reset or went silent.
 * Log it and wake main, which pauses the session and waits for a resume
 * (or fails, with --resume-timeout-s 0).
 */
void src_lost(struct src *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Record an error that was already logged. */
void src_record_error(struct src *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Wake the main loop. */
void src_wake(struct src *s);
/*
 * Wait up to ms for shutdown to begin; true if it did.  Used before
 * reporting a channel that the helper closed: after DONE the helper may
 * close channels while main has not yet read DONE.
 */
bool src_wait_stop(struct src *s, int ms);

/* vmm.c */
/* Listen on --vmm-socket (s->vmm_lfd).  0 or -errno (logged). */
int src_vmm_listen(struct src *s);
/*
 * Wait, at most --vmm-timeout-s, for a VMM to hand over its RAM block and
 * open it as the backend (s->be, s->opt.block_name).  A bad handover is
 * refused with the reason and the wait goes on.  0, or -errno (logged).
 */
int src_vmm_wait(struct src *s);

/* accept.c */
int src_accept_start(struct src *s);

/* control.c */
int src_ctl_send(struct src *s, uint16_t type, const void *payload, uint32_t len);
int src_ctl_send_error(struct src *s, int code, const char *text);
int src_ctl_send_blocks(struct src *s);
/* Read and handle one CONTROL message: 0 go on, 1 DONE, -errno failed (logged). */
int src_ctl_handle(struct src *s);

/* sender.c */
int src_bulk_init(struct src *s);
int src_bulk_start(struct src *s);
void src_bulk_join(struct src *s);
void src_bulk_hint(struct src *s, uint64_t page);
int src_sync_request(struct src *s, uint64_t epoch);

/* urgent.c */
int src_urgent_start(struct src *s);
void src_urgent_join(struct src *s);

/* stats.c */
void src_stats_add(struct src_stats *dst, const struct src_stats *a);
int src_stats_write(struct src *s, const char *path, const struct src_stats *tot,
		    bool ok, double duration_s, double bulk_s);

#endif
