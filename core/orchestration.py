"""The post-boot steps `pulumi up` runs over SSH, planned as plain data.

Some steps need every host up and cannot live in one host's cloud-init: forming the CouchDB cluster,
Kazoo's first start, telling ecallmgr about FreeSWITCH and Kamailio, the master account. `plan_steps`
lists them in order, each with the host it runs on, its command lines and the steps it needs; the
Orchestration component turns each into a pulumi-command `remote.Command`. A step needs exactly the
hosts it talks to, so adding a media host adds its own steps and re-pushes the configuration of the
hosts that name it, and nothing else runs again.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from enum import Enum
from typing import Optional

from core.bootstrap import cloud_init_file
from core.plan import Host, Plan
from core.roles import Role
from core.settings import Component, Settings

ON_HOST = "/opt/kazoo-bootstrap/remote"  # where the configuration bundle installs the remote scripts
PUBLIC_IP = "{public_ip}"  # in a command line: replaced by the host's public IP once it is known


class Stdin(str, Enum):
    """What a step reads on stdin: secrets never go on a command line, where a diff would show them."""

    BUNDLE = "bundle"  # the host's configuration bundle (base64 tar.gz)
    MASTER_PASSWORD = "master_password"


@dataclass(frozen=True)
class Step:
    name: str  # the remote.Command's name, e.g. "register-media1"
    host: Host  # where the command runs
    create: str
    delete: Optional[str] = None  # undoes the step when its host leaves the plan
    needs: tuple[str, ...] = ()  # steps that must have finished first
    after_server: bool = False  # waits for the host's server (only the first step of each host)
    stdin: Optional[Stdin] = None
    digest_trigger: bool = False  # runs again when the host's rendered configuration changes
    readiness: bool = False  # its stdout is the host's entry in the `readiness` output
    involves: tuple[str, ...] = ()  # other hosts the step is about: it runs again when one is replaced


def remote_script(name: str) -> str:
    return cloud_init_file(f"remote/{name}")


def sudo(script: str, *args: str) -> str:
    """A command line running one of the bundle's remote scripts as root (arguments are plain words)."""
    for arg in args:
        if not re.fullmatch(r"[A-Za-z0-9@%+=:,./_{}-]+", arg):
            raise ValueError(f"unsafe argument {arg!r} for {script}")
    return " ".join(["sudo", "-n", f"{ON_HOST}/{script}", *args])


def acl_name(prefix: str, cidr: str) -> str:
    """A name per CIDR, for the ACL and the step: `carrier-192-0-2-0-28`. IPv6 is written out in
    full first, so that two networks never share a name (`1::2/128` and `1:2::/128` would)."""
    net = ipaddress.ip_network(cidr)
    text = str(net) if net.version == 4 else f"{net.network_address.exploded}/{net.prefixlen}"
    return f"{prefix}-" + re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")


