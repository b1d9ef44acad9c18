"""KazooNames: the stack's names in the cloud's DNS (`dns.zone`), reverse DNS of the lasting public
addresses, and the HTTPS endpoint of the API (and Monster UI) on the cloud's load balancer.
The records are planned as plain data (core/names.py); the cloud seam makes them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi

from components.clouds import CloudSeam, NetworkRefs, ServerRefs
from components.clouds.base import WebEndpoint
from core.names import Names
from core.plan import Plan
from core.roles import Role


@dataclass
class KazooNamesArgs:
    names: Names
    plan: Plan
    cloud: CloudSeam
    network: NetworkRefs
    servers: dict[str, ServerRefs]
    tls_api: bool  # the API behind the load balancer (else only the hosts' names)


class KazooNames(pulumi.ComponentResource):
    web: Optional[WebEndpoint]

    def __init__(self, name: str, args: KazooNamesArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("kazoo:names:KazooNames", name, None, opts)
        names, cloud, zone = args.names, args.cloud, args.names.zone
        self.records: dict[str, pulumi.Resource] = {}
        for fqdn, host in names.hosts:
            refs = args.servers[host.name]
            forward = cloud.dns_address(zone, fqdn, refs.public_ip, host.name, parent=self)
            self.records[fqdn] = forward
            cloud.reverse_dns(host, refs, forward, parent=self)
        for record_set in names.sip:
            self.records[f"{record_set.type} {record_set.name}"] = cloud.dns_record_set(zone, record_set, parent=self)

        self.web = None
        if args.tls_api and names.api:
            apps = {h.name: args.servers[h.name] for h in args.plan.with_role(Role.APPLICATION)}
            self.web = cloud.web_endpoint(names, args.plan, args.network, apps, parent=self)
            for key, fqdn in (("api", names.api), ("ui", names.ui)):
                if fqdn is None:
                    continue
                if self.web.ipv4 is not None:
                    self.records[fqdn] = cloud.dns_address(zone, fqdn, self.web.ipv4, key, parent=self)
                else:
                    self.records[fqdn] = cloud.dns_alias(zone, fqdn, self.web.alias, key, parent=self)
        self.register_outputs({"records": sorted(self.records)})
