#!/bin/bash
# Helpers of the post-boot steps (the scripts beside this one), on top of the bootstrap's lib.sh:
# Kazoo's maintenance shell and CouchDB's API. They travel with the configuration bundle only (a
# first boot needs neither), which keeps the user-data of a host carrying every role within AWS's
# 16 KB. Sourced, never run.
set -euo pipefail
# shellcheck source=../scripts/lib.sh
. /opt/kazoo-bootstrap/lib.sh

# Kazoo's maintenance shell, run as the kazoo account: the release under /opt/kazoo is kazoo's
# (kazoo-configs' `prepare` chowns it at every start), so root never runs code kazoo could rewrite.
# `sup` reads the cookie from /etc/kazoo/config.ini (the section of the node it addresses wins over
# -c: kazoo core/sup/src/sup.erl, kazoo_config_init:read_cookie), and relx from $HOME/.erlang.cookie:
# no cookie on a command line. -n names the node: kazoo_apps, or ecallmgr for its maintenance.
# ERL_LIBS: the release's libraries, for the escript sup runs (the package ships no erts of its own).
# On a failed connection sup prints the cookie it tried ("... with cookie X", kazoo core/sup/src/
# sup.erl print_ping_failed/2): hidden here, before any step output or log sees it.
kz_sup() {
  local out rc=0
  out=$(cd / && runuser -u kazoo -- env HOME=/opt/kazoo ERL_LIBS=/opt/kazoo/lib "${SUP:-sup}" "$@" 2>&1) || rc=$?
  [ -z "$out" ] || printf '%s\n' "$out" | sed -E "s/(with cookie )('[^']*'|\"[^\"]*\"|[^ ]+)/\1<hidden>/g"
  return "$rc"
}

# hidden CMD...: run CMD while /proc shows each account only its own processes (proc(5):
# hidepid=invisible, a remount of this mount of /proc, Linux 5.8 and later), for the one secret that
# must go on a command line (create_account's one-off password); the setting before is put back.
# A remount that fails fails the command (it does not run in the open); in a subshell whose EXIT trap
# puts the setting back however the command ends.
hidden() (
  before=$(findmnt -n -o OPTIONS /proc | tr ',' '\n' | grep '^hidepid=' || echo hidepid=off)
  mount -o remount,hidepid=invisible /proc || { echo "could not hide processes (hidepid): not run" >&2; exit 1; }
  trap 'mount -o "remount,$before" /proc' EXIT
  "$@"
)

# The same, failing on an Erlang error term too: sup can exit 0 and print {error,...}.
kz_sup_checked() {
  local out rc=0
  out=$(kz_sup "$@" 2>&1) || rc=$?
  printf '%s\n' "$out"
  if ((rc != 0)) || [[ $out == *"{error"* ]]; then die "sup $*: ${out:-exit $rc}"; fi
}

# couch URL [CURL_ARGS...]: CouchDB's API as its admin `kazoo`. The credentials reach curl as a config
# file on a pipe (-K), never on its command line (visible in ps); a body with a secret goes on stdin
# (`--data-binary @-`). -f: an HTTP error is a failure.
couch() {
  local url=$1; shift
  curl -fsS -K <(printf 'user = "kazoo:%s"\n' "$COUCHDB_PASSWORD") -H 'Content-Type: application/json' "$@" "$url"
}
