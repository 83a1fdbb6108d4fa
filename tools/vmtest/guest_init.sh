#!/.vmtest/bin/sh
# PID 1 of corral's test VM (tools/vmtest): busybox ash from the initramfs.
#
# It builds the smallest Linux that corral's integration tests need: the API filesystems,
# tmpfs /tmp and /run, and cgroup2 ALONE at /sys/fs/cgroup (the kernel command line has
# cgroup_no_v1=all, so no v1 hierarchy can be mounted; kernel-parameters.txt). It loads the
# modules listed in /.vmtest/modules/order (dependencies first: the kernel package has no
# modules.dep), mounts the host shares that vmtest_*= words of /proc/cmdline name, runs
# the host's /mnt/vmtest/run.sh, and reports its exit status twice: "VMTEST-RC=<n>" on the
# serial console and /mnt/vmtest/rc. Then it powers off (poweroff -f: no init system).
#
# The guest is usrmerged like the host: /bin, /sbin, /lib and /lib64 are links into /usr,
# which is the host's /usr over 9p. busybox lives apart in /.vmtest/bin so that mounting
# /usr hides nothing this script needs.
#
# ash note: $$ in a ( subshell ) is the parent's pid, so nothing here writes $$ from one.

PATH=/.vmtest/bin
export HOME=/root TERM=dumb LANG=C.UTF-8

finish() {
    echo "VMTEST-RC=$1"
    [ -d /mnt/vmtest ] && echo "$1" >/mnt/vmtest/rc
    sync
    poweroff -f
    sleep 5
    echo "VMTEST: poweroff failed"
}

# Stage 1. The initramfs is the rootfs mount, which has no parent, and pivot_root(2)
# refuses it (EINVAL, "the current root is on the rootfs"), so corral could not pivot
# into a container. Copy this small tree to a tmpfs and switch_root(8) onto it.
if [ -z "$VMTEST_STAGE2" ]; then
    mount -t tmpfs -o mode=755 vmroot /newroot || finish 89
    for entry in /* /.vmtest; do
        case "$entry" in
        /dev | /proc | /sys | /newroot) mkdir "/newroot$entry" ;;
        *) cp -a "$entry" /newroot/ || finish 89 ;;
        esac
    done
    export VMTEST_STAGE2=1
    exec switch_root /newroot /init
fi
unset VMTEST_STAGE2

mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mount -t devtmpfs -o nosuid,mode=755 devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts -o nosuid,noexec,gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /dev/shm
# devtmpfs has no /dev/fd links; bash process substitution and some tools need them.
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /tmp
mount -t tmpfs -o nosuid,nodev,mode=755 tmpfs /run
# nsdelegate: cgroup namespaces become delegation boundaries, as systemd mounts it.
mount -t cgroup2 -o nosuid,nodev,noexec,nsdelegate cgroup2 /sys/fs/cgroup || finish 90

while read -r module; do
    insmod "/.vmtest/modules/$module.ko" || echo "VMTEST: insmod $module failed"
done </.vmtest/modules/order

hostname vmtest
ip link set lo up

# vmtest_usr=1: the host's /usr, read-only (python, its libraries, the venv's target).
# vmtest_out=1: the run directory (run.sh in; rc, logs and facts out), read-write.
# vmtest_src=PATH: the checkout, read-write, at the same absolute path as on the host.
# vmtest_ro=PATH (repeatable): more host directories, read-only, at the same path.
# The tags are fixed names: 9p tags are at most 31 bytes, paths are not.
p9="trans=virtio,version=9p2000.L,msize=262144"
ro_index=0
for word in $(cat /proc/cmdline); do
    case "$word" in
    vmtest_usr=1)
        mount -t 9p -o "$p9,ro,cache=loose" hostusr /usr || finish 91 ;;
    vmtest_out=1)
        mkdir -p /mnt/vmtest
        mount -t 9p -o "$p9" vmout /mnt/vmtest || finish 92 ;;
    vmtest_src=*)
        src="${word#vmtest_src=}"
        mkdir -p "$src"
        mount -t 9p -o "$p9,cache=loose" vmsrc "$src" || finish 93 ;;
    vmtest_ro=*)
        path="${word#vmtest_ro=}"
        mkdir -p "$path"
        mount -t 9p -o "$p9,ro,cache=loose" "vmro$ro_index" "$path" || finish 94
        ro_index=$((ro_index + 1)) ;;
    esac
done

[ -f /mnt/vmtest/run.sh ] || finish 95

# As on a systemd host, the test runner is not in the root cgroup but in a leaf of it.
mkdir /sys/fs/cgroup/vmtest.scope
echo 1 >/sys/fs/cgroup/vmtest.scope/cgroup.procs

# What the guest really had, for the host to check.
cat /proc/mounts >/mnt/vmtest/mounts
cat /proc/cgroups >/mnt/vmtest/cgroups
cat /sys/fs/cgroup/cgroup.controllers >/mnt/vmtest/cgroup.controllers
uname -r >/mnt/vmtest/uname
cut -d" " -f1 /proc/uptime >/mnt/vmtest/boot-seconds

echo "VMTEST: running run.sh"
sh /mnt/vmtest/run.sh </dev/null >/mnt/vmtest/output.log 2>&1
finish $?
