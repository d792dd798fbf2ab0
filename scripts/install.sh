#!/usr/bin/env bash
# Idempotent setup for Debian 12 (run as root): apt packages, the guest
# kernel, and the project's Python environment in .venv.
#
# The venv is built from Debian's /usr/bin/python3 with system site packages,
# because Mininet ships only as a Debian package (python3-mininet lives in
# /usr/lib/python3/dist-packages).
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
venv="$here/.venv"
stamp="$venv/.installed"

apt_packages=(
  mininet bridge-utils iproute2 ipvsadm keepalived iperf3 curl tcpdump
  qemu-system-x86 linux-image-amd64 busybox-static kmod procps psmisc
  python3 python3-venv python3-pip ethtool socat
  heartbeat ldirectord conntrackd conntrack vsftpd nftables
  iputils-arping nano  # tools the labs suggest to students (arping; an editor)
  gcc libc6-dev  # the bench's compiled client (loadgen/connrate.c)
)
# on the host only, not baked into scripts/vagrant-box.sh's box: the unit tests
# validate the Vagrantfile with it (--in-vm, as the Vagrantfile provisions: not needed)
host_packages=(vagrant)

log() { printf '[install] %s\n' "$*" >&2; }

if [[ ${1:-} == --apt-list ]]; then  # for scripts/vagrant-box.sh, which bakes them in
  printf '%s\n' "${apt_packages[@]}"
  exit 0
fi
if [[ ${1:-} == --in-vm ]]; then  # the Vagrant VM itself runs no Vagrant
  host_packages=()
fi
if [[ $EUID -ne 0 ]]; then
  echo "install.sh: must run as root (apt-get and Mininet need it)" >&2
  exit 2
fi

missing=()
for p in "${apt_packages[@]}" "${host_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  log "apt: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # No recommends: Mininet would pull Open vSwitch, which we do not use.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "apt: all packages present"
fi

# The HA daemons' Debian units may auto-start on install; the testbed runs its
# own instances per namespace, never the system one.
systemctl disable --now keepalived heartbeat ldirectord conntrackd vsftpd >/dev/null 2>&1 || true

if [[ ! -f "$stamp" || "$here/pyproject.toml" -nt "$stamp" || "$here/requirements.lock" -nt "$stamp" ]]; then
  log "python: building $venv"
  [[ -x "$venv/bin/python" ]] || /usr/bin/python3 -m venv --system-site-packages "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$here/requirements.lock" 2>&1 | grep -v "^WARNING: Location" || true
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e "$here"
  touch "$stamp"
else
  log "python: $venv up to date"
fi
# the bench's connection-rate client, compiled: a Python loop would measure itself
native="$venv/bin/lvs-connrate"
if [[ ! -x "$native" || "$here/loadgen/connrate.c" -nt "$native" ]]; then
  log "native: building $native"
  cc -O2 -Wall -o "$native" "$here/loadgen/connrate.c"
fi
log "ready: $venv/bin/lvs-testbed"
