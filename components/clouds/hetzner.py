"""Hetzner Cloud seam (pulumi-hcloud).

Hetzner firewalls filter only the public interfaces, so they carry only the rules whose source is a
CIDR list; peer rules on the private network are enforced by each host's nftables ruleset, generated
from the same matrix (cloud-init/).
"""

from __future__ import annotations

import hashlib
import ipaddress
from typing import Optional

import pulumi
import pulumi_hcloud as hcloud

from components.clouds.base import CloudSeam, NetworkRefs, ServerRefs, WebEndpoint
from core.user_data import encode_user_data
from core.firewall import FIREWALL_ROLE_LABEL, Rule
from core.names import TTL, relative
from core.plan import Host, Plan
from core.roles import Role


UI_PORT = 8443  # Monster UI beside the API on one load balancer (Hetzner routes by port)


def _within(cidr: str, network) -> bool:
    net = ipaddress.ip_network(cidr)
    return net.version == network.version and net.subnet_of(network)


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
        # Sources inside the private network (the load balancer's address) are the host firewall's
        # business: Hetzner's firewalls see public traffic only.
        network = ipaddress.ip_network(self.settings.network.cidr)
        public = [(r, [c for c in r.source.cidrs if not _within(c, network)]) for r in rules if r.public]
        public = [(r, cidrs) for r, cidrs in public if cidrs]
        hcloud.Firewall(
            f"{role.value}-firewall",
            name=f"kazoo-{self.stack}-{role.value}",
            labels={**self.labels(), FIREWALL_ROLE_LABEL: role.value},
            rules=[
                hcloud.FirewallRuleArgs(
                    direction="in",
                    protocol=r.protocol,
                    port=r.port_text,
                    source_ips=cidrs,
                    description=f"{r.purpose} from {r.source}",
                )
                for r, cidrs in public
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
            # no assignee_type: only with an assignee_id (the server's public_nets assign it); the
            # provider warns otherwise (terraform-provider-hcloud internal/primaryip/resource.go)
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
            image=self.image_of(host),
            location=host.zone,
            labels=self.labels(host.roles),
            user_data=user_data.apply(lambda text: encode_user_data(text, "hetzner")),
            placement_group_id=_int(spread_group.id),
            public_nets=[
                hcloud.ServerPublicNetArgs(
                    ipv4_enabled=True,
                    ipv4=_int(public_ip.id) if public_ip else None,
                    ipv6_enabled=False,
                )
            ],
            # Attached by the provider right after the server is created and started (terraform-provider-
            # hcloud internal/server/resource.go, resourceServerCreate): the private interface is hot-
            # plugged while cloud-init runs, and Hetzner's images are expected to configure it (hc-utils:
            # not verified here, no Hetzner image to boot); the bootstrap waits for the planned address
            # (lib.sh wait_for_private_ip) before anything binds to it, and stops if it never comes.
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
        return ServerRefs(server=server, public_ip_resource=public_ip, public_ip=public, private_ip=host.private_ip,
                          ready=ready)

    # ----- names (dns.zone): Hetzner DNS zones (RRsets), reverse DNS, a load balancer ------------

    _zone: Optional[pulumi.Output[str]] = None

    def _zone_name(self, zone: str) -> pulumi.Output[str]:
        """The zone as the Cloud API has it, looked up once, so a zone outside the token's project or
        still in the old DNS Console (which the Cloud API does not see until migrated) fails the
        preview instead of the first record set, after the servers (terraform-provider-hcloud
        internal/zonerrset writes through the Cloud API's zone), and a secondary zone, which takes
        no record sets, is refused with one line."""
        if self._zone is None:
            self._zone = hcloud.get_zone_output(name=zone).apply(lambda found: _primary_zone(found, zone))
        return self._zone

    def dns_address(self, zone, fqdn, address, key, parent) -> pulumi.Resource:
        return hcloud.ZoneRrset(
            f"dns-{key}-a",
            zone=self._zone_name(zone),
            name=relative(fqdn, zone),
            type="A",
            ttl=TTL,
            records=[hcloud.ZoneRrsetRecordArgs(value=address)],
            labels=self.labels(),
            opts=self.opts(parent),
        )

    def dns_record_set(self, zone, records, parent) -> pulumi.Resource:
        return hcloud.ZoneRrset(
            f"dns-{records.key}",
            zone=self._zone_name(zone),
            name=relative(records.name, zone),
            type=records.type,
            ttl=TTL,
            records=[hcloud.ZoneRrsetRecordArgs(value=v) for v in records.values],
            labels=self.labels(),
            opts=self.opts(parent),
        )

    def reverse_dns(self, host, refs, forward, parent) -> pulumi.Resource:
        ip = refs.public_ip_resource
        return hcloud.Rdns(
            f"{host.name}-rdns",
            primary_ip_id=_int(ip.id),
            ip_address=ip.ip_address,
            dns_ptr=host.fqdn,
            opts=self.opts(parent, depends_on=[forward]),
        )

    def web_endpoint(self, names, plan, network, apps, parent) -> WebEndpoint:
        """A Hetzner load balancer on the private network (at the planned address the hosts' firewalls
        let in), a managed certificate for the names (Hetzner validates it in its own DNS), HTTPS
        443 -> crossbar 8000 and, with Monster UI, 8443 -> nginx 80: Hetzner routes by port, not by
        name. Its health checks ask every application host."""
        lb = hcloud.LoadBalancer(
            "web-lb",
            name=f"kazoo-{self.stack}-web",
            load_balancer_type="lb11",
            location=self.settings.hetzner.locations[0],
            labels=self.labels(),
            opts=self.opts(parent),
        )
        attached = hcloud.LoadBalancerNetwork(
            "web-lb",
            load_balancer_id=_int(lb.id),
            network_id=_int(network.network_id),
            ip=plan.load_balancer_cidrs[0].split("/")[0],
            opts=self.opts(parent, depends_on=network.subnet_resources),
        )
        domains = [n for n in (names.api, names.ui) if n]
        certificate = hcloud.ManagedCertificate(
            "web-certificate",
            # New names (Monster UI added) replace the certificate, created before the old one goes
            # (that one is still in use by the 443 service); names are unique per project, so the name
            # carries its domains (terraform-provider-hcloud docs/resources/managed_certificate.md).
            name=f"kazoo-{self.stack}-web-{hashlib.sha256(' '.join(domains).encode()).hexdigest()[:8]}",
            domain_names=domains,
            labels=self.labels(),
            opts=self.opts(parent),
        )
        resources: list[pulumi.Resource] = [lb, attached, certificate]
        for name, refs in apps.items():
            resources.append(hcloud.LoadBalancerTarget(
                f"web-lb-{name}",
                type="server",
                load_balancer_id=_int(lb.id),
                server_id=_int(refs.server.id),
                use_private_ip=True,
                opts=self.opts(parent, depends_on=[attached]),
            ))
        services = [(443, 8000, "/v2/")] + ([(UI_PORT, 80, "/")] if names.ui else [])
        for listen, destination, path in services:
            resources.append(hcloud.LoadBalancerService(
                f"web-lb-{listen}",
                load_balancer_id=lb.id,
                protocol="https",
                listen_port=listen,
                destination_port=destination,
                http=hcloud.LoadBalancerServiceHttpArgs(certificates=[_int(certificate.id)], redirect_http=listen == 443),
                health_check=hcloud.LoadBalancerServiceHealthCheckArgs(
                    protocol="http", port=destination, interval=15, timeout=10, retries=3,
                    # crossbar answers /v2/ without credentials with 401: alive
                    http=hcloud.LoadBalancerServiceHealthCheckHttpArgs(path=path, status_codes=["2??", "3??", "4??"]),
                ),
                opts=self.opts(parent),
            ))
        return WebEndpoint(resources=resources, ipv4=lb.ipv4, ui_port=UI_PORT if names.ui else 443)


def _primary_zone(found: hcloud.GetZoneResult, zone: str) -> str:
    if found.mode != "primary":
        raise pulumi.RunError(f"kazoo:dns.zone: {zone} is a {found.mode} zone in Hetzner DNS: "
                              "records are written to a primary zone only")
    return found.name or zone
