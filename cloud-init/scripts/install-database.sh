#!/bin/bash
# CouchDB 3 from Apache's repository, clustered, with its data on the host's own volume.
set -euo pipefail
# shellcheck source=lib.sh
. /opt/kazoo-bootstrap/lib.sh
load_env
DATA=/srv/couchdb
# A skipped CouchDB (managed elsewhere) leaves the data volume alone too.
if skipped couchdb; then log "couchdb skipped (bootstrap.skip): volume left as is"; exit 0; fi

# The data volume is attached by the cloud after the server exists: wait for a disk that is neither
# the root disk nor partitioned. Format it only when it holds no filesystem: never reformat.
data_disk() {
  local root_disk
  root_disk=$(lsblk -no PKNAME "$(findmnt -no SOURCE /)")
  lsblk -dpno NAME,TYPE | awk '$2 == "disk" {print $1}' | while read -r disk; do
    [ "${disk##*/}" = "$root_disk" ] && continue
    [ "$(lsblk -no NAME "$disk" | wc -l)" -eq 1 ] && echo "$disk" && break
  done
}
disk=""
for n in $(seq 1 60); do
  disk=$(data_disk)
  [ -n "$disk" ] && break
  log "waiting for the CouchDB volume ($n/60)"; sleep 5
done
[ -n "$disk" ] || die "no data volume attached"
blkid "$disk" >/dev/null || mkfs.ext4 -q -L couchdb "$disk"
mkdir -p "$DATA"
uuid=$(blkid -s UUID -o value "$disk")
grep -q "$uuid" /etc/fstab || echo "UUID=$uuid $DATA ext4 defaults,nofail 0 2" >> /etc/fstab
mountpoint -q "$DATA" || mount "$DATA"

add_apt_source couchdb "$COUCHDB_KEY" "$COUCHDB_REPO" "$COUCHDB_SUITE"
pin_version 'couchdb' "$COUCHDB_VERSION" couchdb
# Answer the package's questions: clustered node named after the FQDN, our cookie and admin.
debconf-set-selections <<SEL
couchdb couchdb/mode select clustered
couchdb couchdb/mode seen true
couchdb couchdb/nodename string couchdb@$FQDN
couchdb couchdb/nodename seen true
couchdb couchdb/cookie string $COUCHDB_COOKIE
couchdb couchdb/cookie seen true
couchdb couchdb/bindaddress string 0.0.0.0
couchdb couchdb/bindaddress seen true
couchdb couchdb/adminpass password $COUCHDB_PASSWORD
couchdb couchdb/adminpass_again password $COUCHDB_PASSWORD
SEL
apt_update
apt_install couchdb
install -d -o couchdb -g couchdb "$DATA/data"
# Debian's unit binds epmd to loopback: a cluster needs it on the private network.
sed -i 's/^ERL_EPMD_ADDRESS=/#ERL_EPMD_ADDRESS=/' /etc/default/couchdb 2>/dev/null || true
