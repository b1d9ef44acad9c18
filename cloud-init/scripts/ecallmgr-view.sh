#!/bin/bash
# ecallmgr's view of the Kazoo release, made at install and checked again before every start of
# ecallmgr (ExecStartPre in its drop-in), so a kazoo package upgrade never leaves ecallmgr booting the
# old release's boot file. Both units boot the release's kazoo.boot, which starts kazoo_media and its
# media proxy on 24517: the second node dies with eaddrinuse. Newer builds ship
# releases/<vsn>/kazoo_ecallmgr.boot without it (openkazoo-kazoo4-builder scripts/build-kazoo.sh);
# ecallmgr then runs from a view of the release whose kazoo.boot is that file (relx boots
# $REL_DIR/$REL_NAME.boot). The view is root's, and so is what it was made from (the fingerprint in
# the bootstrap's root-only state directory): this runs as root, and must write nowhere kazoo could
# plant a symlink. ecallmgr's logs go to /var/log/kazoo (lager log_root, install-application.sh).
# Usage: ecallmgr-view.sh [--start]   (--start: before ecallmgr starts; a release without the boot
# file then fails the start)
set -euo pipefail
# shellcheck source=lib.sh
. /opt/kazoo-bootstrap/lib.sh
view=/opt/kazoo-ecallmgr env=/etc/kazoo/ecallmgr.env
# The release the start script boots: relx 4 writes it into bin/kazoo as REL_VSN="<vsn>"
# (erlware/relx priv/templates/extended_bin; 0.0.0 in the 4.4 builds), so a package that bumps it
# is followed rather than silently falling back to kazoo.boot.
vsn=$(sed -n 's/^REL_VSN="\([0-9A-Za-z.+_-]*\)"$/\1/p' /opt/kazoo/bin/kazoo 2>/dev/null | head -n 1)
vsn=${vsn:-0.0.0}
release=/opt/kazoo/releases/$vsn
if [ ! -f "$release/kazoo_ecallmgr.boot" ]; then
  rm -f "$env"
  missing="the kazoo package has no $release/kazoo_ecallmgr.boot: ecallmgr would boot kazoo.boot, whose kazoo_media binds 24517 beside kazoo_apps' and stops it (openkazoo-kazoo4-builder build-kazoo.sh); install a kazoo build that ships it"
  # Before a start (the unit's ExecStartPre, --start): ecallmgr fails here, saying why, rather than
  # dying on eaddrinuse, and so does the configuration run that starts it (the first boot included:
  # a platform without ecallmgr places no call). At install: a warning, and install goes on.
  [ "${1:-}" != --start ] || die "$missing"
  log "WARNING: $missing"
  exit 0
fi
# What the view is made of: the start script, the boot file and the release's file names.
fingerprint=$( { sha256sum /opt/kazoo/bin/kazoo "$release/kazoo_ecallmgr.boot"; ls -1 "$release" /opt/kazoo/releases; } | sha256sum | cut -d' ' -f1)
made_from="$STATE_DIR/ecallmgr-view.sha256"
install -d -m 0700 "$STATE_DIR"
if [ "$(cat "$made_from" 2>/dev/null)" != "$fingerprint" ] || [ ! -f "$env" ] || [ ! -f "$view/bin/kazoo" ]; then
  rm -rf "${view:?}"
  install -d -m 0755 "$view" "$view/bin" "$view/releases/$vsn"
  cp -p /opt/kazoo/bin/kazoo "$view/bin/kazoo"
  ln -s /opt/kazoo/lib "$view/lib"
  for file in "$release"/*; do ln -s "$file" "$view/releases/$vsn/${file##*/}"; done
  for file in /opt/kazoo/releases/*; do
    [ -f "$file" ] && ln -s "$file" "$view/releases/${file##*/}"
  done
  rm -f "$view/releases/$vsn/kazoo.boot"
  cp -p "$release/kazoo_ecallmgr.boot" "$view/releases/$vsn/kazoo.boot"
  printf '%s\n' "$fingerprint" > "$made_from"
  printf 'KAZOO_BIN=%s/bin/kazoo\n' "$view" > "$env"
  chmod 0644 "$env"
  log "ecallmgr boots $release/kazoo_ecallmgr.boot (through $view)"
fi
