#!/bin/bash
# ecallmgr's view of the Kazoo release, made at install and checked again before every start of
# ecallmgr (ExecStartPre in its drop-in), so a kazoo package upgrade never leaves ecallmgr booting the
# old release's boot file. Both units boot the release's kazoo.boot, which starts kazoo_media and its
# media proxy on 24517: the second node dies with eaddrinuse. Newer builds ship
# releases/0.0.0/kazoo_ecallmgr.boot without it (openkazoo-kazoo4-builder scripts/build-kazoo.sh);
# ecallmgr then runs from a view of the release whose kazoo.boot is that file (relx boots
# $REL_DIR/$REL_NAME.boot). relx runs the node in the view's root (cd "$ROOTDIR"), where
# kazoo-configs' ecallmgr.config writes its logs (ecallmgr-error.log, ...): that directory is kazoo's.
set -euo pipefail
# shellcheck source=lib.sh
. /opt/kazoo-bootstrap/lib.sh
release=/opt/kazoo/releases/0.0.0 view=/opt/kazoo-ecallmgr env=/etc/kazoo/ecallmgr.env
if [ ! -f "$release/kazoo_ecallmgr.boot" ]; then
  rm -f "$env"
  log "WARNING: the kazoo package has no kazoo_ecallmgr.boot: ecallmgr boots kazoo.boot and its media proxy may collide with kazoo_apps' on 24517"
  exit 0
fi
# What the view is made of: the start script, the boot file and the release's file names.
fingerprint=$( { sha256sum /opt/kazoo/bin/kazoo "$release/kazoo_ecallmgr.boot"; ls -1 "$release" /opt/kazoo/releases; } | sha256sum | cut -d' ' -f1)
if [ "$(cat "$view/.made-from" 2>/dev/null)" != "$fingerprint" ] || [ ! -f "$env" ]; then
  rm -rf "${view:?}/bin" "${view:?}/lib" "${view:?}/releases"
  install -d -m 0755 -o kazoo -g kazoo "$view"
  install -d -m 0755 "$view/bin" "$view/releases/0.0.0"
  cp -p /opt/kazoo/bin/kazoo "$view/bin/kazoo"
  ln -s /opt/kazoo/lib "$view/lib"
  for file in "$release"/*; do ln -s "$file" "$view/releases/0.0.0/${file##*/}"; done
  for file in /opt/kazoo/releases/*; do
    [ -f "$file" ] && ln -s "$file" "$view/releases/${file##*/}"
  done
  rm -f "$view/releases/0.0.0/kazoo.boot"
  cp -p "$release/kazoo_ecallmgr.boot" "$view/releases/0.0.0/kazoo.boot"
  printf '%s\n' "$fingerprint" > "$view/.made-from"
  printf 'KAZOO_BIN=%s/bin/kazoo\n' "$view" > "$env"
  chmod 0644 "$env"
  log "ecallmgr boots $release/kazoo_ecallmgr.boot (through $view)"
fi
# Its logs: the view's root is kazoo's (the rest of the view stays root's)
chown kazoo:kazoo "$view"
