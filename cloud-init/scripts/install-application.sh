#!/bin/bash
# Kazoo 5 (apps, crossbar, ecallmgr) from the community Debian 12 repository; optional Monster UI.
set -euo pipefail
# shellcheck source=lib.sh
. /opt/kazoo-bootstrap/lib.sh
load_env
# Every CouchDB node behind 127.0.0.1:15984/15986.
apt_install haproxy
if ! skipped kazoo; then
  add_apt_source openkazoo "$KAZOO_KEY" "$KAZOO_REPO" "$KAZOO_SUITE"
  pin_version 'kazoo' "$KAZOO_VERSION" kazoo
  apt_update
  apt_install kazoo
  ln -sf /opt/kazoo/bin/sup /usr/local/bin/sup 2>/dev/null || true
else
  log "kazoo skipped (bootstrap.skip)"
fi
if [ -n "${MONSTER_UI_URL:-}" ]; then
  apt_install nginx
  fetch_archive "$MONSTER_UI_URL" "$MONSTER_UI_SHA256" /var/www/monster-ui
  # The browser calls crossbar directly: point api.default at this host's public address.
  sed -i -E "s#(default: )'[^']*'#\1'http://${PUBLIC_IP}:8000/v2/'#" /var/www/monster-ui/js/config.js
  rm -f /etc/nginx/sites-enabled/default
fi
