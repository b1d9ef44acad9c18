#!/bin/bash
# The CouchDB data volume: found by the id the cloud gives it, waited for, formatted only when it is
# provably blank, mounted at /srv/couchdb, and grown when the volume has grown. Idempotent; run by
# install-database.sh at the first boot and by configure.sh on every push (never formats then).
#   data-volume.sh           wait, format if blank, mount, grow
#   data-volume.sh --keep    the same, but a blank volume is an error (a push must find the data)
# The device comes from /etc/kazoo/data-volume.env (rendered): Hetzner's /dev/disk/by-id/
# scsi-0HC_Volume_<id> (the volume's linux_device), AWS's /dev/disk/by-id/
# nvme-Amazon_Elastic_Block_Store_vol<id> (Nitro instances). Never "the first disk that is not
# root": on sizes with local NVMe that is the ephemeral instance store.
set -euo pipefail
# shellcheck source=lib.sh
. /opt/kazoo-bootstrap/lib.sh
load_env
# shellcheck source=/dev/null
. "${DATA_VOLUME_ENV:-/etc/kazoo/data-volume.env}"
MOUNT=${DATA_MOUNT:-/srv/couchdb}
TRIES=${DATA_VOLUME_TRIES:-60}
[[ $DATA_DEVICE == /dev/disk/by-id/* ]] || die "DATA_DEVICE is not a /dev/disk/by-id path: '$DATA_DEVICE'"

# The cloud attaches the volume after the server exists: wait for its device.
for n in $(seq 1 "$TRIES"); do
  [ -b "$DATA_DEVICE" ] && break
  ((n < TRIES)) || die "the CouchDB volume $DATA_DEVICE did not appear (is it attached?)"
  log "waiting for the CouchDB volume $DATA_DEVICE ($n/$TRIES)"; sleep "${DATA_VOLUME_WAIT:-5}"
done
device=$(readlink -f "$DATA_DEVICE")

# What is on it: blkid's low-level probe exits 2 when it finds no signature at all (no filesystem,
# no partition table, no RAID or LVM member); wipefs agrees that nothing is there.
probe=0
blkid -p -o value -s TYPE "$device" >/dev/null 2>&1 || probe=$?
if ((probe == 2)) && [ -z "$(wipefs -n "$device" 2>/dev/null | tail -n +2)" ]; then
  [ "${1:-}" = --keep ] && die "$DATA_DEVICE is blank: a push never formats (the first boot does)"
  log "formatting the blank CouchDB volume $DATA_DEVICE"
  mkfs.ext4 -q -L couchdb "$device"
elif ((probe != 0)); then
  die "cannot read $DATA_DEVICE (blkid exit $probe): not formatting it"
fi
type=$(blkid -p -o value -s TYPE "$device" || true)
[ "$type" = ext4 ] || die "$DATA_DEVICE holds ${type:-something that is not a filesystem}, not ext4: left alone"

uuid=$(blkid -p -o value -s UUID "$device")
install -d -m 0755 "$MOUNT"
# by UUID, and nofail: a missing volume must not stop the boot (CouchDB's unit requires the mount
# instead: RequiresMountsFor=/srv/couchdb)
if ! grep -q "^UUID=$uuid " /etc/fstab; then
  sed -i "\\#[[:space:]]${MOUNT}[[:space:]]#d" /etc/fstab
  echo "UUID=$uuid $MOUNT ext4 defaults,nofail,x-systemd.device-timeout=5min 0 2" >> /etc/fstab
  systemctl daemon-reload 2>/dev/null || true
fi
mountpoint -q "$MOUNT" || mount "$MOUNT"

# A volume made larger (roles.database.volumeSize) is grown online.
device_bytes=$(blockdev --getsize64 "$device")
fs_bytes=$(dumpe2fs -h "$device" 2>/dev/null | awk -F: '/^Block count/ {c=$2} /^Block size/ {s=$2} END {print c * s}')
if ((device_bytes - fs_bytes > 64 * 1024 * 1024)); then
  # online (ext4 grows while mounted); CouchDB keeps working on the old size if this fails
  if out=$(resize2fs "$device" 2>&1); then
    log "grew the CouchDB filesystem to $((device_bytes / 1024 / 1024 / 1024)) GB"
  else
    log "WARNING: could not grow the CouchDB filesystem on $DATA_DEVICE: ${out//$'\n'/; }"
  fi
fi
