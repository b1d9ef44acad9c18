#!/bin/bash
# Run by apply-config.sh on every push, before configure.sh. Monster UI as the stack has it today
# (lib.sh install_monster_ui). A host made by an earlier bootstrap may lack what today's files rely
# on: HAProxy on media hosts (FreeSWITCH's way to CouchDB-held media)
# and the host's one epmd, epmd.socket, where an Erlang VM (CouchDB's) ran its own. Both are put in
# before the files that need them. The VM that held 4369 is stopped first, and every Erlang service
# is marked to restart and register again (FreeSWITCH waits for an operator, as for any change of
# its files). Nothing to do on a host today's bootstrap made.
set -euo pipefail
# shellcheck source=../scripts/lib.sh
. /opt/kazoo-bootstrap/lib.sh
load_env
PENDING="$STATE_DIR/pending"
install -d -m 0700 "$PENDING"
roles=" $KAZOO_ROLES "
[[ $roles != *" media "* ]] || apt_install haproxy
# Monster UI added to a running stack, a new build, or the API's address moved (dns.zone): before
# configure.sh, whose nginx site needs nginx installed.
if [[ $roles == *" application "* ]] && [ -n "${MONSTER_UI_URL:-}" ]; then
  install_monster_ui
fi
[[ $roles =~ \ (database|broker|application|media)\  ]] || exit 0
systemctl is-active --quiet epmd.socket && exit 0
log "moving this host's epmd to epmd.socket (an Erlang service ran its own)"
systemctl stop couchdb >/dev/null 2>&1 || true
ensure_epmd
for service in couchdb rabbitmq-server kazoo-applications kazoo-ecallmgr freeswitch; do
  if systemctl is-enabled --quiet "$service" 2>/dev/null; then touch "$PENDING/$service"; fi
done
