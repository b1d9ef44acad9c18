"""The bootstrap renderer: a host's user-data, made from the real files in cloud-init/.

`render_user_data` returns the #cloud-config text of one host; `encode_user_data` packs it (gzip, then
base64) for both clouds: AWS takes it as user_data_base64 and Hetzner's cloud-init base64-decodes and
gunzips it. The rendered text holds secrets, so callers keep it inside a secret Output.
"""

from __future__ import annotations

import base64
import gzip
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import jinja2
import yaml

from core.plan import Host, Plan
from core.settings import Settings

CLOUD_INIT_DIR = Path(__file__).resolve().parent.parent / "cloud-init"
# Limits on what the cloud accepts: AWS counts the raw bytes before its own base64, Hetzner the string.
USER_DATA_LIMITS = {"aws": 16 * 1024, "hetzner": 32 * 1024}
ADMIN_USER = "kazoo"

_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(CLOUD_INIT_DIR)),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,
)


@dataclass(frozen=True)
class HostContext:
    """Everything one host's bootstrap needs, as plain values (secrets already resolved)."""

    host: Host
    plan: Plan
    settings: Settings
    public_ip: Optional[str] = None
    secrets: dict[str, str] = field(default_factory=dict)


def render_template(name: str, ctx: HostContext, **extra) -> str:
    return _templates.get_template(name).render(
        host=ctx.host, plan=ctx.plan, settings=ctx.settings, public_ip=ctx.public_ip,
        secrets=ctx.secrets, **extra,
    )


def cloud_config(ctx: HostContext) -> dict:
    host = ctx.host
    return {
        "hostname": host.name,
        "fqdn": host.fqdn,
        "prefer_fqdn_over_hostname": True,
        "manage_etc_hosts": False,  # /etc/hosts lists every host of the plan instead
        "timezone": "UTC",  # Kazoo requires UTC
        "ssh_pwauth": False,
        "disable_root": True,
        "users": [
            "default",
            {
                "name": ADMIN_USER,
                "gecos": "Kazoo operator",
                "groups": ["sudo"],
                "sudo": "ALL=(ALL) NOPASSWD:ALL",
                "shell": "/bin/bash",
                "lock_passwd": True,
                "ssh_authorized_keys": list(ctx.settings.ssh_public_keys),
            },
        ],
        "write_files": [
            {"path": "/etc/hosts", "content": render_template("hosts.j2", ctx), "permissions": "0644"},
        ],
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (file contents) as literal blocks, so the user-data reads like the files."""


_Dumper.add_representer(
    str,
    lambda dumper, value: dumper.represent_scalar(
        "tag:yaml.org,2002:str", value, style="|" if "\n" in value else None
    ),
)


def render_user_data(ctx: HostContext) -> str:
    body = yaml.dump(cloud_config(ctx), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000)
    return "#cloud-config\n" + body


def encode_user_data(text: str) -> str:
    """gzip then base64: the form both clouds accept, and a quarter of the size."""
    return base64.b64encode(gzip.compress(text.encode(), compresslevel=9, mtime=0)).decode()


def decode_user_data(encoded: str) -> str:
    return gzip.decompress(base64.b64decode(encoded)).decode()
