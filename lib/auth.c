// SPDX-License-Identifier: MIT
/* auth.c - session ids, keys, HMAC-SHA256 over glib's GHmac. */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "util.h"

void pch_hmac_sha256(const uint8_t *key, size_t keylen, const void *data, size_t len,
		     uint8_t out[PCH_AUTH_LEN])
{
	GHmac *h = g_hmac_new(G_CHECKSUM_SHA256, key, keylen);
	gsize n = PCH_AUTH_LEN;

	g_hmac_update(h, data, (gssize)len);
	g_hmac_get_digest(h, out, &n);
	g_hmac_unref(h);
}

int pch_memeq_ct(const void *a, const void *b, size_t len)
{
	const uint8_t *x = a, *y = b;
	uint8_t d = 0;
	size_t i;

	for (i = 0; i < len; i++)
		d |= x[i] ^ y[i];
	return d != 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int pch_hex_decode(const char *hex, uint8_t *out, size_t len)
{
	size_t i;

	if (strlen(hex) != 2 * len)
		return -EINVAL;
	for (i = 0; i < len; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -EINVAL;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

void pch_hex_encode(const uint8_t *in, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < len; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * len] = '\0';
}

int pch_session_load(const char *path, struct pch_session *s)
{
	char buf[256], id[64], key[128];
	struct stat st;
	ssize_t n;
	int fd, ret;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		goto out;
	}
	/* The key is the only secret of a session: refuse a readable one. */
	if (!S_ISREG(st.st_mode) || (st.st_mode & 077)) {
		ret = -EPERM;
		goto out;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	if (n < 0) {
		ret = -errno;
		goto out;
	}
	buf[n] = '\0';
	if (sscanf(buf, "%63s %127s", id, key) != 2 ||
	    pch_hex_decode(id, s->id, sizeof(s->id)) ||
	    pch_hex_decode(key, s->key, sizeof(s->key))) {
		ret = -EINVAL;
		goto out;
	}
	ret = 0;
out:
	close(fd);
	return ret;
}

int pch_session_create(const char *path, struct pch_session *s)
{
	char id[2 * PCH_SESSION_ID_LEN + 1], key[2 * PCH_KEY_LEN + 1], line[160];
	int fd, ret, n;

	ret = pch_random_bytes(s->id, sizeof(s->id));
	if (!ret)
		ret = pch_random_bytes(s->key, sizeof(s->key));
	if (ret)
		return ret;
	pch_hex_encode(s->id, sizeof(s->id), id);
	pch_hex_encode(s->key, sizeof(s->key), key);
	n = snprintf(line, sizeof(line), "%s %s\n", id, key);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	ret = write(fd, line, (size_t)n) == n ? 0 : -EIO;
	if (close(fd) < 0 && !ret)
		ret = -errno;
	if (ret)
		unlink(path);
	return ret;
}
