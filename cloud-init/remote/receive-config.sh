#!/bin/bash
# Run by `pulumi up` as the operator user with this host's configuration bundle on stdin (a base64
# tar.gz: bootstrap scripts and rendered files). Unpacks it privately and applies it as root.
set -euo pipefail
staging=$(mktemp -d)  # 0700: the bundle holds secrets
trap 'rm -rf "$staging"' EXIT
base64 -d | tar -xzf - -C "$staging"
sudo -n bash "$staging/opt/kazoo-bootstrap/remote/apply-config.sh" "$staging"
