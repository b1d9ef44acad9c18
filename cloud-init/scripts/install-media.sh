#!/bin/bash
# FreeSWITCH 1.10.9 with mod_kazoo: the openkazoo `freeswitch` package (sources.freeswitch, the
# Kazoo 4.4 community repository, no credentials), configured from 2600hz/kazoo-configs-freeswitch
# 4.3 at its pinned commit (sources.freeswitch_configs) in /etc/kazoo/freeswitch. Safe to run again.
# Sources: notes/facts-freeswitch.md and facts-kazoo.md (cloudpbx/openkazoo-kazoo4-builder
# scripts/build-freeswitch.sh @fadb8106, docker/Dockerfile.debian-12 @44edcd2c).
set -euo pipefail
# shellcheck source=lib.sh
. /opt/kazoo-bootstrap/lib.sh
load_env
# FreeSWITCH reaches CouchDB through this host's HAProxy (haproxy.cfg.j2): the media URLs Kazoo hands
# it are http://kazoo:...@127.0.0.1:15984/... (kz_couch_attachments.erl attachment_url).
apt_install haproxy
if skipped freeswitch; then log "freeswitch skipped (bootstrap.skip)"; exit 0; fi
TREE=/etc/kazoo/freeswitch
HOME_DIR=/var/lib/kazoo-freeswitch
MOD_DIR=/usr/lib/freeswitch/mod  # the build's --prefix=/usr (verify-install.yml tests mod_kazoo.so there)

# epmd for mod_kazoo: the package ships no fs_epmd; the host's one epmd (lib.sh ensure_epmd).
ensure_epmd
# No Depends in the package: the runtime libraries of its build's -dev list (Dockerfile.debian-12;
# bookworm names, facts-kazoo.md §2). Core: ssl curl pcre sqlite speex edit uuid jpeg zlib odbc
# tiff (spandsp); modules: ldns (enum) lua opus sndfile mpg123/lame/shout (shout) pq (pgsql) png.
# Not libsofia-sip-ua0/libspandsp2 (the package bundles newer ones), not libav*/libvpx (disabled).
apt_install libssl3 libcurl4 libpcre3 libsqlite3-0 libspeex1 libspeexdsp1 libedit2 libuuid1 \
  libjpeg62-turbo zlib1g libodbc2 libtiff6 libldns3 liblua5.4-0 libopus0 libsndfile1 libmpg123-0 \
  libmp3lame0 libshout3 libpq5 libpng16-16
use_source freeswitch 'freeswitch*'
apt_install freeswitch

# The package creates no account (its postinst is only ldconfig); the unit runs FreeSWITCH as it.
ensure_system_user freeswitch "$HOME_DIR"
# The directories freeswitch.service names (-run is its RuntimeDirectory), laid out as the 4.3
# wrapper does (system/sbin/kazoo-freeswitch). The log stays private: mod_kazoo logs the cookie.
install -d -o freeswitch -g freeswitch -m 0750 "$HOME_DIR" "$HOME_DIR/db" "$HOME_DIR/cache" \
  "$HOME_DIR/storage" "$HOME_DIR/tmp" /var/log/freeswitch
# mod_kazoo's fallback when cookie-file is not understood (the openkazoo overlay's parser is not
# public; fs 1.10.9 kazoo_ei_config.c reads $HOME/.erlang.cookie next): the same file.
ln -sfn "$TREE/kazoo-cookie" "$HOME_DIR/.erlang.cookie"
# Sounds (hold music, say phrases): none ships with the package.
install -d -m 0755 /usr/share/kazoo-freeswitch /usr/share/kazoo-freeswitch/sounds

# The configuration tree, replaced when its pinned archive changes, keeping the rendered files
# configure.sh installed in it (configure.sh runs next anyway, and applies local.env).
marker="$STATE_DIR/freeswitch-configs.sha256"
if [ ! -f "$TREE/freeswitch.xml" ] || [ "$(cat "$marker" 2>/dev/null)" != "$FREESWITCH_CONFIGS_SHA256" ]; then
  staging=$TREE.new
  fetch_archive freeswitch_configs "$staging"
  [ -f "$staging/freeswitch/freeswitch.xml" ] || die "the freeswitch_configs archive has no freeswitch/freeswitch.xml"
  rendered="$ETC_DIR/files$TREE"
  if [ -d "$rendered" ] && [ -d "$TREE" ]; then
    while IFS= read -r -d '' file; do
      if [ -e "$TREE/$file" ]; then
        install -d -m 0755 "$(dirname "$staging/freeswitch/$file")"
        cp -a "$TREE/$file" "$staging/freeswitch/$file"
      fi
    done < <(find "$rendered" -type f -printf '%P\0')
  fi
  chmod -R go-w "$staging/freeswitch"
  rm -rf "$TREE.old" && { [ ! -d "$TREE" ] || mv "$TREE" "$TREE.old"; }
  mv "$staging/freeswitch" "$TREE" && rm -rf "$staging" "$TREE.old"
  printf '%s\n' "$FREESWITCH_CONFIGS_SHA256" > "$marker"
  log "kazoo-configs-freeswitch in $TREE (sha256 $FREESWITCH_CONFIGS_SHA256)"
fi

# Libraries of the binary, of every module modules.conf.xml loads (the rendered one) and of
# mod_sofia, which ecallmgr loads (ecallmgr_fs_node.erl DEFAULT_FS_COMMANDS); the builder's own
# check covers only the binary.
modules_conf="$ETC_DIR/files$TREE/autoload_configs/modules.conf.xml"
[ -f "$modules_conf" ] || modules_conf="$TREE/autoload_configs/modules.conf.xml"
modules=$(python3 -c '
import re, sys, xml.etree.ElementTree as ET
for load in ET.parse(sys.argv[1]).iter("load"):
    name = load.get("module", "")
    if not re.fullmatch(r"mod_[a-z0-9_]+", name):
        sys.exit(f"unexpected module name {name!r}")
    print(name)
' "$modules_conf") || die "cannot read the modules of $modules_conf"
[ -n "$modules" ] || die "$modules_conf loads no module"
libraries=(/usr/bin/freeswitch "$MOD_DIR/mod_sofia.so")
for module in $modules; do libraries+=("$MOD_DIR/$module.so"); done
check_linked "${libraries[@]}"
log "freeswitch $(dpkg-query -W -f='${Version}' freeswitch 2>/dev/null || echo '?') installed, ${#libraries[@]} files link"
