"""The server components: one per kind of Kazoo server, plus the combined hosts of single and dual.

A role component owns its role's firewall rules and, in the maximal layout, its servers. In single
and dual every host carries all five roles, so `CombinedServers` owns the servers while each role
component still owns its rules. Everything here is written once; the cloud seam does the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Optional

import pulumi

from components.clouds import CloudSeam, NetworkRefs, ServerRefs
from core.firewall import Rule
from core.plan import Host
from core.roles import Role

# Renders a host's user-data once its public IP (None for hosts without a stable one) and its data
# volume's device (None for hosts without one) are known.
UserDataFn = Callable[[Host, Optional[pulumi.Output[str]], Optional[pulumi.Output[str]]], pulumi.Output[str]]


@dataclass
class ServersArgs:
    hosts: list[Host]  # the hosts this component creates (empty for a role in single/dual)
    rules: list[Rule]  # the firewall matrix rows of this component's role
    cloud: CloudSeam
    network: NetworkRefs
    user_data: UserDataFn


class _Servers(pulumi.ComponentResource):
    TYPE: ClassVar[str]
    ROLE: ClassVar[Optional[Role]] = None

    def __init__(self, name: str, args: ServersArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(self.TYPE, name, None, opts)
        cloud = args.cloud
        if self.ROLE is not None:
            cloud.role_firewall(self.ROLE, args.rules, args.network, parent=self)

        groups = {key: cloud.spread_group(key, parent=self) for key in sorted({h.spread_group for h in args.hosts})}
        self.servers: dict[str, ServerRefs] = {}
        for host in args.hosts:
            public_ip = cloud.public_ip(host, parent=self)
            known_ip = cloud.address_of(public_ip) if public_ip is not None else None
            volume = cloud.data_volume(host, parent=self)
            device = cloud.device_of(volume) if volume is not None else None
            self.servers[host.name] = cloud.server(
                host,
                args.user_data(host, known_ip, device),
                args.network,
                groups[host.spread_group],
                public_ip,
                volume,
                parent=self,
            )
            self.servers[host.name].data_device = device
        self.public_ips = {name: refs.public_ip for name, refs in self.servers.items()}
        self.register_outputs({"public_ips": self.public_ips})


class DatabaseServers(_Servers):
    """CouchDB 3 nodes, each with its data on a protected volume."""

    TYPE = "kazoo:servers:DatabaseServers"
    ROLE = Role.DATABASE


class BrokerServers(_Servers):
    """RabbitMQ brokers, independent of each other as Kazoo expects."""

    TYPE = "kazoo:servers:BrokerServers"
    ROLE = Role.BROKER


class ApplicationServers(_Servers):
    """Kazoo applications with crossbar (the API), ecallmgr and, optionally, Monster UI."""

    TYPE = "kazoo:servers:ApplicationServers"
    ROLE = Role.APPLICATION


class MediaServers(_Servers):
    """FreeSWITCH with mod_kazoo: RTP from the world, call control from ecallmgr."""

    TYPE = "kazoo:servers:MediaServers"
    ROLE = Role.MEDIA


class ProxyServers(_Servers):
    """Kamailio: the SIP registrar and proxy phones and carriers talk to."""

    TYPE = "kazoo:servers:ProxyServers"
    ROLE = Role.PROXY


class CombinedServers(_Servers):
    """Hosts carrying every role (single and dual layouts)."""

    TYPE = "kazoo:servers:CombinedServers"


ROLE_COMPONENTS: dict[Role, type[_Servers]] = {
    Role.DATABASE: DatabaseServers,
    Role.BROKER: BrokerServers,
    Role.APPLICATION: ApplicationServers,
    Role.MEDIA: MediaServers,
    Role.PROXY: ProxyServers,
}
