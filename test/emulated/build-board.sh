#!/usr/bin/env bash
# Builds (once) the emulated arm64 board `npm run test:emulated` boots, and prints its directory:
#   root/         Debian arm64 root (systemd, udev, Node.js, sshd), served whole as the initramfs
#   vmlinuz       Debian's arm64 kernel, the same build as the headers the module is compiled against
#   initrd.cpio   root/ as a newc archive, with pwm-gpio.ko and the network modules in it
#   id_ed25519    the key the test logs in with (made per cache, never leaves it)
#
#   test/emulated/build-board.sh        # directory of the cached board, building it if missing
#   LAMP_EMU_ARCH=armhf test/emulated/build-board.sh   # a 32-bit board (no pwm-gpio), for its figures
#
# Needs root, qemu-user-static with binfmt_misc (to run the arm64 root's tools) and Debian's mirror.
# Installs what is missing on the host (Debian/Ubuntu), as test/system/build-root.sh does.
set -euo pipefail

suite=${LAMP_EMU_SUITE:-trixie}
mirror=${LAMP_EMU_MIRROR:-http://deb.debian.org/debian}
cache=${LAMP_EMU_CACHE:-/var/cache/lamp-agent-emulated}
# Bump when anything below changes, so stale boards are not reused.
arch=${LAMP_EMU_ARCH:-arm64}
version=1
case $arch in
  arm64) qarch=aarch64 flavour=arm64 board="$cache/board-$suite-v$version" ;;
  # 32-bit, as Raspberry Pi OS's armhf image: the kernel for QEMU's virt with a Cortex-A15.
  armhf) qarch=arm flavour=armmp-lpae board="$cache/board-$suite-armhf-v$version" ;;
  *)
    echo "build-board: LAMP_EMU_ARCH must be arm64 or armhf, not $arch" >&2
    exit 2
    ;;
esac
here=$(cd "$(dirname "$0")" && pwd)

die() {
  echo "build-board: $*" >&2
  exit 1
}
log() { echo "build-board: $*" >&2; }

[[ $(id -u) -eq 0 ]] || die "must run as root (debootstrap, chroot and binfmt_misc need it)"

if [[ -f "$board/.complete" ]]; then
  echo "$board"
  exit 0
fi

