#!/bin/busybox sh
# shellcheck shell=dash
# The matrix guest's first stage (busybox, in the initramfs built by
# initramfs.ts): load the modules the kernel's package provides for virtiofs
# and overlayfs, mount the host's root read-only (virtiofs tag "hostroot")
# under a tmpfs overlay, so the guest writes nothing back, and hand over to
# the guest init named by podtap.guest= on the kernel command line.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
fail() { echo "podtap-guest: initramfs: $*"; echo o > /proc/sysrq-trigger; sleep 10; }
while read -r m; do
  insmod "/modules/$m" || fail "insmod $m failed"
done < /modules.order
guest=
# shellcheck disable=SC2013 # the command line is words
for a in $(cat /proc/cmdline); do
  case "$a" in podtap.guest=*) guest="${a#podtap.guest=}" ;; esac
done
[ -n "$guest" ] || fail "no podtap.guest= on the kernel command line"
mkdir -p /lower /rw /newroot
mount -t virtiofs hostroot /lower -o ro || fail "virtiofs hostroot: mount failed"
mount -t tmpfs -o mode=0755 rw /rw
mkdir -p /rw/upper /rw/work
mount -t overlay root /newroot -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work || fail "overlay root: mount failed"
umount /proc /sys /dev
exec switch_root /newroot "$guest"
