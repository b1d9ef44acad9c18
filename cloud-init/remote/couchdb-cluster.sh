#!/bin/bash
# Forms, or grows, the CouchDB cluster with _cluster_setup, from the first database node.
# Usage: couchdb-cluster.sh FQDN...   (every database node, this host first)
# COUCHDB_API overrides this node's API (default http://127.0.0.1:5984).
#
# Idempotent: a node already in /_membership is not added again, and a finished cluster is not
# finished again unless this run added a node (finish_cluster then copies the admin, uuid and
# cookie-auth secret to it). The admin password never reaches a command line: `couch` hands it to
# curl on a pipe (-K), and the one body that holds it (add_node) goes on stdin.
#
# What CouchDB does, from apache/couchdb 3.5.2.post2 src/setup/src/setup_httpd.erl and setup.erl:
# - every node is "cluster enabled" from its first boot: 10-kazoo.ini sets a non-loopback
#   bind_address and an admin (setup.erl is_cluster_enabled/0), so enable_cluster is a fallback;
# - add_node answers 201 also when the other node refused it (a 401 from that node falls into
#   setup_httpd's `_ -> ok`), and 409 for a node already in _nodes: /_membership decides;
# - finish_cluster syncs admins, uuid and secret to the other nodes, each of which persists them to
#   the last file of its ini chain: a node that cannot write that file makes it fail with 500
#   "Cluster setup unable to sync admin passwords" (apache/couchdb#4022). Once the system databases
#   exist it still syncs, then answers 400 "Cluster is already finished".
set -euo pipefail
shopt -s inherit_errexit  # a failure inside $(...) ends the run there, not one step later
# shellcheck source=lib.sh
. /opt/kazoo-bootstrap/remote/lib.sh
load_env
[ $# -ge 1 ] || die "usage: couchdb-cluster.sh FQDN...   (every database node, this host first)"
[ "$1" = "$FQDN" ] || die "run this on the first node given ($1), not on $FQDN"
API=${COUCHDB_API:-http://127.0.0.1:5984}
PORT=5984  # every node's [chttpd] port (10-kazoo.ini)

# ask URL [CURL_ARGS...]: CouchDB's answer as its body, then a last line with the HTTP status. Fails
# only when nothing answered: HTTP errors are the caller's to read (--no-fail undoes couch's -f).
ask() {
  local url=$1; shift
  couch "$url" --no-fail -w '\n%{http_code}' "$@"
}
status_of() { printf '%s' "${1##*$'\n'}"; }
body_of() { printf '%s' "${1%$'\n'*}"; }

# A refused login ends the run at once: CouchDB locks a client out after 5 failures
# (default.ini [chttpd_auth_lockout] threshold = 5; couch_auth_lockout.erl), so never retry one.
authorized() {
  local reply=$1
  case $(status_of "$reply") in
    401) die "CouchDB on $FQDN refused the admin credentials (401 $(body_of "$reply")):" \
      "COUCHDB_PASSWORD in $ETC_DIR/host.env is not the password of its admin kazoo (10-kazoo.ini). Not retried."  ;;
    403) die "CouchDB on $FQDN refused the admin (403 $(body_of "$reply")): locked out after repeated" \
      "failed logins? The lockout lifts after 5 minutes ([chttpd_auth_lockout] max_lifetime)." ;;
  esac
}

# get PATH: the body of a 200 answer from this node's API, or the end of the run.
get() {
  local reply
  reply=$(ask "$API$1") || die "CouchDB on $FQDN did not answer GET $1"
  authorized "$reply"
  [ "$(status_of "$reply")" = 200 ] || die "GET $1 on $FQDN: $(status_of "$reply") $(body_of "$reply")"
  body_of "$reply"
}

# setup JSON: POST an action to this node's _cluster_setup, the body on stdin. Prints the answer.
setup() {
  local reply
  reply=$(printf '%s' "$1" | ask "$API/_cluster_setup" -X POST --data-binary @-) ||
    die "CouchDB on $FQDN did not answer POST /_cluster_setup"
  authorized "$reply"
  printf '%s' "$reply"
}

