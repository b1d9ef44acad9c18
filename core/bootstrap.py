"""The bootstrap renderer: a host's user-data, made from the real files in cloud-init/.

`render_user_data` returns the #cloud-config text of one host (core/user_data.py packs it and checks
it fits the cloud's limit); `config_bundle` is what the orchestration pushes. The rendered text
holds secrets, so callers keep it inside a secret Output.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import io
import shlex
import tarfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

import jinja2
import yaml

from core.firewall import ERLANG_DIST_PORTS, firewall_matrix, host_firewall
from core.plan import Host, Plan
from core.roles import Role, secrets_for
from core.kamailio import kamailio_plan
from core.settings import Cloud, Component, Settings

CLOUD_INIT_DIR = Path(__file__).resolve().parent.parent / "cloud-init"
# The operators' login (sudo). Not "kazoo": that name belongs to the Kazoo package's service account.
ADMIN_USER = "ops"

_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(CLOUD_INIT_DIR / "templates")),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,
)
# Values a shell reads (host.env) are single-quoted: checked by the settings, quoted all the same.
_templates.filters["shq"] = lambda value: shlex.quote(str(value))


@dataclass(frozen=True)
class HostContext:
    """Everything one host's bootstrap needs, as plain values (secrets already resolved)."""

    host: Host
    plan: Plan
    settings: Settings
    public_ip: Optional[str] = None
    secrets: dict[str, str] = field(default_factory=dict)
    operator_keys: tuple[str, ...] = ()  # the orchestration's public key, beside sshPublicKeys
    host_key: Optional[tuple[str, str]] = None  # (private, public) ED25519 SSH host key, pinned by `pulumi up`
    archive_sha256: dict[str, str] = field(default_factory=dict)  # sources key -> sha256 the host checks
    data_device: Optional[str] = None  # the CouchDB volume's /dev/disk/by-id path (database hosts)

    def __post_init__(self) -> None:
        # A host sees only the secrets its roles use (core/roles.py ROLE_SECRETS), whoever builds
        # its context: a template asking for another role's secret fails to render.
        object.__setattr__(self, "secrets", secrets_for(self.host.roles, dict(self.secrets)))


def render_template(name: str, ctx: HostContext, **extra) -> str:
    return _templates.get_template(name).render(
        host=ctx.host, plan=ctx.plan, settings=ctx.settings, public_ip=ctx.public_ip, data_device=ctx.data_device,
        secrets=ctx.secrets, archive_sha256=ctx.archive_sha256, **extra,
    )


