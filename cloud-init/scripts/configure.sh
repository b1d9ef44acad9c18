#!/bin/bash
# Puts the rendered configuration in place and restarts only what changed. Idempotent: the
# orchestration re-runs it after pushing a re-rendered /etc/kazoo-bootstrap/files tree.
#   configure.sh            every file
#   configure.sh firewall   only the nftables ruleset
set -euo pipefail
# shellcheck source=lib.sh
. /opt/kazoo-bootstrap/lib.sh
load_env
FILES="$ETC_DIR/files"

# Which service reads which path.
service_of() {
  case $1 in
    /etc/nftables.conf) echo nftables ;;
    /etc/haproxy/*) echo haproxy ;;
    /etc/rabbitmq/*) echo rabbitmq-server ;;
    /opt/couchdb/etc/*) echo couchdb ;;
    /etc/kazoo/core/* | /etc/default/kazoo) echo kazoo ;;
    /etc/kazoo/kamailio/* | /etc/default/kamailio) echo kamailio ;;
    /etc/kazoo/freeswitch/*) echo freeswitch ;;
    /etc/nginx/* | /var/www/*) echo nginx ;;
    *) echo "" ;;
  esac
}

# Which group may read a path: files holding secrets are 0640, readable by their service's account.
group_of() {
  local group
  case $1 in
    /etc/rabbitmq/*) group=rabbitmq ;;
    /opt/couchdb/etc/*) group=couchdb ;;
    /etc/kazoo/core/*) group=kazoo ;;
    /etc/kazoo/kamailio/*) group=kamailio ;;
    /etc/kazoo/freeswitch/*) group=freeswitch ;;
    *) group=root ;;
  esac
  # The account appears with its package: until then root, and the next run hands the file over.
  getent group "$group" >/dev/null && echo "$group" || echo root
}

changed=()
install_file() {
  local src=$1 dest=${1#"$FILES"} mode group
  mode=$(stat -c %a "$src")
  group=$(group_of "$dest")
  if ! cmp -s "$src" "$dest" || [ "$(stat -c %G "$dest")" != "$group" ]; then
    install -D -m "$mode" -g "$group" "$src" "$dest"
    log "updated $dest"
    changed+=("$(service_of "$dest")")
  fi
}

if [ "${1:-}" = firewall ]; then
  install_file "$FILES/etc/nftables.conf"
  nft -f /etc/nftables.conf
  systemctl enable nftables.service >/dev/null 2>&1 || true
  exit 0
fi

while IFS= read -r -d '' file; do
  dest=${file#"$FILES"}
  # A file for a component this host does not run (or skipped) waits until its directory exists.
  case $(service_of "$dest") in
    couchdb) [ -d /opt/couchdb/etc ] || continue ;;
    kamailio) [ -d /etc/kazoo/kamailio ] || continue ;;
    freeswitch) [ -d /etc/kazoo/freeswitch ] || continue ;;
  esac
  install_file "$file"
done < <(find "$FILES" -type f -print0 | sort -z)

# FreeSWITCH keeps upstream's files; local values are applied to them, as 2600Hz's guides do.
if [ -d /etc/kazoo/freeswitch ]; then
  "$BOOTSTRAP_DIR/freeswitch-local.sh" /etc/kazoo/freeswitch && changed+=(freeswitch-maybe)
fi

nft -f /etc/nftables.conf
# Proxies reload gracefully (connections in flight survive); the others need a restart to read
# their files. FreeSWITCH restarts only during the first boot: later, a restart would drop every
# call on the host, so a changed configuration waits for an operator to pick a quiet moment.
action_of() {
  case $1 in
    haproxy | nginx) echo reload-or-restart ;;
    freeswitch) [ -n "${KAZOO_FIRST_BOOT:-}" ] && echo restart || echo defer ;;
    *) echo restart ;;
  esac
}

failed=()
for service in $(printf '%s\n' "${changed[@]}" | sort -u); do
  case $service in
    "" | nftables | freeswitch-maybe) ;;
    *)
      if systemctl list-unit-files "$service.service" >/dev/null 2>&1; then
        systemctl enable "$service" >/dev/null 2>&1 || true
        action=$(action_of "$service")
        if [ "$action" = defer ]; then
          log "NOTICE: $service has a new configuration; restart it when it carries no calls"
        elif systemctl "$action" "$service"; then
          log "$action $service"
        else
          failed+=("$service")
        fi
      fi
      ;;
  esac
done
# A service that does not start with its new configuration fails the run (and so the bootstrap).
((${#failed[@]} == 0)) || die "did not start with the new configuration: ${failed[*]}"
log "configuration applied"
