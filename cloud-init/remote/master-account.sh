#!/bin/bash
# Creates the master account once, then (when Monster UI is installed) registers its apps.
# The password arrives on stdin and never goes on a command line. A Kazoo that already holds an
# account is left alone: the first account is the master, and a second run must not make another.
# Usage: master-account.sh NAME REALM USER [API_URL]   (password on stdin)
#
# crossbar_maintenance:create_account/4 takes the password as an argument, which `sup` would show in
# the process list. So the account is created with a one-off random password, while /proc hides the
# processes of other accounts from each other (lib.sh hidden), and crossbar's own
# API then sets the real one, sent on curl's stdin (kazoo 4.3 applications/crossbar/doc:
# user_authentication.md `PUT /v2/user_auth` with md5("user:password") credentials, users.md
# `PATCH /v2/accounts/{ACCOUNT_ID}/users/{USER_ID}`); the one-off password stops working then.
# Until it does, the one-off waits in a root-only file: a run that fails after create_account (crossbar
# not answering yet) is finished by the next run instead of leaving a master user nobody can log in as.
set -euo pipefail
# shellcheck source=lib.sh
. /opt/kazoo-bootstrap/remote/lib.sh
load_env
name=${1:?NAME} realm=${2:?REALM} user=${3:?USER} api=${4:-}
IFS= read -r password || [ -n "$password" ] || die "no password on stdin"
API=${COUCHDB_API:-http://127.0.0.1:15984}
CROSSBAR=${CROSSBAR_API:-http://127.0.0.1:8000/v2}

# The value of KEY in crossbar's JSON answer on stdin ("auth_token", "account_id", "owner_id").
field() { python3 -c 'import json, sys; d = json.load(sys.stdin); print(d.get(sys.argv[1]) or d.get("data", {}).get(sys.argv[1]) or "")' "$1"; }

# crossbar_login PASSWORD: an auth token (with account and user ids) for the master user.
crossbar_login() {
  local credentials
  # md5 of "user:password", the user name lower-cased as crossbar stores it (kazoo 4.3
  # core/kazoo_documents/src/kzd_users.erl maybe_normalize_username/3, then maybe_rehash_creds/3)
  credentials=$(printf '%s:%s' "${user,,}" "$1" | md5sum | cut -d' ' -f1)
  printf '{"data":{"credentials":"%s","account_name":"%s","method":"md5"}}' "$credentials" "$name" |
    curl -fsS -X PUT -H 'Content-Type: application/json' --data-binary @- "$CROSSBAR/user_auth"
}

# An account document's id is 32 hex digits; design documents (_design/...) are not accounts.
# A CouchDB that does not answer (or has no accounts database yet) stops here: creating the master
# account blind could make a second one.
accounts=$(couch "$API/accounts/_all_docs") || die "CouchDB did not list the accounts database"
pending="$STATE_DIR/master-account.one-off"  # the one-off password of a master user not finished yet
if grep -q '"id":"[0-9a-f]\{32\}"' <<<"$accounts" && [ ! -s "$pending" ]; then
  log "an account exists already: master account not created"
else
  if [ -s "$pending" ] && grep -q '"id":"[0-9a-f]\{32\}"' <<<"$accounts"; then
    one_off=$(cat "$pending")
    log "the master account exists; its user still has the one-off password: setting the real one"
  else
    one_off=$(head -c 24 /dev/urandom | md5sum | cut -d' ' -f1)
    (umask 077 && printf '%s\n' "$one_off" > "$pending")
    rc=0
    # the one-off is on sup's command line: no other account sees those processes meanwhile
    out=$(hidden kz_sup crossbar_maintenance create_account "$name" "$realm" "$user" "$one_off" 2>&1) || rc=$?
    # create_account returns ok or failed (sup exits 2 on failed)
    if ((rc != 0)) || [[ $out == *failed* ]]; then rm -f "$pending"; die "create_account $name: $out"; fi
  fi
  login=$(retry 12 crossbar_login "$one_off") || die "crossbar did not accept the new master user"
  token=$(field auth_token <<<"$login") account=$(field account_id <<<"$login") owner=$(field owner_id <<<"$login")
  if [ -z "$token" ] || [ -z "$account" ] || [ -z "$owner" ]; then die "crossbar's login answer lacks a token or ids"; fi
  python3 -c 'import json, sys; print(json.dumps({"data": {"password": sys.stdin.read().rstrip("\n")}}))' <<<"$password" |
    curl -fsS -X PATCH -H 'Content-Type: application/json' -K <(printf 'header = "X-Auth-Token: %s"\n' "$token") \
      --data-binary @- "$CROSSBAR/accounts/$account/users/$owner" >/dev/null ||
    die "crossbar did not take the master user's password"
  crossbar_login "$password" >/dev/null || die "the master user cannot log in with its password"
  rm -f "$pending"
  log "master account $name ($realm) created"
fi
if [ -n "$api" ] && [ -d /var/www/monster-ui/apps ]; then
  out=$(kz_sup_checked crossbar_maintenance init_apps /var/www/monster-ui/apps "$api")
  printf '%s\n' "$out"
  log "Monster UI apps registered against $api"
fi