state() {
  local body
  body=$(get /_cluster_setup)
  [[ $body =~ \"state\"[[:space:]]*:[[:space:]]*\"([a-z_]+)\" ]] || die "unexpected /_cluster_setup answer: $body"
  printf '%s\n' "${BASH_REMATCH[1]}"
}

# members KEY: the node names of /_membership's KEY (cluster_nodes: in _nodes; all_nodes: connected),
# one a line.
members() {
  local body re
  body=$(get /_membership)
  re='"'"$1"'"[[:space:]]*:[[:space:]]*\[([^]]*)\]'
  [[ $body =~ $re ]] || die "unexpected /_membership answer: $body"
  grep -o '"[^"]*"' <<<"${BASH_REMATCH[1]}" | tr -d '"' || true
}
is_member() {  # FQDN KEY
  local list
  list=$(members "$2")
  grep -qxF "couchdb@$1" <<<"$list"
}

json_string() {
  local s=${1//\\/\\\\}
  s=${s//\"/\\\"}
  printf '"%s"' "$s"
}

# /_up needs no credentials (chttpd_auth_request.erl server_authorization_check): waiting for a node
# to start never counts as a failed login.
retry 24 curl -fsS -o /dev/null "$API/_up" || die "CouchDB on $FQDN does not answer at $API"
current=$(state)
log "couchdb@$FQDN: $current"

if [ "$current" = cluster_disabled ]; then
  # Only when bind_address or the admin of 10-kazoo.ini is not in effect. No credentials in the
  # body: the node has an admin already (CouchDB 3 does not start without one: couch_sup.erl
  # assert_admins). node_count keeps the node's own [cluster] n (setup_node sets n = min(count, 3)).
  n=$(get /_node/_local/_config/cluster/n | tr -dc '0-9')
  reply=$(setup '{"action":"enable_cluster","bind_address":"0.0.0.0","node_count":'"${n:-3}"'}')
  case $(status_of "$reply") in
    201) log "cluster enabled on couchdb@$FQDN" ;;
    400) [[ $(body_of "$reply") == *"Cluster is already enabled"* ]] ||
      die "enable_cluster on $FQDN: 400 $(body_of "$reply")" ;;
    *) die "enable_cluster on $FQDN: $(status_of "$reply") $(body_of "$reply")" ;;
  esac
  current=$(state)
  [ "$current" != cluster_disabled ] || die "couchdb@$FQDN is still cluster_disabled after enable_cluster"
fi

cluster=$(members cluster_nodes)
added=()
for node in "${@:2}"; do
  if grep -qxF "couchdb@$node" <<<"$cluster"; then
    log "couchdb@$node is a member already"
    continue
  fi
  # "Setup will not work with unavailable nodes" (src/docs/src/setup/cluster.rst).
  retry 24 curl -fsS -o /dev/null "http://$node:$PORT/_up" || die "CouchDB on $node does not answer on port $PORT"
  # host: exactly the host part of the node's -name (kazoo.vm.args); the node doc is couchdb@<host>.
  # username/password: the other node's admin, which this cluster shares.
  body='{"action":"add_node","host":'$(json_string "$node")',"port":'$PORT',"username":"kazoo","password":'$(json_string "$COUCHDB_PASSWORD")'}'
  reply=$(setup "$body")
  case $(status_of "$reply") in
    201) ;;
    409) log "couchdb@$node is in _nodes already (409)" ;;
    *) die "add_node $node: $(status_of "$reply") $(body_of "$reply")" ;;
  esac
  retry 5 is_member "$node" cluster_nodes ||
    die "couchdb@$node did not join: add_node answered $(status_of "$reply"), yet it is not in /_membership" \
      "cluster_nodes. It must have this cluster's admin password, be named couchdb@$node (-name in" \
      "kazoo.vm.args) and answer on $node:$PORT from $FQDN."
  log "added couchdb@$node"
  added+=("$node")
done

finished() { [ "$current" = cluster_finished ] || [ "$current" = single_node_enabled ]; }
if finished && ((${#added[@]} == 0)); then
  log "cluster already finished"
else
  # wait_connected gives the nodes 5 s to connect (setup.erl): a node just added may need longer.
  tries=0
  while :; do
    tries=$((tries + 1))
    reply=$(setup '{"action":"finish_cluster"}')
    status=$(status_of "$reply") body=$(body_of "$reply")
    if [ "$status" = 201 ]; then
      log "cluster finished"
      break
    elif [ "$status" = 400 ] && [[ $body == *"Cluster is already finished"* ]]; then
      log "cluster was finished already; admin, uuid and secret synced to ${added[*]}"
      break
    elif [[ $status == 500 && $body == *"waiting for nodes to connect"* ]] && ((tries < 5)); then
      log "finish_cluster: not every node is connected yet ($tries/5)"
      sleep $((tries * ${RETRY_SECONDS:-5}))
    elif [[ $status == 500 && $body == *"unable to sync admin passwords"* ]]; then
      die "finish_cluster: 500 $body. A node could not store the settings the coordinator synced: the" \
        "last ini file of its chain (/opt/couchdb/etc/local.d/zz-runtime.ini, made by install-database.sh)" \
        "must be writable by couchdb (apache/couchdb#4022); its log says which node."
    elif [[ $status == 500 && $body == *"waiting for nodes to connect"* ]]; then
      die "finish_cluster: 500 $body. Every node needs this cluster's cookie (/opt/couchdb/.erlang.cookie) and epmd" \
        "(4369) and the Erlang distribution ports open between the database hosts."
    else
      die "finish_cluster: $status $body"
    fi
  done
  current=$(state)
  finished || die "couchdb@$FQDN reports $current after finish_cluster"
fi

# Done when every node is in cluster_nodes and connected (all_nodes): cluster.rst's own check.
for node in "$@"; do
  is_member "$node" cluster_nodes || die "couchdb@$node is not in /_membership cluster_nodes"
  retry 5 is_member "$node" all_nodes ||
    die "couchdb@$node is a member but not connected: its cookie (/opt/couchdb/.erlang.cookie) differs, or epmd (4369)" \
      "and the Erlang distribution ports are closed between it and $FQDN"
done
get /_membership
