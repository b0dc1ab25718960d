/* SPDX-License-Identifier: MIT */
/* auth.h - session ids, keys and HMAC-SHA256 (glib GHmac). */
#ifndef PCH_AUTH_H
#define PCH_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "pch/proto.h"

struct pch_session {
	uint8_t id[PCH_SESSION_ID_LEN];
	uint8_t key[PCH_KEY_LEN];
};

/* HMAC-SHA256(key, data) into out[32]. */
void pch_hmac_sha256(const uint8_t *key, size_t keylen, const void *data, size_t len,
		     uint8_t out[PCH_AUTH_LEN]);
/* Constant-time comparison; 0 when equal. */
int pch_memeq_ct(const void *a, const void *b, size_t len);

/* Parse 2*len hex digits into out; -EINVAL on bad length or digit. */
int pch_hex_decode(const char *hex, uint8_t *out, size_t len);
/* Write 2*len hex digits and a NUL into out (size >= 2*len+1). */
void pch_hex_encode(const uint8_t *in, size_t len, char *out);

/*
 * Key file: one line "SESSION_ID_HEX KEY_HEX" (32 + 64 hex digits).  Loading
 * refuses a file readable or writable by group or others.  0 or -errno.
 */
int pch_session_load(const char *path, struct pch_session *s);
/* Generate a random session and write it to path with mode 0600. */
int pch_session_create(const char *path, struct pch_session *s);

#endif
