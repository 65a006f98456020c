#!/usr/bin/env bash
# Installs lamp-agent from this clone as a systemd service, or removes it. See docs/deployment.md.
#
#   sudo scripts/install.sh              install, or update after `git pull` (idempotent)
#   sudo scripts/install.sh --uninstall  remove it; keep /etc/lamp-agent and the saved lamp state
#   sudo scripts/install.sh --purge      remove it with its configuration, state and user
#   scripts/install.sh --host pi@lamp.local  build here, install (or --uninstall) on that Pi over SSH
#   scripts/install.sh --host pi@a,pi@b      build once, update one Pi at a time, each checked online
#   scripts/install.sh --hosts-file FILE     the same for the hosts in FILE (one a line, # comments)
#   DESTDIR=/tmp/stage scripts/install.sh  stage the files under a root; touch nothing on this host
set -euo pipefail
shopt -s nullglob

readonly NAME=lamp-agent
readonly PREFIX=/opt/lamp-agent
readonly CONFIG_DIR=/etc/lamp-agent
readonly ENV_FILE=$CONFIG_DIR/lamp-agent.env
readonly PASSWORD_FILE=$CONFIG_DIR/mqtt-password
readonly STATE_DIR=/var/lib/lamp-agent
# CacheDirectory=: V8's compiled code for the bundle (src/code-cache.ts), made again when missing.
readonly CACHE_DIR=/var/cache/lamp-agent
readonly UNIT_DIR=/etc/systemd/system
readonly UDEV_DIR=/etc/udev/rules.d
readonly BIN_DIR=/usr/local/bin
# The commands linked into BIN_DIR, and the bundle each one runs.
readonly COMMANDS=("lamp-agent:dist/main.js" "lampctl:dist/cli/lampctl.js")
readonly SERVICE_USER=lamp-agent
readonly GPIO_GROUP=gpio
readonly NODE_MIN_MAJOR=18
# systemd looks up `node` in ExecStart= on this PATH, so this is the node the service will run.
readonly SYSTEMD_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# sudo may carry a umask of 077, which would leave the installed files unreadable to the service.
umask 022

say() { printf '%s: %s\n' "$NAME" "$*"; }
warn() { printf '%s: warning: %s\n' "$NAME" "$*" >&2; }
die() {
  printf '%s: error: %s\n' "$NAME" "$*" >&2
  exit 1
}
trap 'die "unexpected failure at line $LINENO: $BASH_COMMAND"' ERR
set -E

readonly USAGE="usage: scripts/install.sh [--uninstall | --purge] [--no-start] [--host USER@HOST[,USER@HOST...] | --hosts-file FILE] [--help]"
# How long --host waits for each updated lamp to be online with the new version before it stops.
readonly AWAIT_SECONDS=60
usage() {
  sed -n '2,11s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
  echo
  echo "Options: --uninstall, --purge, --no-start (install and enable, start at next boot),"
  echo "         --host USER@HOST (or ssh://USER@HOST:PORT; a Host from ~/.ssh/config), several"
  echo "         comma-separated or repeated, --hosts-file FILE, -h/--help"
}
# A command-line mistake: exit 2, as the agent does for a bad configuration.
bad_usage() {
  printf '%s: error: %s\n%s\n' "$NAME" "$1" "$USAGE" >&2
  exit 2
}

