#!/bin/bash
# SPDX-License-Identifier: MIT
#
# qemu-guest.sh: the guest make qemu-check migrates, built into the cache from
# Debian packages (downloaded with apt-get download and unpacked with
# dpkg-deb -x, never installed): bookworm's kernel (the linux-image-amd64
# dependency) and busybox-static, plus qemu-glue/guest/memload.c built static.
#
#   scripts/qemu-guest.sh
#
# Writes ${PCH_QEMU_CACHE:-/var/cache/pch-qemu}/guest/<key>/{vmlinuz,
# initramfs.cpio.gz} and points guest/vmlinuz and guest/initramfs.cpio.gz at
# them; the key hashes the two package versions, memload.c and this script.
# Prints the guest directory last.  The guest's /init mounts proc, sys and
# dev and runs `memload <memload.mib>` (kernel command line, default 256),
# console on ttyS0; it needs no modules.
set -euo pipefail
# One compound command, read whole before it runs, so editing or checking out
# this file while it runs cannot break the run (bash reads scripts as it goes).
{

top=$(cd "$(dirname "$0")/.." && pwd)
cache=${PCH_QEMU_CACHE:-/var/cache/pch-qemu}
gdir=$cache/guest
apt_opts=(-o DPkg::Lock::Timeout=600 -q -y)

log() { echo "qemu-guest: $*" >&2; }
die() { echo "qemu-guest: $*" >&2; exit 1; }

mkdir -p "$gdir"

# the kernel package linux-image-amd64 depends on (e.g. linux-image-6.1.0-41-amd64)
# and the candidate versions: two apt-cache calls, no network
resolve() {
	kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
		awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
	kver='' bver=''
	[ -n "$kpkg" ] || return 0
	eval "$(apt-cache policy "$kpkg" busybox-static 2>/dev/null | awk -v k="$kpkg" '
		/^[^ ]/ { p = $1; sub(/:$/, "", p) }
		/Candidate:/ && $2 != "(none)" { if (p == k) print "kver=\x27" $2 "\x27"; else if (p == "busybox-static") print "bver=\x27" $2 "\x27" }')"
}
resolve
if [ -z "$kpkg" ] || [ -z "$kver" ] || [ -z "$bver" ]; then
	log "apt-get update (linux-image-amd64's kernel or busybox-static not in the package lists)"
	apt-get "${apt_opts[@]}" update >&2 || die "apt-get update failed"
	resolve
fi
[ -n "$kpkg" ] || die "cannot find the kernel package linux-image-amd64 depends on (apt-cache depends)"
[ -n "$kver" ] || die "no candidate version for $kpkg (apt-cache policy)"
[ -n "$bver" ] || die "no candidate version for busybox-static (apt-cache policy)"

key=$({
	echo "$kpkg $kver"
	echo "busybox-static $bver"
	sha256sum <"$top/qemu-glue/guest/memload.c"
	sha256sum <"$0"
	gcc --version | head -n 1
} | sha256sum | cut -c1-16)
out=$gdir/$key

publish() {
	ln -sfn "$key/vmlinuz" "$gdir/vmlinuz.new" && mv -T "$gdir/vmlinuz.new" "$gdir/vmlinuz"
	ln -sfn "$key/initramfs.cpio.gz" "$gdir/initramfs.cpio.gz.new" &&
		mv -T "$gdir/initramfs.cpio.gz.new" "$gdir/initramfs.cpio.gz"
	log "$1: $kpkg $kver, busybox-static $bver (key $key)"
	echo "$out"
	exit 0
}

# guests no run has used for PCH_QEMU_KEEP_DAYS (7) days go (a hit touches .complete)
find "$gdir" -mindepth 2 -maxdepth 2 -name .complete -mtime +"${PCH_QEMU_KEEP_DAYS:-7}" 2>/dev/null |
	while read -r c; do
		d=$(dirname "$c")
		[ "$d" = "$out" ] || rm -rf "$d" "$d.lock"
	done
if [ -f "$out/.complete" ]; then
	touch "$out/.complete"
	publish cached
fi
exec 9>"$gdir/$key.lock"
flock -w 1800 9 || die "timed out waiting for $gdir/$key.lock"
[ -f "$out/.complete" ] && publish "cached (built by a concurrent run)"

work=$(mktemp -d "$gdir/build.XXXXXX")
chmod 755 "$work"   # apt-get download runs as _apt
trap 'rm -rf "$work"' EXIT
dl() {
	local pkg=$1 ver=$2
	(cd "$work" && apt-get "${apt_opts[@]}" download "$pkg=$ver" >&2) && return
	log "apt-get download $pkg=$ver failed; apt-get update and retry"
	apt-get "${apt_opts[@]}" update >&2 || die "apt-get update failed"
	(cd "$work" && apt-get "${apt_opts[@]}" download "$pkg=$ver" >&2) ||
		die "apt-get download $pkg=$ver failed"
}
log "apt-get download $kpkg=$kver busybox-static=$bver"
dl "$kpkg" "$kver"
dl busybox-static "$bver"
mkdir -p "$work/k" "$work/bb"
dpkg-deb -x "$work/${kpkg}_"*.deb "$work/k" || die "dpkg-deb -x of $kpkg failed"
dpkg-deb -x "$work/busybox-static_"*.deb "$work/bb" || die "dpkg-deb -x of busybox-static failed"
vmlinuz=$(find "$work/k/boot" -name 'vmlinuz-*' | head -n 1)
[ -n "$vmlinuz" ] || die "$kpkg has no /boot/vmlinuz-*"

root=$work/root
mkdir -p "$root"/{bin,dev,proc,sys,tmp}
cp "$work/bb/bin/busybox" "$root/bin/busybox"
for a in sh mount cat echo sleep poweroff; do ln -s busybox "$root/bin/$a"; done
gcc -static -O2 -Wall -Wextra -Werror -o "$root/bin/memload" "$top/qemu-glue/guest/memload.c" ||
	die "cannot build memload (gcc -static: is libc6-dev there?)"
cat >"$root/init" <<'EOF'
#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mib=256
for a in $(cat /proc/cmdline); do
	case $a in memload.mib=*) mib=${a#memload.mib=} ;; esac
done
echo "MEMLOAD boot kernel=$(cat /proc/sys/kernel/osrelease) mib=$mib"
/bin/memload "$mib" </dev/console >/dev/console 2>&1
echo "MEMLOAD exited rc=$?"
sleep 5
poweroff -f
EOF
chmod 755 "$root/init"
mkdir -p "$work/out"
(cd "$root" && find . | "$root/bin/busybox" cpio -o -H newc 2>/dev/null) | gzip -9 >"$work/out/initramfs.cpio.gz"
cp "$vmlinuz" "$work/out/vmlinuz"
{ echo "$kpkg $kver"; echo "busybox-static $bver"; } >"$work/out/versions"
rm -rf "$out"
mv "$work/out" "$out"
touch "$out/.complete"
publish built
}
