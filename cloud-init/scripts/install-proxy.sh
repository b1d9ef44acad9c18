#!/bin/bash
# Kamailio from Debian with the kazoo module, configured from 2600Hz's kazoo-configs-kamailio.
set -euo pipefail
# shellcheck source=lib.sh
. /opt/kazoo-bootstrap/lib.sh
load_env
if skipped kamailio; then log "kamailio skipped (bootstrap.skip)"; exit 0; fi
apt_install kamailio kamailio-kazoo-modules kamailio-extra-modules kamailio-tls-modules \
  kamailio-websocket-modules kamailio-json-modules kamailio-utils-modules
if [ -n "${KAMAILIO_CONFIGS_URL:-}" ]; then
  fetch_archive "$KAMAILIO_CONFIGS_URL" "$KAMAILIO_CONFIGS_SHA256" /tmp/kazoo-configs-kamailio
  mkdir -p /etc/kazoo
  rm -rf /etc/kazoo/kamailio && mv /tmp/kazoo-configs-kamailio/kamailio /etc/kazoo/kamailio
fi
mkdir -p /etc/kazoo/kamailio/db
