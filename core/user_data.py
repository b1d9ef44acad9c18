"""User-data as the clouds take it: packed (gzip, then base64: AWS takes it as user_data_base64 and
Hetzner's cloud-init base64-decodes and gunzips it), within each cloud's limit, and checked to fit
before any resource is registered."""

from __future__ import annotations

import base64
import gzip
import os
import secrets as secrets_module
import string

import zopfli.gzip

from core.bootstrap import HostContext, render_user_data
from core.plan import Plan
from core.roles import SECRET_LENGTHS
from core.settings import NAMESPACE, Cloud, Settings, SettingsError

# Limits on what the cloud accepts: AWS counts the raw bytes before its own base64, Hetzner the string.
USER_DATA_LIMITS = {"aws": 16 * 1024, "hetzner": 32 * 1024}


def encode_user_data(text: str, cloud: str = "aws") -> str:
    """gzip then base64: the form both clouds accept (cloud-init unpacks gzip), a quarter of the size.
    A host whose user-data would not fit the cloud's limit gets zopfli's deflate instead: the same
    gzip format, some 4% smaller, at a tenth of a second per host. Still too big: a clear error."""
    raw = text.encode()
    packed = gzip.compress(raw, compresslevel=9, mtime=0)
    if _counted(packed, cloud) > USER_DATA_LIMITS[cloud]:
        packed = zopfli.gzip.compress(raw)
    if _counted(packed, cloud) > USER_DATA_LIMITS[cloud]:
        raise ValueError(f"user-data of {_counted(packed, cloud)} bytes exceeds {cloud}'s limit of "
                         f"{USER_DATA_LIMITS[cloud]}: fewer roles per host, or a smaller bootstrap")
    return base64.b64encode(packed).decode()


def _counted(packed: bytes, cloud: str) -> int:
    """What the cloud's limit counts: AWS the raw bytes before its own base64, Hetzner the string."""
    return len(packed) if cloud == "aws" else (len(packed) + 2) // 3 * 4


def decode_user_data(encoded: str) -> str:
    return gzip.decompress(base64.b64decode(encoded)).decode()


# A device path as long as the cloud's (AWS: the volume id without its dash; Hetzner: its number).
_DEVICE_PLACEHOLDER = {Cloud.AWS: "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0",
                       Cloud.HETZNER: "/dev/disk/by-id/scsi-0HC_Volume_123456789"}


def check_user_data_fits(settings: Settings, plan: Plan) -> None:
    """Refuse, before any resource, a stack whose user-data would not fit its cloud's limit (else
    `pulumi up` fails midway, in the apply that encodes it). Each kind of host is rendered once, the
    last of its kind (the longest names), with random stand-ins of the real lengths for what is only
    known later (secrets, SSH keys, archive hashes, addresses): random, so they compress no better
    than the real ones."""
    rng = secrets_module.SystemRandom()
    alnum = string.ascii_letters + string.digits

    def random_text(length: int, alphabet: str = alnum) -> str:
        return "".join(rng.choice(alphabet) for _ in range(length))

    def openssh_key() -> tuple[str, str]:
        body = base64.b64encode(os.urandom(300)).decode()[:387]
        private = "-----BEGIN OPENSSH PRIVATE KEY-----\n" + "\n".join(
            body[i:i + 70] for i in range(0, len(body), 70)) + "\n-----END OPENSSH PRIVATE KEY-----\n"
        return private, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI" + base64.b64encode(os.urandom(32)).decode()[:43]

    stand_ins = {key: random_text(length) for key, length in SECRET_LENGTHS.items()}
    if settings.sip_tls_key is not None:
        stand_ins["sip_tls_key"] = settings.sip_tls_key.get_secret_value()
    operator = (openssh_key()[1],) if settings.orchestrate and settings.ssh_private_key is None else ()
    pins = {key: archive.sha256 or random_text(64, string.hexdigits[:16])
            for key, archive in settings.archives_in_use().items()}
    kinds = {host.roles: host for host in plan.hosts}  # the last host of each kind
    cloud = settings.cloud.value
    for host in kinds.values():
        ctx = HostContext(host, plan, settings,
                          public_ip="203.0.113.254" if host.stable_public_ip else None,
                          secrets=stand_ins, operator_keys=operator, host_key=openssh_key(), archive_sha256=pins,
                          data_device=_DEVICE_PLACEHOLDER[settings.cloud] if host.data_volume_gb else None)
        try:
            encode_user_data(render_user_data(ctx), cloud)
        except ValueError as err:
            raise SettingsError(
                f"{NAMESPACE}:layout: the user-data of {host.name} would not fit: {err} (fewer or wider CIDR "
                "ranges, orchestrate on, or the maximal layout: fewer roles per host)"
            ) from None
