// SPDX-License-Identifier: MIT
/*
 * fuzz_hello.c - the 72 bytes that open a channel: a hello as the source
 * checks it (answered with a refusal built as source/accept.c builds it),
 * and an ack or refusal as the helper reads it (helper/session.c).
 */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct pch_session *s = fuzz_session();
	union {
		struct pch_hello ack;
		struct pch_refuse ref;
	} in;
	struct pch_hello_params p;
	struct pch_refuse out;
	const char *why = NULL;
	char line[256];
	int rc, reason;

	if (size < sizeof(in))
		return 0;
	memcpy(&in, data, sizeof(in));

	/* the source: a hello, refused with the codec's reason and why */
	rc = pch_hello_check(&in.ack, s, false, &p, &reason, &why);
	if (rc) {
		FUZZ_ASSERT(why);
		if (reason <= 0 || reason >= PCH_REFUSE_MAX)
			reason = PCH_REFUSE_MAGIC_BAD;
		pch_refuse_build(&out, reason, why);
		FUZZ_ASSERT(memchr(out.text, '\0', sizeof(out.text)));
	} else {
		FUZZ_ASSERT(p.count >= 1 && p.count <= PCH_MAX_CHANNELS);
		FUZZ_ASSERT(p.kind != PCH_CHAN_PAGES || p.index < p.count);
	}

	/* the helper: a refusal (its text forced NUL-terminated) or an ack */
	if (in.ref.magic == PCH_REFUSE_MAGIC) {
		in.ref.text[sizeof(in.ref.text) - 1] = '\0';
		snprintf(line, sizeof(line), "source refused it: %s: %s",
			 pch_refuse_name(in.ref.reason), in.ref.text);
		return 0;
	}
	why = NULL;
	rc = pch_hello_check(&in.ack, s, true, &p, &reason, &why);
	if (rc)
		FUZZ_ASSERT(why && reason > 0 && reason < PCH_REFUSE_MAX);
	else
		snprintf(line, sizeof(line), "%s channel %u", pch_chan_kind_name(p.kind), p.index);
	return 0;
}
