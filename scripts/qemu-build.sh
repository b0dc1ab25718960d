#!/bin/bash
# SPDX-License-Identifier: MIT
#
# qemu-build.sh: build qemu-system-x86_64 (Debian's QEMU 10.0 source, plus
# qemu-glue/patches/series) into a cache outside the clone, so a second build
# with nothing changed takes seconds.  `make qemu` runs it.
#
#   scripts/qemu-build.sh [--deps-only] [--source-only]
#
# Cache: ${PCH_QEMU_CACHE:-/var/cache/pch-qemu}
#   src/qemu-<debian version>/   pristine source, fetched once (apt-get source,
#                                trixie deb-src); src/qemu -> it.  Never modified.
#   ccache/                      shared ccache (CCACHE_DEPEND=1)
#   qemu/<key>/                  qemu-system-x86_64, build.log, configure line
#   work/<key>/                  a build in progress (cp -al of the source)
# The key hashes: the source version, the series and every patch in it, the
# configure line, the ci-min device config, this script, and (when the series
# adds a `pch` meson option) the clone's libpch-client.a, its headers and .pc.
#
# Last stdout line: the binary's path.  Also written: build/qemu/
# qemu-system-x86_64.path and build/qemu/firmware.path (the -L directories,
# colon-separated).  Needs root only for the first run's apt-get.
set -euo pipefail
# One compound command, read whole before it runs, so editing or checking out
# this file while it runs cannot break the run (bash reads scripts as it goes).
{

top=$(cd "$(dirname "$0")/.." && pwd)
self=$top/scripts/qemu-build.sh
cache=${PCH_QEMU_CACHE:-/var/cache/pch-qemu}
jobs=${PCH_QEMU_JOBS:-$(nproc)}
lock_wait=${PCH_QEMU_LOCK_WAIT:-3600}
apt_opts=(-o DPkg::Lock::Timeout=600 -q -y)
py=/usr/bin/python3     # Debian's: the pyenv python3 on PATH cannot see meson
aptlist=/etc/apt/sources.list.d/pch-qemu.sources

deps_only='' source_only=''
for a in "$@"; do
	case $a in
	--deps-only) deps_only=1 ;;
	--source-only) source_only=1 ;;
	-h|--help) sed -n 's/^#   //p' "$0" | head -n 1 >&2; exit 2 ;;
	*) echo "qemu-build: unknown argument $a" >&2; exit 2 ;;
	esac
done

