#!/usr/bin/env bash
# A Debian 12 box for vagrant-libvirt, built here, for machines that cannot
# download boxes (no Vagrant Cloud): mmdebstrap makes the root file system, an
# MBR disk with one ext4 partition and extlinux makes it bootable (no partition
# devices needed: the file system is written at the partition's offset), and
# the result is added to Vagrant as lvs/bookworm64.
#
#   sudo scripts/vagrant-box.sh            # then: LVS_VAGRANT_BOX=lvs/bookworm64 vagrant up
#
# What this machine needs to reach its package mirror goes into the box too:
# the host's extra CA certificates (a proxy's) and its apt Acquire settings.
# The box carries the testbed's apt packages (scripts/install.sh --apt-list),
# installed here natively, so that provisioning under software emulation only
# builds the Python environment (LVS_BOX_BARE=1: a plain Debian box).
set -euo pipefail

name="${LVS_BOX_NAME:-lvs/bookworm64}"
size_gb="${LVS_BOX_GB:-20}"
mirror="${LVS_BOX_MIRROR:-http://deb.debian.org}"
work="${LVS_BOX_WORK:-/var/tmp/lvs-box}"
here="$(cd "$(dirname "$0")" && pwd)"

log() { printf '[vagrant-box] %s\n' "$*" >&2; }
die() { printf 'vagrant-box.sh: %s\n' "$*" >&2; exit 2; }

[[ $EUID -eq 0 ]] || die "must run as root (it mounts the image it builds)"
needed=(mmdebstrap extlinux syslinux-common fdisk qemu-utils e2fsprogs vagrant vagrant-libvirt)
missing=()
for p in "${needed[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  log "apt: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2
fi
key="$(dpkg -L vagrant | grep '/keys/vagrant.pub$' | head -1)"
[[ -n $key ]] || die "vagrant's insecure public key (keys/vagrant.pub) not found"
mbr="$(dpkg -L syslinux-common | grep '/mbr/mbr.bin$' | head -1)"
[[ -n $mbr ]] || die "syslinux's mbr.bin not found"

rm -rf "$work"
mkdir -p "$work/mnt" "$work/extra"
trap 'mountpoint -q "$work/mnt" && umount "$work/mnt"; true' EXIT
uuid="$(cat /proc/sys/kernel/random/uuid)"

# the host's way to its mirror: extra CAs, apt's Acquire settings
cp /usr/local/share/ca-certificates/*.crt "$work/extra/" 2>/dev/null || true
grep -lh '^Acquire::Check-\|^Acquire::http' /etc/apt/apt.conf.d/* 2>/dev/null |
  xargs -r cat > "$work/extra/90host-acquire" || true
cp "$key" "$work/extra/vagrant.pub"

include=linux-image-amd64,openssh-server,sudo,rsync,ca-certificates,ifupdown,isc-dhcp-client,python3,python3-venv
if [[ -z ${LVS_BOX_BARE:-} ]]; then
  include+=",$(bash "$here/install.sh" --apt-list | paste -sd,)"
fi

log "root file system (mmdebstrap, bookworm)"
mmdebstrap --variant=important \
  --include="$include" \
  --aptopt='Acquire::Check-Valid-Until "false"' \
  --aptopt='APT::Install-Recommends "false"' \
  --customize-hook="cp $work/extra/90host-acquire \"\$1\"/etc/apt/apt.conf.d/ 2>/dev/null || true" \
  --customize-hook="cp $work/extra/*.crt \"\$1\"/usr/local/share/ca-certificates/ 2>/dev/null || true" \
  --customize-hook='chroot "$1" update-ca-certificates' \
  --customize-hook='printf "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n" > "$1"/etc/pip.conf' \
  --customize-hook='chroot "$1" useradd -m -s /bin/bash -G sudo vagrant' \
  --customize-hook='echo vagrant:vagrant | chroot "$1" chpasswd' \
  --customize-hook="install -d -m 700 \"\$1\"/home/vagrant/.ssh && install -m 600 $work/extra/vagrant.pub \"\$1\"/home/vagrant/.ssh/authorized_keys && chroot \"\$1\" chown -R vagrant:vagrant /home/vagrant/.ssh" \
  --customize-hook='echo "vagrant ALL=(ALL) NOPASSWD:ALL" > "$1"/etc/sudoers.d/vagrant && chmod 440 "$1"/etc/sudoers.d/vagrant' \
  --customize-hook='printf "auto lo\niface lo inet loopback\n\nallow-hotplug eth0\niface eth0 inet dhcp\n" > "$1"/etc/network/interfaces' \
  --customize-hook="echo 'UUID=$uuid / ext4 errors=remount-ro 0 1' > \"\$1\"/etc/fstab" \
  --customize-hook='echo lvs-testbed > "$1"/etc/hostname; printf "127.0.0.1 localhost\n127.0.1.1 lvs-testbed\n" > "$1"/etc/hosts' \
  --customize-hook='for u in apt-daily.timer apt-daily-upgrade.timer systemd-timesyncd.service; do chroot "$1" systemctl mask "$u" >/dev/null 2>&1 || true; done' \
  bookworm "$work/rootfs.tar" \
  "deb $mirror/debian bookworm main" \
  "deb $mirror/debian bookworm-updates main" \
  "deb $mirror/debian-security bookworm-security main"

log "disk: one bootable ext4 partition at 1 MiB, extlinux"
truncate -s "${size_gb}G" "$work/disk.raw"
printf 'label: dos\nstart=2048, type=83, bootable\n' | sfdisk -q "$work/disk.raw"
mkfs.ext4 -q -F -L lvs-root -U "$uuid" -O ^64bit,^metadata_csum,^orphan_file \
  -E offset=1048576 "$work/disk.raw" "$((size_gb * 1024 - 1))M"
mount -o loop,offset=1048576 "$work/disk.raw" "$work/mnt"
tar -C "$work/mnt" --numeric-owner -xpf "$work/rootfs.tar"
kernel="$(basename "$(ls "$work"/mnt/boot/vmlinuz-* | sort -V | tail -1)")"
mkdir -p "$work/mnt/boot/extlinux"
extlinux --install "$work/mnt/boot/extlinux" >/dev/null
cat > "$work/mnt/boot/extlinux/extlinux.conf" <<EOF
DEFAULT debian
TIMEOUT 1
LABEL debian
  LINUX /boot/$kernel
  INITRD /boot/initrd.img-${kernel#vmlinuz-}
  APPEND root=UUID=$uuid ro console=tty0 console=ttyS0,115200 net.ifnames=0 no_timer_check
EOF
umount "$work/mnt"
dd if="$mbr" of="$work/disk.raw" bs=440 count=1 conv=notrunc status=none

log "box: qcow2, metadata, Vagrantfile"
qemu-img convert -f raw -O qcow2 "$work/disk.raw" "$work/box.img"
printf '{"provider": "libvirt", "format": "qcow2", "virtual_size": %d}\n' "$size_gb" \
  > "$work/metadata.json"
printf 'Vagrant.configure("2") do |config|\n  config.vm.provider :libvirt do |lv|\n    lv.driver = "qemu"\n  end\nend\n' \
  > "$work/Vagrantfile"
tar -C "$work" -cSf "$work/lvs-bookworm64.box" metadata.json Vagrantfile box.img
rm -f "$work/disk.raw" "$work/rootfs.tar"
vagrant box add --force --name "$name" "$work/lvs-bookworm64.box" >&2
log "added box $name ($kernel): LVS_VAGRANT_BOX=$name vagrant up --provider=libvirt"
