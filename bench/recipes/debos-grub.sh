#!/bin/sh
# debos step on the host (no fakemachine): BIOS GRUB onto the image's loop device
# ($IMAGE), with a serial console, inside the deployed root ($ROOTDIR).
set -e
# No udev daemon here: the bench stand-in makes the /dev/disk/by-uuid links udev would.
udevadm trigger
for d in dev proc sys; do mount --bind /$d "$ROOTDIR/$d"; done
trap 'for d in sys proc dev; do umount "$ROOTDIR/$d"; done' EXIT
cat > "$ROOTDIR/etc/default/grub.d/90-bench.cfg" <<'CFG'
GRUB_CMDLINE_LINUX_DEFAULT="console=ttyS0,115200n8"
GRUB_TERMINAL="serial console"
GRUB_SERIAL_COMMAND="serial --speed=115200"
GRUB_TIMEOUT=0
GRUB_TIMEOUT_STYLE=hidden
CFG
chroot "$ROOTDIR" grub-install --target=i386-pc "$IMAGE"
chroot "$ROOTDIR" update-grub
