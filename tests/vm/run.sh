#!/usr/bin/env bash
# Runs a command inside a throwaway QEMU guest whose only cgroup hierarchy
# is cgroup v2 (all controllers enabled at the root), and exits with its
# status. The guest is a Debian cloud kernel with a busybox initramfs made
# anew on every run; files given with -f appear at the same absolute path
# (with the shared libraries of ELF files), so test binaries that refer to
# CARGO_BIN_EXE_* or CARGO_MANIFEST_DIR paths work unchanged.
#
# usage: run.sh [-t SECS] [-m MEM] [-c CPUS] [-d DISK_SIZE] [-f PATH]... [-e NAME=VALUE]... -- CMD [ARGS...]
# exit: the command's status; 124 timeout; 125 the VM itself failed.
#
# /dev/kvm on the development and CI machines is PVM (software nested
# virtualization), which cannot boot stock kernels: there the guest runs on
# TCG (software emulation, 5-20x slower). Real KVM is used where present.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${JW_VM_CACHE:-$HERE/../../target/vm-cache}
TIMEOUT=600 MEM=2G CPUS=2 DISK=""
files=() envs=()
while getopts "t:m:c:d:f:e:" opt; do
    case $opt in
        t) TIMEOUT=$OPTARG ;; m) MEM=$OPTARG ;; c) CPUS=$OPTARG ;; d) DISK=$OPTARG ;;
        f) files+=("$OPTARG") ;; e) envs+=("$OPTARG") ;;
        *) echo "usage: run.sh [-t SECS] [-m MEM] [-c CPUS] [-d SIZE] [-f PATH]... [-e N=V]... -- CMD [ARGS...]" >&2; exit 125 ;;
    esac
done
shift $((OPTIND - 1))
[[ $# -ge 1 ]] || { echo "run.sh: no command" >&2; exit 125; }

"$HERE/setup.sh"

if [[ -d /sys/module/kvm_intel || -d /sys/module/kvm_amd ]] && [[ -w /dev/kvm ]] && [[ ! -d /sys/module/kvm_pvm ]]; then
    accel=(-accel kvm -cpu host)
else
    accel=(-accel tcg,thread=multi,tb-size=256 -cpu max)
fi

W=$(mktemp -d /tmp/jw-vm.XXXXXX)
trap 'rm -rf "$W"' EXIT
R=$W/root
mkdir -p "$R"/{bin,sbin,etc,proc,sys,dev,tmp,root,home,vmtest,lib/modules,usr/bin,usr/sbin}
cp /bin/busybox "$R/bin/busybox"
cp "$HERE/guest-init.sh" "$R/init"
chmod 755 "$R/init"
cp "$CACHE"/modules/* "$R/lib/modules/"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$R/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$R/etc/group"
printf '127.0.0.1 localhost\n::1 localhost\n' >"$R/etc/hosts"

add_libs() {
    [[ $(head -c 4 "$1" | od -An -tx1 | tr -d ' \n') == 7f454c46 ]] || return 0
    local lib
    for lib in $(ldd "$1" 2>/dev/null | grep -oE '/[^ ]+' || true); do
        [[ -e $R$lib ]] || { mkdir -p "$R$(dirname "$lib")"; cp -L "$lib" "$R$lib"; }
    done
}
add() {
    local src
    src=$(realpath "$1")
    mkdir -p "$R$(dirname "$src")"
    cp -R -L --preserve=mode "$src" "$R$src"
    # Debug info is most of a test binary and the guest keeps its whole
    # root in memory: without it, more test binaries fit (backtraces keep
    # their function names).
    if [[ -f $src && $(head -c 4 "$src" | od -An -tx1 | tr -d ' \n') == 7f454c46 ]]; then
        strip --strip-debug "$R$src" 2>/dev/null || true
    fi
    if [[ -d $src ]]; then
        while IFS= read -r -d '' f; do add_libs "$f"; done < <(find "$src" -type f -perm -u+x -print0)
    else
        add_libs "$src"
    fi
}
for f in ${files[@]+"${files[@]}"}; do add "$f"; done
[[ $1 == /* ]] && [[ -e $1 ]] && add "$1"

q() { local s=${1//\'/\'\\\'\'}; printf "'%s'" "$s"; }
{
    for e in ${envs[@]+"${envs[@]}"}; do echo "export ${e%%=*}=$(q "${e#*=}")"; done
    echo "cd /tmp"
    printf 'exec'
    for a in "$@"; do printf ' %s' "$(q "$a")"; done
    echo
} >"$R/vmtest/cmd"
(cd "$R" && find . -mindepth 1 | cpio -o -H newc -R 0:0 --quiet) >"$W/initrd.cpio"

disk=()
if [[ -n $DISK ]]; then
    truncate -s "$DISK" "$W/disk.img"
    disk=(-drive "file=$W/disk.img,if=virtio,format=raw,cache=unsafe")
fi
: >"$W/status"
set +e
qemu=(qemu-system-x86_64)
if [[ -x $CACHE/qemu/usr/bin/qemu-system-x86_64 ]] && { ! command -v qemu-system-x86_64 >/dev/null || [[ -n ${JW_VM_UNPACK_QEMU:-} ]]; }; then
    # Unpacked by setup.sh, not installed: its libraries and firmware too.
    Q=$CACHE/qemu
    export LD_LIBRARY_PATH=$Q/usr/lib/x86_64-linux-gnu:$Q/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    qemu=("$Q/usr/bin/qemu-system-x86_64" -L "$Q/usr/share/qemu" -L "$Q/usr/share/seabios")
fi
timeout -k 5 "$TIMEOUT" "${qemu[@]}" "${accel[@]}" -m "$MEM" -smp "$CPUS" \
    -nodefaults -no-user-config -display none -no-reboot \
    -kernel "$CACHE/vmlinuz" -initrd "$W/initrd.cpio" \
    -append "console=ttyS0 panic=-1 cgroup_no_v1=all rdinit=/init 8250.nr_uarts=3 mitigations=off quiet" \
    -serial "file:$W/console.log" -serial stdio -serial "file:$W/status" \
    ${disk[@]+"${disk[@]}"} </dev/null &
qemu=$!
trap 'kill -TERM $qemu 2>/dev/null; wait $qemu; rm -rf "$W"; exit 130' INT TERM
wait $qemu
qrc=$?
set -e
rc=$(tr -d '\r' <"$W/status" | sed -n 's/^JW_VM_EXIT=\([0-9]*\).*/\1/p' | tail -n 1)
if [[ -n $rc ]]; then
    exit "$rc"
fi
if [[ $qrc == 124 || $qrc == 137 ]]; then
    echo "run.sh: the guest did not finish within ${TIMEOUT}s; console tail:" >&2
    rc=124
else
    echo "run.sh: the guest ended without a status (qemu exit $qrc); console tail:" >&2
    rc=125
fi
tail -n 40 "$W/console.log" | tr -d '\r' >&2
exit $rc
