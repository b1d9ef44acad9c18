#!/bin/bash
# Puts the rendered configuration in place and restarts only what changed. Idempotent: the
# orchestration re-runs it after pushing a re-rendered /etc/kazoo-bootstrap/files tree.
#   configure.sh            every file
#   configure.sh firewall   only the nftables ruleset
#   configure.sh files      every file, no restart (the services stay pending for the next full run)
# A service whose files changed is marked pending until its restart succeeds, so a run that fails
# half-way leaves the next run with the same restarts to do.
set -euo pipefail
# shellcheck source=lib.sh
. /opt/kazoo-bootstrap/lib.sh
load_env
FILES="$ETC_DIR/files"
PENDING="$STATE_DIR/pending"
install -d -m 0700 "$PENDING"

# Which services read a path (several for the files both Kazoo nodes read).
services_of() {
  case $1 in
    /etc/nftables.conf) echo nftables ;;
    /etc/haproxy/*) echo haproxy ;;
    /etc/rabbitmq/* | /etc/systemd/system/rabbitmq-server.service.d/*) echo rabbitmq-server ;;
    /opt/couchdb/etc/* | /opt/couchdb/.erlang.cookie | /etc/systemd/system/couchdb.service.d/*) echo couchdb ;;
    /etc/kazoo/config.ini | /opt/kazoo/.erlang.cookie) echo kazoo-applications kazoo-ecallmgr ;;
    /etc/kazoo/kazoo_apps.* | /etc/systemd/system/kazoo-applications.service.d/*) echo kazoo-applications ;;
    /etc/kazoo/ecallmgr.* | /etc/systemd/system/kazoo-ecallmgr.service.d/*) echo kazoo-ecallmgr ;;
    /etc/kazoo/kamailio/postgresql.conf) echo postgresql kamailio ;;
    /etc/kazoo/kamailio/certs/*) echo kamailio-tls ;;
    /etc/kazoo/kamailio/* | /etc/default/kamailio | /etc/systemd/system/kamailio.service) echo kamailio ;;
    /etc/kazoo/freeswitch/* | /etc/systemd/system/freeswitch.service) echo freeswitch ;;
    /etc/nginx/*) echo nginx ;;
    *) echo "" ;;
  esac
}

# The component a service belongs to (bootstrap.skip names components).
component_of() {
  case $1 in
    rabbitmq-server) echo rabbitmq ;;
    kazoo-*) echo kazoo ;;
    postgresql | kamailio-tls) echo kamailio ;;
    *) echo "$1" ;;
  esac
}

# owner:group of a path. Files holding secrets are 0640 and readable by their service's group only;
# mod_kazoo insists on a cookie file its own user owns, 0600 (kazoo_ei_config.c cookie-file), and
# Erlang on a $HOME/.erlang.cookie only its owner may read (Kazoo's and CouchDB's).
owner_of() {
  local owner=root group
  case $1 in
    /etc/rabbitmq/*) group=rabbitmq ;;
    /opt/couchdb/etc/*) group=couchdb ;;
    /etc/kazoo/config.ini | /etc/kazoo/*.vm.args) group=kazoo ;;
    /etc/kazoo/kamailio/*) group=kamailio ;;
    /etc/kazoo/freeswitch/kazoo-cookie) owner=freeswitch group=freeswitch ;;
    /opt/kazoo/.erlang.cookie) owner=kazoo group=kazoo ;;
    /opt/couchdb/.erlang.cookie) owner=couchdb group=couchdb ;;
    /etc/kazoo/freeswitch/*) group=freeswitch ;;
    *) group=root ;;
  esac
  # The account appears with its package: until then root, and the next run hands the file over.
  getent passwd "$owner" >/dev/null || owner=root
  getent group "$group" >/dev/null || group=root
  echo "$owner:$group"
}

units_changed=0
install_file() {
  local src=$1 dest=${1#"$FILES"} mode owner service
  mode=$(stat -c %a "$src")
  owner=$(owner_of "$dest")
  if ! cmp -s "$src" "$dest" || [ "$(stat -c %U:%G "$dest")" != "$owner" ] || [ "$(stat -c %a "$dest")" != "$mode" ]; then
    install -D -m "$mode" -o "${owner%:*}" -g "${owner#*:}" "$src" "$dest"
    log "updated $dest"
    [[ $dest == /etc/systemd/system/* ]] && units_changed=1
    for service in $(services_of "$dest"); do touch "$PENDING/$service"; done
  fi
}

# A ruleset nft cannot load never reaches /etc/nftables.conf: nftables.service would load nothing at
# the next boot and leave the host open, the metadata service included. Checked before any file moves
# here (the first boot), as apply-config.sh checks a push's before it unpacks anything.
nft -c -f "$FILES/etc/nftables.conf" || die "nft rejects the new firewall ruleset: nothing installed"

if [ "${1:-}" = firewall ]; then
  install_file "$FILES/etc/nftables.conf"
  nft -f /etc/nftables.conf
  systemctl enable nftables.service >/dev/null 2>&1 || true
  rm -f "$PENDING/nftables"
  exit 0
fi

installed=()
while IFS= read -r -d '' file; do
  # host.env is apply-config.sh's to install (before any script reads it), and never removed
  [ "$file" != "$FILES$ETC_DIR/host.env" ] || continue
  install_file "$file"
  installed+=("${file#"$FILES"}")
done < <(find "$FILES" -type f -print0 | sort -z)

# A file the configuration no longer has (Monster UI removed from the stack, say) is removed from
# where this script once put it, and what read it acts on that. The manifest lists what it installed.
MANIFEST="$STATE_DIR/installed-files"
if [ -f "$MANIFEST" ]; then
  while IFS= read -r old; do
    [[ " ${installed[*]} " == *" $old "* ]] && continue
    [ "$old" != "$ETC_DIR/host.env" ] || continue  # apply-config.sh's (an earlier version listed it)
    [ -e "$old" ] || continue
    rm -f "$old"
    log "removed $old (no longer in the configuration)"
    [[ $old == /etc/systemd/system/* ]] && units_changed=1
    for service in $(services_of "$old"); do touch "$PENDING/$service"; done
  done < "$MANIFEST"
fi
printf '%s\n' "${installed[@]}" > "$MANIFEST.new" && mv "$MANIFEST.new" "$MANIFEST"

if [ "${1:-}" = files ]; then
  ((units_changed == 0)) || systemctl daemon-reload
  exit 0
fi

# A database host's volume may have grown (roles.database.volumeSize): grow its filesystem. A push
# never formats (--keep); the first boot's install-database.sh does that, once.
if [ -f /etc/kazoo/data-volume.env ] && [ -e "$STATE_DIR/done-install-database" ] && ! skipped couchdb; then
  "$BOOTSTRAP_DIR/data-volume.sh" --keep
fi

# FreeSWITCH keeps upstream's files; this host's values are applied to them (freeswitch-local.sh).
if [ -d /etc/kazoo/freeswitch ] && [ -x "$BOOTSTRAP_DIR/freeswitch-local.sh" ]; then
  if "$BOOTSTRAP_DIR/freeswitch-local.sh" /etc/kazoo/freeswitch; then :; else
    rc=$?
    ((rc == 10)) || die "freeswitch-local.sh failed ($rc)"
    touch "$PENDING/freeswitch"  # 10: it changed something
  fi
fi

nft -f /etc/nftables.conf
rm -f "$PENDING/nftables"
((units_changed == 0)) || systemctl daemon-reload

# Proxies reload gracefully (connections in flight survive); the others need a restart to read
# their files. FreeSWITCH restarts only during the first boot: later, a restart would drop every
# call on the host, so a changed configuration waits for an operator to pick a quiet moment.
# With more than one database node, Kazoo waits until the orchestration's kazoo-start step has marked
# the CouchDB cluster formed (kazoo-start.env.j2 says why); its restarts stay pending until then.
kazoo_waits() {
  grep -qx 'KAZOO_START_AFTER_CLUSTER=1' /etc/kazoo/kazoo-start.env 2>/dev/null && [ ! -e "$STATE_DIR/couchdb-cluster-ready" ]
}
action_of() {
  case $1 in
    haproxy | nginx) echo reload-or-restart ;;
    kazoo-applications | kazoo-ecallmgr) kazoo_waits && echo wait || echo restart ;;
    freeswitch) [ -n "${KAZOO_FIRST_BOOT:-}" ] && echo restart || echo defer ;;
    *) echo restart ;;
  esac
}

# The unit's own check (kamailio.service ExecStartPre: as kamailio, with /etc/default/kamailio, a
# file of this role that the files step installs), in a subshell so that the file's assignments stay
# there. Its last lines are logged when it says no.
kamailio_config_ok() {
  local out
  if out=$(
    # shellcheck source=/dev/null
    . /etc/default/kamailio
    runuser -u kamailio -- kamailio -c -f "$CFGFILE" -m "$SHM_MEMORY" -M "$PKG_MEMORY" 2>&1
  ); then
    return 0
  fi
  log "kamailio -c: $(tail -n 3 <<<"$out" | tr '\n' ' ')"
  return 1
}

# A later push goes on to the next host of the role only once this one serves again (the
# orchestration chains the pushes of a role; these units are Type=simple, "active" long before):
# CouchDB answers /_up (200 once its seeds are synced, 404 while seeding; no login with
# require_valid_user unset: apache/couchdb 3.5.2 chttpd_misc.erl handle_up_req, chttpd_auth.erl),
# crossbar (a default Kazoo app: kazoo 4.3 kazoo_apps.hrl DEFAULT_KAPPS) answers HTTP on 8000, any
# status. A first boot and kazoo-start.sh (Kazoo's first start, once the CouchDB cluster is formed)
# do not wait here: kazoo-first-start.sh waits for that, and longer.
serving() {
  case $1 in
    couchdb) curl -fsS -o /dev/null --max-time 5 http://127.0.0.1:5984/_up ;;
    kazoo-applications) curl -sS -o /dev/null --max-time 5 http://127.0.0.1:8000/v2/ ;;
    *) return 0 ;;
  esac
}
# A restart whose service did not come to serve leaves a mark (unserved-<service>): the next run,
# a retried push, waits for it again before it goes on, even with nothing left to restart.
SERVE_TRIES=${SERVE_TRIES:-150} SERVE_SECONDS=${SERVE_SECONDS:-2}
wait_serving() {
  local n mark="$STATE_DIR/unserved-$1"
  [ -z "${KAZOO_FIRST_BOOT:-}${KAZOO_FIRST_START:-}" ] || return 0
  for ((n = 1; n <= SERVE_TRIES; n++)); do
    if serving "$1" 2>/dev/null; then
      rm -f "$mark"
      return 0
    fi
    sleep "$SERVE_SECONDS"
  done
  touch "$mark"
  return 1
}

# The order services restart in: data and bus before what uses them.
ORDER="postgresql couchdb rabbitmq-server haproxy kazoo-applications kazoo-ecallmgr freeswitch kamailio kamailio-tls nginx"
failed=()
restarted=" "
# A running proxy keeps its calls when its new configuration does not pass the unit's check, which
# runs only once the old process is stopped. Asked before anything restarts: the unit Requires=
# postgresql, so restarting PostgreSQL restarts Kamailio too (systemd.unit(5)); both wait, marks kept.
held=""
invocation() { systemctl show -p InvocationID --value "$1" 2>/dev/null || true; }
kamailio_was=$(invocation kamailio)  # its run before this one's restarts ("" when it never ran)
if [ -e "$PENDING/kamailio" ] && systemctl is-active --quiet kamailio && ! kamailio_config_ok; then
  held=" postgresql kamailio "
  failed+=("kamailio (kamailio -c rejects the new configuration; the running one stays, PostgreSQL's restart waits)")
fi
for service in $ORDER; do
  [[ $held == *" $service "* ]] && continue
  if skipped "$(component_of "$service")"; then
    rm -f "$PENDING/$service" "$STATE_DIR/unserved-$service"
    continue
  fi
  if [ ! -e "$PENDING/$service" ]; then
    if [ -e "$STATE_DIR/unserved-$service" ] && ! wait_serving "$service"; then
      failed+=("$service (restarted by an earlier run, still not serving after $SERVE_TRIES tries)")
    fi
    continue
  fi
  if [ "$service" = kamailio-tls ]; then
    # A renewed certificate: Kamailio reloads it in place (tls.reload), so registrations and open
    # TCP/TLS connections stay. Not needed when Kamailio has just restarted with it.
    if [[ $restarted == *" kamailio "* ]] || ! systemctl is-active --quiet kamailio || kamailio_rpc tls.reload; then
      log "TLS certificate of kamailio in force"
      rm -f "$PENDING/$service"
    else
      failed+=("$service")
    fi
    continue
  fi
  # A unit that does not exist is an error, not a quiet skip: `systemctl list-unit-files X` exits 1
  # when there is no such unit (systemd 252), which is how a missing FreeSWITCH unit once went unseen.
  if ! systemctl list-unit-files "$service.service" >/dev/null 2>&1; then
    failed+=("$service (no such unit)")
    continue
  fi
  # Kamailio's unit Requires= PostgreSQL: restarting PostgreSQL restarted it (systemd.unit(5)), with
  # its new files. `start` waits for that job (systemctl restart returned once PostgreSQL's was done);
  # a new invocation id proves it ran. A second restart would drop SIP a second time.
  if [ "$service" = kamailio ] && [[ $restarted == *" postgresql "* ]] && [ -n "$kamailio_was" ] &&
    systemctl start kamailio && [ "$(invocation kamailio)" != "$kamailio_was" ]; then
    log "kamailio restarted with postgresql (Requires=)"
    rm -f "$PENDING/$service"
    restarted+="$service "
    continue
  fi
  action=$(action_of "$service")
  if [ "$action" = wait ]; then
    log "$service waits for the CouchDB cluster (the kazoo-start step starts it)"
    continue
  fi
  systemctl enable "$service" >/dev/null 2>&1 || true
  if [ "$action" = defer ]; then
    log "NOTICE: $service has a new configuration; restart it when it carries no calls"
    rm -f "$PENDING/$service"
  elif systemctl "$action" "$service"; then
    log "$action $service"
    rm -f "$PENDING/$service"
    restarted+="$service "
    if ! wait_serving "$service"; then
      failed+=("$service (restarted, not serving after $SERVE_TRIES tries)")
    fi
  else
    # what the unit said (an ExecStartPre's reason, say) goes where `pulumi up` shows it
    journalctl -u "$service" -n 10 --no-pager -o cat 2>/dev/null | sed "s/^/  $service: /" >&2 || true
    failed+=("$service")
  fi
done
# A service that does not start with its new configuration fails the run (and so the bootstrap);
# its pending mark stays, so the next run tries again.
((${#failed[@]} == 0)) || die "did not start with the new configuration: ${failed[*]}"
log "configuration applied"
