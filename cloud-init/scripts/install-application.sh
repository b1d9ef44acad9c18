#!/bin/bash
# Kazoo 4.4 (the openkazoo community package: the release in /opt/kazoo on OTP 26 in
# /usr/local/lib/erlang) run as two nodes, kazoo_apps and ecallmgr, by openkazoo/kazoo-configs 4.4's
# units and wrappers; HAProxy in front of CouchDB; Monster UI when the stack names a build of it.
set -euo pipefail
# shellcheck source=lib.sh
. /opt/kazoo-bootstrap/lib.sh
load_env
# Every CouchDB node behind 127.0.0.1:15984/15986; the host's one epmd (lib.sh ensure_epmd), which
# the Kazoo nodes register with.
apt_install haproxy
ensure_epmd

if skipped kazoo; then
  log "kazoo skipped (bootstrap.skip)"
else
  # The service account before the files: config.ini and vm.args are root:kazoo 0640
  # (kazoo-configs README: useradd -r -g daemon -d /opt/kazoo kazoo; here with a group of its own).
  ensure_system_user kazoo /opt/kazoo
  use_source erlang erlang
  use_source kazoo kazoo
  apt_install erlang kazoo
  [ -x /opt/kazoo/bin/kazoo ] || die "the kazoo package has no /opt/kazoo/bin/kazoo"

  # openkazoo/kazoo-configs 4.4: units, their wrappers (they call /usr/sbin/sup) and the relx
  # configs; config.ini and the vm.args are this host's rendered files.
  staging=$(mktemp -d)
  fetch_archive kazoo_configs "$staging"
  install -d -m 0755 /etc/kazoo
  for config in kazoo_apps.config ecallmgr.config; do
    install -m 0644 "$staging/etc/kazoo/$config" "/etc/kazoo/$config"
    lager_log_root "/etc/kazoo/$config" /var/log/kazoo
  done
  install -m 0644 "$staging"/etc/systemd/system/kazoo-*.service /etc/systemd/system/
  install -m 0755 "$staging"/sbin/kazoo-* /usr/sbin/
  [ -d /etc/logrotate.d ] && install -m 0644 "$staging/etc/logrotate.d/kazoo-core.conf" /etc/logrotate.d/
  [ -d /etc/rsyslog.d ] && install -m 0644 "$staging/etc/rsyslog.d/90-kazoo-core.conf" /etc/rsyslog.d/
  rm -rf "$staging"

  # sup ships inside the release (lib/sup-<vsn>/priv/sup); the wrappers and our scripts call it by
  # name. It reads the cookie from /etc/kazoo/config.ini.
  sup=$(find /opt/kazoo/lib -path '*/sup-*/priv/sup' -type f | head -n1)
  [ -n "$sup" ] || die "no sup in /opt/kazoo/lib"
  ln -sf "$sup" /usr/sbin/sup

  # ecallmgr's view of the release (ecallmgr-view.sh, again before every start of ecallmgr)
  "$BOOTSTRAP_DIR/ecallmgr-view.sh"
  # configure.sh enables and starts the units (and holds them back until the CouchDB cluster is
  # formed when there are several database nodes: kazoo-start.env)
  systemctl daemon-reload
fi

[ -z "${MONSTER_UI_URL:-}" ] || install_monster_ui
