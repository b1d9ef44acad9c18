"""The whole program: stack config -> settings -> plan -> components -> outputs."""

from __future__ import annotations

import re
from typing import Callable, Optional

import pulumi
from pulumi.runtime import config as runtime_config

from components.clouds import ServerRefs, seam_for
from components.clouds.hetzner import UI_PORT as HETZNER_UI_PORT
from components.names import KazooNames, KazooNamesArgs
from components.network import KazooNetwork, KazooNetworkArgs
from components.orchestration import Orchestration, OrchestrationArgs
from components.secrets import KazooSecrets
from components.sources import PinnedArchives
from components.servers import ROLE_COMPONENTS, CombinedServers, ServersArgs
from core.bootstrap import HostContext, config_bundle, config_digest, render_user_data
from core.user_data import check_user_data_fits
from core.firewall import check_aws_rule_quota, firewall_matrix, rules_for
from core.orchestration import plan_steps
from core.plan import Host, Plan, PlanError, plan_hosts
from core.roles import ALL_ROLES, Role
from core.names import Names, plan_names
from core.settings import Cloud, Layout, Settings, SettingsError, load_settings, plain_text_secrets


LABEL_VALUE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?")


def read_config() -> dict[str, str]:
    """Every key of the stack config. pulumi.Config reads one key at a time; the model wants the
    whole namespace at once, so that an unknown key is an error rather than silently ignored."""
    raw = dict(runtime_config.get_config_env())
    raw.update(runtime_config.CONFIG.get())
    return raw


def load() -> tuple[Settings, Plan]:
    """Parse and plan, or stop the program with one line: no resource is registered before this."""
    raw = read_config()
    stack = pulumi.get_stack()
    # The stack's name is a label value on both clouds (kazoo-stack): Hetzner takes at most 63
    # characters, starting and ending alphanumeric (docs.hetzner.cloud, "Labels").
    if not LABEL_VALUE.fullmatch(stack):
        raise pulumi.RunError(f"stack name {stack[:80]!r}: at most 63 letters, digits, '-', '_' or '.', "
                              "starting and ending with a letter or digit (it labels every resource)")
    try:
        settings = load_settings(raw)
        plan = plan_hosts(settings)  # on AWS without aws.zones: <region>a, b, c until build() looks
        check_aws_rule_quota(settings, firewall_matrix(settings))
        check_user_data_fits(settings, plan)
    except (SettingsError, PlanError) as err:
        raise pulumi.RunError(str(err)) from None
    secret_keys = set(runtime_config.get_config_secret_keys_env()) | set(runtime_config._SECRET_KEYS.get())
    for key in plain_text_secrets(raw, secret_keys):
        pulumi.log.warn(f"{key} is in clear text in the stack file: set it with `pulumi config set --secret {key}`")
    return settings, plan


# render(host, its public IP, its data volume's device, what to make of its HostContext): an Output
# once every input is known.
Renderer = Callable[[Host, Optional[pulumi.Input[str]], Optional[pulumi.Input[str]], Callable[[HostContext], str]],
                    pulumi.Output[str]]