# Rendered configuration, per role: (template, path on the host, mode, the component it belongs to).
# configure.sh installs them (owner and group by path) and restarts what reads them. A file of a
# component the stack skips (bootstrap.skip) is not rendered at all.
C = Component
ROLE_FILES = {
    Role.DATABASE: [
        ("data-volume.env.j2", "/etc/kazoo/data-volume.env", "0644", C.COUCHDB),
        ("couchdb-local.ini.j2", "/opt/couchdb/etc/local.d/10-kazoo.ini", "0640", C.COUCHDB),
        ("couchdb-vm.args.j2", "/opt/couchdb/etc/kazoo.vm.args", "0640", C.COUCHDB),
        # the cluster's cookie where the VM reads it ($HOME of couchdb.service), never -setcookie
        ("couchdb-erlang-cookie.j2", "/opt/couchdb/.erlang.cookie", "0400", C.COUCHDB),
        ("couchdb.service.d.conf.j2", "/etc/systemd/system/couchdb.service.d/kazoo.conf", "0644", C.COUCHDB),
    ],
    Role.BROKER: [
        ("rabbitmq.conf.j2", "/etc/rabbitmq/rabbitmq.conf", "0640", C.RABBITMQ),
        ("rabbitmq-enabled_plugins.j2", "/etc/rabbitmq/enabled_plugins", "0644", C.RABBITMQ),
        ("rabbitmq.service.d.conf.j2", "/etc/systemd/system/rabbitmq-server.service.d/kazoo.conf", "0644", C.RABBITMQ),
    ],
    Role.APPLICATION: [
        ("kazoo-config.ini.j2", "/etc/kazoo/config.ini", "0640", C.KAZOO),
        ("kazoo-vm.args.j2", "/etc/kazoo/kazoo_apps.vm.args", "0640", C.KAZOO),
        ("kazoo-vm.args.j2", "/etc/kazoo/ecallmgr.vm.args", "0640", C.KAZOO),
        ("kazoo-applications.service.d.conf.j2", "/etc/systemd/system/kazoo-applications.service.d/kazoo.conf", "0644", C.KAZOO),
        ("kazoo-ecallmgr.service.d.conf.j2", "/etc/systemd/system/kazoo-ecallmgr.service.d/kazoo.conf", "0644", C.KAZOO),
        ("kazoo-start.env.j2", "/etc/kazoo/kazoo-start.env", "0644", C.KAZOO),
        # the cookie of both Kazoo nodes, where Erlang and relx look for it ($HOME of the units):
        # never -setcookie, which would put it on beam's command line (kazoo-vm.args.j2)
        ("kazoo-erlang-cookie.j2", "/opt/kazoo/.erlang.cookie", "0400", C.KAZOO),
        ("haproxy.cfg.j2", "/etc/haproxy/haproxy.cfg", "0644", None),
    ],
    Role.MEDIA: [
        ("freeswitch.service.j2", "/etc/systemd/system/freeswitch.service", "0644", C.FREESWITCH),
        ("freeswitch-modules.conf.xml.j2", "/etc/kazoo/freeswitch/autoload_configs/modules.conf.xml", "0644", C.FREESWITCH),
        ("freeswitch-cookie.j2", "/etc/kazoo/freeswitch/kazoo-cookie", "0600", C.FREESWITCH),
        ("freeswitch-local.env.j2", "/etc/kazoo/freeswitch/local.env", "0644", C.FREESWITCH),
        # FreeSWITCH plays and stores CouchDB-held media at the URLs Kazoo gives it, built from
        # config.ini's 127.0.0.1:15984 (kazoo kz_couch_attachments.erl attachment_url with
        # use_bigcouch_direct true, kz_couch_util.erl db_url): the same HAProxy on every media host.
        ("haproxy.cfg.j2", "/etc/haproxy/haproxy.cfg", "0644", None),
    ],
    Role.PROXY: [
        ("kamailio-local.cfg.j2", "/etc/kazoo/kamailio/local.cfg", "0640", C.KAMAILIO),
        ("kamailio-custom-routes.cfg.j2", "/etc/kazoo/kamailio/custom-routes.cfg", "0644", C.KAMAILIO),
        ("kamailio.default.j2", "/etc/default/kamailio", "0644", C.KAMAILIO),
        ("kamailio.service.j2", "/etc/systemd/system/kamailio.service", "0644", C.KAMAILIO),
        ("kamailio-postgresql.conf.j2", "/etc/kazoo/kamailio/postgresql.conf", "0644", C.KAMAILIO),
    ],
}
# /etc/hosts is also written directly by cloud-init (it is needed before configure.sh runs); here
# it travels with the rest, so a host added later reaches the running hosts' /etc/hosts.
COMMON_FILES = [("nftables.conf.j2", "/etc/nftables.conf", "0600", None), ("hosts.j2", "/etc/hosts", "0644", None)]
SCRIPTS = ["lib.sh", "bootstrap.sh", "configure.sh"]
ROLE_SCRIPTS = {Role.MEDIA: ("freeswitch-local.sh",), Role.DATABASE: ("data-volume.sh",),
                Role.APPLICATION: ("ecallmgr-view.sh",)}  # beside install-<role>.sh
BOOTSTRAP_DIR = "/opt/kazoo-bootstrap"
RENDERED_DIR = "/etc/kazoo-bootstrap/files"
AMQP_NAMES = ["", "SECONDARY_", "TERTIARY_", "QUATERNARY_", "QUINARY_", "SENARY_", "SEPTENARY_",
              "OCTONARY_", "NONARY_", "DENARY_"]  # Kamailio takes up to ten AMQP URLs


