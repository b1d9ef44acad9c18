#!/bin/bash
# CouchDB 3.5 from Apache's repository, clustered, with its data on the host's own volume.
# Safe to re-run: every step checks before it acts and nothing CouchDB wrote is overwritten.
# Sources (apache/couchdb-pkg main: debian/couchdb.config, couchdb.postinst, couchdb.templates;
# apache/couchdb 3.5.2.post2: src/config/src/config.erl, config_app.erl).
set -euo pipefail
# shellcheck source=lib.sh
. /opt/kazoo-bootstrap/lib.sh
load_env
DATA=/srv/couchdb
# A skipped CouchDB (managed elsewhere) leaves the data volume alone too.
if skipped couchdb; then log "couchdb skipped (bootstrap.skip): volume left as is"; exit 0; fi

# Our configuration is in place before the package: its postinst starts CouchDB (debhelper), and that
# first start must already find the admin, the cookie, the bind address and the data directory.
# The account first, so the rendered files can be group couchdb (the postinst's adduser then finds
# it and leaves it alone: `if ! getent passwd couchdb`).
ensure_system_user couchdb /opt/couchdb
"$BOOTSTRAP_DIR/configure.sh" files
# The host's one epmd before CouchDB's first start: kazoo.vm.args says -start_epmd false, so CouchDB
# never runs an epmd of its own inside couchdb.service (lib.sh ensure_epmd).
ensure_epmd

# The data volume (named in /etc/kazoo/data-volume.env): by its id, waited for, formatted only when
# blank, mounted, grown.
"$BOOTSTRAP_DIR/data-volume.sh"

# CouchDB persists every runtime change (finish_cluster's admin/uuid/secret syncs, PUT
# /_node/_local/_config, a generated uuid) to the LAST file of its ini chain: default.ini,
# default.d/*.ini, local.ini, local.d/*.ini, each directory sorted (config_app.erl default/0,
# config.erl get_write_file = lists:last, expand_dirs). That file must be readable and writable by
# couchdb, or _cluster_setup's finish_cluster fails with 500 "Cluster setup unable to sync admin
# passwords" (apache/couchdb#4022). It is created once, empty, and never rewritten: what CouchDB
# wrote there stays. Its owner and mode are put right on every run (the content is not touched).
RUNTIME_INI=/opt/couchdb/etc/local.d/zz-runtime.ini
[ -d "${RUNTIME_INI%/*}" ] || install -d -m 0755 "${RUNTIME_INI%/*}"
if [ ! -e "$RUNTIME_INI" ]; then
  install -m 0640 -o couchdb -g couchdb /dev/null "$RUNTIME_INI"
  printf '; Written by CouchDB at run time (the last file of its ini chain). Not managed by the bootstrap.\n' >>"$RUNTIME_INI"
  log "created $RUNTIME_INI"
fi
chown couchdb:couchdb "$RUNTIME_INI"
chmod 0640 "$RUNTIME_INI"

# The databases (database_dir and view_index_dir in 10-kazoo.ini). A volume kept from an earlier
# server may carry another uid: hand over what couchdb does not own, and nothing else.
install -d -m 0750 -o couchdb -g couchdb "$DATA/data"
find "$DATA/data" \( ! -user couchdb -o ! -group couchdb \) -exec chown -h couchdb:couchdb {} +

# Mode "none": the package configures nothing and asks nothing (README.Debian: "suitable for
# configuration via external tools"). Never "clustered"/"standalone": they need the cookie in debconf
# (couchdb/cookie is a string, so it lands in /var/cache/debconf/config.dat, mode 0644) and, unseeded,
# the config script's promptcookie loop cannot end under the noninteractive frontend (read from the
# code of debian/couchdb.config, not seen in a run).
echo 'couchdb couchdb/mode select none' | debconf-set-selections
use_source couchdb couchdb
apt_install couchdb

# The package must not have put a file after ours in the chain (its postinst writes local.d/10-admins.ini
# in the other modes, which sorts before zz-runtime.ini all the same). Byte order, as lists:sort.
last=$(find /opt/couchdb/etc/local.d -maxdepth 1 -name '*.ini' -printf '%f\n' | LC_ALL=C sort | tail -n 1)
[ "$last" = "${RUNTIME_INI##*/}" ] || die "the last ini file of CouchDB's chain is local.d/$last, not ${RUNTIME_INI##*/}"
# The postinst hands /opt/couchdb/etc/* and local.d/* to couchdb:couchdb; the next configure.sh run
# gives the rendered files back to root:couchdb (and restarts CouchDB once). The runtime file stays couchdb's.
