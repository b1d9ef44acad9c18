#!/bin/bash
# Kazoo's first start, once, on the first application host: wait until Kazoo has created its system
# databases, import the prompts, refresh the views. Every step is safe to repeat.
# Usage: kazoo-first-start.sh [PROMPTS_DIR]
set -euo pipefail
# shellcheck source=lib.sh
. /opt/kazoo-bootstrap/remote/lib.sh
load_env
prompts=${1:-/opt/kazoo/sounds/en/us}
API=${COUCHDB_API:-http://127.0.0.1:15984}  # HAProxy in front of every CouchDB node

# More than 20 databases means Kazoo has created its system databases (2600Hz's install guide).
databases() { couch "$API/_all_dbs" | tr ',' '\n' | grep -c '"' || true; }
for n in $(seq 1 "${WAIT_TRIES:-90}"); do
  count=$(databases)
  [ "${count:-0}" -gt 20 ] && break
  [ "$n" -eq "${WAIT_TRIES:-90}" ] && die "Kazoo created ${count:-0} databases, expected more than 20"
  log "waiting for Kazoo's system databases (${count:-0} so far)"; sleep "${WAIT_SECONDS:-10}"
done

# The openkazoo package ships no prompts (2600hz/kazoo-sounds is a separate tree): import them only
# when they are there. import_prompts always exits 0: read its output. It reads the directory as the
# Kazoo node's account: one it cannot list yields "failed to find media files", not an error
# (kazoo 4.3 core/kazoo_media/src/kazoo_media_maintenance.erl import_prompts/2).
if [ -d "$prompts" ]; then
  out=$(kz_sup_checked kazoo_media_maintenance import_prompts "$prompts")
  printf '%s\n' "$out"
  case $out in
    *"errors encountered"* | *"inaccessible"* | *"failed to find media files"*) die "import_prompts: $out" ;;
  esac
else
  log "no prompts at $prompts: not imported"
fi
out=$(kz_sup_checked kapps_maintenance refresh)
[[ $out == *"refresh failed"* ]] && die "kapps_maintenance refresh: $out"
log "Kazoo first start done"
