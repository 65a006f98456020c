#!/usr/bin/env bash
# Builds (once) the Debian root the system test boots with systemd-nspawn, and prints its path.
# The root is cached between runs: bootstrapping takes minutes, booting a copy of it seconds.
#
#   test/system/build-root.sh            # path of the cached root, building it if missing
#   LAMP_TEST_SUITE=trixie test/system/build-root.sh
#
# Needs root and the network to Debian's mirror. Installs debootstrap and systemd-container on
# the host (Debian/Ubuntu) if they are missing.
set -euo pipefail

suite=${LAMP_TEST_SUITE:-bookworm}
mirror=${LAMP_TEST_MIRROR:-http://deb.debian.org/debian}
cache=${LAMP_TEST_CACHE:-/var/cache/lamp-agent-test}
# Bump when the package set below changes, so stale caches are not reused.
version=2
root="$cache/debian-$suite-v$version"

die() {
  echo "build-root: $*" >&2
  exit 1
}

[[ $(id -u) -eq 0 ]] || die "must run as root (debootstrap and systemd-nspawn need it)"

if [[ -f "$root/.complete" ]]; then
  echo "$root"
  exit 0
fi

missing=()
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
if ((${#missing[@]} > 0)); then
  command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
  echo "build-root: installing ${missing[*]} on the host" >&2
  apt-get update -qq >&2 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi

mkdir -p "$cache"
tmp="$root.tmp"
rm -rf "$tmp"
echo "build-root: bootstrapping Debian $suite into $root (a few minutes, once)" >&2
# minbase keeps it small; the rest is what an operator's Pi OS Lite has that matters here: sshd for
# `install.sh --host`, and GNU time to measure what an install costs.
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,dbus,nodejs,ca-certificates,procps,openssh-server,time \
  "$suite" "$tmp" "$mirror" >&2 || die "debootstrap failed (see above)"

# npm pulls in a few hundred packages; without recommends it skips the compiler toolchain, as on
# a fresh Pi, so optional native modules (pigpio, onoff's epoll) fail to build, which install.sh
# must survive.
chroot "$tmp" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends npm >&2 || die "installing npm in the root failed"
chroot "$tmp" apt-get clean >&2

# A booted container must not wait for things it does not have.
chroot "$tmp" systemctl mask systemd-networkd-wait-online.service getty@tty1.service >/dev/null 2>&1 || true
# The container shares the host's network: sshd starts only when a test has given it a port of its own.
chroot "$tmp" systemctl disable ssh.service >/dev/null 2>&1 || true
echo "lamp-systest" >"$tmp/etc/hostname"
# An empty machine-id makes systemd generate one at boot, as on a first boot of an image.
: >"$tmp/etc/machine-id"

touch "$tmp/.complete"
rm -rf "$root"
mv "$tmp" "$root"
echo "$root"
