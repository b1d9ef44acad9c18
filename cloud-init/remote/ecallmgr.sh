#!/bin/bash
# What ecallmgr must know about the other hosts, stored as the default for EVERY ecallmgr (the
# AsDefault argument `true`; without it allow_sbc/allow_carrier store for the answering node only:
# kazoo applications/ecallmgr/src/ecallmgr_maintenance.erl).
#   ecallmgr.sh add-media FQDN | remove-media FQDN      FreeSWITCH nodes ecallmgr connects to
#   ecallmgr.sh allow-sbc NAME IP | allow-carrier NAME CIDR | remove-acl NAME
# Idempotent: adding a node twice or an ACL under the same name changes nothing.
set -euo pipefail
# shellcheck source=lib.sh
. /opt/kazoo-bootstrap/remote/lib.sh
load_env
action=${1:-}
# ecallmgr_maintenance runs on the ecallmgr node (2600hz docs-sysadmin: `sup -n ecallmgr ...`).
em() { kz_sup -n ecallmgr ecallmgr_maintenance "$@" 2>&1; }

# allow_*, remove_acl and reload_acls always return no_return (sup exit 0): read what they print.
acl_checked() {
  local out
  out=$(em "$@") || die "sup ecallmgr_maintenance $*: $out"
  printf '%s\n' "$out"
  case $out in
    *"could not be processed"* | *"Timeout during updating ACLs"* | *"{error"*) die "ecallmgr_maintenance $1: $out" ;;
  esac
}

case $action in
  add-media)
    # add_fs_node saves the node, then connects: sup exits 2 with {error,node_exists} (already
    # known) or {error,no_connection} (saved; ecallmgr keeps trying), both fine here.
    rc=0
    out=$(em add_fs_node "freeswitch@${2:?FQDN}" true) || rc=$?
    if [[ $out == *node_exists* ]]; then
      log "freeswitch@$2 was registered already"
    elif [[ $out == *no_connection* ]]; then
      log "freeswitch@$2 registered; ecallmgr cannot reach it yet and keeps trying"
    elif ((rc != 0)) || [[ $out == *"{error"* ]]; then
      die "add_fs_node freeswitch@$2: $out"
    else
      log "freeswitch@$2 registered with ecallmgr"
    fi
    ;;
  remove-media)
    out=$(em remove_fs_node "freeswitch@${2:?FQDN}" true) || die "remove_fs_node freeswitch@$2: $out"
    log "freeswitch@$2 removed from ecallmgr"
    ;;
  allow-sbc | allow-carrier)
    acl_checked "${action/-/_}" "${2:?NAME}" "${3:?ADDRESS}" true
    acl_checked reload_acls
    log "$action $2 $3"
    ;;
  remove-acl)
    acl_checked remove_acl "${2:?NAME}" true
    acl_checked reload_acls
    log "ACL $2 removed"
    ;;
  *) die "unknown action '$action'" ;;
esac