# The edit distance between two short strings.
distance() {
  local a=$1 b=$2 i j cost deleted inserted replaced
  local -a previous current
  for ((j = 0; j <= ${#b}; j++)); do previous[j]=$j; done
  for ((i = 1; i <= ${#a}; i++)); do
    current=("$i")
    for ((j = 1; j <= ${#b}; j++)); do
      cost=1
      if [[ ${a:i-1:1} == "${b:j-1:1}" ]]; then cost=0; fi
      deleted=$((previous[j] + 1)) inserted=$((current[j - 1] + 1)) replaced=$((previous[j - 1] + cost))
      current[j]=$((deleted < inserted ? deleted : inserted))
      current[j]=$((replaced < current[j] ? replaced : current[j]))
    done
    previous=("${current[@]}")
  done
  echo "${previous[${#b}]}"
}

# "; did you mean --uninstall?" for --unistall: the option a couple of edits away, if there is one.
readonly OPTIONS=(--uninstall --purge --no-start --host --hosts-file --help)
did_you_mean() {
  local given=${1%%=*} option best='' nearest=3 edits
  for option in "${OPTIONS[@]}"; do
    edits=$(distance "$given" "$option")
    if ((edits < nearest)); then best=$option nearest=$edits; fi
  done
  if [[ -n $best ]]; then printf '; did you mean %s?' "$best"; fi
}

args=("$@")
action=install
start=1
hosts=()
# Set by --host on the laptop for install.sh on the Pi: wait for the lamp online with this version.
await_version=
# What install.sh on the Pi is given with --host: everything but --host.
forward=()

# --host a,b: each name, trimmed; an empty one (a stray comma) is a mistake, not nothing.
add_hosts() {
  local list=$1 name
  local -a names
  IFS=, read -ra names <<<"$list"
  ((${#names[@]} > 0)) || bad_usage "--host needs the Pi to install on, e.g. --host pi@lamp.local"
  for name in "${names[@]}"; do
    name=${name//[[:space:]]/}
    [[ -n $name ]] || bad_usage "--host $list: an empty host name between commas"
    hosts+=("$name")
  done
}

# --hosts-file: one host a line; blank lines and everything after a # are ignored.
add_hosts_file() {
  local file=$1 line
  [[ -f $file && -r $file ]] || bad_usage "--hosts-file $file: no such readable file"
  while IFS= read -r line || [[ -n $line ]]; do
    line=${line%%#*}
    line=${line//[[:space:]]/}
    if [[ -n $line ]]; then hosts+=("$line"); fi
  done <"$file"
}
while (($# > 0)); do
  case $1 in
  --uninstall | --purge | --no-start) forward+=("$1") ;;&
  --uninstall) action=uninstall ;;
  --purge) action=purge ;;
  --no-start) start=0 ;;
  --host)
    if (($# < 2)) || [[ -z $2 || $2 == -* ]]; then
      bad_usage "--host needs the Pi to install on, e.g. --host pi@lamp.local"
    fi
    add_hosts "$2"
    shift
    ;;
  --host=*) add_hosts "${1#--host=}" ;;
  --hosts-file)
    if (($# < 2)) || [[ -z $2 ]]; then bad_usage "--hosts-file needs a file, one host a line"; fi
    add_hosts_file "$2"
    shift
    ;;
  --hosts-file=*) add_hosts_file "${1#--hosts-file=}" ;;
  --await-version)
    (($# >= 2)) || bad_usage "--await-version needs a version (install.sh --host gives it)"
    await_version=$2
    shift
    ;;
  -h | --help)
    usage
    exit 0
    ;;
  *) bad_usage "unknown option '$1'$(did_you_mean "$1")" ;;
  esac
  shift
done

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest=${DESTDIR:-}
if [[ -n $dest ]]; then
  mkdir -p "$dest"
  dest=$(cd "$dest" && pwd)
  [[ $dest != / ]] || dest=
fi
# Staging (DESTDIR) writes files only: no users, no systemctl, no udevadm, no chown.
staging() { [[ -n $dest ]]; }
booted() { ! staging && [[ -d /run/systemd/system ]]; }

if ((${#hosts[@]} > 0)) && staging; then
  bad_usage "--host and DESTDIR do not go together: stage on this machine, or install on the Pi"
fi
if [[ -n $await_version ]] && ((${#hosts[@]} > 0)); then
  bad_usage "--await-version is what --host gives install.sh on the Pi; not both"
fi
# --host needs no root here: the install runs as root on the Pi.
remote() { ((${#hosts[@]} > 0)); }

if ! staging && ! remote && [[ $(id -u) -ne 0 ]]; then
  die "must run as root: sudo $0 ${args[*]}"
fi

work=
stage=
cleanup() {
  if [[ -n $work ]]; then rm -rf "$work"; fi
  if [[ -n $stage ]]; then rm -rf "$stage"; fi
}
trap cleanup EXIT

if ! staging && ! remote; then
  lock_dir=/run/lock
  [[ -d $lock_dir ]] || lock_dir=/run
  exec 9>"$lock_dir/lamp-agent-install.lock"
  flock -n 9 || die "another install.sh is running"
fi

systemctl_quiet() { systemctl "$@" >/dev/null 2>&1 || true; }

# --- removal -------------------------------------------------------------------------------------

remove_udev_rules() {
  local names=() rule
  for rule in "$dest$PREFIX"/hardware/*.rules "$repo"/hardware/*.rules; do names+=("$(basename "$rule")"); done
  local removed=0
  for rule in "${names[@]}"; do
    if [[ -e $dest$UDEV_DIR/$rule ]]; then
      rm -f "$dest$UDEV_DIR/$rule"
      say "removed $dest$UDEV_DIR/$rule"
      removed=1
    fi
  done
  if ((removed)) && ! staging && command -v udevadm >/dev/null && [[ -d /run/udev ]]; then
    udevadm control --reload || warn "udevadm could not reload the rules"
  fi
}

# A command with the service's configuration, user and credential: how it reaches the broker.
as_the_service() {
  local props=(-p "EnvironmentFile=$ENV_FILE" -p "WorkingDirectory=$PREFIX" -p RuntimeMaxSec=30)
  if getent passwd "$SERVICE_USER" >/dev/null; then props+=(-p "User=$SERVICE_USER"); fi
  if [[ -f $UNIT_DIR/$NAME.service.d/credentials.conf && -f $PASSWORD_FILE ]]; then
    props+=(-p "LoadCredential=mqtt-password:$PASSWORD_FILE" -p "Environment=MQTT_PASSWORD_FILE=mqtt-password")
  fi
  PATH=$SYSTEMD_PATH systemd-run --quiet --wait --pipe --collect "${props[@]}" "$@" </dev/null
}

# A removed lamp lives on in what the broker retains for it: Home Assistant keeps its entities, and
# `lampctl ls` lists it. `lamp-agent --forget` (one line per removed topic), run with the service's own
# configuration and credential once it is stopped (a running agent would announce itself again).
forget_on_broker() {
  booted && [[ -f $PREFIX/dist/main.js && -f $ENV_FILE ]] || return 0
  if as_the_service node "$PREFIX/dist/main.js" --forget; then
    say "removed the lamp from the broker and Home Assistant"
  else
    warn "could not remove the lamp's retained messages (broker unreachable?); Home Assistant keeps its entities until you delete them there"
  fi
}

# The links this install made in BIN_DIR, and only those: another lamp-agent (npm install -g) stays.
unlink_commands() {
  local entry command target
  for entry in "${COMMANDS[@]}"; do
    command=${entry%%:*}
    target=$dest$BIN_DIR/$command
    if [[ -L $target && $(readlink "$target") == "$PREFIX/"* ]]; then
      rm -f "$target"
      say "removed $dest$BIN_DIR/$command"
    fi
  done
}

uninstall() {
  if booted && systemctl cat "$NAME.service" >/dev/null 2>&1; then
    say "stopping and disabling $NAME.service"
    systemctl disable --now "$NAME.service" || warn "systemctl could not stop $NAME.service"
  elif ! staging && [[ -e $UNIT_DIR/$NAME.service ]]; then
    systemctl_quiet disable "$NAME.service"
  fi
  forget_on_broker
  rm -f "$dest$UNIT_DIR/$NAME.service" "$dest$UNIT_DIR/$NAME.service.d/pigpio.conf" \
    "$dest$UNIT_DIR/$NAME.service.d/credentials.conf"
  rmdir "$dest$UNIT_DIR/$NAME.service.d" 2>/dev/null || true
  if booted; then
    systemctl daemon-reload
    systemctl_quiet reset-failed "$NAME.service"
  fi
  remove_udev_rules
  unlink_commands
  rm -rf "$dest$PREFIX" "$dest$PREFIX".new.* "$dest$PREFIX.old" "$dest$CACHE_DIR"
  say "removed $dest$PREFIX, its code cache and $NAME.service"

  if [[ $action == purge ]]; then
    # StateDirectory= may live under /var/lib/private when the unit was ever run with DynamicUser.
    rm -rf "$dest$CONFIG_DIR" "$dest$STATE_DIR" "$dest/var/lib/private/$NAME"
    if ! staging && getent passwd "$SERVICE_USER" >/dev/null; then
      userdel "$SERVICE_USER" || warn "could not remove the user $SERVICE_USER"
    fi
    if ! staging && getent group "$SERVICE_USER" >/dev/null; then
      groupdel "$SERVICE_USER" 2>/dev/null || true
    fi
    say "purged $dest$CONFIG_DIR, $dest$STATE_DIR and the $SERVICE_USER user (the $GPIO_GROUP group stays)"
  else
    say "kept $dest$CONFIG_DIR, $dest$STATE_DIR and the $SERVICE_USER user; --purge removes them"
  fi
}

# --- checks --------------------------------------------------------------------------------------

[[ -f $repo/package.json && -f $repo/$NAME.service ]] ||
  die "run this from a lamp-agent clone ($repo has no package.json or $NAME.service)"
[[ -f $repo/.env.example ]] || die "$repo/.env.example is missing: the clone is incomplete"

node_help="Install Node.js $NODE_MIN_MAJOR or newer where systemd finds it (/usr/bin or /usr/local/bin):
  Raspberry Pi OS / Debian 12+:  sudo apt install nodejs npm
  a newer LTS:                   NodeSource's packages (https://github.com/nodesource/distributions)
  Pi Zero / Pi 1 (ARMv6):        the armv6l tarball from https://unofficial-builds.nodejs.org
A node from nvm in your home directory is not visible to the service."

# The node the service will run; for --host, the one that builds here.
find_node() {
  if staging || remote; then
    node_bin=$(command -v node || true)
  else
    node_bin=$(PATH=$SYSTEMD_PATH command -v node || true)
  fi
  if [[ -z $node_bin ]]; then
    if command -v node >/dev/null; then
      die "node is at $(command -v node), which the service cannot see.
$node_help"
    fi
    die "Node.js is not installed.
$node_help"
  fi
  node_version=$("$node_bin" -p process.versions.node 2>/dev/null) || die "$node_bin does not run"
  if ((${node_version%%.*} < NODE_MIN_MAJOR)); then
    die "Node.js $node_version at $node_bin is too old.
$node_help"
  fi
  # npm from the same installation as node, so the build and the service agree on the Node version.
  PATH=$(dirname "$node_bin"):$PATH
  say "using Node.js $node_version ($node_bin)"
}

# npm only builds the bundle or fetches a native module: a Pi given a build needs none.
need_npm() {
  command -v npm >/dev/null || die "npm is missing, and is needed to $1 (Debian: sudo apt install npm)"
}

# npm as it runs by default peaks at 220-310 MB (parallel downloads, a lazy garbage collector) where
# a Pi Zero 2 has about 200 free; one download at a time and a small heap keep it near 100 MB
# (docs/deployment.md has the figures). npm's live heap is close to that limit: when V8 gives up
# (SIGABRT, 134) npm runs once more with a little more.
npm_light() {
  local status=0
  NODE_OPTIONS="--max-old-space-size=32 --max-semi-space-size=1" npm --maxsockets=1 "$@" || status=$?
  if ((status == 134)); then
    echo "npm ran out of its small heap: once more with a larger one"
    NODE_OPTIONS="--max-old-space-size=48 --max-semi-space-size=1" npm --maxsockets=1 "$@"
  else
    return "$status"
  fi
}

# --- build ---------------------------------------------------------------------------------------

# What the agent is built from; a change here means a new build and a restart.
sources=(package.json package-lock.json tsconfig.json scripts/build.mjs src)

# A copy sent by --host has no src/: there the bundle itself is what the agent is built from.
present_sources() {
  local entry
  if [[ ! -d $repo/src ]]; then
    echo dist
    return 0
  fi
  for entry in "${sources[@]}"; do [[ -e $repo/$entry ]] && printf '%s\n' "$entry"; done
  return 0
}

# The last VAR= line of the env file, unquoted, as systemd's EnvironmentFile= would read it.
env_setting() {
  [[ -f $dest$ENV_FILE ]] || return 0
  sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*//p" "$dest$ENV_FILE" | tail -n 1 | tr -d "\"' \r"
}

# pigpio and onoff load a native addon, compiled where it runs: installed only for the driver that
# needs it. `auto` gets none and runs sysfs-pwm, which needs no addon.
native_module() {
  local driver
  driver=$(env_setting GPIO_DRIVER)
  if [[ $driver == pigpio || $driver == onoff ]]; then echo "$driver"; fi
  return 0
}

# Same id as the installed tree: nothing to build, nothing to restart.
build_id() {
  local entries
  mapfile -t entries < <(present_sources)
  {
    (cd "$repo" && find "${entries[@]}" -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    echo "native module: $(native_module)"
  } | sha256sum | cut -d' ' -f1
}

# A bundle in the clone's dist/ is used as is when it is newer than everything it is built from (an
# operator who ran `npm run build`, a copy sent by --host). dist/package.json marks a bundle: an
# older tsc build needed node_modules beside it and is rebuilt.
prebuilt_fresh() {
  [[ -f $repo/dist/main.js && -f $repo/dist/package.json ]] || return 1
  local newer
  newer=$(cd "$repo" && find "${sources[@]}" -newer dist/main.js -print -quit 2>/dev/null) || true
  [[ -z $newer ]]
}

# A step's output goes to a log: shown when it fails, not on every run.
step() {
  local what=$1 dir=$2
  shift 2
  local log=$work/step.log
  if ! (cd "$dir" && "$@") >"$log" 2>&1; then
    grep -m 25 -E 'npm (ERR|error)' "$log" >&2 || tail -n 25 "$log" >&2
    die "$what failed (output above); nothing was changed, a running $NAME keeps running"
  fi
}

# `npm ci` installs exactly the lock file. Some npm versions refuse a lock file that lacks entries
# for other platforms' optional packages (https://github.com/npm/cli/pull/9083); `npm install`
# then still follows the lock's versions, so fall back to it rather than fail.
npm_ci() {
  local what=$1 dir=$2
  shift 2
  if (cd "$dir" && npm_light ci --no-audit --no-fund "$@") >"$work/step.log" 2>&1; then
    return 0
  fi
  if grep -q 'can only install packages when your package.json and package-lock.json' "$work/step.log"; then
    warn "npm ci rejected package-lock.json as out of sync; using npm install with it instead"
    step "$what" "$dir" npm_light install --no-audit --no-fund --no-save "$@"
  else
    step "$what" "$dir" npm_light ci --no-audit --no-fund "$@"
  fi
}

# The version of a package that package-lock.json pins.
locked_version() {
  "$node_bin" -e '
    const entry = require(process.argv[1]).packages?.["node_modules/" + process.argv[2]];
    if (!entry) process.exit(1);
    console.log(entry.version);' "$repo/package-lock.json" "$1"
}

# package.json and package-lock.json in $1 cut down to the runtime dependencies, at the locked
# versions, each with its tarball's address on the configured registry. A lock without addresses
# (omit-lockfile-registry-resolved) makes npm fetch and parse every package's whole metadata, over
# 10 MB for @types/node: that, not the download, is what took npm past 200 MB.
runtime_manifest() {
  local registry
  registry=$(npm config get registry)
  "$node_bin" -e '
    const fs = require("node:fs");
    const [dir, registry] = process.argv.slice(1);
    const read = (name) => JSON.parse(fs.readFileSync(dir + "/" + name, "utf8"));
    const pkg = read("package.json");
    const lock = read("package-lock.json");
    for (const manifest of [pkg, lock.packages[""]]) {
      delete manifest.devDependencies;
      delete manifest.optionalDependencies;
    }
    for (const [path, entry] of Object.entries(lock.packages)) {
      if (path === "") continue;
      if (entry.dev || entry.optional || entry.devOptional) {
        delete lock.packages[path];
        continue;
      }
      const name = entry.name ?? path.slice(path.lastIndexOf("node_modules/") + 13);
      const base = name.split("/").pop();
      entry.resolved ??= registry.replace(/\/?$/, "/") + name + "/-/" + base + "-" + entry.version + ".tgz";
    }
    fs.writeFileSync(dir + "/package.json", JSON.stringify(pkg));
    fs.writeFileSync(dir + "/package-lock.json", JSON.stringify(lock));' "$1" "$registry"
}

# The bundle, made with esbuild alone: the runtime dependencies it bundles (npm ci --omit=dev,
# without install scripts or native modules) and esbuild in a directory of its own. No development
# dependencies and no TypeScript compile: tsc alone peaks near 300 MB, more than a Pi Zero has free.
build_bundle() {
  local out=$1 build=$work/build esbuild_version
  need_npm "build the agent"
  esbuild_version=$(locked_version esbuild) || die "package-lock.json pins no esbuild"
  say "bundling with esbuild $esbuild_version (no development dependencies; a minute on a small Pi)"
  mkdir -p "$build/scripts"
  cp -R "$repo/src" "$repo/package.json" "$repo/package-lock.json" "$repo/tsconfig.json" "$build/"
  cp "$repo/scripts/build.mjs" "$build/scripts/"
  runtime_manifest "$build"
  npm_ci "installing the dependencies to bundle (npm ci --omit=dev)" "$build" \
    --omit=dev --omit=optional --ignore-scripts
  step "installing esbuild" "$work" npm_light install --prefix "$work/esbuild" --no-save --no-package-lock \
    --no-audit --no-fund --ignore-scripts "esbuild@$esbuild_version"
  step "bundling (scripts/build.mjs)" "$build" \
    env NODE_PATH="$work/esbuild/node_modules" "$node_bin" scripts/build.mjs --device
  cp -R "$build/dist" "$out"
}

# The bundle from the clone's dist/ when it is fresh, else built; the demo stays behind (it needs
# development packages).
make_bundle() {
  local out=$1
  if prebuilt_fresh; then
    say "using the build in $repo/dist"
    cp -R "$repo/dist" "$out"
  else
    build_bundle "$out"
  fi
  rm -f "$out/cli/demo.js"
  [[ -f $out/main.js ]] || die "the build produced no dist/main.js"
}

# --- install on a Pi over SSH (--host) -----------------------------------------------------------

# What the Pi gets: the bundle and what install.sh uses beside it; no sources.
readonly RELEASE_FILES=(package.json package-lock.json .env.example "$NAME.service" scripts/install.sh
  scripts/dropins hardware docs/deployment.md)

# install.sh on one Pi, its output shown as it comes and kept in $work/<n>.out and .err for the
# summary. The remote commands are built here on purpose: remote_dir and command hold only safe
# characters.
# shellcheck disable=SC2029
install_on() {
  local host=$1 log=$2 release=$work/release remote_dir sudo=sudo command status
  say "copying to $host"
  remote_dir=$("$ssh" "$host" 'mktemp -d /tmp/lamp-agent-install.XXXXXX') || {
    echo "cannot reach $host with ssh (it must log in without questions: ssh-copy-id $host)" >"$log.err"
    return 1
  }
  if ! tar -C "$release" -cf - . | "$ssh" "$host" "tar -C '$remote_dir' -xf -"; then
    echo "copying to $host:$remote_dir failed" >"$log.err"
    return 1
  fi
  if [[ $("$ssh" "$host" id -u) == 0 ]]; then sudo=; fi
  printf -v command '%s bash %s/scripts/install.sh' "$sudo" "$remote_dir"
  if ((${#forward[@]} > 0)); then command+=$(printf ' %q' "${forward[@]}"); fi
  if [[ -n $new_version ]]; then command+=$(printf ' --await-version %q' "$new_version"); fi
  say "running install.sh on $host"
  # A terminal when there is one here, for sudo's password prompt.
  local tty=()
  if [[ -t 0 ]]; then tty=(-t); fi
  # Its errors are kept whole for the summary and shown once it is done; its progress as it comes.
  if "$ssh" ${tty[@]+"${tty[@]}"} "$host" "$command; status=\$?; rm -rf '$remote_dir'; exit \$status" \
    2>"$log.err" | tee "$log.out"; then
    status=0
  else
    status=$?
  fi
  cat "$log.err" >&2
  return "$status"
}

# Why a Pi's install failed, in one line: install.sh's own error there, else the last line it wrote.
failure_of() {
  local log=$1 line
  line=$(tr -d '\r' <"$log.err" | grep -E "^$NAME: error: " | tail -n 1 || true)
  if [[ -z $line ]]; then line=$(tr -d '\r' <"$log.err" | grep -v '^[[:space:]]*$' | tail -n 1 || true); fi
  echo "${line#"$NAME: error: "}"
}

install_remotely() {
  local release=$work/release entry host i=0 log found id old
  local -a done_rows=()
  # Looked up before find_node puts node's directory first on the PATH.
  ssh=$(command -v ssh) || die "--host needs ssh on this machine"
  mkdir -p "$release"
  for entry in "${RELEASE_FILES[@]}"; do
    if [[ -e $repo/$entry ]]; then
      mkdir -p "$release/$(dirname "$entry")"
      cp -R "$repo/$entry" "$release/$entry"
    fi
  done
  new_version=
  if [[ $action == install ]]; then
    find_node
    make_bundle "$release/dist"
    # Each Pi is checked against it once its service runs (not with --no-start: it does not run).
    if ((start)); then new_version=$("$node_bin" "$release/dist/main.js" --version); fi
  fi
  for host in "${hosts[@]}"; do
    i=$((i + 1))
    log=$work/$i
    ((${#hosts[@]} == 1)) || say "--- $host ($i of ${#hosts[@]})"
    if ! install_on "$host" "$log"; then
      stop_at "$host" "$i" "$(failure_of "$log")"
    fi
    found=$(tr -d '\r' <"$log.out" | sed -n "s/^$NAME: lamp \([^ ]*\) is online with version [^ ]* (was \([^)]*\))\$/\1 \2/p" | tail -n 1)
    if [[ -n $new_version && -z $found ]]; then
      stop_at "$host" "$i" "install.sh there did not say the lamp is online with $new_version"
    fi
    id=${found%% *} old=${found#* }
    done_rows+=("$host" "${id:--}" "${old:--}" "${new_version:-$action}")
  done
  print_table
  exit 0
}

# What install_remotely did so far (its done_rows): host, lamp id, old and new version.
print_table() {
  local i
  [[ $action == install ]] && ((${#done_rows[@]} > 0)) || return 0
  echo
  printf '%-32s  %-20s  %-12s  %s\n' HOST "LAMP ID" OLD NEW
  for ((i = 0; i < ${#done_rows[@]}; i += 4)); do
    printf '%-32s  %-20s  %-12s  %s\n' "${done_rows[@]:i:4}"
  done
}

# The first failure ends a fleet update: the hosts after it keep what they run.
stop_at() {
  local host=$1 index=$2 why=$3 rest
  print_table
  rest=$(printf '%s, ' "${hosts[@]:index}")
  rest=${rest%, }
  die "stopped at $host ($index of ${#hosts[@]}): ${why:-install.sh failed there}${rest:+; not updated: $rest}"
}

work=$(mktemp -d)
if remote; then install_remotely; fi

if [[ $action != install ]]; then
  uninstall
  exit 0
fi

find_node
# What the Pi ran before, for --host's summary.
old_version=none
if [[ -n $await_version && -f $PREFIX/dist/main.js ]]; then
  old_version=$("$node_bin" "$PREFIX/dist/main.js" --version 2>/dev/null || echo unknown)
fi

# --- stage ---------------------------------------------------------------------------------------

# The configured driver's native module, built for this machine. Not into a DESTDIR: an addon
# built here would be for this machine, not the one the staged files go to.
install_native() {
  local tree=$1 module version
  module=$(native_module)
  [[ -n $module ]] || return 0
  if staging; then
    say "staging: not installing $module (a native module: run install.sh on the machine that runs it)"
    return 0
  fi
  need_npm "install $module for GPIO_DRIVER=$module"
  version=$(locked_version "$module") || die "package-lock.json pins no $module"
  say "installing $module $version for GPIO_DRIVER=$module (a native module: compiled here)"
  if ! npm_light install --prefix "$tree" --no-save --no-package-lock --no-audit --no-fund \
    "$module@$version" >"$work/native.log" 2>&1; then
    grep -m 25 -E 'npm (ERR|error)' "$work/native.log" >&2 || tail -n 25 "$work/native.log" >&2
    warn "$module did not install (output above); the agent reports GPIO_DRIVER=$module unavailable and lamp-agent --check says why"
  fi
}

stage_tree() {
  stage=$(mktemp -d "$dest$PREFIX.new.XXXXXX")
  chmod 755 "$stage"
  make_bundle "$stage/dist"
  install_native "$stage"
  copy_reference "$stage"
  # Becomes .build-id once this tree runs: a run that dies before then is redone by the next one.
  echo "$new_id" >"$stage/.build-id.pending"
}

# The settings list, wiring notes and this page, for reference beside the agent. The running agent
# never reads them, so they are refreshed in place without a rebuild or a restart.
copy_reference() {
  local tree=$1
  cp "$repo/.env.example" "$tree/"
  rm -rf "$tree/hardware"
  if [[ -d $repo/hardware ]]; then cp -R "$repo/hardware" "$tree/hardware"; fi
  mkdir -p "$tree/docs"
  if [[ -f $repo/docs/deployment.md ]]; then cp "$repo/docs/deployment.md" "$tree/docs/"; fi
}

commit_build() {
  if [[ -f $dest$PREFIX/.build-id.pending ]]; then mv "$dest$PREFIX/.build-id.pending" "$dest$PREFIX/.build-id"; fi
  rm -rf "$dest$PREFIX.old"
}

mkdir -p "$dest$(dirname "$PREFIX")"
new_id=$(build_id)
old_id=$(cat "$dest$PREFIX/.build-id" 2>/dev/null || true)
changed=0
had_previous=0
stage=
if [[ $new_id == "$old_id" && -f $dest$PREFIX/dist/main.js ]]; then
  copy_reference "$dest$PREFIX"
  say "$dest$PREFIX is up to date"
else
  stage_tree
fi

# --- user, configuration, udev, unit -------------------------------------------------------------

if staging; then
  say "staging: not creating the $SERVICE_USER user or the $GPIO_GROUP group"
else
  if ! getent group "$GPIO_GROUP" >/dev/null; then
    groupadd --system "$GPIO_GROUP"
    say "created the $GPIO_GROUP group"
  fi
  if ! getent passwd "$SERVICE_USER" >/dev/null; then
    useradd --system --user-group --groups "$GPIO_GROUP" --home-dir "$STATE_DIR" --no-create-home \
      --shell /usr/sbin/nologin --comment "LED lamp agent" "$SERVICE_USER"
    say "created the $SERVICE_USER system user (in group $GPIO_GROUP)"
  elif ! id -nG "$SERVICE_USER" | tr ' ' '\n' | grep -qx "$GPIO_GROUP"; then
    usermod -a -G "$GPIO_GROUP" "$SERVICE_USER"
    say "added $SERVICE_USER to the $GPIO_GROUP group"
  fi
fi

mkdir -p "$dest$CONFIG_DIR"
if [[ -e $dest$ENV_FILE ]]; then
  say "kept $dest$ENV_FILE"
else
  # May come to hold MQTT_PASSWORD; systemd reads it as root, the agent never needs to.
  install -m 0600 "$repo/.env.example" "$dest$ENV_FILE"
  say "wrote $dest$ENV_FILE from .env.example: set MQTT_URL and friends there"
fi

udev_changed=0
for rule in "$repo"/hardware/*.rules; do
  target=$dest$UDEV_DIR/$(basename "$rule")
  if ! cmp -s "$rule" "$target"; then
    mkdir -p "$dest$UDEV_DIR"
    install -m 0644 "$rule" "$target"
    say "installed $target"
    udev_changed=1
  fi
done
if ((udev_changed)) && ! staging; then
  if command -v udevadm >/dev/null && [[ -d /run/udev ]]; then
    udevadm control --reload
    udevadm trigger --action=add --subsystem-match=gpio --subsystem-match=pwm ||
      warn "udevadm trigger failed; the rule applies from the next boot"
  else
    say "udev is not running here; the rule applies from the next boot"
  fi
fi

# Installs $1 at $2 if different; removes $2 when $1 is empty. Marks the service for a restart.
place() {
  local source=$1 target=$2
  if [[ -z $source ]]; then
    if [[ -e $target ]]; then
      rm -f "$target"
      changed=1
      say "removed $target"
    fi
  elif ! cmp -s "$source" "$target"; then
    mkdir -p "$(dirname "$target")"
    install -m 0644 "$source" "$target"
    changed=1
    say "installed $target"
  fi
}

driver=$(env_setting GPIO_DRIVER)
dropins=$dest$UNIT_DIR/$NAME.service.d
place "$repo/$NAME.service" "$dest$UNIT_DIR/$NAME.service"
if [[ $driver == pigpio ]]; then
  warn "GPIO_DRIVER=pigpio: the service runs as root (see $UNIT_DIR/$NAME.service.d/pigpio.conf)"
  place "$repo/scripts/dropins/pigpio.conf" "$dropins/pigpio.conf"
else
  place "" "$dropins/pigpio.conf"
fi
if [[ -e $dest$PASSWORD_FILE ]]; then
  if ! staging; then chmod 0600 "$PASSWORD_FILE" && chown root:root "$PASSWORD_FILE"; fi
  place "$repo/scripts/dropins/credentials.conf" "$dropins/credentials.conf"
else
  place "" "$dropins/credentials.conf"
fi
rmdir "$dropins" 2>/dev/null || true

# lamp-agent and lampctl on every user's PATH, as the docs use them. A command of the same name that
# this install did not make (npm install -g) is left alone.
link_commands() {
  local entry command source target
  for entry in "${COMMANDS[@]}"; do
    command=${entry%%:*}
    source=$PREFIX/${entry#*:}
    target=$dest$BIN_DIR/$command
    if [[ -L $target && $(readlink "$target") == "$source" ]]; then continue; fi
    if [[ -e $target || -L $target ]] && ! [[ -L $target && $(readlink "$target") == "$PREFIX/"* ]]; then
      warn "$target exists and is not this install's: left alone (run node $source)"
      continue
    fi
    mkdir -p "$dest$BIN_DIR"
    ln -sfn "$source" "$target"
    say "linked $target -> $source"
  done
}
link_commands

# --- swap, enable and (re)start ------------------------------------------------------------------

# The new tree goes in only now, right before the restart; the old one stays until the new one runs.
if [[ -n $stage ]]; then
  rm -rf "$dest$PREFIX.old"
  if [[ -d $dest$PREFIX ]]; then
    mv "$dest$PREFIX" "$dest$PREFIX.old"
    had_previous=1
  fi
  mv "$stage" "$dest$PREFIX"
  stage=
  changed=1
  say "installed $dest$PREFIX"
fi

# Every path a staged install holds, for whoever packages or inspects it.
list_staged() {
  local path entry rule
  local paths=("$PREFIX" "$ENV_FILE" "$UNIT_DIR/$NAME.service" "$UNIT_DIR/$NAME.service.d")
  for rule in "$repo"/hardware/*.rules; do paths+=("$UDEV_DIR/$(basename "$rule")"); done
  for entry in "${COMMANDS[@]}"; do paths+=("$BIN_DIR/${entry%%:*}"); done
  say "staged under $dest (nothing was started):"
  for path in "${paths[@]}"; do
    if [[ -e $dest$path || -L $dest$path ]]; then printf '  %s\n' "$dest$path"; fi
  done
}

if staging; then
  commit_build
  list_staged
  exit 0
fi

systemctl daemon-reload 2>/dev/null || true
systemctl enable "$NAME.service" 2>&1 | grep -v '^Created symlink' || true
if ! booted || ((start == 0)); then
  commit_build
  say "installed and enabled; $NAME starts at the next boot (or: systemctl start $NAME)"
  exit 0
fi

roll_back() {
  journalctl -u "$NAME.service" -n 25 --no-pager >&2 || true
  if ((had_previous)) && [[ -d $PREFIX.old ]]; then
    rm -rf "$PREFIX.failed"
    mv "$PREFIX" "$PREFIX.failed"
    mv "$PREFIX.old" "$PREFIX"
    rm -rf "$PREFIX.failed"
    if systemctl restart "$NAME.service"; then
      die "the new version did not start (journal above); the previous one is back and running"
    fi
    die "the new version did not start, nor did the previous one (journal above)"
  fi
  # The tree itself is complete: what failed is more likely the configuration, so keep it.
  commit_build
  die "$NAME did not start (journal above); check $ENV_FILE, then: systemctl restart $NAME"
}

# --host: the lamp is updated once it says so on the broker, its info showing the new version (from a
# process started after `since`, seconds since the epoch, on this Pi's clock) and its presence 1.
# Asked through lampctl as the service itself, so it reaches the broker exactly as the lamp does.
await_online() {
  local want=$1 since=$2 deadline=$((SECONDS + AWAIT_SECONDS)) answer verdict
  say "waiting up to ${AWAIT_SECONDS}s for the lamp to be online with version $want"
  while :; do
    answer=$(as_the_service node "$PREFIX/dist/cli/lampctl.js" info --timeout 3 2>&1) || true
    # JavaScript's own ${...} inside: not for the shell.
    # shellcheck disable=SC2016
    verdict=$("$node_bin" -e '
      const [want, since, text] = process.argv.slice(1);
      // Its JSON on one line; a warning of its own (stderr, mixed in here) may come before it.
      const lines = text.trim().split(/\r?\n/);
      let seen;
      try {
        seen = JSON.parse(lines.filter((line) => line.startsWith("{")).pop());
      } catch {
        console.log(`lampctl info: ${lines.pop()}`);
        process.exit();
      }
      const info = seen.info ?? {};
      if (info.version !== want) console.log(`its info shows version ${info.version}`);
      else if (Date.parse(info.started_at) < Number(since) * 1000) console.log("its info is from before the restart");
      else if (seen.presence !== "1") console.log(`its presence is ${seen.presence}`);
      else console.log(`ok ${seen.id}`);
    ' "$want" "$since" "$answer")
    if [[ $verdict == "ok "* ]]; then
      say "lamp ${verdict#ok } is online with version $want (was $old_version)"
      return 0
    fi
    if ((SECONDS >= deadline)); then
      die "the lamp did not come online with version $want within ${AWAIT_SECONDS}s: $verdict"
    fi
    sleep 2
  done
}

since=0
if systemctl is-active --quiet "$NAME.service"; then
  if ((changed)); then
    say "restarting $NAME.service"
    since=$(date +%s)
    systemctl restart "$NAME.service" || roll_back
  fi
else
  say "starting $NAME.service"
  since=$(date +%s)
  systemctl start "$NAME.service" || roll_back
fi
systemctl is-active --quiet "$NAME.service" || roll_back
commit_build
systemctl --no-pager --lines=5 status "$NAME.service" || true
if [[ -n $await_version ]]; then await_online "$await_version" "$since"; fi
say "done"
