#!/bin/bash
# Starts Kazoo on this application host once the CouchDB cluster is formed: the orchestration runs it
# after couchdb-cluster (kazoo-start.env.j2 says why Kazoo waits). Marks the cluster ready, so
# configure.sh starts the Kazoo units it held back, now and on every later run. Safe to repeat.
set -euo pipefail
# shellcheck source=../scripts/lib.sh
. /opt/kazoo-bootstrap/lib.sh
load_env
install -d -m 0700 "$STATE_DIR/pending"
touch "$STATE_DIR/couchdb-cluster-ready"
for unit in kazoo-applications kazoo-ecallmgr; do
  systemctl is-active --quiet "$unit" || touch "$STATE_DIR/pending/$unit"
done
KAZOO_FIRST_START=1 "$BOOTSTRAP_DIR/configure.sh"
