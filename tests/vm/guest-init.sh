#!/bin/busybox sh
# PID 1 of the test guest: a pure cgroup v2 host (booted with
# cgroup_no_v1=all). Serial ports: ttyS0 kernel console, ttyS1 the
# payload's output, ttyS2 the payload's exit status for the host.
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /root /sbin /usr/bin /usr/sbin /var/tmp
/bin/busybox --install -s
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TMPDIR=/tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# /tmp and /var/tmp stay on the initramfs (already in RAM): the host paths
# of the payload may live under /tmp and must stay visible.
chmod 1777 /tmp /var/tmp
mount -t tmpfs tmpfs /run
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
ln -sf /proc/self/fd /dev/fd 2>/dev/null
log() { echo "jw-vm-init: $*" >/dev/ttyS0; }
for m in $(cat /lib/modules/load-order 2>/dev/null); do
    insmod "/lib/modules/$m" 2>/dev/null || log "insmod $m failed"
done
# The scratch disk: a filesystem at /scratch, where the io.max test keeps
# its data directory, so a job's writes to its work directory reach vda.
if [ -b /dev/vda ]; then
    mkdir -p /scratch
    mke2fs -F /dev/vda >/dev/null 2>&1 && mount /dev/vda /scratch || log "cannot make /scratch on vda"
fi
ip link set lo up
stty -F /dev/ttyS1 raw -echo 2>/dev/null
sh /vmtest/cmd </dev/null >/dev/ttyS1 2>&1
rc=$?
echo "JW_VM_EXIT=$rc" >/dev/ttyS2
sync
poweroff -f
exit "$rc"
