#!/usr/bin/env bash
# Prepares this host to boot the pure cgroup v2 test guest: QEMU and a
# static busybox from Debian, and a Debian cloud kernel that is downloaded
# and unpacked (never installed) into the cache. Idempotent. Needs root.
#   JW_VM_CACHE   where the kernel and modules go (default: target/vm-cache)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${JW_VM_CACHE:-$HERE/../../target/vm-cache}
KMETA=linux-image-cloud-amd64

missing=()
for p in qemu-system-x86 busybox-static cpio; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "vm-setup: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=300 update -qq
    apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

mkdir -p "$CACHE"
if [[ ! -s $CACHE/vmlinuz || ! -s $CACHE/modules/load-order ]]; then
    kpkg=$(apt-cache depends "$KMETA" 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
    if [[ -z $kpkg ]]; then
        apt-get -o DPkg::Lock::Timeout=300 update -qq
        kpkg=$(apt-cache depends "$KMETA" | awk '/Depends: linux-image-/{print $2; exit}')
    fi
    [[ -n $kpkg ]] || { echo "vm-setup: cannot resolve $KMETA to a kernel package" >&2; exit 1; }
    echo "vm-setup: fetching $kpkg" >&2
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    chmod 777 "$tmp" # apt-get download runs as _apt
    (cd "$tmp" && apt-get download -qq "$kpkg" 2>&1 | grep -v unsandboxed >&2 || true)
    deb=$(ls "$tmp"/"$kpkg"_*.deb)
    dpkg-deb -x "$deb" "$tmp/x"
    kver=$(ls "$tmp/x/lib/modules")
    cp "$tmp/x/boot/vmlinuz-$kver" "$CACHE/vmlinuz"
    echo "$kpkg $(dpkg-deb -f "$deb" Version)" >"$CACHE/kernel.version"
    # The guest has no depmod data: copy the modules it needs with their
    # dependencies (from each .ko's depends=), in load order.
    kdir="$tmp/x/lib/modules/$kver/kernel"
    rm -rf "$CACHE/modules"
    mkdir -p "$CACHE/modules"
    : >"$CACHE/modules/load-order"
    declare -A seen=()
    add_mod() {
        local name=$1 path dep
        [[ -n ${seen[$name]:-} ]] && return 0
        seen[$name]=1
        path=$(find "$kdir" \( -name "$name.ko" -o -name "${name//_/-}.ko" \) -print -quit)
        [[ -n $path ]] || return 0 # built in
        for dep in $(tr '\0' '\n' <"$path" | sed -n 's/^depends=//p' | tr ',' ' '); do add_mod "$dep"; done
        cp "$path" "$CACHE/modules/"
        basename "$path" >>"$CACHE/modules/load-order"
    }
    for m in virtio_pci virtio_blk null_blk; do add_mod "$m"; done
fi
echo "vm-setup: ok ($(cat "$CACHE/kernel.version"))" >&2
