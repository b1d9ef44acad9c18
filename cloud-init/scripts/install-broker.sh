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