def template_values(ctx: HostContext) -> dict:
    """What the templates may use beyond host, plan, settings, public_ip and secrets."""
    plan, settings, host = ctx.plan, ctx.settings, ctx.host
    databases = plan.with_role(Role.DATABASE)
    couchdb_cookie = ctx.secrets.get("couchdb_cookie", "")
    return {
        "databases": databases,
        "brokers": plan.with_role(Role.BROKER)[: len(AMQP_NAMES)],
        "amqp_names": AMQP_NAMES,
        # every node of one cluster shares one uuid and one cookie-auth secret (CouchDB's setup docs);
        # derived from a cluster secret, so they are stable and never a secret reused as is
        "couchdb_uuid": _derive(couchdb_cookie, "uuid")[:32],
        "couchdb_auth_secret": _derive(couchdb_cookie, "chttpd_auth"),
        "couchdb_admin_hash": couchdb_admin_hash(ctx.secrets.get("couchdb_password", ""), couchdb_cookie)
        if host.carries(Role.DATABASE) else "",
        "dist_ports": ERLANG_DIST_PORTS,
        # several CouchDB nodes of ours: Kazoo starts after the orchestration forms their cluster
        "wait_for_cluster": len(databases) > 1 and settings.installs(C.COUCHDB),
        "public_ip_on_interface": settings.cloud is Cloud.HETZNER,
        "kamailio": kamailio_plan(settings, host, ctx.public_ip) if host.carries(Role.PROXY) else None,
        "rows": host_firewall(firewall_matrix(settings), plan, host),
        "metadata_addresses": METADATA_ADDRESSES[settings.cloud],
    }


def _derive(secret: str, purpose: str) -> str:
    return hashlib.sha256(f"{purpose}:{secret}".encode()).hexdigest()


# CouchDB hashes plaintext [admins] entries at start-up and writes the hash back to the last ini file
# of its chain (apache/couchdb src/couch/src/couch_passwords.erl, config.erl get_write_file): give it
# the hash instead, so the password never sits on disk. Format `-pbkdf2:sha256-<key>,<salt>,<iter>`
# (CouchDB 3.4+; 600000 iterations is its default for sha256); the salt is derived, so the same
# password renders the same line and a push changes nothing.
COUCHDB_PBKDF2_ITERATIONS = 600_000


@functools.lru_cache(maxsize=64)
def couchdb_admin_hash(password: str, salt_secret: str) -> str:
    salt = _derive(salt_secret, "couchdb-admin-salt")[:32]
    key = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), COUCHDB_PBKDF2_ITERATIONS)
    return f"-pbkdf2:sha256-{key.hex()},{salt},{COUCHDB_PBKDF2_ITERATIONS}"


# The SIP domain's certificate and key. With the orchestration on they travel in its push only: a
# chain and its key are ~3 KB nobody can compress, and a host carrying every role has no such room
# left in AWS's 16 KB of user-data. The proxy boots with a throwaway self-signed pair in their place
# (install-proxy.sh) and the push, minutes later, reloads the real one in place (tls.reload).
SIP_TLS_FILES = ("/etc/kazoo/kamailio/certs/cert.pem", "/etc/kazoo/kamailio/certs/key.pem")

# The cloud's metadata service: after the bootstrap only root may reach it (user-data holds secrets).
METADATA_ADDRESSES = {Cloud.AWS: ("169.254.169.254", "fd00:ec2::254"), Cloud.HETZNER: ("169.254.169.254",)}


def file_specs(ctx: HostContext) -> list[tuple[str, str, str]]:
    """(template, path, mode) of every rendered file of the host, skipped components left out."""
    specs = [spec for role in ctx.host.roles for spec in ROLE_FILES[role]]
    if ctx.host.carries(Role.APPLICATION) and ctx.settings.sources.monster_ui is not None:
        specs.append(("nginx-monster-ui.conf.j2", "/etc/nginx/sites-enabled/monster-ui.conf", "0644", None))
    if ctx.host.carries(Role.PROXY) and ctx.settings.sip.tls:  # where the tree's tls.cfg looks
        specs += [("kamailio-tls-certificate.j2", SIP_TLS_FILES[0], "0644", C.KAMAILIO),
                  ("kamailio-tls-key.j2", SIP_TLS_FILES[1], "0640", C.KAMAILIO)]
    seen, kept = set(), []
    for template, path, mode, component in COMMON_FILES + specs:
        if path in seen or (component is not None and not ctx.settings.installs(component)):
            continue
        seen.add(path)
        kept.append((template, path, mode))
    return kept


