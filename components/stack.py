"""The whole program: stack config -> settings -> plan -> components -> outputs."""

from __future__ import annotations

from typing import Optional

import pulumi
from pulumi.runtime import config as runtime_config

from components.clouds import seam_for
from components.secrets import KazooSecrets
from components.network import KazooNetwork, KazooNetworkArgs
from components.servers import ROLE_COMPONENTS, CombinedServers, ServersArgs
from core.bootstrap import HostContext, render_user_data
from core.firewall import firewall_matrix, rules_for
from core.plan import Host, Plan, PlanError, plan_hosts
from core.roles import ALL_ROLES, Role
from core.settings import Layout, Settings, SettingsError, load_settings


def read_config() -> dict[str, str]:
    """Every key of the stack config. pulumi.Config reads one key at a time; the model wants the
    whole namespace at once, so that an unknown key is an error rather than silently ignored."""
    raw = dict(runtime_config.get_config_env())
    raw.update(runtime_config.CONFIG.get())
    return raw


def load() -> tuple[Settings, Plan]:
    """Parse and plan, or stop the program with one line: no resource is registered before this."""
    try:
        settings = load_settings(read_config())
        return settings, plan_hosts(settings)
    except (SettingsError, PlanError) as err:
        raise pulumi.RunError(str(err)) from None


def build(settings: Settings, plan: Plan, stack: str) -> None:
    cloud = seam_for(settings, stack)
    rules = firewall_matrix(settings)
    network = KazooNetwork("kazoo", KazooNetworkArgs(plan=plan, cloud=cloud))
    token = settings.signalwire_token.get_secret_value() if settings.signalwire_token else None
    secrets = KazooSecrets("kazoo", signalwire_token=token).resolved()

    def user_data(host: Host, public_ip: Optional[pulumi.Output[str]]) -> pulumi.Output[str]:
        ip = public_ip if public_ip is not None else pulumi.Output.from_input(None)
        rendered = pulumi.Output.all(ip, secrets).apply(
            lambda args: render_user_data(
                HostContext(host, plan, settings, public_ip=args[0], secrets=args[1])
            )
        )
        return pulumi.Output.secret(rendered)

    def args(hosts: list[Host], role: Optional[Role]) -> ServersArgs:
        return ServersArgs(
            hosts=hosts,
            rules=rules_for(rules, role) if role else [],
            cloud=cloud,
            network=network.refs,
            user_data=user_data,
        )

    maximal = settings.layout is Layout.MAXIMAL
    components = [
        ROLE_COMPONENTS[role](role.value, args(plan.with_role(role) if maximal else [], role))
        for role in ALL_ROLES
    ]
    if not maximal:
        components.append(CombinedServers("combined", args(list(plan.hosts), None)))

    public_ips = {name: ip for c in components for name, ip in c.public_ips.items()}
    export_outputs(settings, plan, public_ips)


def export_outputs(settings: Settings, plan: Plan, public_ips: dict[str, pulumi.Output[str]]) -> None:
    pulumi.export(
        "hosts",
        {
            h.name: {
                "fqdn": h.fqdn,
                "roles": [r.value for r in h.roles],
                "zone": h.zone,
                "privateIp": h.private_ip,
                "publicIp": public_ips[h.name],
            }
            for h in plan.hosts
        },
    )
    proxies = plan.with_role(Role.PROXY)
    pulumi.export(
        "sipEndpoints",
        [public_ips[h.name].apply(lambda ip: f"sip:{ip}:5060") for h in proxies],
    )
    apps = plan.with_role(Role.APPLICATION)
    pulumi.export("apiUrls", [public_ips[h.name].apply(lambda ip: f"http://{ip}:8000/v2") for h in apps])
    pulumi.export("uiUrls", [public_ips[h.name].apply(lambda ip: f"http://{ip}/") for h in apps])
