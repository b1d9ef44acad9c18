#!/bin/bash
# RabbitMQ from Debian (3.10: accepts Kazoo's non-durable queues). Brokers stay independent.
set -euo pipefail
# shellcheck source=lib.sh
. /opt/kazoo-bootstrap/lib.sh
load_env
if skipped rabbitmq; then log "rabbitmq skipped (bootstrap.skip)"; exit 0; fi
# The rendered rabbitmq.conf (default_user, never guest) must be there before the first start.
"$BOOTSTRAP_DIR/configure.sh" >/dev/null
apt_install rabbitmq-server
# default_user applies to a node's first start only: on an image where RabbitMQ already ran, make
# sure of the user all the same, and that guest is gone.
rabbitmqctl -q await_startup
rabbitmqctl -q add_user kazoo "$RABBITMQ_PASSWORD" 2>/dev/null ||
  rabbitmqctl -q change_password kazoo "$RABBITMQ_PASSWORD"
rabbitmqctl -q set_permissions -p / kazoo '.*' '.*' '.*'
rabbitmqctl -q delete_user guest 2>/dev/null || true
