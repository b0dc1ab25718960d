#!/bin/bash
# libpch-client installs with a pkg-config file, and a program built against
# the shared library through it runs (and reports a missing helper clearly).
# timeout: 120
. "$(dirname "$0")/../lib/common.sh"

make -s -C "$(dirname "$0")/../.." BUILD="$BUILD" SANITIZE="${SANITIZE:-}" install DESTDIR="$T/root" PREFIX=/usr >/dev/null
export PKG_CONFIG_SYSROOT_DIR="$T/root" PKG_CONFIG_PATH="$T/root/usr/lib/pkgconfig"
cat >"$T/prog.c" <<'C'
#include <errno.h>
#include <stdio.h>
#include <pch/client.h>
int main(int argc, char **argv)
{
	struct pch_client *c = NULL;
	int rc = pch_client_connect(argv[1], 200, &c);

	printf("connect: %d\n", rc);
	return rc == -ENOENT ? 0 : 1;
}
C
san=${SANITIZE:+-fsanitize=$SANITIZE}
cc $san -o "$T/prog" "$T/prog.c" $(pkg-config --cflags --libs pch-client) || fail "build against pch-client failed"
LD_LIBRARY_PATH="$T/root/usr/lib" "$T/prog" "$T/no-such.sock" || fail "program did not report ENOENT"
ldd "$T/prog" | grep -q "$T/root/usr/lib/libpch-client.so" || LD_LIBRARY_PATH="$T/root/usr/lib" ldd "$T/prog" | grep -q libpch-client || fail "not linked to the shared library"
log "ok"
