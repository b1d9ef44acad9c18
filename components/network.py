"""KazooNetwork: the private network every host joins with its planned static IP."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi

from components.clouds import CloudSeam, NetworkRefs
from core.plan import Plan


@dataclass
class KazooNetworkArgs:
    plan: Plan
    cloud: CloudSeam


class KazooNetwork(pulumi.ComponentResource):
    """Hetzner: a Network and its cloud subnet. AWS: a VPC, a public subnet per zone, an internet
    gateway and routes, and one (empty) security group per role for the role components to fill."""

    refs: NetworkRefs

    def __init__(self, name: str, args: KazooNetworkArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("kazoo:network:KazooNetwork", name, None, opts)
        self.refs = args.cloud.network(args.plan, parent=self)
        self.network_id = self.refs.network_id
        self.register_outputs({"network_id": self.network_id})
