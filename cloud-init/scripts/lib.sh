#!/bin/bash
# Helpers shared by the Kazoo bootstrap scripts. Sourced, never run.
# shellcheck disable=SC2034  # variables used by the scripts that source this file
set -euo pipefail

BOOTSTRAP_DIR=/opt/kazoo-bootstrap
ETC_DIR=/etc/kazoo-bootstrap
STATE_DIR=/var/lib/kazoo-bootstrap
LOG=/var/log/kazoo-bootstrap.log
export DEBIAN_FRONTEND=noninteractive

log() { printf '%s kazoo-bootstrap[%s]: %s\n' "$(date -u +%FT%TZ)" "${0##*/}" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

load_env() {
  # host.env: this host's identity, sources and the secrets its roles use (rendered by the Pulumi
  # program, every value single-quoted).
  # shellcheck source=/dev/null
  . "$ETC_DIR/host.env"
  install -d -m 0700 "$STATE_DIR"
}

# restart_if_pending SERVICE: restart a service whose files changed (configure.sh marks it pending)
# now, for an install script that needs it running with them; the mark goes once it is up.
restart_if_pending() {
  local mark="$STATE_DIR/pending/$1"
  [ -e "$mark" ] || return 0
  systemctl restart "$1" || die "$1 did not start with its configuration"
  rm -f "$mark"
  log "restart $1"
}

# kamailio_rpc METHOD: a Kamailio RPC through the jsonrpcs module's FIFO, which the kazoo tree's
# default.cfg loads with its defaults: requests on <run_dir>/kamailio_rpc.fifo, the reply on a FIFO
# named by the request's "reply_name" in fifo_reply_dir, /tmp/ (kamailio 6.0 src/modules/jsonrpcs/
# doc/jsonrpcs_admin.xml). Works with builds that ship no kamcmd (openkazoo's).
kamailio_rpc() {
  local request=/run/kamailio/kamailio_rpc.fifo reply out reader
  [ -p "$request" ] || return 1
  reply=$(mktemp -u /tmp/kazoo-rpc-XXXXXX)
  mkfifo -m 0600 "$reply" && chown kamailio "$reply"
  # the reader first: Kamailio opens the reply FIFO without waiting for one
  timeout 10 cat "$reply" > "$reply.out" &
  reader=$!
  printf '{"jsonrpc": "2.0", "method": "%s", "reply_name": "%s", "id": 1}\n' "$1" "${reply##*/}" > "$request"
  wait "$reader" || true
  out=$(cat "$reply.out" 2>/dev/null || true)
  rm -f "$reply" "$reply.out"
  printf '%s\n' "$out"
  [[ $out == *'"result"'* && $out != *'"error"'* ]]
}

# True when the stack's bootstrap.skip names this component.
skipped() { [[ " ${KAZOO_SKIP:-} " == *" $1 "* ]]; }

# Run "$@" once per host: a marker records success, so re-runs of the bootstrap skip it.
once() {
  local name=$1; shift
  [ -e "$STATE_DIR/done-$name" ] && { log "$name: already done"; return 0; }
  "$@"
  touch "$STATE_DIR/done-$name"
}

# retry TRIES CMD...: back off linearly, RETRY_SECONDS (default 5) longer after each failure.
retry() {
  local tries=$1; shift
  local n=1
  until "$@"; do
    ((n >= tries)) && return 1
    log "retry $n/$tries: $*"; sleep $((n * ${RETRY_SECONDS:-5})); n=$((n + 1))
  done
}

# Install what is not installed yet. Packages a pre-baked image already has are not fetched again,
# so such an image boots without reaching a mirror; the package index is refreshed once per boot,
# and only when something is missing.
apt_install() {
  local missing=() package
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  ((${#missing[@]})) || return 0
  [ -e /run/kazoo-apt-updated ] || apt_update
  # Keep configuration files this bootstrap already put in place.
  retry 5 apt-get -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef \
    -o Dpkg::Options::=--force-confold install -y -q --no-install-recommends "${missing[@]}"
}

apt_update() { retry 5 apt-get -o DPkg::Lock::Timeout=300 update -q && touch /run/kazoo-apt-updated; }

# add_apt_source KEY_URL REPO_URL SUITE: one list file per repository (named from its URL and suite,
# so components sharing a repository share it too) and one keyring per key URL. The key may be
# armoured or binary: apt reads a keyring named .asc as armoured and .gpg as binary, so the file is
# named by what it holds.
add_apt_source() {
  local key_url=$1 repo=$2 suite=$3 id keyring tmp
  id=$(printf '%s %s' "$repo" "$suite" | sha256sum | cut -c1-12)
  [ -e "/etc/apt/sources.list.d/kazoo-$id.list" ] && return 0
  tmp=$(mktemp)
  retry 5 curl -fsSL -o "$tmp" "$key_url"
  if grep -q -- '-----BEGIN PGP PUBLIC KEY BLOCK-----' "$tmp"; then
    keyring="/usr/share/keyrings/kazoo-$id.asc"
  else
    keyring="/usr/share/keyrings/kazoo-$id.gpg"
  fi
  install -m 0644 "$tmp" "$keyring"
  rm -f "$tmp"
  printf 'deb [signed-by=%s] %s %s main\n' "$keyring" "$repo" "$suite" > "/etc/apt/sources.list.d/kazoo-$id.list"
  chmod 0644 "/etc/apt/sources.list.d/kazoo-$id.list"
  rm -f /run/kazoo-apt-updated
}

# use_source NAME PACKAGE_GLOB: add NAME's repository (unless it is the host's own Debian archive)
# and pin PACKAGE_GLOB to NAME's version. NAME is the sources.* key (couchdb, erlang, kazoo, ...).
use_source() {
  local name=$1 glob=$2 upper repo key suite version
  upper=${name^^}
  repo=${upper}_REPO key=${upper}_KEY suite=${upper}_SUITE version=${upper}_VERSION
  if [ "${!repo}" != debian ]; then
    add_apt_source "${!key}" "${!repo}" "${!suite}"
  fi
  printf 'Package: %s\nPin: version %s\nPin-Priority: 1001\n' "$glob" "${!version}" > "/etc/apt/preferences.d/kazoo-$name"
  chmod 0644 "/etc/apt/preferences.d/kazoo-$name"
}

# ensure_system_user NAME HOME: the service account a package does not create (or creates later:
# the package's own adduser then finds it and moves on).
ensure_system_user() {
  local name=$1 home=$2
  getent group "$name" >/dev/null || addgroup --system --quiet "$name"
  getent passwd "$name" >/dev/null ||
    adduser --system --quiet --ingroup "$name" --home "$home" --no-create-home --shell /usr/sbin/nologin "$name"
}

# ensure_epmd: one epmd per host, Debian erlang-base's epmd.socket (ListenStream=4369, every address;
# nftables decides who reaches it), started before any Erlang program. Otherwise the first VM to
# start (CouchDB's erlexec, -start_epmd by default) runs epmd inside its own unit: epmd.socket then
# fails with EADDRINUSE, and a restart of that unit takes every node's registration on the host with
# it (mod_kazoo publishes once, at start). Such an epmd also answers on loopback, so both are checked:
# the socket unit is active, and 4369 answers.
ensure_epmd() {
  local n
  apt_install erlang-base
  systemctl enable --now epmd.socket >/dev/null 2>&1 || true
  systemctl is-active --quiet epmd.socket ||
    die "epmd.socket is $(systemctl is-active epmd.socket 2>&1 || true): another epmd holds 4369 (ss -ltnp 'sport = 4369')"
  for n in $(seq 1 20); do
    (exec 3<>/dev/tcp/127.0.0.1/4369) 2>/dev/null && return 0
    sleep "${EPMD_WAIT_SECONDS:-0.5}"
  done
  die "epmd.socket is active but nothing answers on 127.0.0.1:4369 after $n tries"
}

# lager_log_root FILE DIR: the relative log files of a relx sys.config (kazoo-configs' lager handlers,
# "ecallmgr-error.log", crash_log) under DIR (lager log_root), not in the node's working directory,
# the release root (relx: cd "$ROOTDIR"), which kazoo must not own. /var/log/kazoo is kazoo's
# (kazoo-configs' prepare) and its logrotate.d file rotates /var/log/kazoo/*.log.
lager_log_root() {
  grep -q '{log_root,' "$1" || sed -i "0,/{lager, \[/s##{lager, [ {log_root, \"$2\"},#" "$1"
  grep -qF "{log_root, \"$2\"}" "$1" || die "could not set lager's log_root in $1"
}

# check_linked FILE...: every shared library the files need is present (the community packages
# declare no Depends: builder's install check, `! ldd /usr/bin/freeswitch | grep -q 'not found'`).
check_linked() {
  local file missing
  for file in "$@"; do
    [ -e "$file" ] || die "$file is missing"
    missing=$(ldd "$file" 2>/dev/null | awk '/not found/ {print $1}' | tr '\n' ' ')
    [ -z "$missing" ] || die "$file needs libraries that are not installed: $missing"
  done
}

# fetch_archive KEY DEST: unpack the pinned tarball of sources.<key> (top folder stripped) into
# DEST, after checking it against its sha256. Never unpacks an archive it could not check.
fetch_archive() {
  local key=${1^^} dest=$2 url sum tmp
  url=${key}_URL sum=${key}_SHA256
  [ -n "${!url:-}" ] || die "no URL for the $1 archive"
  [ -n "${!sum:-}" ] || die "no sha256 for ${!url}: the program always sets one"
  tmp=$(mktemp)
  retry 5 curl -fsSL -o "$tmp" "${!url}"
  echo "${!sum}  $tmp" | sha256sum -c --quiet - || die "sha256 mismatch for ${!url}"
  rm -rf "$dest" && install -d -m 0755 "$dest"
  tar -xzf "$tmp" -C "$dest" --strip-components=1 --no-same-owner
  rm -f "$tmp"
}

# Monster UI (sources.monsterUi) on an application host: nginx, the archive (again when its sha256
# changes), and the API's address in js/config.js: the browser calls crossbar itself, at
# https://api.<domain>/v2/ behind the load balancer with dns.zone, else at this host's public address.
# Run by the first boot and by every push (upgrade-host.sh), so a stack that adds Monster UI, moves
# to a new build or switches dns.zone later gets it. Safe to repeat.
install_monster_ui() {
  local dir=/var/www/monster-ui mark="$STATE_DIR/monster-ui.sha256"
  local config=$dir/js/config.js
  apt_install nginx
  if [ "$(cat "$mark" 2>/dev/null)" != "$MONSTER_UI_SHA256" ] || [ ! -f "$config" ]; then
    # unpacked beside the running build, which stays until the new one has what it needs
    fetch_archive monster_ui "$dir.new"
    [ -f "$dir.new/js/config.js" ] || { rm -rf "$dir.new"; die "the Monster UI archive has no js/config.js"; }
    rm -rf "$dir.old"
    if [ -d "$dir" ]; then mv "$dir" "$dir.old"; fi
    mv "$dir.new" "$dir" && rm -rf "$dir.old"
    printf '%s\n' "$MONSTER_UI_SHA256" > "$mark"
    log "Monster UI from $MONSTER_UI_URL"
  fi
  if ! grep -qF "default: '${MONSTER_UI_API}'" "$config"; then
    sed -i -E "s#(default: )'[^']*'#\1'${MONSTER_UI_API}'#" "$config"
    grep -qF "default: '${MONSTER_UI_API}'" "$config" || die "could not set api.default in $config"
    log "Monster UI calls the API at $MONSTER_UI_API"
  fi
  rm -f /etc/nginx/sites-enabled/default
}

# The private interface may appear after boot (Hetzner attaches networks late): wait for our IP.
wait_for_private_ip() {
  local n
  for n in $(seq 1 60); do
    ip -4 -o addr show | grep -qw "inet $PRIVATE_IP" && return 0
    log "waiting for $PRIVATE_IP ($n/60)"; sleep 5
  done
  die "private IP $PRIVATE_IP never appeared"
}
