#!/usr/bin/env bash
# Prepares this host to boot the pure cgroup v2 test guest: a static
# busybox and cpio from Debian (installed if missing), QEMU (the host's, or
# Debian's unpacked into the cache), and a Debian cloud kernel, downloaded
# and unpacked (never installed) into the cache. Idempotent. Needs root.
#   JW_VM_UNPACK_QEMU=1  use the unpacked QEMU even where one is installed
#   JW_VM_CACHE   where the kernel and modules go (default: target/vm-cache)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${JW_VM_CACHE:-$HERE/../../target/vm-cache}
KMETA=linux-image-cloud-amd64

missing=()
for p in busybox-static cpio; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "vm-setup: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=300 update -qq
    apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

mkdir -p "$CACHE"

# QEMU: the host's when it has one; otherwise Debian's qemu-system-x86 and
# whatever of its dependencies the host lacks, unpacked into the cache and
# never installed. (Installing it removes the newer qemu-utils some hosts
# carry, and this script may add packages, never replace any.)
QEMU_DIR=$CACHE/qemu
if { ! command -v qemu-system-x86_64 >/dev/null || [[ -n ${JW_VM_UNPACK_QEMU:-} ]]; } &&
    [[ ! -x $QEMU_DIR/usr/bin/qemu-system-x86_64 ]]; then
    echo "vm-setup: unpacking QEMU into $QEMU_DIR" >&2
    qtmp=$(mktemp -d)
    chmod 777 "$qtmp" # apt-get download runs as _apt
    closure=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
        --no-breaks --no-replaces --no-enhances qemu-system-x86 2>/dev/null | grep -v '^[ <]' | sort -u || true)
    if [[ -z $closure ]]; then
        apt-get -o DPkg::Lock::Timeout=300 update -qq
        closure=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
            --no-breaks --no-replaces --no-enhances qemu-system-x86 | grep -v '^[ <]' | sort -u || true)
    fi
    need=()
    for p in $closure; do
        case $p in qemu-system-x86 | qemu-system-data | qemu-system-common | seabios | ipxe-qemu) need+=("$p"); continue ;; esac
        dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
    done
    if ! said=$(cd "$qtmp" && apt-get download -qq "${need[@]}" 2>&1); then
        # One package that cannot be had stops a batch: fetch them one by one.
        for p in "${need[@]}"; do
            said=$(cd "$qtmp" && apt-get download -qq "$p" 2>&1) ||
                echo "vm-setup: cannot download $p: $said" >&2
        done
    fi
    rm -rf "$QEMU_DIR.new"
    for deb in "$qtmp"/*.deb; do dpkg-deb -x "$deb" "$QEMU_DIR.new"; done
    rm -rf "$qtmp"
    [[ -x $QEMU_DIR.new/usr/bin/qemu-system-x86_64 ]] || { echo "vm-setup: could not unpack QEMU" >&2; exit 1; }
    lost=$(LD_LIBRARY_PATH=$QEMU_DIR.new/usr/lib/x86_64-linux-gnu:$QEMU_DIR.new/lib/x86_64-linux-gnu \
        ldd "$QEMU_DIR.new/usr/bin/qemu-system-x86_64" | grep 'not found' || true)
    [[ -z $lost ]] || { echo "vm-setup: the unpacked QEMU lacks: $lost" >&2; exit 1; }
    mv "$QEMU_DIR.new" "$QEMU_DIR"
fi

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
