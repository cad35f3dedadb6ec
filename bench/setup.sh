#!/usr/bin/env bash
# Bench-only host setup (CI does not run the peer benchmark): the peer tools and what they
# call. vmdb2 and debos from Debian, diskimage-builder from PyPI into a venv.
# Usage (as root): bash bench/setup.sh [VENV_DIR]
set -euo pipefail
venv=${1:-/var/tmp/clawimg-peers/dib-venv}
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends \
  vmdb2 debos debootstrap qemu-utils parted kpartx dosfstools e2fsprogs \
  python3-venv python3-pip squashfs-tools git sudo curl xz-utils gdisk util-linux \
  systemd-container debian-archive-keyring uuid-runtime procps zerofree
if [ ! -x "$venv/bin/disk-image-create" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'diskimage-builder==3.43.*' || "$venv/bin/pip" install -q diskimage-builder
fi
echo "vmdb2: $(dpkg-query -W -f="\${Version}" vmdb2)"
echo "debos: $(dpkg-query -W -f='${Version}' debos)"
echo "diskimage-builder: $("$venv/bin/pip" show diskimage-builder | awk '/^Version/ {print $2}')"
# Debian 12's debootstrap predates noble; noble bootstraps like every Ubuntu since gutsy.
[ -e /usr/share/debootstrap/scripts/noble ] || ln -s gutsy /usr/share/debootstrap/scripts/noble
