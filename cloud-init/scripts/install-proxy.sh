#!/bin/bash
# Kamailio with openkazoo/kamailio-configs 6.0 (its PostgreSQL flavour: POSTGRES.md), and the
# PostgreSQL it keeps registrations, presence and dispatcher state in, on this host.
# Kamailio comes from sources.kamailio: the openkazoo 4.4 repository's 5.8 build on Debian 12, or
# Debian's own packages (6.0 on Debian 13: `repo: debian`).
set -euo pipefail
# shellcheck source=lib.sh
. /opt/kazoo-bootstrap/lib.sh
load_env
if skipped kamailio; then log "kamailio skipped (bootstrap.skip)"; exit 0; fi
TREE=/etc/kazoo/kamailio

apt_install postgresql
if [ "$KAMAILIO_REPO" = debian ]; then
  # The tree loads kazoo, db_postgres, presence*, outbound, uuid, websocket, tls and the core set.
  use_source kamailio 'kamailio*'
  apt_install kamailio kamailio-kazoo-modules kamailio-postgres-modules kamailio-presence-modules \
    kamailio-outbound-modules kamailio-extra-modules kamailio-tls-modules kamailio-websocket-modules
else
  # The openkazoo package declares no Depends: the libraries it links come from Debian
  # (openkazoo-kazoo4-builder docker/Dockerfile.debian-12 -dev list, runtime names on bookworm).
  use_source kamailio kamailio
  apt_install kamailio libpq5 libmariadb3 librabbitmq4 libjson-c5 libevent-2.1-7 libxml2 libicu72 \
    libunistring2 libssl3 libcurl4 libuuid1
fi
ensure_system_user kamailio /run/kamailio

# Where this Kamailio keeps its modules (openkazoo: /usr/lib64/kamailio/modules, Kamailio's
# Makefile.defs LIBDIR=lib64; Debian: its multiarch path). Every module the tree loads must link.
# `kamailio -I` prints "Default paths to modules: <dir>" (Kamailio 5.x and 6.0).
modules=$(kamailio -I 2>/dev/null | sed -n 's/.*Default paths to modules: *\([^ ]*\).*/\1/p' | head -n1)
[ -d "$modules" ] || die "cannot find Kamailio's module directory (kamailio -I: '${modules}')"

# The configuration tree at its pinned commit; this host's local.cfg and the PostgreSQL settings are
# rendered files (configure.sh puts them back after the tree is replaced).
staging=$(mktemp -d)
fetch_archive kamailio_configs "$staging"
[ -f "$staging/kamailio/kamailio.cfg" ] || die "the kamailio_configs archive has no kamailio/kamailio.cfg"
install -d -m 0755 /etc/kazoo
rm -rf "$TREE.old" && { [ ! -d "$TREE" ] || mv "$TREE" "$TREE.old"; }
mv "$staging/kamailio" "$TREE" && rm -rf "$staging" "$TREE.old"
chmod -R go-w "$TREE"
"$BOOTSTRAP_DIR/configure.sh" files  # this host's local.cfg and postgresql.conf into the tree

# With TLS, the SIP domain's certificate arrives with the orchestration's first push (not in the
# user-data: no room on AWS). Until then a throwaway self-signed pair lets Kamailio load tls.cfg and
# start; the push replaces it and reloads it in place (configure.sh, tls.reload).
if grep -q '^#!trydef TLS_ROLE' "$TREE/local.cfg" && [ ! -s "$TREE/certs/cert.pem" ]; then
  command -v openssl >/dev/null || apt_install openssl
  install -d -m 0755 "$TREE/certs"
  ( umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
      -subj "/CN=$(hostname -f 2>/dev/null || hostname)" -keyout "$TREE/certs/key.pem" -out "$TREE/certs/cert.pem" 2>/dev/null ) \
    || die "cannot make the placeholder TLS certificate"
  chown root:kamailio "$TREE/certs/key.pem" && chmod 0640 "$TREE/certs/key.pem"
  chmod 0644 "$TREE/certs/cert.pem"
  log "kamailio: a placeholder TLS certificate until the orchestration pushes the SIP domain's"
fi

# default.cfg includes dispatcher-role-<major>.cfg (MAJOR from the running version). The 6.0 tree
# has 5.1 to 5.6 and 6.0 (the last two identical), none for 5.7 or 5.8: give such a version the
# newest one, whose dispatcher API is the same.
major=$(kamailio -v | sed -n 's/^version: kamailio \([0-9]*\.[0-9]*\).*/\1/p')
if [ -n "$major" ] && [ ! -e "$TREE/dispatcher-role-$major.cfg" ]; then
  ln -s dispatcher-role-6.0.cfg "$TREE/dispatcher-role-$major.cfg"
  log "kamailio $major: dispatcher-role-$major.cfg -> dispatcher-role-6.0.cfg"
fi
while IFS= read -r module; do
  case $module in db_kazoo.so | db_mysql.so) continue ;; esac  # not loaded with KZ_DB_MODULE postgres
  [ -e "$modules/$module" ] || die "Kamailio has no $module, which the tree loads"
  check_linked "$modules/$module"
done < <(grep -ho '^loadmodule "[a-z_0-9]*\.so"' "$TREE"/*.cfg | cut -d'"' -f2 | sort -u)
check_linked /usr/sbin/kamailio

# nat_traversal keeps its keepalive state in KAZOO_DATA_DIR (defs.cfg: /etc/kazoo/kamailio/db).
install -d -o kamailio -g kamailio -m 0750 "$TREE/db"

# PostgreSQL: its connection limit (rendered), the kamailio role and database, the tree's schema.
cluster=$(pg_lsclusters -h | awk 'NR == 1 {print $1 "/" $2}')
[ -n "$cluster" ] || die "no PostgreSQL cluster"
ln -sf "$TREE/postgresql.conf" "/etc/postgresql/$cluster/conf.d/kamailio.conf"
systemctl enable --now postgresql >/dev/null 2>&1 || true
systemctl restart "postgresql@${cluster/\//-}"
retry 12 runuser -u postgres -- psql -qAtc 'SELECT 1' >/dev/null || die "PostgreSQL does not answer"
psql_admin() { runuser -u postgres -- psql -v ON_ERROR_STOP=1 -qAt "$@"; }
# The password goes to psql on stdin, never on a command line.
if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = 'kamailio'")" != 1 ]; then
  psql_admin -c 'CREATE ROLE kamailio LOGIN'
fi
printf "ALTER ROLE kamailio PASSWORD '%s';\n" "$KAMAILIO_DB_PASSWORD" | psql_admin -d postgres
if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = 'kamailio'")" != 1 ]; then
  psql_admin -c 'CREATE DATABASE kamailio OWNER kamailio'
fi
if [ "$(psql_admin -d kamailio -c "SELECT to_regclass('public.version') IS NOT NULL")" != t ]; then
  psql_admin -d kamailio -f "$TREE/db_scripts/kamailio_initdb_postgres.sql" >/dev/null
  log "kamailio schema loaded from db_scripts/kamailio_initdb_postgres.sql"
fi
