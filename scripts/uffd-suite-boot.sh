#!/bin/bash
# SPDX-License-Identifier: MIT
#
# uffd-suite-boot.sh: run pch-uffd-suite under another kernel, a bzImage /
# vmlinuz booted by qemu-system-x86_64 -kernel, with a throw-away initramfs
# (busybox-static, the suite and its libraries).  The suite's KTAP comes back
# on the serial console; its exit status is this script's.
#
#   scripts/uffd-suite-boot.sh [--kvm] [--mem M] [--smp N] [--timeout S]
#                              [--json FILE] [--log FILE] KERNEL [SUITE-ARGS...]
#
# Needs: build/bin/pch-uffd-suite (make), qemu-system-x86_64 and busybox
# (apt-get install qemu-system-x86 busybox-static).  TCG by default (works
# everywhere, about 10 s for --quick); --kvm where /dev/kvm is usable.
# Exit: the suite's status (0 no failed case, 1 a case failed), 2 bad usage
# or missing tools, 3 the guest did not report (see --log).
# Kbuild-notes.md section 4 says which kernel options the suite needs.
set -euo pipefail

usage() {
	sed -n 's/^#   //p; s/^#                              //p' "$0" | head -n 2 >&2
	exit 2
}

accel=tcg mem=3G smp=2 tmo=900 json= log=
while [ $# -gt 0 ]; do
	case $1 in
	--kvm) accel=kvm ;;
	--mem) mem=$2; shift ;;
	--smp) smp=$2; shift ;;
	--timeout) tmo=$2; shift ;;
	--json) json=$2; shift ;;
	--log) log=$2; shift ;;
	-h|--help) usage ;;
	--) shift; break ;;
	-*) echo "uffd-suite-boot: unknown option $1" >&2; usage ;;
	*) break ;;
	esac
	shift
done
[ $# -ge 1 ] || usage
kernel=$1; shift
[ -r "$kernel" ] || { echo "uffd-suite-boot: cannot read kernel image $kernel" >&2; exit 2; }

top=$(cd "$(dirname "$0")/.." && pwd)
suite=$top/build/bin/pch-uffd-suite
[ -x "$suite" ] || { echo "uffd-suite-boot: $suite not built (run make)" >&2; exit 2; }
qemu=$(command -v qemu-system-x86_64 || true)
bb=$(command -v busybox || true)
if [ -z "$qemu" ] || [ -z "$bb" ]; then
	echo "uffd-suite-boot: needs qemu-system-x86_64 and busybox:" \
		"apt-get install qemu-system-x86 busybox-static" >&2
	exit 2
fi
if ldd "$bb" >/dev/null 2>&1; then
	echo "uffd-suite-boot: $bb is dynamically linked; install busybox-static" >&2
	exit 2
fi

work=$(mktemp -d /tmp/uffd-suite-boot.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,dev,proc,sys,tmp}
cp "$bb" "$root/bin/busybox"
for a in sh mount poweroff cat echo uname base64 xargs sleep; do
	ln -s busybox "$root/bin/$a"
done
cp "$suite" "$root/bin/pch-uffd-suite"
# the suite's shared libraries, at the paths the loader looks for them
ldd "$suite" | grep -o '/[^ ]*' | while read -r l; do
	mkdir -p "$root$(dirname "$l")"
	cp -Ln "$l" "$root$l"
done
# the suite's arguments, NUL-separated, so any argument survives
printf '%s\0' "$@" --json /tmp/suite.json >"$root/args"
cat >"$root/init" <<'EOF'
#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
echo "pch-boot: kernel $(uname -r)"
# xargs only says 0/123; the suite's own status goes through a file
echo 3 >/tmp/rc
xargs -0 sh -c '/bin/pch-uffd-suite "$@"; echo $? >/tmp/rc' sh </args
rc=$(cat /tmp/rc)
echo "pch-boot: json-begin"
base64 /tmp/suite.json 2>/dev/null
echo "pch-boot: json-end"
echo "pch-boot: rc=$rc"
poweroff -f
sleep 10
EOF
chmod 755 "$root/init"
(cd "$root" && find . | "$bb" cpio -o -H newc 2>/dev/null) | gzip -1 >"$work/initrd.gz"

out=${log:-$work/console.log}
echo "uffd-suite-boot: booting $kernel ($accel, $smp CPUs, $mem, deadline ${tmo}s)" >&2
qrc=0
timeout -k 10 "$tmo" "$qemu" -accel "$accel" -m "$mem" -smp "$smp" -nographic -no-reboot \
	-kernel "$kernel" -initrd "$work/initrd.gz" \
	-append "console=ttyS0 panic=-1 quiet loglevel=1" </dev/null >"$out" 2>&1 || qrc=$?
tr -d "\r" <"$out" | grep -av "^\[ *[0-9]*\.[0-9]*\] " >"$work/clean.log" || true

sed -n 's/^.*pch-boot: kernel /# kernel: /p' "$work/clean.log"
sed -n '/^KTAP version/,/^# Totals:/p' "$work/clean.log"
if [ -n "$json" ]; then
	sed -n '/^pch-boot: json-begin$/,/^pch-boot: json-end$/p' "$work/clean.log" |
		sed '1d;$d' | base64 -d >"$json" || echo "uffd-suite-boot: no JSON report" >&2
fi
rc=$(sed -n 's/^pch-boot: rc=\([0-9]*\)$/\1/p' "$work/clean.log" | tail -n 1)
if [ -z "$rc" ]; then
	echo "uffd-suite-boot: the guest did not report (qemu exit $qrc$([ "$qrc" = 124 ] && echo ", killed after ${tmo}s"));" \
		"console: ${log:-rerun with --log FILE}" >&2
	[ -n "$log" ] || tail -n 20 "$work/clean.log" >&2
	exit 3
fi
exit "$rc"
