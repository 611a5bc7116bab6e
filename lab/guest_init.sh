#!/bin/busybox sh
# First stage of the lab guest (PID 1 in the initramfs). Loads the modules, mounts the host's
# root read-only over 9p with a tmpfs overlay on top, then runs the lab agent chrooted in it.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "LAB: stage1 $(cat /kver) up $(cut -d' ' -f1 /proc/uptime)s"

die() {
    echo "LAB: FATAL: $*"
    sleep 1
    poweroff -f
}

for m in $(cat /modules/order); do
    insmod "/modules/$m" 2>/tmp/insmod.err || echo "LAB: insmod $m failed: $(cat /tmp/insmod.err)"
done
echo "LAB: modules loaded $(cut -d' ' -f1 /proc/uptime)s"

mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 labshare /share || die "cannot mount labshare"
[ -f /share/boot.env ] || die "no boot.env on the share"
. /share/boot.env

if [ -n "$LAB_HANG" ]; then
    echo "LAB: hanging on purpose (lab.hang)"
    while :; do sleep 3600; done
fi

mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose hostroot /lower \
    || die "cannot mount hostroot"
mount -t tmpfs -o mode=0755 tmpfs /rw
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot \
    || die "cannot mount the overlay"
R=/newroot
mount -t proc proc $R/proc
mount -t sysfs sysfs $R/sys
mount -t devtmpfs devtmpfs $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts $R/dev/pts
# Keep the paths the agent needs (the checkout, its Python, the module tree) visible when they
# lie under /tmp, /run or /var/log, which get a tmpfs of their own just below.
KEPT=""
n=0
for p in $(echo "$LAB_KEEP" | tr ':' ' '); do
    case "$p" in
        /tmp/*|/run/*|/var/log/*)
            if [ -d "$R$p" ]; then
                n=$((n + 1)); mkdir -p "/keep/$n"; mount --bind "$R$p" "/keep/$n" && KEPT="$KEPT $n:$p"
            fi ;;
    esac
done
mount -t tmpfs -o mode=1777 tmpfs $R/dev/shm
mount -t tmpfs -o mode=1777 tmpfs $R/tmp
mount -t tmpfs -o mode=0755 tmpfs $R/run
# The host's logs must not pose as the guest's (kern.log, journal).
mount -t tmpfs -o mode=0755 tmpfs $R/var/log
mkdir -p $R/var/log/libvirt $R/var/log/journal
for kp in $KEPT; do
    k="${kp%%:*}"; p="${kp#*:}"
    mkdir -p "$R$p" && mount --move "/keep/$k" "$R$p" || echo "LAB: cannot re-expose $p"
done
# The guest kernel's own module tree, so modinfo/modprobe inside see the right kernel.
if [ -n "$LAB_MODDIR" ] && [ -d "$R$LAB_MODDIR" ]; then
    mkdir -p "$R/lib/modules/$LAB_KVER"
    mount --bind "$R$LAB_MODDIR" "$R/lib/modules/$LAB_KVER"
fi
mkdir -p $R/run/gpudoctor-lab
mount --move /share $R/run/gpudoctor-lab || die "cannot move the share"
[ -n "$LAB_HOSTNAME" ] && hostname "$LAB_HOSTNAME"
echo "LAB: root ready $(cut -d' ' -f1 /proc/uptime)s, starting agent"
chroot $R /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 TERM=dumb "$LAB_PYTHON" -I "$LAB_AGENT" /run/gpudoctor-lab
echo "LAB: agent exited rc=$?"
sync
poweroff -f
