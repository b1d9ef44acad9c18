"""Hetzner Cloud seam (pulumi-hcloud).

Hetzner firewalls filter only the public interfaces, so they carry only the rules whose source is a
CIDR list; peer rules on the private network are enforced by each host's nftables ruleset, generated
from the same matrix (cloud-init/).
"""

from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_hcloud as hcloud

from components.clouds.base import CloudSeam, NetworkRefs, ServerRefs
from core.bootstrap import encode_user_data
from core.firewall import FIREWALL_ROLE_LABEL, Rule
from core.plan import Host, Plan
from core.roles import Role


def _int(output: pulumi.Output) -> pulumi.Output[int]:
    return output.apply(int)


class HetznerSeam(CloudSeam):
    def network(self, plan: Plan, parent: pulumi.Resource) -> NetworkRefs:
        net = hcloud.Network(
            "network",
            name=f"kazoo-{self.stack}",
            ip_range=plan.network_cidr,
            labels=self.labels(),
            opts=self.opts(parent),
        )
        subnet_range = next(iter(plan.subnets.values()))
        subnet = hcloud.NetworkSubnet(
            "subnet",
            network_id=_int(net.id),
            type="cloud",
            network_zone=self.settings.hetzner.network_zone,
            ip_range=subnet_range,
            opts=self.opts(parent),
        )
        return NetworkRefs(
            network_id=net.id,
            subnet_ids={zone: subnet.id for zone in plan.subnets},
            subnet_resources=[subnet],
        )

    def role_firewall(self, role: Role, rules: list[Rule], network: NetworkRefs, parent) -> None:
        public = [r for r in rules if r.public and r.source.cidrs]
        hcloud.Firewall(
            f"{role.value}-firewall",
            name=f"kazoo-{self.stack}-{role.value}",
            labels={**self.labels(), FIREWALL_ROLE_LABEL: role.value},
            rules=[
                hcloud.FirewallRuleArgs(
                    direction="in",
                    protocol=r.protocol,
                    port=r.port_text,
                    source_ips=list(r.source.cidrs),
                    description=f"{r.purpose} from {r.source}",
                )
                for r in public
            ],
            # Attached by label, so a server never waits for its firewall and vice versa.
            apply_tos=[
                hcloud.FirewallApplyToArgs(
                    label_selector=f"kazoo-stack={self.stack},kazoo-role-{role.value}=true"
                )
            ],
            opts=self.opts(parent),
        )

    def spread_group(self, key: str, parent) -> pulumi.Resource:
        return hcloud.PlacementGroup(
            f"{key}-spread",
            name=f"kazoo-{self.stack}-{key}",
            type="spread",
            labels=self.labels(),
            opts=self.opts(parent),
        )

    def public_ip(self, host: Host, parent) -> Optional[pulumi.Resource]:
        if not host.stable_public_ip:
            return None
        return hcloud.PrimaryIp(
            f"{host.name}-ipv4",
            name=f"{host.fqdn}-ipv4",
            type="ipv4",
            location=host.zone,
            assignee_type="server",
            auto_delete=False,  # the address outlives the server: carriers whitelist it
            delete_protection=self.cloud_delete_protection,
            labels=self.lasting_labels(host.roles),
            opts=self.lasting(parent),
        )

    def address_of(self, public_ip) -> pulumi.Output[str]:
        return public_ip.ip_address

    def data_volume(self, host, parent) -> Optional[pulumi.Resource]:
        if not host.data_volume_gb:
            return None
        return hcloud.Volume(
            f"{host.name}-couchdb",
            name=f"{host.name}-couchdb-{self.stack}",
            size=host.data_volume_gb,
            location=host.zone,
            delete_protection=self.cloud_delete_protection,
            labels=self.lasting_labels(host.roles),
            opts=self.lasting(parent),
        )

    def device_of(self, volume) -> pulumi.Output[str]:
        return volume.linux_device  # /dev/disk/by-id/scsi-0HC_Volume_<id>

    def server(self, host, user_data, network, spread_group, public_ip, volume, parent) -> ServerRefs:
        server = hcloud.Server(
            host.name,
            name=host.fqdn,
            server_type=host.size,
            image=self.settings.image,
            location=host.zone,
            labels=self.labels(host.roles),
            user_data=user_data.apply(lambda text: encode_user_data(text)),
            placement_group_id=_int(spread_group.id),
            public_nets=[
                hcloud.ServerPublicNetArgs(
                    ipv4_enabled=True,
                    ipv4=_int(public_ip.id) if public_ip else None,
                    ipv6_enabled=False,
                )
            ],
            # Attached at creation so the private interface exists when cloud-init runs.
            networks=[
                hcloud.ServerNetworkArgs(
                    network_id=_int(network.network_id), ip=host.private_ip, alias_ips=[]
                )
            ],
            shutdown_before_deletion=True,
            opts=self.opts(
                parent,
                depends_on=network.subnet_resources,
                # user_data and ssh_keys force a new server on Hetzner: config changes are pushed
                # by the orchestration instead, and a newer image never rebuilds a running host.
                ignore_changes=["userData", "sshKeys", "image"],
                # The name and the private IP are fixed, so a replacement must delete first.
                delete_before_replace=True,
            ),
        )
        ready: list[pulumi.Resource] = [server]
        if volume is not None:
            # Formatted once by the bootstrap, never by the cloud: a re-attach must keep the data.
            attachment = hcloud.VolumeAttachment(
                f"{host.name}-couchdb",
                server_id=_int(server.id),
                volume_id=_int(volume.id),
                automount=False,
                opts=self.opts(parent),
            )
            ready.append(attachment)
        public = self.address_of(public_ip) if public_ip else server.ipv4_address
        return ServerRefs(server=server, public_ip=public, private_ip=host.private_ip, ready=ready)