def plan_steps(settings: Settings, plan: Plan) -> list[Step]:
    """Every step, in an order where each step comes after the steps it needs."""
    steps: list[Step] = []
    for host in plan.hosts:
        steps.append(Step(f"wait-{host.name}", host, remote_script("wait-for-bootstrap.sh"), after_server=True))
    # Hosts whose push restarts a shared service (Kamailio, Kazoo, RabbitMQ, CouchDB) take it one
    # after another, so a change that touches them all never stops a role everywhere at once.
    # Media hosts push side by side: FreeSWITCH never restarts on a push.
    previous: dict[str, str] = {}
    for role in (Role.DATABASE, Role.BROKER, Role.APPLICATION, Role.PROXY):
        hosts = plan.with_role(role)
        for before, host in zip(hosts, hosts[1:]):
            previous.setdefault(host.name, before.name)
    for host in plan.hosts:
        after = (f"config-{previous[host.name]}",) if host.name in previous else ()
        steps.append(
            Step(
                f"config-{host.name}",
                host,
                remote_script("receive-config.sh"),
                needs=(f"wait-{host.name}", *after),
                stdin=Stdin.BUNDLE,
                digest_trigger=True,
            )
        )

    skip = set(settings.bootstrap.skip)
    databases = plan.with_role(Role.DATABASE)
    first_db = databases[0]
    kazoo_needs = [f"wait-{h.name}" for h in databases]
    if Component.COUCHDB not in skip:
        steps.append(
            Step(
                "couchdb-cluster",
                first_db,
                sudo("couchdb-cluster.sh", *(h.fqdn for h in databases)),
                needs=(f"config-{first_db.name}", *(f"wait-{h.name}" for h in databases[1:])),
                involves=tuple(h.name for h in databases[1:]),
            )
        )
        kazoo_needs = ["couchdb-cluster"]

    touched: dict[str, list[str]] = {h.name: [] for h in plan.hosts}  # host -> steps that involve it
    if Component.KAZOO not in skip:
        app = plan.with_role(Role.APPLICATION)[0]
        brokers = [f"wait-{h.name}" for h in plan.with_role(Role.BROKER) if h is not app]
        if Component.COUCHDB not in skip and len(databases) > 1:
            # Kazoo's first connection creates its system databases: only on the formed cluster, or
            # each gets one copy on one node (kazoo-start.env.j2). Every application host's Kazoo
            # waits for this step, which runs once the cluster is there.
            for host in plan.with_role(Role.APPLICATION):
                steps.append(Step(f"kazoo-start-{host.name}", host, sudo("kazoo-start.sh"),
                                  needs=("couchdb-cluster", f"config-{host.name}")))
                touched[host.name].append(f"kazoo-start-{host.name}")
            kazoo_needs = [f"kazoo-start-{app.name}"]
        steps.append(
            Step(
                "kazoo-first-start",
                app,
                sudo("kazoo-first-start.sh"),
                needs=tuple(dict.fromkeys([*kazoo_needs, f"config-{app.name}", *brokers])),
            )
        )
        touched[app.name].append("kazoo-first-start")

        def ecallmgr_step(name: str, other: Optional[Host], add: tuple[str, ...], remove: tuple[str, ...]) -> None:
            needs = ["kazoo-first-start"] + ([f"wait-{other.name}"] if other and other is not app else [])
            steps.append(
                Step(name, app, sudo("ecallmgr.sh", *add), delete=sudo("ecallmgr.sh", *remove), needs=tuple(needs),
                     involves=(other.name,) if other is not None and other is not app else ())
            )
            touched[app.name].append(name)
            if other is not None:
                touched[other.name].append(name)

        for media in plan.with_role(Role.MEDIA):
            ecallmgr_step(f"register-{media.name}", media, ("add-media", media.fqdn), ("remove-media", media.fqdn))
        for proxy in plan.with_role(Role.PROXY):
            ecallmgr_step(
                f"trust-{proxy.name}", proxy, ("allow-sbc", proxy.name, proxy.private_ip), ("remove-acl", proxy.name)
            )
        for cidr in settings.carrier_cidrs:
            name = acl_name("carrier", cidr)
            ecallmgr_step(name, None, ("allow-carrier", name, cidr), ("remove-acl", name))

        master = settings.master_account
        # Monster UI's apps are registered with the API address browsers use: the load balancer's
        # name with dns.zone, else the host's public IP.
        api_url = f"https://api.{settings.domain}/v2" if settings.tls_api else f"http://{PUBLIC_IP}:8000/v2"
        api = [api_url] if settings.sources.monster_ui is not None else []
        steps.append(
            Step(
                "master-account",
                app,
                sudo("master-account.sh", master.name, settings.master_realm, master.user, *api),
                needs=("kazoo-first-start",),
                stdin=Stdin.MASTER_PASSWORD,
            )
        )
        touched[app.name].append("master-account")

    for host in plan.hosts:
        steps.append(
            Step(
                f"readiness-{host.name}",
                host,
                sudo("readiness.sh", *(r.value for r in host.roles)),
                needs=(f"config-{host.name}", *touched[host.name]),
                digest_trigger=True,
                readiness=True,
            )
        )
    return steps
