"""AWS seam (pulumi-aws).

One security group per role, created empty by the network so that every role's rules can reference
the groups of its peers; each rule is its own resource, named from its content, so a change to one
CIDR list shows as one added and one removed rule in a preview.
"""

from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_aws as aws

from components.clouds.base import CloudSeam, NetworkRefs, ServerRefs, WebEndpoint, resource_name
from core.user_data import encode_user_data
from core.firewall import FIREWALL_ROLE_LABEL, Rule
from core.names import TTL
from core.plan import Host, Plan
from core.roles import ALL_ROLES, Role
from core.settings import Settings

DEBIAN_OWNER = "136693071363"  # Debian's official AWS account
# Elastic IPs per region an account gets by default (Service Quotas: ec2 L-0263D0A3).
DEFAULT_EIP_QUOTA = 5


DEBIAN_IMAGES = {"debian-12": "debian-12-amd64-*", "debian-13": "debian-13-amd64-*"}
ROOT_VOLUME_GB = 40
DATA_DEVICE = "/dev/sdf"


class AwsSeam(CloudSeam):
    def __init__(self, settings, stack):
        super().__init__(settings, stack)
        self._provider: Optional[aws.Provider] = None
        self._amis: dict[str, pulumi.Output[str]] = {}
        self._zone: Optional[pulumi.Output[str]] = None
        self._zones: Optional[list[str]] = None

    # One explicit provider, so the stack's region is the one in kazoo:aws.region: resources and
    # lookups alike (the default provider would need aws:region or AWS_REGION besides).
    def provider(self) -> aws.Provider:
        if self._provider is None:
            self._provider = aws.Provider(
                "aws",
                region=self.settings.aws.region,
                default_tags=aws.ProviderDefaultTagsArgs(tags=self.labels()),
            )
        return self._provider

    def opts(self, parent, **kwargs) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=parent, provider=self.provider(), **kwargs)

    def invoke_opts(self) -> pulumi.InvokeOptions:
        return pulumi.InvokeOptions(provider=self.provider())

    def _region_zones(self) -> list[str]:
        """The region's availability zones that need no opt-in, as this account names them (zone
        letters differ between regions and accounts: ap-northeast-1 has no 1b, for one)."""
        if self._zones is None:
            found = aws.get_availability_zones(
                state="available",
                filters=[aws.GetAvailabilityZonesFilterArgs(name="opt-in-status", values=["opt-in-not-required"])],
                opts=self.invoke_opts(),
            )
            self._zones = sorted(found.names)
        return self._zones

    def with_cloud_defaults(self) -> Settings:
        """Without aws.zones: the region's first three real zones."""
        if self.settings.aws.zones is None:
            zones = self._region_zones()[:3]
            self.settings = self.settings.model_copy(
                update={"aws": self.settings.aws.model_copy(update={"zones": zones})})
        return self.settings

    def _another_zone(self, plan: Plan) -> str:
        """A zone of the region the plan does not use (the load balancer's second)."""
        used = set(plan.subnets)
        return next(z for z in self._region_zones() if z not in used)

    def tags(self, name: str, roles: tuple[Role, ...] = ()) -> dict[str, str]:
        return {"Name": name, **self.labels(roles)}

    def ami(self, image: str, parent) -> pulumi.Output[str]:
        """A pinned AMI id, or a lookup of Debian's own images (one per image name).

        Running instances ignore later lookups (ignore_changes on ami), so a newer image reaches only
        new hosts and shows in the `image` output instead of silently replacing servers.
        """
        if image.startswith("ami-"):
            return pulumi.Output.from_input(image)
        if image not in self._amis:
            found = aws.ec2.get_ami_output(
                owners=[DEBIAN_OWNER],
                most_recent=True,
                filters=[
                    aws.ec2.GetAmiFilterArgs(name="name", values=[DEBIAN_IMAGES.get(image, image)]),
                    aws.ec2.GetAmiFilterArgs(name="architecture", values=["x86_64"]),
                ],
                opts=self.invoke_opts(),
            )
            self._amis[image] = found.id
        return self._amis[image]

    def network(self, plan: Plan, parent) -> NetworkRefs:
        eips = sum(1 for h in plan.hosts if h.stable_public_ip)
        if eips > DEFAULT_EIP_QUOTA:
            pulumi.log.warn(
                f"this stack holds {eips} Elastic IPs in {self.settings.aws.region}; an account's default quota is "
                f"{DEFAULT_EIP_QUOTA} (with any the account holds already): raise it first (Service Quotas, "
                "Amazon EC2, L-0263D0A3) or `pulumi up` stops at the first address over it"
            )
        vpc = aws.ec2.Vpc(
            "vpc",
            cidr_block=plan.network_cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags=self.tags(f"kazoo-{self.stack}"),
            opts=self.opts(parent),
        )
        gateway = aws.ec2.InternetGateway(
            "internet-gateway", vpc_id=vpc.id, tags=self.tags(f"kazoo-{self.stack}"), opts=self.opts(parent)
        )
        routes = aws.ec2.RouteTable(
            "public-routes",
            vpc_id=vpc.id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=gateway.id)],
            tags=self.tags(f"kazoo-{self.stack}-public"),
            opts=self.opts(parent),
        )
        subnets = {}
        for zone, cidr in plan.subnets.items():
            subnet = aws.ec2.Subnet(
                f"subnet-{zone}",
                vpc_id=vpc.id,
                cidr_block=cidr,
                availability_zone=zone,
                map_public_ip_on_launch=True,  # outbound for hosts without an Elastic IP
                tags=self.tags(f"kazoo-{self.stack}-{zone}"),
                opts=self.opts(parent),
            )
            aws.ec2.RouteTableAssociation(
                f"subnet-{zone}", subnet_id=subnet.id, route_table_id=routes.id, opts=self.opts(parent)
            )
            subnets[zone] = subnet
        groups = {}
        for role in ALL_ROLES:
            group = aws.ec2.SecurityGroup(
                f"{role.value}-sg",
                vpc_id=vpc.id,
                description=f"Kazoo {role.value} hosts ({self.stack})",
                tags=self.tags(f"kazoo-{self.stack}-{role.value}"),
                opts=self.opts(parent),
            )
            # Hosts fetch packages and reach carriers: outbound is open, inbound is the matrix.
            aws.vpc.SecurityGroupEgressRule(
                f"{role.value}-egress-all",
                security_group_id=group.id,
                ip_protocol="-1",
                cidr_ipv4="0.0.0.0/0",
                description="all outbound",
                opts=self.opts(parent),
            )
            groups[role] = group
        return NetworkRefs(
            network_id=vpc.id,
            subnet_ids={zone: s.id for zone, s in subnets.items()},
            subnet_resources=list(subnets.values()),
            security_groups=groups,
            route_table_id=routes.id,
        )

    def role_firewall(self, role: Role, rules: list[Rule], network: NetworkRefs, parent) -> None:
        group = network.security_groups[role]
        for rule in rules:
            common = dict(
                security_group_id=group.id,
                ip_protocol=rule.protocol,
                from_port=rule.ports[0],
                to_port=rule.ports[1],
                tags={FIREWALL_ROLE_LABEL: role.value},
                opts=self.opts(parent),
            )
            base = (role.value, rule.purpose, rule.protocol, rule.port_text)
            if rule.public:
                # The VPC is IPv4-only: IPv6 sources have nothing to reach.
                for cidr in (c for c in rule.source.cidrs if ":" not in c):
                    aws.vpc.SecurityGroupIngressRule(
                        resource_name(*base, "from", cidr),
                        cidr_ipv4=cidr,
                        description=f"{rule.purpose} from {rule.source} {cidr}",
                        **common,
                    )
            else:
                aws.vpc.SecurityGroupIngressRule(
                    resource_name(*base, "from", rule.source.value),
                    referenced_security_group_id=network.security_groups[rule.source].id,
                    description=f"{rule.purpose} from {rule.source.value} hosts",
                    **common,
                )

    def spread_group(self, key: str, parent) -> pulumi.Resource:
        return aws.ec2.PlacementGroup(
            f"{key}-spread",
            strategy="spread",
            spread_level="rack",
            tags=self.tags(f"kazoo-{self.stack}-{key}"),
            opts=self.opts(parent),
        )

    def public_ip(self, host: Host, parent) -> Optional[pulumi.Resource]:
        if not host.stable_public_ip:
            return None
        return aws.ec2.Eip(
            f"{host.name}-eip",
            domain="vpc",
            tags={"Name": host.fqdn, **self.lasting_labels(host.roles)},
            opts=self.lasting(parent),
        )

    def address_of(self, public_ip) -> pulumi.Output[str]:
        return public_ip.public_ip

    def data_volume(self, host, parent) -> Optional[pulumi.Resource]:
        if not host.data_volume_gb:
            return None
        return aws.ebs.Volume(
            f"{host.name}-couchdb",
            availability_zone=host.zone,
            size=host.data_volume_gb,
            type="gp3",
            encrypted=True,
            tags={"Name": f"{host.fqdn}-couchdb", **self.lasting_labels(host.roles)},
            opts=self.lasting(parent),
        )

    def device_of(self, volume) -> pulumi.Output[str]:
        # Nitro instances see EBS volumes as NVMe devices named by the volume id (udev's by-id link).
        return volume.id.apply(lambda vid: f"/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_{vid.replace('-', '')}")

    def server(self, host, user_data, network, spread_group, public_ip, volume, parent) -> ServerRefs:
        groups = [network.security_groups[role].id for role in host.roles]
        instance = aws.ec2.Instance(
            host.name,
            ami=self.ami(self.image_of(host), parent),
            instance_type=host.size,
            availability_zone=host.zone,
            subnet_id=network.subnet_ids[host.zone],
            private_ip=host.private_ip,
            vpc_security_group_ids=groups,
            placement_group=spread_group.id,
            user_data_base64=user_data.apply(lambda text: encode_user_data(text, "aws")),
            metadata_options=aws.ec2.InstanceMetadataOptionsArgs(
                http_tokens="required", http_endpoint="enabled", http_put_response_hop_limit=1
            ),
            root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
                volume_type="gp3",
                volume_size=ROOT_VOLUME_GB,
                encrypted=True,
                tags=self.tags(f"{host.fqdn}-root", host.roles),
            ),
            tags=self.tags(host.fqdn, host.roles),
            opts=self.opts(
                parent,
                # A change of user data would stop/start the instance and an AMI change replace it:
                # config changes are pushed by the orchestration, a new AMI reaches new hosts only.
                ignore_changes=["userData", "userDataBase64", "ami"],
                # private_ip, subnet, zone and placement group force a new instance; created first,
                # it would ask for the old one's private IP and data volume: AWS refuses both.
                delete_before_replace=True,
            ),
        )
        ready: list[pulumi.Resource] = [instance]
        if public_ip is not None:
            association = aws.ec2.EipAssociation(
                f"{host.name}-eip",
                instance_id=instance.id,
                allocation_id=public_ip.allocation_id,
                opts=self.opts(parent),
            )
            ready.append(association)
        if volume is not None:
            attachment = aws.ec2.VolumeAttachment(
                f"{host.name}-couchdb",
                device_name=DATA_DEVICE,
                volume_id=volume.id,
                instance_id=instance.id,
                stop_instance_before_detaching=True,
                opts=self.opts(parent),
            )
            ready.append(attachment)
        public = self.address_of(public_ip) if public_ip is not None else instance.public_ip
        return ServerRefs(server=instance, public_ip_resource=public_ip, public_ip=public, private_ip=host.private_ip,
                          ready=ready)

    # ----- names (dns.zone): Route53, reverse DNS on Elastic IPs, an ALB with an ACM certificate ----

    def _zone_id(self, zone: str) -> pulumi.Output[str]:
        if self._zone is None:
            self._zone = aws.route53.get_zone_output(name=zone, private_zone=False, opts=self.invoke_opts()).zone_id
        return self._zone

    def dns_address(self, zone, fqdn, address, key, parent) -> pulumi.Resource:
        return aws.route53.Record(
            f"dns-{key}-a",
            zone_id=self._zone_id(zone),
            name=fqdn,
            type="A",
            ttl=TTL,
            records=[address],
            opts=self.opts(parent),
        )

    def dns_record_set(self, zone, records, parent) -> pulumi.Resource:
        return aws.route53.Record(
            f"dns-{records.key}",
            zone_id=self._zone_id(zone),
            name=records.name,
            type=records.type,
            ttl=TTL,
            records=list(records.values),
            opts=self.opts(parent),
        )

    def reverse_dns(self, host, refs, forward, parent) -> pulumi.Resource:
        # AWS sets an Elastic IP's PTR only when the forward name resolves to it
        return aws.ec2.EipDomainName(
            f"{host.name}-rdns",
            allocation_id=refs.public_ip_resource.allocation_id,
            domain_name=host.fqdn,
            opts=self.opts(parent, depends_on=[forward]),
        )

    def web_endpoint(self, names, plan, network, apps, parent) -> WebEndpoint:
        """An application load balancer in two subnets of its own (an ALB spans two zones), admitting
        apiCidrs on 443, an ACM certificate for the names validated in Route53, crossbar (and
        Monster UI by name) as health-checked target groups of every application host."""
        subnets = []
        for zone, cidr in plan.load_balancer_subnets:
            key = zone or "region"
            subnet = aws.ec2.Subnet(
                f"web-lb-subnet-{key}",
                vpc_id=network.network_id,
                cidr_block=cidr,
                availability_zone=zone or self._another_zone(plan),
                tags=self.tags(f"kazoo-{self.stack}-web-lb-{key}"),
                opts=self.opts(parent),
            )
            aws.ec2.RouteTableAssociation(
                f"web-lb-subnet-{key}", subnet_id=subnet.id, route_table_id=network.route_table_id,
                opts=self.opts(parent),
            )
            subnets.append(subnet)
        group = aws.ec2.SecurityGroup(
            "web-lb-sg", vpc_id=network.network_id, description=f"Kazoo API load balancer ({self.stack})",
            tags=self.tags(f"kazoo-{self.stack}-web-lb"), opts=self.opts(parent),
        )
        for cidr in (c for c in self.settings.effective_api_cidrs if ":" not in c):
            for port in (443, 80):
                aws.vpc.SecurityGroupIngressRule(
                    resource_name("web-lb", "https" if port == 443 else "http", "from", cidr),
                    security_group_id=group.id, ip_protocol="tcp", from_port=port, to_port=port, cidr_ipv4=cidr,
                    description=f"{'HTTPS' if port == 443 else 'HTTP, redirected'} from apiCidrs {cidr}",
                    tags={FIREWALL_ROLE_LABEL: "web"}, opts=self.opts(parent),
                )
        aws.vpc.SecurityGroupEgressRule(
            "web-lb-to-hosts", security_group_id=group.id, ip_protocol="tcp", from_port=80, to_port=8000,
            cidr_ipv4=plan.network_cidr, description="to crossbar and Monster UI on the hosts",
            opts=self.opts(parent),
        )
        lb = aws.lb.LoadBalancer(
            "web-lb", load_balancer_type="application", internal=False,
            subnets=[s.id for s in subnets], security_groups=[group.id],
            tags=self.tags(f"kazoo-{self.stack}-web"), opts=self.opts(parent),
        )
        domains = [n for n in (names.api, names.ui) if n]
        certificate = aws.acm.Certificate(
            "web-certificate", domain_name=domains[0], subject_alternative_names=domains[1:],
            validation_method="DNS", tags=self.tags(f"kazoo-{self.stack}-web"), opts=self.opts(parent),
        )
        proofs = []
        for domain in domains:
            option = certificate.domain_validation_options.apply(
                lambda options, d=domain: next(o for o in options if o.domain_name == d))
            proofs.append(aws.route53.Record(
                f"dns-certificate-{domain.split('.')[0]}",
                zone_id=self._zone_id(names.zone),
                name=option.apply(lambda o: o.resource_record_name),
                type=option.apply(lambda o: o.resource_record_type),
                records=[option.apply(lambda o: o.resource_record_value)],
                ttl=60, allow_overwrite=True, opts=self.opts(parent),
            ))
        validated = aws.acm.CertificateValidation(
            "web-certificate", certificate_arn=certificate.arn,
            validation_record_fqdns=[p.fqdn for p in proofs], opts=self.opts(parent),
        )

        def target_group(key: str, port: int, path: str) -> aws.lb.TargetGroup:
            tg = aws.lb.TargetGroup(
                f"web-{key}", port=port, protocol="HTTP", target_type="instance", vpc_id=network.network_id,
                health_check=aws.lb.TargetGroupHealthCheckArgs(path=path, port=str(port), matcher="200-499",
                                                               interval=15, healthy_threshold=2),
                tags=self.tags(f"kazoo-{self.stack}-{key}"), opts=self.opts(parent),
            )
            for name, refs in apps.items():
                aws.lb.TargetGroupAttachment(f"web-{key}-{name}", target_group_arn=tg.arn, target_id=refs.server.id,
                                             port=port, opts=self.opts(parent))
            return tg

        api = target_group("api", 8000, "/v2/")  # crossbar answers /v2/ without credentials with 401: alive
        https = aws.lb.Listener(
            "web-https", load_balancer_arn=lb.arn, port=443, protocol="HTTPS",
            ssl_policy="ELBSecurityPolicy-TLS13-1-2-2021-06", certificate_arn=validated.certificate_arn,
            default_actions=[aws.lb.ListenerDefaultActionArgs(type="forward", target_group_arn=api.arn)],
            opts=self.opts(parent),
        )
        aws.lb.Listener(
            "web-http", load_balancer_arn=lb.arn, port=80, protocol="HTTP",
            default_actions=[aws.lb.ListenerDefaultActionArgs(type="redirect", redirect=aws.lb.ListenerDefaultActionRedirectArgs(
                port="443", protocol="HTTPS", status_code="HTTP_301"))],
            opts=self.opts(parent),
        )
        if names.ui:
            ui = target_group("ui", 80, "/")
            aws.lb.ListenerRule(
                "web-ui", listener_arn=https.arn, priority=10,
                conditions=[aws.lb.ListenerRuleConditionArgs(
                    host_header=aws.lb.ListenerRuleConditionHostHeaderArgs(values=[names.ui]))],
                actions=[aws.lb.ListenerRuleActionArgs(type="forward", target_group_arn=ui.arn)],
                opts=self.opts(parent),
            )
        return WebEndpoint(resources=[lb, validated, https], alias=(lb.dns_name, lb.zone_id))

    def dns_alias(self, zone, fqdn, alias, key, parent) -> pulumi.Resource:
        return aws.route53.Record(
            f"dns-{key}-a", zone_id=self._zone_id(zone), name=fqdn, type="A",
            aliases=[aws.route53.RecordAliasArgs(name=alias[0], zone_id=alias[1], evaluate_target_health=True)],
            opts=self.opts(parent),
        )