def rendered_files(ctx: HostContext) -> dict[str, tuple[str, str]]:
    """The configuration files of one host: {path on the host: (content, mode)}."""
    values = template_values(ctx)
    return {path: (compact(render_template(template, ctx, path=path, **values)), mode)
            for template, path, mode in file_specs(ctx)}


def compact(text: str) -> str:
    """`text` without its comment lines (`#`, `;`) and runs of blank lines, its first line kept.

    A host carrying every role gets all the scripts and files in its user-data, and AWS takes 16 KB
    of it (gzipped): the comments, which stay in this repository, do not travel. `#!` lines are
    kept (shebangs, Kamailio's preprocessor). The tests run the real tools (bash -n, shellcheck,
    nft, haproxy, kamailio, cloud-init) on what hosts get."""
    lines = text.splitlines()
    kept = lines[:1]
    shell = lines[:1] == ["#!/bin/bash"]
    for line in lines[1:]:
        bare = line.strip()
        if (bare.startswith("#") and not bare.startswith("#!")) or bare.startswith(";"):
            continue
        if shell:  # a trailing "  # why" of a bash line, unless a quote could hold it
            code, sep, note = line.partition("  # ")
            if sep and not any(q in note for q in "'\"`$") and code.count("'") % 2 == 0 and code.count('"') % 2 == 0:
                line = code.rstrip()
        if not bare and (not kept or not kept[-1].strip()):
            continue
        kept.append(line)
    return "\n".join(kept) + ("\n" if text.endswith("\n") else "")


@functools.lru_cache(maxsize=None)
def cloud_init_file(relative: str) -> str:
    """A file of cloud-init/ as hosts get it (compacted), read once per run: every host's user-data,
    bundle and digest use them."""
    return compact((CLOUD_INIT_DIR / relative).read_text())


def script_files(host: Host, without: tuple[Role, ...] = ()) -> dict[str, str]:
    """The bootstrap scripts a host carries: {path on the host: text}; those of `without` left out."""
    names = SCRIPTS + [name for role in host.roles if role not in without
                       for name in (f"install-{role.value}.sh", *ROLE_SCRIPTS.get(role, ()))]
    return {f"{BOOTSTRAP_DIR}/{name}": cloud_init_file(f"scripts/{name}") for name in names}


def deferred_roles(ctx: HostContext) -> tuple[Role, ...]:
    """Roles installed by the orchestration's first config push rather than at boot: FreeSWITCH on
    an AWS host carrying every role. Its scripts and files (~4 KB compressed) do not fit beside the
    rest in AWS's 16 KB of user-data; the push, minutes after boot, carries them, installs the role
    and configures it as a first boot would (remote/apply-config.sh)."""
    host = ctx.host
    if ctx.settings.orchestrate and ctx.settings.cloud is Cloud.AWS and len(host.roles) > 1 and host.carries(Role.MEDIA):
        return (Role.MEDIA,)
    return ()


def files_of_roles_only(ctx: HostContext, roles: tuple[Role, ...]) -> set[str]:
    """Rendered paths that only `roles` use on this host (none shared with its other roles)."""
    if not roles:
        return set()
    others = {path for role in ctx.host.roles if role not in roles for _, path, _, _ in ROLE_FILES[role]}
    others |= {path for _, path, _, _ in COMMON_FILES}
    return {path for role in roles for _, path, _, _ in ROLE_FILES[role]} - others


def bundle_files(ctx: HostContext) -> dict[str, tuple[str, int]]:
    """What the orchestration pushes to a running host: {path: (content, mode)}. The bootstrap and
    remote scripts (so a host created long ago runs today's) and the rendered configuration."""
    files = {path: (text, 0o755) for path, text in script_files(ctx.host).items()}
    files.update(
        {f"{BOOTSTRAP_DIR}/remote/{p.name}": (cloud_init_file(f"remote/{p.name}"), 0o755)
         for p in sorted((CLOUD_INIT_DIR / "remote").glob("*.sh"))}
    )
    files.update(
        {RENDERED_DIR + path: (content, int(mode, 8)) for path, (content, mode) in rendered_files(ctx).items()}
    )
    # host.env as today's plan has it (sources, Monster UI and the API's address, ...): apply-config.sh
    # puts it in place before any script reads it. (User-data carries it once, in place.)
    files[RENDERED_DIR + HOST_ENV] = (host_env(ctx), 0o600)
    return dict(sorted(files.items()))


