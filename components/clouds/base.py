"""What every cloud seam provides. Components call these methods, never provider classes."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

import pulumi

from core.firewall import SCALE_DOWN_LABEL, Rule
from core.plan import Host, Plan
from core.roles import Role
from core.settings import ScaleDown, Settings

if TYPE_CHECKING:
    from core.names import Names, RecordSet


@dataclass
class NetworkRefs:
    """What servers and firewalls need from the network, whatever the cloud."""

    network_id: pulumi.Output[Any]
    subnet_ids: dict[str, pulumi.Output[Any]]  # zone -> subnet id
    subnet_resources: list[pulumi.Resource]  # servers wait for these (Hetzner needs the subnet)
    security_groups: dict[Role, pulumi.Resource] = field(default_factory=dict)  # AWS only
    route_table_id: Optional[pulumi.Output[Any]] = None  # AWS: the public routes (for the load balancer's subnets)


@dataclass
class WebEndpoint:
    """The API's load balancer: what the DNS names point at."""

    resources: list[pulumi.Resource]
    ipv4: Optional[pulumi.Output[str]] = None  # an address for A records (Hetzner)
    alias: Optional[tuple[pulumi.Output[str], pulumi.Output[str]]] = None  # (DNS name, zone id) for an alias (AWS)
    ui_port: int = 443  # where Monster UI answers


@dataclass
class ServerRefs:
    server: pulumi.Resource
    public_ip_resource: Optional[pulumi.Resource]  # the lasting address (Primary IP / Elastic IP)
    public_ip: pulumi.Output[str]
    private_ip: str
    # What must exist before the host is reachable and whole: the server, its public IP association
    # and its data volume attachment. The orchestration's first step on the host waits for these.
    ready: list[pulumi.Resource] = field(default_factory=list)
    data_device: Optional[pulumi.Output[str]] = None  # the CouchDB volume's device path, database hosts


def resource_name(*parts: str) -> str:
    """A logical name made from content, e.g. media-rtp-udp-16384-32768-from-0.0.0.0_0."""
    return "-".join(re.sub(r"[^A-Za-z0-9._-]+", "_", p) for p in parts if p)


class CloudSeam(ABC):
    def __init__(self, settings: Settings, stack: str):
        self.settings = settings
        self.stack = stack

    def with_cloud_defaults(self) -> Settings:
        """The settings with what the cloud itself decides filled in (AWS: the region's zones)."""
        return self.settings

    def image_of(self, host: Host) -> str:
        """The image a host boots: a proxy of its own may run roles.proxy.image (Debian 13's Kamailio)."""
        return self.settings.image_of(host.roles[0] if len(host.roles) == 1 else None)

    def labels(self, roles: tuple[Role, ...] = ()) -> dict[str, str]:
        """Hetzner labels / AWS tags: the stack, and kazoo-role-<role>: "true" per role carried."""
        labels = {"kazoo-stack": self.stack}
        labels.update({f"kazoo-role-{role.value}": "true" for role in roles})
        return labels

    def opts(self, parent: pulumi.Resource, **kwargs: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=parent, **kwargs)

    def lasting(self, parent: pulumi.Resource, **kwargs: Any) -> pulumi.ResourceOptions:
        """Options of what outlives a server (its data volume, the public IP carriers whitelist), by
        `scaleDown`: protected (a removal stops the update), retained (removed from the stack, left
        in the account) or released with the host."""
        mode = self.settings.scale_down
        return self.opts(parent, protect=mode is ScaleDown.PROTECT, retain_on_delete=mode is ScaleDown.KEEP, **kwargs)

    def lasting_labels(self, roles: tuple[Role, ...]) -> dict[str, str]:
        """Labels/tags of what outlives a server: the scale-down choice, in the open (the policy pack
        accepts an unprotected data volume only when the stack chose so)."""
        labels = self.labels(roles)
        if self.settings.scale_down is not ScaleDown.PROTECT:
            labels[SCALE_DOWN_LABEL] = self.settings.scale_down.value
        return labels

    @property
    def cloud_delete_protection(self) -> bool:
        """The cloud's own delete protection (Hetzner), off only when removed hosts are released."""
        return self.settings.scale_down is not ScaleDown.RELEASE

    @abstractmethod
    def network(self, plan: Plan, parent: pulumi.Resource) -> NetworkRefs:
        """The private network and its subnets (and, on AWS, one empty security group per role)."""

    @abstractmethod
    def role_firewall(
        self, role: Role, rules: list[Rule], network: NetworkRefs, parent: pulumi.Resource
    ) -> None:
        """The cloud firewall rules of one role."""

    @abstractmethod
    def spread_group(self, key: str, parent: pulumi.Resource) -> pulumi.Resource:
        """A placement group that spreads the hosts given `key` over distinct hardware."""

    @abstractmethod
    def public_ip(self, host: Host, parent: pulumi.Resource) -> Optional[pulumi.Resource]:
        """A protected public IPv4 that outlives the server, for hosts with stable_public_ip."""

    @abstractmethod
    def address_of(self, public_ip: pulumi.Resource) -> pulumi.Output[str]:
        """The IPv4 address of a resource returned by public_ip()."""

    # ----- names (dns.zone) -----------------------------------------------------------------

    @abstractmethod
    def dns_address(self, zone: str, fqdn: str, address: pulumi.Input[str], key: str, parent: pulumi.Resource
                    ) -> pulumi.Resource:
        """An A record `fqdn` -> `address` in the zone."""

    @abstractmethod
    def dns_record_set(self, zone: str, records: "RecordSet", parent: pulumi.Resource) -> pulumi.Resource:
        """An SRV or NAPTR record set in the zone."""

    @abstractmethod
    def reverse_dns(self, host: Host, refs: ServerRefs, forward: pulumi.Resource, parent: pulumi.Resource
                    ) -> pulumi.Resource:
        """The PTR of the host's lasting public address: its FQDN (after the forward record exists)."""

    @abstractmethod
    def web_endpoint(self, names: "Names", plan: Plan, network: NetworkRefs, apps: dict[str, ServerRefs],
                     parent: pulumi.Resource) -> WebEndpoint:
        """The load balancer terminating HTTPS for the API (and Monster UI) with a managed certificate
        for their names, health-checking every application host; the names point at it."""

    def dns_alias(self, zone: str, fqdn: str, alias: tuple[pulumi.Output[str], pulumi.Output[str]], key: str,
                  parent: pulumi.Resource) -> pulumi.Resource:
        """An alias record to a load balancer (clouds whose balancers have names, not addresses)."""
        raise NotImplementedError

    @abstractmethod
    def data_volume(self, host: Host, parent: pulumi.Resource) -> Optional[pulumi.Resource]:
        """The CouchDB data volume of a database host (created before its server, which is told its id)."""

    @abstractmethod
    def device_of(self, volume: pulumi.Resource) -> pulumi.Output[str]:
        """The /dev/disk/by-id path under which the host sees `volume`."""

    @abstractmethod
    def server(
        self,
        host: Host,
        user_data: pulumi.Output[str],
        network: NetworkRefs,
        spread_group: pulumi.Resource,
        public_ip: Optional[pulumi.Resource],
        volume: Optional[pulumi.Resource],
        parent: pulumi.Resource,
    ) -> ServerRefs:
        """The server, its public IP association and its data volume's attachment."""
