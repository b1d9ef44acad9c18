"""The CouchDB data volume, for real: loop devices presented under the by-id names the clouds give
(Hetzner: /dev/disk/by-id/scsi-0HC_Volume_<id>; AWS Nitro: /dev/disk/by-id/
nvme-Amazon_Elastic_Block_Store_vol<id>), real mkfs, blkid, mount and resize2fs, on a fake host
(tests/fakehost.py) whose /dev/disk/by-id is a private tmpfs.

What data-volume.sh must do (issue 12): find the volume by its id (never "the first unpartitioned
disk that is not root", which is the instance store on sizes with local NVMe), wait for it, format
only a provably blank disk, never reformat one with data, fail clearly when it never appears, and
grow the filesystem when the volume grows.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from core.bootstrap import CLOUD_INIT_DIR, HostContext, rendered_files
from core.plan import plan_hosts
from core.settings import load_settings
from fakehost import FakeHost, available
from harness import run_stack_file, stack_config

pytestmark = pytest.mark.skipif(not available(), reason="needs root and unshare (.ci/run runs as root)")

HETZNER_ID = "scsi-0HC_Volume_31415926"
SCRIPT = CLOUD_INIT_DIR / "scripts" / "data-volume.sh"


class Disks:
    """Loop devices over sparse files, detached at the end."""

    def __init__(self, tmp: Path):
        self.tmp, self.devices = tmp, []

    def make(self, name: str, mb: int) -> str:
        image = self.tmp / f"{name}.img"
        subprocess.run(["truncate", "-s", f"{mb}M", str(image)], check=True)
        device = subprocess.run(["losetup", "-f", "--show", str(image)], check=True, capture_output=True,
                                text=True).stdout.strip()
        self.devices.append(device)
        return device

    def grow(self, name: str, device: str, mb: int) -> None:
        subprocess.run(["truncate", "-s", f"{mb}M", str(self.tmp / f"{name}.img")], check=True)
        subprocess.run(["losetup", "-c", device], check=True)

    def close(self) -> None:
        for device in self.devices:
            subprocess.run(["losetup", "-d", device], capture_output=True)


@pytest.fixture
def disks(tmp_path):
    made = Disks(tmp_path)
    created_dev_disk = not os.path.exists("/dev/disk/by-id")
    if created_dev_disk:  # a container without udev: the path the script checks must exist to mount over
        os.makedirs("/dev/disk/by-id")
    yield made
    made.close()
    if created_dev_disk:
        os.rmdir("/dev/disk/by-id")
        os.rmdir("/dev/disk")


def run(tmp: Path, links: dict[str, str], *args: str, tries: int = 3, mount: Path | None = None,
        later: tuple[str, str, float] | None = None) -> subprocess.CompletedProcess:
    """data-volume.sh on a fake host whose /dev/disk/by-id holds `links` (by-id name -> device);
    `later`: (name, device, seconds) appears after a delay, as a cloud attaches a volume."""
    home = tmp / f"host{len(list(tmp.glob('host*')))}"
    home.mkdir()
    host = FakeHost(home, {"FQDN": "db1.x.example", "KAZOO_SKIP": ""})
    mount = mount or tmp / "srv-couchdb"
    env_file = tmp / "data-volume.env"
    env_file.write_text(f"DATA_DEVICE=/dev/disk/by-id/{HETZNER_ID}\nDATA_SIZE_GB=10\n")
    link = "; ".join(f"ln -s {dev} /dev/disk/by-id/{name}" for name, dev in links.items())
    delayed = f"(sleep {later[2]}; ln -s {later[1]} /dev/disk/by-id/{later[0]}) &" if later else ""
    command = (f"mount -t tmpfs tmpfs /dev/disk/by-id && {link or 'true'}; {delayed} "
               f"install -m 0755 {SCRIPT} /opt/kazoo-bootstrap/ && /opt/kazoo-bootstrap/data-volume.sh {' '.join(args)}")
    return host.run(command, env={"DATA_VOLUME_ENV": str(env_file), "DATA_MOUNT": str(mount),
                                  "DATA_VOLUME_TRIES": str(tries), "DATA_VOLUME_WAIT": "1"})


def fs_uuid(device: str) -> str:
    return subprocess.run(["blkid", "-p", "-o", "value", "-s", "UUID", device], capture_output=True,
                          text=True).stdout.strip()


def test_a_blank_volume_is_formatted_once_and_its_data_kept(disks, tmp_path):
    volume = disks.make("volume", 200)
    first = run(tmp_path, {HETZNER_ID: volume})
    assert first.returncode == 0, first.stderr
    assert "formatting the blank CouchDB volume" in first.stderr
    uuid = fs_uuid(volume)
    assert uuid
    # mounted at boot by its filesystem's UUID, and a volume that is missing then does not drop the
    # host into emergency mode, where no one reaches it over SSH (systemd.mount(5): nofail)
    fstab = (tmp_path / "host0" / "ovl" / "etc" / "u" / "fstab").read_text()
    line = next(l for l in fstab.splitlines() if l.startswith(f"UUID={uuid} "))
    assert line.split()[1:4] == [str(tmp_path / "srv-couchdb"), "ext4", "defaults,nofail,x-systemd.device-timeout=5min"]
    # data written on it survives a second run, which formats nothing
    subprocess.run(["debugfs", "-w", "-R", "mkdir kazoo-data", volume], check=True, capture_output=True)
    second = run(tmp_path, {HETZNER_ID: volume})
    assert second.returncode == 0, second.stderr
    assert "formatting" not in second.stderr and fs_uuid(volume) == uuid
    listing = subprocess.run(["debugfs", "-R", "ls /", volume], capture_output=True, text=True).stdout
    assert "kazoo-data" in listing


def test_a_volume_with_anything_on_it_is_never_formatted(disks, tmp_path):
    volume = disks.make("xfs-ish", 200)
    subprocess.run(["mkfs.ext2", "-q", "-L", "other", volume], check=True)  # a filesystem, not ours
    before = fs_uuid(volume)
    result = run(tmp_path, {HETZNER_ID: volume})
    assert result.returncode != 0 and "not ext4: left alone" in result.stderr, result.stderr
    assert fs_uuid(volume) == before
    partitioned = disks.make("partitioned", 200)
    subprocess.run(["sfdisk", "-q", partitioned], input="label: dos\n,,L\n", text=True, check=True, capture_output=True)
    result = run(tmp_path, {HETZNER_ID: partitioned})
    assert result.returncode != 0 and "formatting" not in result.stderr  # a partition table is not blank


def test_only_the_volume_named_by_its_id_is_used(disks, tmp_path):
    """An extra unpartitioned, blank disk (an instance store, say) is ignored; the volume is used."""
    instance_store = disks.make("instance-store", 200)
    volume = disks.make("volume", 200)
    result = run(tmp_path, {"nvme-Amazon_EC2_NVMe_Instance_Storage_AWS1234": instance_store, HETZNER_ID: volume})
    assert result.returncode == 0, result.stderr
    assert fs_uuid(volume) and not fs_uuid(instance_store)


def test_a_missing_volume_is_waited_for_then_fails_clearly(disks, tmp_path):
    volume = disks.make("late", 200)
    late = run(tmp_path, {}, tries=10, later=(HETZNER_ID, volume, 2.5))
    assert late.returncode == 0, late.stderr
    assert "waiting for the CouchDB volume" in late.stderr and fs_uuid(volume)
    never = run(tmp_path, {}, tries=2)
    assert never.returncode != 0
    assert f"the CouchDB volume /dev/disk/by-id/{HETZNER_ID} did not appear" in never.stderr


def test_a_push_never_formats_and_a_grown_volume_is_grown(disks, tmp_path):
    volume = disks.make("volume", 200)
    blank_push = run(tmp_path, {HETZNER_ID: volume}, "--keep")
    assert blank_push.returncode != 0 and "a push never formats" in blank_push.stderr and not fs_uuid(volume)
    assert run(tmp_path, {HETZNER_ID: volume}).returncode == 0
    disks.grow("volume", volume, 600)
    grown = run(tmp_path, {HETZNER_ID: volume}, "--keep")
    assert grown.returncode == 0, grown.stderr  # a failed grow never fails a push
    blocks = subprocess.run(["dumpe2fs", "-h", volume], capture_output=True, text=True).stdout
    count = int(next(l for l in blocks.splitlines() if l.startswith("Block count")).split(":")[1])
    size = int(next(l for l in blocks.splitlines() if l.startswith("Block size")).split(":")[1])
    if online_resize_allowed():
        assert "grew the CouchDB filesystem" in grown.stderr and count * size > 550 * 1024 * 1024
    else:  # this sandbox drops CAP_SYS_RESOURCE, which ext4's online resize needs: the attempt is seen
        assert "could not grow the CouchDB filesystem" in grown.stderr and "Permission denied" in grown.stderr


def online_resize_allowed() -> bool:
    """Whether this machine lets root grow a mounted ext4 (EXT4_IOC_RESIZE_FS needs CAP_SYS_RESOURCE)."""
    status = Path("/proc/self/status").read_text()
    effective = int(next(l for l in status.splitlines() if l.startswith("CapEff")).split()[1], 16)
    return bool(effective & (1 << 24))  # CAP_SYS_RESOURCE


@pytest.mark.parametrize("stack,prefix", [("hetzner-maximal", "/dev/disk/by-id/scsi-0HC_Volume_"),
                                          ("aws-maximal", "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol")])
def test_each_database_host_is_told_its_own_volume(stack, prefix):
    result = run_stack_file(stack)
    volumes = {r.name.removesuffix("-couchdb"): r for r in result.registrations if r.name.endswith("-couchdb")
               and r.type in ("hcloud:index/volume:Volume", "aws:ebs/volume:Volume")}
    from core.user_data import decode_user_data

    for name, volume in volumes.items():
        server = result.named(name, "Server" if stack.startswith("hetzner") else "Instance")
        text = decode_user_data(server.inputs.get("userData") or server.inputs["userDataBase64"])
        device = prefix + (volume.id if stack.startswith("hetzner") else volume.id.removeprefix("vol-"))
        assert f"DATA_DEVICE={device}" in text, name
        assert volume.urn in server.dependencies or any(volume.urn in d for d in server.dependencies)


def test_couchdb_does_not_start_without_its_mount():
    settings = load_settings(stack_config("hetzner-maximal"))
    plan = plan_hosts(settings)
    files = rendered_files(HostContext(plan.host("db1"), plan, settings, None, {"couchdb_cookie": "c",
                                                                                "couchdb_password": "p"}))
    dropin = files["/etc/systemd/system/couchdb.service.d/kazoo.conf"][0]
    assert "RequiresMountsFor=/srv/couchdb" in dropin


def test_a_config_push_never_formats_the_volume(disks, tmp_path):
    """The push's configure.sh runs data-volume.sh with --keep (review 9: without it a push formatted
    a volume that read as blank: a re-attached one, say). A blank volume seen by a push fails it and
    stays blank; the first boot's install-database.sh is what formats, once."""
    from test_remote_scripts import (STATE_DIR, bundle_file, context, files, push_host, push_line, receive_env,
                                     serving_setup)

    ctx = context("hetzner-single", "kazoo1")
    device = next(l.split("=", 1)[1] for l in files(ctx)["/etc/kazoo/data-volume.env"].splitlines()
                  if l.startswith("DATA_DEVICE="))
    volume = disks.make("volume", 200)
    host = push_host(tmp_path, ctx)
    setup = serving_setup(tmp_path, ctx)
    run = host.run(f"mount -t tmpfs tmpfs /dev/disk/by-id && ln -s {volume} {device} && "
                   f"mkdir -p {STATE_DIR} && touch {STATE_DIR}/done-install-database && "
                   f'bash -c "$RECEIVE" < {bundle_file(tmp_path, ctx, "1")}',
                   env={**receive_env(ctx), "DATA_MOUNT": str(tmp_path / "srv-couchdb"), "DATA_VOLUME_TRIES": "1",
                        "DATA_VOLUME_WAIT": "0"}, setup=setup)
    assert run.returncode != 0
    assert "a push never formats" in run.stdout + run.stderr
    assert not fs_uuid(volume)
