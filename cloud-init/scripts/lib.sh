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
  # host.env: this host's identity, peers, versions and secrets (rendered by the Pulumi program).
  # shellcheck source=/dev/null
  . "$ETC_DIR/host.env"
  mkdir -p "$STATE_DIR"
}

# Kazoo's maintenance shell against this host's Kazoo node (Kazoo 5 runs ecallmgr in kazoo_apps).
kz_sup() { "${SUP:-sup}" -c "$ERLANG_COOKIE" "$@"; }

# The same, failing on an Erlang error term too: sup can exit 0 and print {error,...}.
kz_sup_checked() {
  local out rc=0
  out=$(kz_sup "$@" 2>&1) || rc=$?
  printf '%s\n' "$out"
  if ((rc != 0)) || [[ $out == *"{error"* ]]; then die "sup $1 $2: ${out:-exit $rc}"; fi
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

# add_apt_source NAME KEY_URL REPO_URL SUITE [AUTH_HOST AUTH_TOKEN]
add_apt_source() {
  local name=$1 key_url=$2 repo=$3 suite=$4 keyring="/usr/share/keyrings/$1.asc"
  if [ -n "${5:-}" ]; then
    # Repositories behind a token (SignalWire): apt reads it from auth.conf.d, never from the URL.
    install -m 0600 /dev/null "/etc/apt/auth.conf.d/$name.conf"
    printf 'machine %s login signalwire password %s\n' "$5" "$6" > "/etc/apt/auth.conf.d/$name.conf"
    retry 5 curl -fsSL --netrc-file "/etc/apt/auth.conf.d/$name.conf" -o "$keyring.tmp" "$key_url"
  else
    retry 5 curl -fsSL -o "$keyring.tmp" "$key_url"
  fi
  mv "$keyring.tmp" "$keyring"
  echo "deb [signed-by=$keyring] $repo $suite main" > "/etc/apt/sources.list.d/$name.list"
}

# Pin a package (and its family) to the stack's version pattern.
pin_version() {
  local package_glob=$1 version=$2 name=$3
  printf 'Package: %s\nPin: version %s\nPin-Priority: 1001\n' "$package_glob" "$version" \
    > "/etc/apt/preferences.d/$name"
}

# fetch_archive URL SHA256 DEST: unpack a pinned tarball (top directory stripped) into DEST.
fetch_archive() {
  local url=$1 sum=$2 dest=$3 tmp
  tmp=$(mktemp)
  retry 5 curl -fsSL -o "$tmp" "$url"
  if [ -n "$sum" ]; then
    echo "$sum  $tmp" | sha256sum -c --quiet - || die "sha256 mismatch for $url"
  else
    log "WARNING: $url has no pinned sha256 (sources.*.sha256): not verified"
  fi
  mkdir -p "$dest"
  tar -xzf "$tmp" -C "$dest" --strip-components=1
  rm -f "$tmp"
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
