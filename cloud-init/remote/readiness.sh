#!/bin/bash
# What answers on this host, one line per check ("<check>: ok" or "<check>: DOWN"), for the stack's
# readiness output. Always exits 0: it reports, the steps before it fail.
# Usage: readiness.sh ROLE...
set -euo pipefail
# shellcheck source=lib.sh
. /opt/kazoo-bootstrap/remote/lib.sh
load_env

check() {
  local name=$1; shift
  if "$@" >/dev/null 2>&1; then echo "$name: ok"; else echo "$name: DOWN"; fi
}
active() { systemctl is-active --quiet "$1"; }

check nftables nft list table inet kazoo
for role in "$@"; do
  case $role in
    database) check couchdb couch http://127.0.0.1:5984/_up ;;
    broker) check rabbitmq active rabbitmq-server ;;
    application)
      check haproxy active haproxy
      check kazoo_apps active kazoo-applications
      check ecallmgr active kazoo-ecallmgr
      check crossbar curl -sS -o /dev/null http://127.0.0.1:8000/v2/ ;;  # any HTTP answer
    media) check freeswitch active freeswitch ;;
    proxy)
      check postgresql active postgresql
      check kamailio active kamailio ;;
    *) echo "$role: unknown role" ;;
  esac
done
