#!/bin/bash
# Creates the master account once, then (when Monster UI is installed) registers its apps.
# The password arrives on stdin, never on a command line. A Kazoo that already holds an account is
# left alone: the first account is the master, and a second run must not make another.
# Usage: master-account.sh NAME REALM USER [API_URL]   (password on stdin)
set -euo pipefail
# shellcheck source=../scripts/lib.sh
. /opt/kazoo-bootstrap/lib.sh
load_env
name=${1:?NAME} realm=${2:?REALM} user=${3:?USER} api=${4:-}
IFS= read -r password || [ -n "$password" ] || die "no password on stdin"
API=${COUCHDB_API:-http://127.0.0.1:15984}

accounts=$(curl -fsS -u "kazoo:$COUCHDB_PASSWORD" "$API/accounts/_all_docs" || echo '{}')
if grep -q '"id":"[0-9a-f]\{32\}"' <<<"$accounts"; then
  log "an account exists already: master account not created"
else
  kz_sup_checked crossbar_maintenance create_account "$name" "$realm" "$user" "$password" >/dev/null
  log "master account $name ($realm) created"
fi
if [ -n "$api" ] && [ -d /var/www/monster-ui/apps ]; then
  kz_sup_checked crossbar_maintenance init_apps /var/www/monster-ui/apps "$api"
  log "Monster UI apps registered against $api"
fi
