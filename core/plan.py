"""The layout planner: which hosts exist, what they carry, where they live and which IP they own.

Everything about a host's identity is computed here, before any resource exists, so that every host
can name its peers up front and all servers are created in parallel. The rules that keep a running
stack safe when it grows:

- names are stable: the single layout's host is the first host of dual (kazoo1), and raising a role
  count in maximal only appends hosts (media3 after media2);
- a host's zone and private IP depend only on its role and its own number, never on how many hosts
  follow it, so adding hosts never moves an existing one.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Optional

from core.roles import ALL_ROLES, COMBINED_PREFIX, NAME_PREFIX, STABLE_PUBLIC_IP_ROLES, Role
from core.settings import Cloud, Layout, Settings

# Each zone's subnet is cut into blocks of one per role slot; hosts start at this offset in their
# block, clear of the addresses clouds keep for themselves (AWS holds the first four of a subnet).
HOST_OFFSET = 10
ROLE_SLOTS = {None: 0, Role.DATABASE: 1, Role.BROKER: 2, Role.APPLICATION: 3, Role.MEDIA: 4, Role.PROXY: 5}
SLOT_BITS = 3  # 8 blocks per subnet: 6 used, 2 spare
ZONE_BITS = 3  # 8 subnets per network: at most 8 zones
# Cloud limits on spread groups: Hetzner 10 servers per group, AWS 7 per zone per rack-spread group.
SPREAD_GROUP_SIZE = {Cloud.HETZNER: 10, Cloud.AWS: 7}
HETZNER_MAX_SERVERS_PER_NETWORK = 100


class PlanError(ValueError):
    """The settings ask for a plan that cannot exist; str() is one line naming the key."""


@dataclass(frozen=True)
class Host:
    name: str  # short host name, e.g. media2
    fqdn: str
    roles: tuple[Role, ...]
    zone: str  # Hetzner location or AWS availability zone
    private_ip: str
    size: str
    spread_group: str  # placement/spread group key, e.g. media-fsn1-0
    stable_public_ip: bool  # gets a protected public IP that outlives the server
    data_volume_gb: Optional[int]  # CouchDB volume, for hosts carrying the database role

    @property
    def combined(self) -> bool:
        return len(self.roles) > 1

    def carries(self, role: Role) -> bool:
        return role in self.roles

    @property
    def carries_application(self) -> bool:
        return Role.APPLICATION in self.roles


@dataclass(frozen=True)
class Plan:
    cloud: Cloud
    layout: Layout
    domain: str
    network_cidr: str
    subnets: dict[str, str]  # zone -> subnet CIDR (Hetzner: one subnet for the network zone)
    hosts: tuple[Host, ...] = field(default_factory=tuple)
    # The API's load balancer on the private network (with dns.zone): where crossbar's traffic comes
    # from. Hetzner: its own address in the network; AWS: two subnets of its own (an ALB spans two zones).
    load_balancer_cidrs: tuple[str, ...] = ()
    # AWS: the ALB's subnets as (zone, CIDR); zone None is another zone of the region (looked up).
    load_balancer_subnets: tuple[tuple[Optional[str], str], ...] = ()

    def with_role(self, role: Role) -> list[Host]:
        return [h for h in self.hosts if h.carries(role)]

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    @property
    def spread_groups(self) -> list[str]:
        return sorted({h.spread_group for h in self.hosts})


def _subnets(settings: Settings) -> dict[str, str]:
    network = ipaddress.ip_network(settings.network.cidr)
    blocks = list(network.subnets(prefixlen_diff=ZONE_BITS))
    if settings.cloud is Cloud.HETZNER:
        # A Hetzner cloud subnet spans the whole network zone: every location shares it.
        return {zone: str(blocks[0]) for zone in settings.zones}
    if len(settings.zones) > len(blocks):
        raise PlanError(f"kazoo:aws.zones: at most {len(blocks)} zones fit the network plan")
    return {zone: str(blocks[i]) for i, zone in enumerate(settings.zones)}


def _address(subnet: str, role: Optional[Role], index: int, key: str) -> str:
    block = list(ipaddress.ip_network(subnet).subnets(prefixlen_diff=SLOT_BITS))[ROLE_SLOTS[role]]
    if HOST_OFFSET + index >= block.num_addresses - 1:
        raise PlanError(
            f"kazoo:network.cidr: too small for {index + 1} {key} hosts in one zone "
            f"(each role gets {block.num_addresses - HOST_OFFSET - 1}); use a larger range"
        )
    return str(block.network_address + HOST_OFFSET + index)


def _hosts_of(settings: Settings, subnets: dict[str, str], role: Optional[Role], count: int) -> list[Host]:
    zones = settings.zones
    prefix = COMBINED_PREFIX if role is None else NAME_PREFIX[role]
    roles = ALL_ROLES if role is None else (role,)
    key = "combined" if role is None else role.value
    shares_subnet = settings.cloud is Cloud.HETZNER
    group_size = SPREAD_GROUP_SIZE[settings.cloud]
    hosts = []
    for number in range(1, count + 1):
        # Round-robin over zones: host n always lands in the same zone whatever the count.
        zone = zones[(number - 1) % len(zones)]
        in_zone = (number - 1) // len(zones)  # this host's position among its role in its zone
        index = number - 1 if shares_subnet else in_zone
        name = f"{prefix}{number}"
        hosts.append(
            Host(
                name=name,
                fqdn=f"{name}.{settings.domain}",
                roles=roles,
                zone=zone,
                private_ip=_address(subnets[zone], role, index, key),
                size=settings.size_of(role),
                spread_group=f"{key}-{zone}-{in_zone // group_size}",
                stable_public_ip=role is None or role in STABLE_PUBLIC_IP_ROLES,
                data_volume_gb=settings.roles.database.volume_size if Role.DATABASE in roles else None,
            )
        )
    return hosts


def plan_hosts(settings: Settings) -> Plan:
    subnets = _subnets(settings)
    if settings.layout is Layout.MAXIMAL:
        hosts = [
            h
            for role in ALL_ROLES
            for h in _hosts_of(settings, subnets, role, settings.roles.of(role).count)
        ]
    else:
        hosts = _hosts_of(settings, subnets, None, 1 if settings.layout is Layout.SINGLE else 2)
    if settings.cloud is Cloud.HETZNER and len(hosts) > HETZNER_MAX_SERVERS_PER_NETWORK:
        raise PlanError(
            f"kazoo:roles: {len(hosts)} hosts exceed the {HETZNER_MAX_SERVERS_PER_NETWORK} servers "
            "a Hetzner network holds"
        )
    balancer = load_balancer_cidrs(settings)  # also checks the network's last block is free
    return Plan(
        cloud=settings.cloud,
        layout=settings.layout,
        domain=settings.domain,
        network_cidr=settings.network.cidr,
        subnets=subnets,
        hosts=tuple(hosts),
        load_balancer_cidrs=balancer,
        load_balancer_subnets=load_balancer_subnets(settings, hosts) if balancer else (),
    )


# The spare role slot of a zone's block (slots 6 and 7 hold no role) on Hetzner; the network's last
# zone block on AWS, which a plan never gives a zone (at most 7 zones then).
LB_SLOT = 6


def load_balancer_cidrs(settings: Settings) -> tuple[str, ...]:
    """Where the API's load balancer reaches the application hosts from (with dns.zone), else ()."""
    if not settings.tls_api:
        return ()
    subnets = _subnets(settings)
    if settings.cloud is Cloud.HETZNER:
        subnet = next(iter(subnets.values()))
        block = list(ipaddress.ip_network(subnet).subnets(prefixlen_diff=SLOT_BITS))[LB_SLOT]
        return (f"{block.network_address + HOST_OFFSET}/32",)
    blocks = list(ipaddress.ip_network(settings.network.cidr).subnets(prefixlen_diff=ZONE_BITS))
    if len(subnets) >= len(blocks):
        raise PlanError(f"kazoo:aws.zones: with dns.zone, at most {len(blocks) - 1} zones fit the network plan")
    return tuple(str(half) for half in blocks[-1].subnets(prefixlen_diff=1))