missing=()
command -v debootstrap >/dev/null || [[ -x /usr/sbin/debootstrap ]] || missing+=(debootstrap)
command -v qemu-system-aarch64 >/dev/null || missing+=(qemu-system-arm)
command -v "qemu-$qarch-static" >/dev/null || missing+=(qemu-user-static binfmt-support)
command -v dtc >/dev/null || missing+=(device-tree-compiler)
command -v aarch64-linux-gnu-gcc >/dev/null || missing+=(gcc-aarch64-linux-gnu)
command -v cpio >/dev/null || missing+=(cpio)
command -v socat >/dev/null || missing+=(socat)
command -v ssh-keygen >/dev/null || missing+=(openssh-client)
if ((${#missing[@]} > 0)); then
  command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
  log "installing ${missing[*]} on the host"
  apt-get update -qq >&2 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
export PATH="$PATH:/usr/sbin:/sbin"

# arm64 programs (the root's second stage, the kernel's kbuild tools) run through binfmt_misc.
if [[ ! -e /proc/sys/fs/binfmt_misc/status ]]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || die "cannot mount binfmt_misc"
fi
[[ -e /proc/sys/fs/binfmt_misc/qemu-$qarch ]] || update-binfmts --enable "qemu-$qarch" >&2 ||
  die "cannot register qemu-$qarch with binfmt_misc (package qemu-user-static)"
interp=$(sed -n 's/^interpreter //p' "/proc/sys/fs/binfmt_misc/qemu-$qarch")

mkdir -p "$cache"
tmp="$board.tmp"
root="$tmp/root"
# The root takes most of the time: a build that failed after it keeps it and goes on from there.
if [[ ! -f "$tmp/.root-complete" ]]; then
  rm -rf "$tmp"
  mkdir -p "$tmp"

  log "bootstrapping Debian $suite $arch into $board (several minutes, once)"
  # Without binfmt's fix-binary flag the interpreter is looked up inside the chroot: put it there first.
  # Not --foreign: its second stage would run debootstrap's own perl under emulation, for hours.
  mkdir -p "$root$(dirname "$interp")"
  cp "$(readlink -f "$interp")" "$root$interp"
  debootstrap --arch="$arch" --variant=minbase \
    --include=systemd,systemd-sysv,udev,dbus,kmod,iproute2,nodejs,procps,openssh-server,ca-certificates \
    "$suite" "$root" "$mirror" >&2 || die "debootstrap failed (see above; the log is in $root/debootstrap)"
  touch "$tmp/.root-complete"
fi
# Taken out again at the end, with the rest of what only the build needs.
mkdir -p "$root$(dirname "$interp")"
cp "$(readlink -f "$interp")" "$root$interp"
inroot() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"; }
# A build resumed after its clean-up: apt's lists are gone.
compgen -G "$root/var/lib/apt/lists/*_Packages" >/dev/null || inroot apt-get update -qq >&2

# The kernel, its headers and kbuild, from the same archive as the root: the module must match its build.
abi=$(inroot apt-cache depends "linux-image-$flavour" |
  sed -n "s/.*Depends: linux-image-\(.*-$flavour\)\$/\1/p" | head -n1)
[[ -n $abi ]] || die "cannot find the kernel that linux-image-$flavour depends on"
kver=${abi%-"$flavour"}
srcver=$(inroot apt-cache depends "linux-headers-$abi" | sed -n 's/.*Depends: linux-kbuild-\(.*\)$/\1/p' | head -n1)
log "kernel $abi (kbuild $srcver)"
rm -rf "$tmp/debs" "$tmp/kernel" "$tmp/pwm-gpio"
mkdir -p "$tmp/debs"
# The 32-bit board is for figures only: its kernel, without the module and what builds it.
packages="linux-image-$abi"
if [[ $arch == arm64 ]]; then
    packages+=" linux-headers-$abi linux-headers-$kver-common linux-kbuild-$srcver linux-source-${srcver%.*}"
fi
(cd "$tmp/debs" && chroot "$root" sh -c "cd /tmp && apt-get download -q $packages" >&2) ||
  die "downloading the kernel packages failed"
mv "$root"/tmp/*.deb "$tmp/debs/"
kdir="$tmp/kernel"
for deb in "$tmp"/debs/linux-{image,headers,kbuild}-*.deb; do
  if [[ -e $deb ]]; then dpkg-deb -x "$deb" "$kdir"; fi
done
cp "$kdir/boot/vmlinuz-$abi" "$tmp/vmlinuz"
cp "$kdir/boot/config-$abi" "$tmp/config"
mods="$root/usr/lib/modules/$abi"
if [[ $arch == arm64 ]]; then
  # Debian's headers include their common half by its installed path; here they are unpacked elsewhere.
  sed -i "s|^include /usr/src/|include $kdir/usr/src/|" "$kdir/usr/src/linux-headers-$abi/Makefile"

  # pwm-gpio (CONFIG_PWM_GPIO is not set in Debian's build) from Debian's own source of that kernel.
  mkdir -p "$tmp/pwm-gpio"
  dpkg-deb --fsys-tarfile "$tmp"/debs/linux-source-*.deb | tar -x -O --wildcards '*/linux-source-*.tar.xz' |
    tar -xJ -O --wildcards '*/drivers/pwm/pwm-gpio.c' >"$tmp/pwm-gpio/pwm-gpio.c" ||
    die "pwm-gpio.c is not in linux-source-${srcver%.*}"
  echo 'obj-m += pwm-gpio.o' >"$tmp/pwm-gpio/Kbuild"
  # kbuild's host tools (fixdep, modpost) are arm64 programs: binfmt runs them with the root's libc.
  # The kernel was built with gcc-14, Debian 12's cross gcc is 12: these two options need the newer one.
  QEMU_LD_PREFIX="$root" make -s -C "$kdir/usr/src/linux-headers-$abi" M="$tmp/pwm-gpio" \
    ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- CC=aarch64-linux-gnu-gcc \
    CONFIG_CC_HAS_MIN_FUNCTION_ALIGNMENT= CONFIG_DEBUG_INFO_BTF_MODULES= modules >&2 ||
    die "building pwm-gpio.ko failed"
  mkdir -p "$mods/extra"
  cp "$tmp/pwm-gpio/pwm-gpio.ko" "$mods/extra/"
fi

# The network card's driver for QEMU's user network. Under usr/lib: the root is merged-/usr, its /lib
# is a link.
mkdir -p "$mods"
cp "$kdir/usr/lib/modules/$abi"/modules.{order,builtin,builtin.modinfo} "$mods/" 2>/dev/null || true
for m in drivers/virtio/virtio_mmio drivers/virtio/virtio_ring drivers/virtio/virtio \
  drivers/net/virtio_net drivers/net/net_failover net/core/failover; do
  for f in "$kdir/usr/lib/modules/$abi/kernel/$m".ko*; do
    [[ -e $f ]] || continue # built in
    mkdir -p "$mods/kernel/$(dirname "$m")"
    cp "$f" "$mods/kernel/$(dirname "$m")/"
  done
done
inroot depmod "$abi" || die "depmod failed"

# The guest: no network beyond QEMU's user net, sshd with a key of this cache, the network up at boot.
rm -f "$tmp/id_ed25519" "$tmp/id_ed25519.pub"
ssh-keygen -q -t ed25519 -N '' -C lamp-emulated -f "$tmp/id_ed25519"
install -d -m 700 "$root/root/.ssh"
install -m 600 "$tmp/id_ed25519.pub" "$root/root/.ssh/authorized_keys"
inroot ssh-keygen -A >&2
printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\tlamp-emulated\n' >"$root/etc/hosts"
echo lamp-emulated >"$root/etc/hostname"
cp "$here/guest-net.service" "$root/etc/systemd/system/"
inroot systemctl enable guest-net.service ssh.service >&2
inroot systemctl mask systemd-networkd-wait-online.service systemd-timesyncd.service \
  getty@tty1.service serial-getty@ttyAMA0.service apt-daily.timer apt-daily-upgrade.timer \
  dpkg-db-backup.timer e2scrub_reap.service >/dev/null 2>&1 || true
: >"$root/etc/machine-id"
ln -sf /usr/lib/systemd/systemd "$root/init"
inroot apt-get clean
rm -rf "$root/debootstrap" "$root$interp" "$root"/var/lib/apt/lists/* "$root"/usr/share/{doc,man,locale,info}/*
(cd "$root" && find . -print0 | cpio --null -o -H newc --quiet) >"$tmp/initrd.cpio"
rm -rf "$kdir" "$tmp/debs"

touch "$tmp/.complete"
rm -rf "$board"
mv "$tmp" "$board"
echo "$board"
