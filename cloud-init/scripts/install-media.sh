#!/bin/bash
# FreeSWITCH 1.10 with mod_kazoo from SignalWire's repository (token required), configured from
# 2600Hz's kazoo-configs-freeswitch at a pinned commit.
set -euo pipefail
# shellcheck source=lib.sh
. /opt/kazoo-bootstrap/lib.sh
load_env
# Every CouchDB node behind 127.0.0.1:15984/15986.
apt_install haproxy
if skipped freeswitch; then log "freeswitch skipped (bootstrap.skip)"; exit 0; fi
add_apt_source freeswitch "$FREESWITCH_KEY" "$FREESWITCH_REPO" "$FREESWITCH_SUITE" \
  freeswitch.signalwire.com "$SIGNALWIRE_TOKEN"
pin_version 'freeswitch*' "$FREESWITCH_VERSION" freeswitch
apt_update
apt_install freeswitch freeswitch-mod-kazoo freeswitch-mod-sofia freeswitch-mod-commands \
  freeswitch-mod-dptools freeswitch-mod-http-cache freeswitch-mod-sndfile freeswitch-mod-native-file \
  freeswitch-mod-tone-stream freeswitch-mod-event-socket freeswitch-mod-opus freeswitch-mod-g729 \
  freeswitch-mod-spandsp freeswitch-mod-say-en freeswitch-mod-dialplan-xml freeswitch-mod-loopback
fetch_archive "$FREESWITCH_CONFIGS_URL" "$FREESWITCH_CONFIGS_SHA256" /tmp/kazoo-configs-freeswitch
mkdir -p /etc/kazoo
rm -rf /etc/kazoo/freeswitch && mv /tmp/kazoo-configs-freeswitch/freeswitch /etc/kazoo/freeswitch
# Run FreeSWITCH from the Kazoo configuration tree.
mkdir -p /etc/systemd/system/freeswitch.service.d
cat > /etc/systemd/system/freeswitch.service.d/kazoo.conf <<'UNIT'
[Service]
Environment="DAEMON_OPTS=-nonat -conf /etc/kazoo/freeswitch"
UNIT
systemctl daemon-reload