def load_balancer_subnets(settings: Settings, hosts) -> tuple[tuple[Optional[str], str], ...]:
    """AWS, when there is a load balancer (load_balancer_cidrs): the ALB's subnets, one in each zone
    that holds an application host (a target in a zone the balancer is not enabled in gets no
    traffic: ELB's "Availability Zones" rule), and a second when they all share one (an ALB needs two
    zones): the plan's next zone, or None for another zone of the region. Each zone keeps its slot of
    the network's last block (the plan's zone order, the last slot for the region's extra zone), so a
    zone added later adds a subnet and moves none."""
    if settings.cloud is not Cloud.AWS:
        return ()
    zones = settings.zones
    block = list(ipaddress.ip_network(settings.network.cidr).subnets(prefixlen_diff=ZONE_BITS))[-1]
    slots = list(block.subnets(prefixlen_diff=ZONE_BITS))  # 8 slots, /26 in the narrowest network
    wanted: list[Optional[str]] = list(dict.fromkeys(h.zone for h in hosts if h.carries(Role.APPLICATION)))
    if len(wanted) == 1:
        others = [z for z in zones if z not in wanted]
        wanted.append(others[0] if others else None)
    return tuple((zone, str(slots[zones.index(zone)] if zone else slots[-1])) for zone in wanted)
