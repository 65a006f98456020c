#!/usr/bin/env bash
# Builds (once) the `onoff` package for the emulated board and prints the directory holding its
# node_modules/: onoff at the version package-lock.json pins, with its native dependency epoll
# cross-compiled for arm64 against the host's Node.js headers.
#
#   test/emulated/build-onoff.sh BOARD_DIR     # BOARD_DIR: build-board.sh's output
#
# On a Pi, install.sh compiles epoll where it runs; the board has neither a compiler nor a registry
# (its network reaches only the test's broker), so the addon is made here, as a cross-building
# operator would. An addon is tied to Node's ABI: the host's and the board's Node must agree on it.
set -euo pipefail

board=${1:?usage: build-onoff.sh BOARD_DIR}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

die() {
  echo "build-onoff: $*" >&2
  exit 1
}
log() { echo "build-onoff: $*" >&2; }

version=$(node -p "require('$repo/package-lock.json').packages['node_modules/onoff'].version") ||
  die "package-lock.json pins no onoff"
out="$board/onoff-$version-arm64"
if [[ -f "$out/.complete" ]]; then
  echo "$out"
  exit 0
fi

if ! command -v aarch64-linux-gnu-g++ >/dev/null; then
  command -v apt-get >/dev/null || die "missing aarch64-linux-gnu-g++ and no apt-get to install it"
  log "installing g++-aarch64-linux-gnu on the host"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends g++-aarch64-linux-gnu >&2
fi

# The ABI the board's Node loads addons for, read from its own binary (run through binfmt).
board_abi=$(chroot "$board/root" /usr/bin/node -p process.versions.modules) ||
  die "cannot run the board's node (binfmt_misc with qemu-aarch64?)"
host_abi=$(node -p process.versions.modules)
[[ $board_abi == "$host_abi" ]] ||
  die "the host's Node.js (ABI $host_abi, $(node -v)) cannot build addons for the board's (ABI $board_abi): use the same major version"

rm -rf "$out"
mkdir -p "$out"
log "onoff $version with epoll cross-compiled for arm64"
npm install --prefix "$out" --no-save --no-package-lock --ignore-scripts --no-audit --no-fund \
  "onoff@$version" >&2 || die "npm could not fetch onoff $version"
gyp="$(dirname "$(readlink -f "$(command -v npm)")")/../node_modules/node-gyp/bin/node-gyp.js"
[[ -f $gyp ]] || die "no node-gyp beside npm ($gyp)"
nodedir=$(npm config get nodedir)
(
  cd "$out/node_modules/epoll"
  CC=aarch64-linux-gnu-gcc CXX=aarch64-linux-gnu-g++ LINK=aarch64-linux-gnu-g++ AR=aarch64-linux-gnu-ar \
    node "$gyp" rebuild --arch=arm64 ${nodedir:+"--nodedir=$nodedir"} >&2
) || die "cross-compiling epoll failed (output above)"
file -b "$out/node_modules/epoll/build/Release/epoll.node" | grep -q aarch64 ||
  die "epoll.node is not an arm64 object"
# Only what runs: the build's intermediates and nan (headers) are not needed on the board.
rm -rf "$out/node_modules/epoll/build/Release/obj.target" "$out/node_modules/epoll/build/Release/.deps" \
  "$out/node_modules/nan"
touch "$out/.complete"
echo "$out"
