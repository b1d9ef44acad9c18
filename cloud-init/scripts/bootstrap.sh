#!/bin/bash
# Entry point, run once by cloud-init (runcmd). A failure exits non-zero, which makes
# `cloud-init status` report an error. Safe to re-run: installs are recorded, configure is idempotent.
set -euo pipefail
# shellcheck source=lib.sh
. /opt/kazoo-bootstrap/lib.sh
exec >>"$LOG" 2>&1
load_env
log "bootstrap of $FQDN ($KAZOO_ROLES) started"

wait_for_private_ip
# netbase: /etc/protocols, which nft needs to read protocol names in the ruleset
apt_install chrony nftables netbase curl ca-certificates gnupg sudo  # sudo: the orchestration runs as ops with sudo
# The host firewall first: nothing listens before the matrix is in force.
"$BOOTSTRAP_DIR/configure.sh" firewall

# Roles in dependency order: data and bus before the applications that need them.
for role in $KAZOO_ROLES; do
  # A role the user-data had no room for comes with the first config push (remote/apply-config.sh).
  if [[ " ${KAZOO_DEFERRED:-} " == *" $role "* ]]; then log "install-$role: with the first config push"; continue; fi
  once "install-$role" "$BOOTSTRAP_DIR/install-$role.sh"
done
KAZOO_FIRST_BOOT=1 "$BOOTSTRAP_DIR/configure.sh"
log "bootstrap of $FQDN finished"
