#!/usr/bin/env bash
# Makes (once) the root of the systemd test guest of scripts/test-deb: a
# minimal Debian bookworm with systemd as PID 1, built with mmdebstrap from
# deb.debian.org and packed as a newc cpio to boot as the initramfs (no
# disk: /lib/systemd/systemd runs straight from it). Prints the cpio's path.
# Cached in the VM cache under a name that changes with this script, so an
# edit here makes a new one. Needs root.
#   JW_VM_CACHE     the cache directory (default: target/vm-cache)
#   JW_VM_MIRROR    the Debian mirror (default: http://deb.debian.org/debian)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${JW_VM_CACHE:-$HERE/../../target/vm-cache}
MIRROR=${JW_VM_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
# systemd and its init, and procps for the test's ps (and the unit's
# /bin/kill). libseccomp2 comes with systemd; the package itself brings
# nothing else.
INCLUDE=systemd,systemd-sysv,procps

key=$( (cat "$0"; echo "$SUITE $INCLUDE $MIRROR") | sha256sum | cut -c1-16)
out=$CACHE/systemd-rootfs-$key.cpio
if [[ -s $out ]]; then
    echo "$out"
    exit 0
fi

command -v mmdebstrap >/dev/null || { echo "systemd-rootfs: mmdebstrap is missing (scripts/setup --deb installs it)" >&2; exit 1; }
mkdir -p "$CACHE"
# One builder at a time (scripts/test starts one early, in the
# background; scripts/test-deb's own call then waits for it): the next
# finds the cpio made.
exec 9>"$CACHE/systemd-rootfs.lock"
flock -w 1200 9 || { echo "systemd-rootfs: another build held the lock for 20 minutes" >&2; exit 1; }
if [[ -s $out ]]; then
    echo "$out"
    exit 0
fi
rm -f "$CACHE"/systemd-rootfs-*.cpio # older versions of this script's
tmp=$(mktemp -d "$CACHE/systemd-rootfs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
R=$tmp/root

echo "systemd-rootfs: building a $SUITE root with $INCLUDE from $MIRROR" >&2
began=$(date +%s)
# Documentation and translations are most of what a guest never reads.
timeout 900 mmdebstrap --quiet --variant=minbase --include="$INCLUDE" --dpkgopt=force-unsafe-io \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    "$SUITE" "$R" "$MIRROR" >&2

# Boot to multi-user.target without what a serial-only, udev-less guest
# would wait for or fail on: gettys (their tty devices never appear
# without udev), the remount of a root that is the initramfs, timers.
echo jwdeb >"$R/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 jwdeb\n::1 localhost ip6-localhost ip6-loopback\n' >"$R/etc/hosts"
: >"$R/etc/machine-id"
ln -sf /lib/systemd/system/multi-user.target "$R/etc/systemd/system/default.target"
for unit in getty@.service serial-getty@.service console-getty.service systemd-remount-fs.service \
    apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer fstrim.timer \
    systemd-tmpfiles-clean.timer systemd-firstboot.service; do
    ln -sf /dev/null "$R/etc/systemd/system/$unit"
done
rm -rf "$R"/var/cache/apt/* "$R"/var/lib/apt/lists/*

(cd "$R" && find . -mindepth 1 | cpio -o -H newc --quiet) >"$tmp/root.cpio"
mv "$tmp/root.cpio" "$out"
echo "systemd-rootfs: built in $(($(date +%s) - began)) s ($(du -h "$out" | cut -f1))" >&2
echo "$out"