HOST_ENV = "/etc/kazoo-bootstrap/host.env"


def host_env(ctx: HostContext) -> str:
    return compact(render_template("host.env.j2", ctx, deferred=" ".join(r.value for r in deferred_roles(ctx))))


def config_bundle(ctx: HostContext) -> str:
    """bundle_files as a base64 tar.gz, byte for byte the same for the same input."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, (content, mode) in bundle_files(ctx).items():
            data = content.encode()
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))
    return base64.b64encode(gzip.compress(raw.getvalue(), compresslevel=9, mtime=0)).decode()


def config_digest(ctx: HostContext) -> str:
    """A fingerprint of a host's bundle that holds no secret: secrets are swapped for their names
    first, so it can trigger the config push in plain sight in a preview diff."""
    # (the SSH host key is never part of the bundle either: only cloud-init installs it, once)
    blank = replace(ctx, secrets={k: f"<{k}>" for k in ctx.secrets})
    digest = hashlib.sha256()
    for path, (content, mode) in bundle_files(blank).items():
        digest.update(f"{path}\0{mode:o}\0{content}\0".encode())
    return "sha256:" + digest.hexdigest()[:16]


def cloud_config(ctx: HostContext) -> dict:
    host = ctx.host
    # What the orchestration's first push brings instead: the SIP certificate, a deferred role's files.
    deferred = deferred_roles(ctx)
    later = files_of_roles_only(ctx, deferred) | (set(SIP_TLS_FILES) if ctx.settings.orchestrate else set())
    rendered = {path: file for path, file in rendered_files(ctx).items() if path not in later}
    # /etc/hosts grows with the plan (a line per host) and travels twice, in place and as the
    # rendered copy configure.sh compares: side by side, within gzip's 32 KB window, the second copy
    # costs a few bytes (apart, some 3 KB of AWS's 16 at 400 media hosts).
    files = [
        {"path": "/etc/hosts", "content": rendered["/etc/hosts"][0], "permissions": "0644"},
        {"path": RENDERED_DIR + "/etc/hosts", "content": rendered["/etc/hosts"][0],
         "permissions": rendered["/etc/hosts"][1]},
        {"path": HOST_ENV, "content": host_env(ctx), "permissions": "0600"},
    ]
    files += [{"path": path, "content": text, "permissions": "0755"}
              for path, text in script_files(host, without=deferred).items()]
    files += [
        {"path": RENDERED_DIR + path, "content": content, "permissions": mode}
        for path, (content, mode) in sorted(rendered.items()) if path != "/etc/hosts"
    ]
    return {
        "hostname": host.name,
        "fqdn": host.fqdn,
        "prefer_fqdn_over_hostname": True,
        "manage_etc_hosts": False,  # /etc/hosts lists every host of the plan instead
        "timezone": "UTC",  # Kazoo requires UTC
        "locale": "C.UTF-8",  # built into glibc: no locale to generate, none missing on a lean image
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
                "ssh_authorized_keys": [*ctx.settings.ssh_public_keys, *ctx.operator_keys],
            },
        ],
        # The pinned host key. Given keys replace the image's and none of another type is generated,
        # so sshd offers only this one and a client cannot negotiate its way around the pin.
        **({"ssh_keys": {"ed25519_private": ctx.host_key[0], "ed25519_public": ctx.host_key[1]}}
           if ctx.host_key else {}),
        "write_files": files,
        # A non-zero exit here makes `cloud-init status` report an error.
        "runcmd": [[f"{BOOTSTRAP_DIR}/bootstrap.sh"]],
    }


# libyaml's emitter when PyYAML has it: the pure-Python one was most of the program's time at scale.
class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):
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
