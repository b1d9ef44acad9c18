#!/bin/bash
# What ecallmgr must know about the other hosts, kept in system_config (so once for every ecallmgr).
#   ecallmgr.sh add-media FQDN | remove-media FQDN      FreeSWITCH nodes ecallmgr connects to
#   ecallmgr.sh allow-sbc NAME IP | allow-carrier NAME CIDR | remove-acl NAME
# Idempotent: adding a node twice or an ACL under the same name changes nothing.
set -euo pipefail
# shellcheck source=../scripts/lib.sh
. /opt/kazoo-bootstrap/lib.sh
load_env
action=${1:-}
em() { kz_sup_checked ecallmgr_maintenance "$@"; }

case $action in
  add-media)
    # sup may exit 0 with an error term in its output: read the output, not only the status
    rc=0
    out=$(kz_sup ecallmgr_maintenance add_fs_node "freeswitch@${2:?FQDN}" 2>&1) || rc=$?
    if [[ $out == *node_exists* ]]; then
      log "freeswitch@$2 was registered already"
    elif ((rc != 0)) || [[ $out == *error* ]]; then
      die "add_fs_node freeswitch@$2: $out"
    else
      log "freeswitch@$2 registered with ecallmgr"
    fi
    ;;
  remove-media)
    em remove_fs_node "freeswitch@${2:?FQDN}"
    log "freeswitch@$2 removed from ecallmgr"
    ;;
  allow-sbc | allow-carrier)
    em "${action/-/_}" "${2:?NAME}" "${3:?ADDRESS}"
    em reload_acls
    log "$action $2 $3"
    ;;
  remove-acl)
    em remove_acl "${2:?NAME}"
    em reload_acls
    log "ACL $2 removed"
    ;;
  *) die "unknown action '$action'" ;;
esac