def build(settings: Settings, plan: Plan, stack: str) -> None:
    cloud = seam_for(settings, stack)
    defaulted = cloud.with_cloud_defaults()  # AWS: the region's real zones, through the stack's provider
    if defaulted is not settings:
        settings = defaulted
        try:
            plan = plan_hosts(settings)  # the same checks passed with as many placeholder zones
        except PlanError as err:
            raise pulumi.RunError(str(err)) from None
    rules = firewall_matrix(settings)
    network = KazooNetwork("kazoo", KazooNetworkArgs(plan=plan, cloud=cloud))
    kazoo_secrets = KazooSecrets("kazoo", settings, [h.name for h in plan.hosts])
    secrets = kazoo_secrets.resolved()
    operator_key = pulumi.Output.from_input(kazoo_secrets.operator_public_key)
    archives = PinnedArchives("kazoo", settings)
    pins = archives.resolved()

    def render(host: Host, public_ip: Optional[pulumi.Input[str]], device: Optional[pulumi.Input[str]],
               how: Callable[[HostContext], str]) -> pulumi.Output[str]:
        """`how(HostContext)` once the host's public IP, volume, the secrets and the SSH keys are known."""
        return pulumi.Output.all(public_ip, secrets, operator_key, kazoo_secrets.host_key(host.name), pins, device).apply(
            lambda a: how(HostContext(host, plan, settings, public_ip=a[0], secrets=a[1],
                                      operator_keys=(a[2],) if a[2] else (), host_key=a[3], archive_sha256=a[4],
                                      data_device=a[5]))
        )

    def user_data(host: Host, public_ip: Optional[pulumi.Output[str]], device: Optional[pulumi.Output[str]]
                  ) -> pulumi.Output[str]:
        return pulumi.Output.secret(render(host, public_ip, device, render_user_data))

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

    servers = {name: refs for c in components for name, refs in c.servers.items()}
    public_ips = {name: refs.public_ip for name, refs in servers.items()}
    names = plan_names(settings, plan)
    if names is not None:
        KazooNames("kazoo", KazooNamesArgs(names=names, plan=plan, cloud=cloud, network=network.refs,
                                           servers=servers, tls_api=settings.tls_api))
    export_outputs(settings, plan, public_ips, names)
    pulumi.export("archiveSha256", archives.sha256)  # pin these in the stack file to review changes
    if settings.orchestrate:
        orchestrate(settings, plan, servers, kazoo_secrets, render)


def orchestrate(
    settings: Settings, plan: Plan, servers: dict[str, ServerRefs], secrets: KazooSecrets, render: Renderer
) -> None:
    """The post-boot steps over SSH, and what they report."""
    def known_ip(host: Host) -> Optional[pulumi.Output[str]]:
        # Only a stable (protected) address is rendered into the configuration, as in the user-data.
        return servers[host.name].public_ip if host.stable_public_ip else None

    orchestration = Orchestration(
        "kazoo",
        OrchestrationArgs(
            settings=settings,
            steps=plan_steps(settings, plan),
            servers=servers,
            private_key=secrets.operator_private_key,
            host_keys={name: key.public_key_openssh.apply(str.strip) for name, key in secrets.host_keys.items()},
            bundles={h.name: pulumi.Output.secret(render(h, known_ip(h), servers[h.name].data_device, config_bundle))
                     for h in plan.hosts},
            digests={h.name: pulumi.Output.unsecret(render(h, known_ip(h), servers[h.name].data_device, config_digest))
                     for h in plan.hosts},
            master_password=secrets.master_password,
        ),
    )
    pulumi.export("readiness", orchestration.readiness)
    pulumi.export(
        "masterAccount",
        {
            "name": settings.master_account.name,
            "realm": settings.master_realm,
            "user": settings.master_account.user,
            "password": pulumi.Output.secret(secrets.master_password),
        },
    )


def export_outputs(settings: Settings, plan: Plan, public_ips: dict[str, pulumi.Output[str]],
                   names: Optional[Names]) -> None:
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
    apps = plan.with_role(Role.APPLICATION)
    if names is not None:
        # the SIP domain (phones and carriers find the proxies through its NAPTR/SRV records)
        pulumi.export("sipEndpoints", [f"sip:{settings.domain}"] + [f"sip:{h.fqdn}:5060" for h in proxies])
    else:
        pulumi.export("sipEndpoints", [public_ips[h.name].apply(lambda ip: f"sip:{ip}:5060") for h in proxies])
    if names is not None and settings.tls_api and names.api:
        pulumi.export("apiUrls", [f"https://{names.api}/v2"])
        ui_port = "" if settings.cloud is Cloud.AWS else f":{HETZNER_UI_PORT}"
        pulumi.export("uiUrls", [f"https://{names.ui}{ui_port}/"] if names.ui else [])
    else:
        pulumi.export("apiUrls", [public_ips[h.name].apply(lambda ip: f"http://{ip}:8000/v2") for h in apps])
        pulumi.export("uiUrls", [public_ips[h.name].apply(lambda ip: f"http://{ip}/") for h in apps]
                      if settings.sources.monster_ui is not None else [])
