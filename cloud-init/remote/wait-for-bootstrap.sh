#!/bin/bash
# Step 1 on every host, run by `pulumi up` as the operator user: wait until cloud-init, and with it
# the Kazoo bootstrap, has finished. `cloud-init status` exits 0 when done, 1 on an error and 2 when
# done with recoverable errors (deprecation warnings): only 1 fails the step. "done" alone is not
# enough: when a cloud-init unit fails to start (cloud-config.service, which writes runcmd's script),
# cloud-init reports done without errors and the bootstrap never ran; its last log line says it did.
set -euo pipefail
LOG=/var/log/kazoo-bootstrap.log
rc=0
cloud-init status --wait >/dev/null || rc=$?
if [ "$rc" -ne 1 ] && ! sudo -n grep -qE 'bootstrap of [^ ]+ finished$' "$LOG" 2>/dev/null; then
  echo "cloud-init finished on $(hostname -f), but the Kazoo bootstrap did not, or its log is unreadable (cloud-init status --long)" >&2
  rc=1
fi
if [ "$rc" -eq 1 ]; then
  echo "bootstrap of $(hostname -f) failed; the end of $LOG:" >&2
  sudo -n tail -n 40 "$LOG" >&2 || true
  exit 1
fi
echo "bootstrap finished on $(hostname -f) (cloud-init status $rc)"
