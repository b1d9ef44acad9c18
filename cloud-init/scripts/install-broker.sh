#!/bin/bash
# RabbitMQ from Debian (3.10: accepts Kazoo's non-durable queues). Brokers stay independent.
set -euo pipefail
# shellcheck source=lib.sh
. /opt/kazoo-bootstrap/lib.sh
load_env
if skipped rabbitmq; then log "rabbitmq skipped (bootstrap.skip)"; exit 0; fi
# Debian's Erlang for RabbitMQ and its tools, whatever else the host has on PATH (see the unit's drop-in).
export PATH=/usr/lib/erlang/bin:$PATH
# The rendered rabbitmq.conf (default_user, never guest) and the unit's drop-in must be there before
# the first start, which the package's postinst makes (invoke-rc.d ... || exit 1). The account and
# group first: the files are root:rabbitmq 0640, and Debian 12's postinst chowns only /etc/rabbitmq
# and enabled_plugins, never rabbitmq.conf (unreadable: eacces, failed_to_parse_configuration_file,
# and the install fails). The package's adduser then finds the account and moves on.
ensure_system_user rabbitmq /var/lib/rabbitmq
"$BOOTSTRAP_DIR/configure.sh" files
# The host's one epmd before RabbitMQ (its unit Wants epmd.socket too).
ensure_epmd
apt_install rabbitmq-server
# A pre-baked image (or an earlier boot) started it before its files and drop-in were there.
restart_if_pending rabbitmq-server
# default_user applies to a node's first start only: on an image where RabbitMQ already ran, make
# sure of the user all the same, and that guest is gone. The password goes on stdin, never on a
# command line (visible in the process list).
rabbitmqctl -q await_startup
users=$(rabbitmqctl -q list_users --formatter json)
if grep -q '"user":"kazoo"' <<<"$users"; then
  printf '%s' "$RABBITMQ_PASSWORD" | rabbitmqctl -q change_password kazoo
else
  printf '%s' "$RABBITMQ_PASSWORD" | rabbitmqctl -q add_user kazoo
fi
rabbitmqctl -q set_permissions -p / kazoo '.*' '.*' '.*'
rabbitmqctl -q delete_user guest 2>/dev/null || true
