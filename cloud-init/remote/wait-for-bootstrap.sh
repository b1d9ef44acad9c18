#!/bin/bash
# Step 1 on every host, run by `pulumi up` as the operator user: wait until cloud-init, and with it
# the Kazoo bootstrap, has finished. `cloud-init status` exits 0 when done, 1 on an error and 2 when
# done with recoverable errors (deprecation warnings): only 1 fails the step.
set -euo pipefail
rc=0
cloud-init status --wait >/dev/null || rc=$?
if [ "$rc" -eq 1 ]; then
  echo "bootstrap of $(hostname -f) failed; the end of /var/log/kazoo-bootstrap.log:" >&2
  sudo -n tail -n 40 /var/log/kazoo-bootstrap.log >&2 || true
  exit 1
fi
echo "bootstrap finished on $(hostname -f) (cloud-init status $rc)"
