#!/bin/bash
# Forms, or grows, the CouchDB cluster from the first database node with _cluster_setup.
# Idempotent: nodes already in _membership are left alone, a finished cluster is not finished again.
# Usage: couchdb-cluster.sh FQDN...   (every database node; this host is the coordinator)
set -euo pipefail
# shellcheck source=../scripts/lib.sh
. /opt/kazoo-bootstrap/lib.sh
load_env
[ $# -ge 1 ] || die "usage: couchdb-cluster.sh FQDN..."
API=${COUCHDB_API:-http://127.0.0.1:5984}
admin='"username":"kazoo","password":"'"$COUCHDB_PASSWORD"'"'

couch() { curl -fsS -u "kazoo:$COUCHDB_PASSWORD" -H 'Content-Type: application/json' "$@"; }
setup() { couch -X POST "$API/_cluster_setup" -d "$1" >/dev/null; }

retry 24 couch "$API/_up" >/dev/null || die "CouchDB on $FQDN does not answer"
state=$(couch "$API/_cluster_setup")
if [[ $state == *cluster_disabled* ]]; then
  setup '{"action":"enable_cluster","bind_address":"0.0.0.0","node_count":'"$#"','"$admin"'}'
  log "cluster enabled on couchdb@$FQDN"
fi

members=$(couch "$API/_membership")
for node in "$@"; do
  [ "$node" = "$FQDN" ] && continue
  if [[ $members == *"\"couchdb@$node\""* ]]; then
    log "couchdb@$node is already a member"
    continue
  fi
  retry 24 couch "http://$node:5984/_up" >/dev/null || die "CouchDB on $node does not answer"
  setup '{"action":"enable_cluster","bind_address":"0.0.0.0","port":5984,"node_count":'"$#"','"$admin"',"remote_node":"'"$node"'","remote_current_user":"kazoo","remote_current_password":"'"$COUCHDB_PASSWORD"'"}'
  setup '{"action":"add_node","host":"'"$node"'","port":5984,'"$admin"'}'
  log "added couchdb@$node"
done

if [[ $(couch "$API/_cluster_setup") != *cluster_finished* ]]; then
  setup '{"action":"finish_cluster"}'
  log "cluster finished"
fi
couch "$API/_membership"
