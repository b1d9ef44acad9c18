#!/bin/bash
# Installs a received bundle: first the bootstrap scripts, then the rendered tree (replaced whole, so
# a file dropped from the plan is dropped here too), then configure.sh applies what changed and
# restarts only the services whose files changed. Usage: apply-config.sh STAGING_DIR
set -euo pipefail
staging=${1:?usage: apply-config.sh STAGING_DIR}
opt=/opt/kazoo-bootstrap etc=/etc/kazoo-bootstrap

# A firewall ruleset nft cannot load stops the push before anything moves: nftables.service would
# load nothing at the next boot and leave the host open, the metadata service included.
if ! nft -c -f "$staging$etc/files/etc/nftables.conf"; then
  echo "apply-config.sh: ERROR: nft rejects the new firewall ruleset: nothing installed" >&2
  exit 1
fi

install -d -m 0755 "$opt/remote"
while IFS= read -r -d '' script; do
  install -m 0755 "$script" "$opt/${script#"$staging/opt/kazoo-bootstrap/"}"
done < <(find "$staging/opt/kazoo-bootstrap" -type f -name '*.sh' -print0)

rm -rf "$etc/files.new" "$etc/files.old"
cp -R --preserve=mode "$staging/etc/kazoo-bootstrap/files" "$etc/files.new"
chown -R root:root "$etc/files.new" 2>/dev/null || true
if [ -d "$etc/files" ]; then mv "$etc/files" "$etc/files.old"; fi
mv "$etc/files.new" "$etc/files"
rm -rf "$etc/files.old"

# This host's values as today's plan has them (host.env: sources, Monster UI, the API's address),
# in place before any script reads them. Installed here only, never by configure.sh, so it is in no
# manifest of installed files: a bundle of an older program (which has none) leaves it alone.
if [ -f "$etc/files$etc/host.env" ] && ! cmp -s "$etc/files$etc/host.env" "$etc/host.env"; then
  install -m 0600 -o root -g root "$etc/files$etc/host.env" "$etc/host.env"
fi

# The bundle's own lib.sh, now in place: its paths (STATE_DIR, LOG), once, load_env.
# shellcheck source=../scripts/lib.sh
. "$opt/lib.sh"
load_env

# What changed goes to pulumi's output and to the host's bootstrap log.
"$opt/remote/upgrade-host.sh" 2>&1 | tee -a "$LOG"

# Roles the user-data had no room for (host.env KAZOO_DEFERRED; bootstrap.sh skipped them): installed
# by this push, then configured as a first boot configures (their services started with their files).
first_boot=''
for role in ${KAZOO_DEFERRED:-}; do
  [ ! -e "$STATE_DIR/done-install-$role" ] || continue
  once "install-$role" "$opt/install-$role.sh" 2>&1 | tee -a "$LOG"
  first_boot=1
done
KAZOO_FIRST_BOOT=${first_boot:-${KAZOO_FIRST_BOOT:-}} "$opt/configure.sh" 2>&1 | tee -a "$LOG"