log() { echo "qemu-build: $*" >&2; }
die() { echo "qemu-build: $*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
t_start=$(now)

mkdir -p "$cache"/{src,ccache,qemu,work}

# ---- Debian packages ------------------------------------------------------

# The deb822 stanza of the machine's main Debian archive (the one carrying the
# release suite, not -security): its URIs and Signed-By, re-used for the
# trixie deb-src and bookworm-backports entries.  No host name is written into
# the project; it comes from this machine's own apt configuration.
apt_entries() {
	local f=/etc/apt/sources.list.d/debian.sources
	[ -r "$f" ] || die "cannot read $f to derive the trixie deb-src and bookworm-backports entries"
	awk -v out="$1" '
		function flush() {
			if (uris != "" && suites ~ /(^| )[a-z]+( |$)/ && !done) {
				printf "Types: deb-src\nURIs: %s\nSuites: trixie\nComponents: main\n", uris > out
				if (key != "") printf "Signed-By: %s\n", key > out
				printf "\nTypes: deb\nURIs: %s\nSuites: %s-backports\nComponents: main\n", uris, rel > out
				if (key != "") printf "Signed-By: %s\n", key > out
				done = 1
			}
			uris = ""; suites = ""; key = ""; rel = ""
		}
		/^[ \t]*$/ { flush(); next }
		/^#/ { next }
		/^URIs:/ { uris = $2 }
		/^Suites:/ { suites = ""; for (i = 2; i <= NF; i++) { suites = suites " " $i; if ($i !~ /-/ && rel == "") rel = $i } sub(/^ /, "", suites) }
		/^Signed-By:/ { key = $2 }
		END { flush(); if (!done) exit 1 }
	' "$f" || die "no release suite stanza (deb, URIs, Suites: <codename>) in $f"
}

apt_updated=
apt_update() {
	[ -n "$apt_updated" ] && return
	log "apt-get update"
	apt-get "${apt_opts[@]}" update >&2 || die "apt-get update failed"
	apt_updated=1
}

ensure_apt_entries() {
	local tmp
	tmp=$(mktemp)
	apt_entries "$tmp"
	if ! cmp -s "$tmp" "$aptlist"; then
		[ "$(id -u)" = 0 ] || die "need root to write $aptlist (trixie deb-src, bookworm-backports)"
		install -m 0644 "$tmp" "$aptlist"
		log "wrote $aptlist (trixie deb-src, backports; derived from debian.sources)"
		apt_updated=
	fi
	rm -f "$tmp"
}

meson_ok() {
	local v
	v=$(meson --version 2>/dev/null) || return 1
	[ "$(printf '%s\n1.5.0\n' "$v" | sort -V | head -n 1)" = 1.5.0 ]
}

ensure_deps() {
	local missing=() p
	for p in ccache libslirp-dev ninja-build seabios qemu-system-data pkg-config \
		libglib2.0-dev python3-venv dpkg-dev build-essential; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
	done
	if ! meson_ok || [ ${#missing[@]} -gt 0 ]; then
		[ "$(id -u)" = 0 ] || die "missing packages (${missing[*]} meson>=1.5): run as root once"
		ensure_apt_entries
		apt_update
		if ! meson_ok; then
			local rel
			rel=$(awk '/^Suites:/ && $2 ~ /-backports$/ { print $2; exit }' "$aptlist")
			log "apt-get install -t $rel meson"
			DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -t "$rel" meson >&2 ||
				die "cannot install meson from $rel"
			meson_ok || die "meson $(meson --version 2>/dev/null) is older than 1.5.0 (QEMU 10 needs it)"
		fi
		if [ ${#missing[@]} -gt 0 ]; then
			log "apt-get install ${missing[*]}"
			DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install "${missing[@]}" >&2 ||
				die "cannot install ${missing[*]}"
		fi
	fi
}

# ---- pristine source, fetched once ------------------------------------------

ensure_source() {
	exec 8>"$cache/src.lock"
	flock -w "$lock_wait" 8 || die "timed out after ${lock_wait}s waiting for $cache/src.lock"
	if [ -L "$cache/src/qemu" ] && [ -e "$cache/src/qemu/.pch-pristine" ] && [ -z "${PCH_QEMU_REFETCH:-}" ]; then
		exec 8>&-
		return
	fi
	ensure_apt_entries
	apt_update
	local dl ver dir
	dl=$(mktemp -d "$cache/src/dl.XXXXXX")
	log "apt-get source qemu (trixie) into $dl"
	(cd "$dl" && apt-get "${apt_opts[@]}" source qemu/trixie >&2) ||
		{ rm -rf "$dl"; die "apt-get source qemu failed (is the trixie deb-src entry in $aptlist usable?)"; }
	dir=$(find "$dl" -mindepth 1 -maxdepth 1 -type d -name 'qemu-*' | head -n 1)
	if [ -z "$dir" ] || [ ! -r "$dir/debian/changelog" ]; then
		rm -rf "$dl"
		die "apt-get source left no qemu-*/debian/changelog in $dl"
	fi
	ver=$(dpkg-parsechangelog -l "$dir/debian/changelog" -S Version)
	ver=${ver#*:}
	rm -rf "$cache/src/qemu-$ver"
	mv "$dir" "$cache/src/qemu-$ver"
	echo "$ver" >"$cache/src/qemu-$ver/.pch-pristine"
	ln -sfn "qemu-$ver" "$cache/src/qemu"
	rm -rf "$dl"
	log "pristine source: $cache/src/qemu-$ver"
	exec 8>&-
}

if [ -z "$source_only" ]; then
	ensure_deps
fi
[ -n "$deps_only" ] && exit 0
ensure_source
[ -n "$source_only" ] && { readlink -f "$cache/src/qemu"; exit 0; }

src=$(readlink -f "$cache/src/qemu")
srcver=$(cat "$src/.pch-pristine")

# ---- the key ------------------------------------------------------------------

series=$top/qemu-glue/patches/series
patches=()
if [ -f "$series" ]; then
	while read -r p _; do
		case $p in ''|'#'*) continue ;; esac
		[ -f "$top/qemu-glue/patches/$p" ] || die "series names $p, which is not in qemu-glue/patches/"
		patches+=("$top/qemu-glue/patches/$p")
	done <"$series"
fi

# does the series add a `pch` meson option?  (look at the patches, so the key
# can be computed before any tree is copied)
use_pch=
if [ ${#patches[@]} -gt 0 ] && cat "${patches[@]}" |
	awk '/^\+\+\+ .*meson_options.txt/ { m = 1; next } /^(diff|\+\+\+|---) / { m = 0 } m && /^\+option\(.pch./ { f = 1 } END { exit !f }'; then
	use_pch=1
fi

ci_min='CONFIG_I440FX=y
CONFIG_Q35=y
CONFIG_VIRTIO_PCI=y
CONFIG_VIRTIO_NET=y'

firmware=/usr/share/qemu:/usr/share/seabios:/usr/lib/ipxe/qemu
configure=("--python=$py" --target-list=x86_64-softmmu --disable-docs --disable-werror
	--disable-user --without-default-features --enable-tcg --enable-slirp
	--disable-download --disable-install-blobs "--firmwarepath=$firmware"
	--without-default-devices --with-devices-x86_64=ci-min)
[ -n "$use_pch" ] && configure+=(-Dpch=enabled)

# libpch-client, staged with only the static library so QEMU does not need the
# clone's .so at run time (the clone's .pc names /usr/local, not build/lib)
stage_client() {
	local d=$1 lib=$top/build/lib
	[ -f "$lib/libpch-client.a" ] || die "series adds -Dpch but $lib/libpch-client.a is missing (run make first)"
	mkdir -p "$d/lib/pkgconfig" "$d/include/pch"
	cp "$lib/libpch-client.a" "$d/lib/"
	cp "$top"/include/pch/*.h "$d/include/pch/"
	sed -e "s|@PREFIX@|$d|" "$top/qemu-glue/pch-client.pc.in" >"$d/lib/pkgconfig/pch-client.pc"
}

key=$({
	echo "src $srcver"
	printf 'configure %s\n' "${configure[@]}"
	echo "ci-min $ci_min"
	sha256sum <"$self"     # content only: the path differs per clone
	for p in "${patches[@]}"; do echo "patch $(basename "$p")"; sha256sum <"$p"; done
	if [ -n "$use_pch" ]; then
		sha256sum <"$top/build/lib/libpch-client.a" 2>/dev/null || echo "no libpch-client.a"
		cat "$top"/include/pch/*.h "$top/qemu-glue/pch-client.pc.in" | sha256sum
	fi
} | sha256sum | cut -c1-16)

out=$cache/qemu/$key
bin=$out/qemu-system-x86_64

publish() {
	mkdir -p "$top/build/qemu"
	echo "$bin" >"$top/build/qemu/qemu-system-x86_64.path"
	echo "$firmware" >"$top/build/qemu/firmware.path"
	echo "$key" >"$top/build/qemu/key"
	log "$1 in $(since "$t_start") s (key $key, ${#patches[@]} patches, pch option: ${use_pch:-no})"
	echo "$bin"
	exit 0
}

# builds no run has used for PCH_QEMU_KEEP_DAYS (7) days go (a hit touches
# .complete); a tree left by a failed or killed build goes after a day
prune() {
	local c d
	find "$cache/qemu" -mindepth 2 -maxdepth 2 -name .complete -mtime +"${PCH_QEMU_KEEP_DAYS:-7}" 2>/dev/null |
		while read -r c; do
			d=$(dirname "$c")
			[ "$d" = "$out" ] && continue
			flock -n "$d.lock" rm -rf "$d" "$d.lock" 2>/dev/null || true
		done
	find "$cache/work" -mindepth 1 -maxdepth 1 -type d -mtime +1 2>/dev/null |
		while read -r d; do
			c=$cache/qemu/$(basename "$d").lock
			if [ -e "$c" ]; then flock -n "$c" rm -rf "$d" 2>/dev/null || true; else rm -rf "$d"; fi
		done
}
prune
if [ -x "$bin" ] && [ -f "$out/.complete" ]; then
	touch "$out/.complete"
	publish "cached"
fi

# one builder per key; a second run waits, then finds the result
exec 9>"$cache/qemu/$key.lock"
flock -w "$lock_wait" 9 || die "timed out after ${lock_wait}s waiting for $cache/qemu/$key.lock"
[ -x "$bin" ] && [ -f "$out/.complete" ] && publish "cached (built by a concurrent run)"

work=$cache/work/$key
rm -rf "$work"
mkdir -p "$work"
log "copying $src (hard links) into $work/src"
cp -al "$src" "$work/src"
tree=$work/src
for p in "${patches[@]}"; do
	log "patch -p1 < $(basename "$p")"
	patch -p1 -s -N -d "$tree" <"$p" || die "$(basename "$p") does not apply to QEMU $srcver"
done
if [ -n "$use_pch" ] && ! grep -q "option('pch'" "$tree/meson_options.txt"; then
	die "the series looked like it adds a pch meson option, but meson_options.txt has none"
fi
# the device config: a new file in the copy, never in the pristine tree
printf '%s\n' "$ci_min" >"$tree/configs/devices/x86_64-softmmu/ci-min.mak"

if [ -n "$use_pch" ]; then
	stage_client "$work/pch-client"
	export PKG_CONFIG_PATH=$work/pch-client/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
fi

# ccache: the shared dir, depend mode; paths under work/ hashed relative to the
# cwd, so the same file in another key's tree is a hit
export CCACHE_DIR=$cache/ccache CCACHE_DEPEND=1 CCACHE_BASEDIR=$cache/work CCACHE_NOHASHDIR=1
export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-2G}
ccache -z >/dev/null 2>&1 || true

blog=$work/build.log
mkdir -p "$tree/build"
log "configure (log: $blog)"
t0=$(now)
(cd "$tree/build" && CC="ccache gcc" ../configure "${configure[@]}") >"$blog" 2>&1 ||
	{ tail -n 30 "$blog" >&2; die "configure failed; log: $blog"; }
t_conf=$(since "$t0")
log "configure: $t_conf s; ninja -j$jobs qemu-system-x86_64"
t0=$(now)
(cd "$tree/build" && ninja -j"$jobs" qemu-system-x86_64) >>"$blog" 2>&1 ||
	{ grep -B2 -A12 -m3 'error:\|FAILED' "$blog" >&2 || tail -n 30 "$blog" >&2; die "build failed; log: $blog"; }
t_build=$(since "$t0")
log "ninja: $t_build s; ccache: $(ccache -s 2>/dev/null | grep -iE '^ *hits|^ *misses' | tr -s ' ' | paste -sd, -)"

rm -rf "$out"
mkdir -p "$out"
cp "$tree/build/qemu-system-x86_64" "$out/qemu-system-x86_64.tmp"
mv "$out/qemu-system-x86_64.tmp" "$bin"
cp "$blog" "$out/build.log"
{
	echo "source $srcver"
	echo "configure ${configure[*]}"
	echo "patches ${patches[*]##*/}"
	echo "configure_s $t_conf"
	echo "ninja_s $t_build"
} >"$out/info"
"$bin" -version >/dev/null 2>&1 ||
	die "the built $bin does not run (-version)"
touch "$out/.complete"
rm -rf "$work"
publish "built"
}
