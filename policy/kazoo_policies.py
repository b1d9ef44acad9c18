"""The Kazoo policy pack's policies, importable without starting a policy server.

`__main__.py` wraps ALL_POLICIES in a PolicyPack for `pulumi preview --policy-pack policy`; the tests
call each policy's validate() with resource properties (engine camelCase names, as Pulumi sends them).
The port lists come from core/firewall.py: the same matrix that writes the firewalls checks them.

Firewall rules of both clouds are read into one shape (`Ingress`) first:
  aws:vpc/securityGroupIngressRule, aws:ec2/securityGroupRule (type ingress), aws:ec2/securityGroup
  (inline ingress) and hcloud:index/firewall (rules with direction "in").
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Optional

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from core.firewall import FIREWALL_ROLE_LABEL, INTERNAL_PORTS, RTP_PORTS, internal_protocols

SIP_PORTS = (5060, 5061, 5064, 5065, 7000, 7001)  # Kamailio's public SIP, TLS, WS and ALG ports
PRIVATE_RANGES = [ipaddress.ip_network(c) for c in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")]
ALL_PORTS = (0, 65535)


@dataclass(frozen=True)
class Ingress:
    role: Optional[str]  # the Kazoo role the rule belongs to, when labelled
    protocol: str  # tcp | udp | icmp | all
    ports: tuple[int, int]
    cidrs: tuple[str, ...]  # only CIDR sources; rules between security groups have none

    def covers(self, low: int, high: int, protocol: Optional[str] = None) -> bool:
        if protocol and self.protocol not in (protocol, "all"):
            return False
        return self.protocol != "icmp" and self.ports[0] <= high and low <= self.ports[1]

    @property
    def internet(self) -> tuple[str, ...]:
        """The source CIDRs that are not private address space."""
        return tuple(c for c in self.cidrs if not _private(c))


def _private(cidr: str) -> bool:
    net = ipaddress.ip_network(cidr, strict=False)
    return any(net.version == p.version and net.subnet_of(p) for p in PRIVATE_RANGES)


# AWS takes IP protocol numbers as well as names ("6" is tcp): read both the same way.
PROTOCOL_NUMBERS = {"1": "icmp", "6": "tcp", "17": "udp", "58": "icmp"}  # 58: ICMPv6


def _protocol(value: Any) -> str:
    value = str(value).strip().lower()
    if value in ("-1", "all", "any"):
        return "all"
    return PROTOCOL_NUMBERS.get(value, "icmp" if value == "icmpv6" else value)


def _ports(low: Any, high: Any, protocol: str) -> tuple[int, int]:
    if protocol == "all" or low is None:
        return ALL_PORTS
    return int(low), int(high if high is not None else low)


def _hcloud_ports(port: Optional[str], protocol: str) -> tuple[int, int]:
    if protocol in ("icmp", "gre", "esp") or not port or port == "any":
        return ALL_PORTS if protocol in ("tcp", "udp") else (0, 0)
    low, _, high = port.partition("-")
    return int(low), int(high or low)


def ingress_rules(resource_type: str, props: Mapping[str, Any]) -> Iterator[Ingress]:
    """The inbound rules a resource opens, in one shape for both clouds."""
    if resource_type == "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule":
        protocol = _protocol(props.get("ipProtocol"))
        cidrs = tuple(c for c in (props.get("cidrIpv4"), props.get("cidrIpv6")) if c)
        role = (props.get("tags") or {}).get(FIREWALL_ROLE_LABEL)
        yield Ingress(role, protocol, _ports(props.get("fromPort"), props.get("toPort"), protocol), cidrs)
    elif resource_type == "aws:ec2/securityGroupRule:SecurityGroupRule" and props.get("type") == "ingress":
        protocol = _protocol(props.get("protocol"))
        cidrs = tuple(props.get("cidrBlocks") or ()) + tuple(props.get("ipv6CidrBlocks") or ())
        yield Ingress(None, protocol, _ports(props.get("fromPort"), props.get("toPort"), protocol), cidrs)
    elif resource_type == "aws:ec2/securityGroup:SecurityGroup":
        for rule in props.get("ingress") or ():
            protocol = _protocol(rule.get("protocol"))
            cidrs = tuple(rule.get("cidrBlocks") or ()) + tuple(rule.get("ipv6CidrBlocks") or ())
            yield Ingress(None, protocol, _ports(rule.get("fromPort"), rule.get("toPort"), protocol), cidrs)
    elif resource_type == "hcloud:index/firewall:Firewall":
        role = (props.get("labels") or {}).get(FIREWALL_ROLE_LABEL)
        for rule in props.get("rules") or ():
            if rule.get("direction") != "in":
                continue
            protocol = _protocol(rule.get("protocol"))
            yield Ingress(role, protocol, _hcloud_ports(rule.get("port"), protocol), tuple(rule.get("sourceIps") or ()))


# ----- the policies ------------------------------------------------------------------------------

def _sip_rtp_only_where_needed(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for rule in ingress_rules(args.resource_type, args.props):
        if not rule.internet:
            continue
        sip = [p for p in SIP_PORTS if rule.covers(p, p)]
        if sip and rule.role != "proxy":
            report(f"SIP port {sip[0]} open to {', '.join(rule.internet)} on {rule.role or 'an unlabelled rule'}: "
                   "only proxy (Kamailio) hosts take SIP from outside")
        if rule.covers(*RTP_PORTS, protocol="udp") and rule.role != "media":
            report(f"RTP ports {rule.ports[0]}-{rule.ports[1]} open to {', '.join(rule.internet)} on "
                   f"{rule.role or 'an unlabelled rule'}: only media (FreeSWITCH) hosts take RTP")


def _no_internal_port_from_internet(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for rule in ingress_rules(args.resource_type, args.props):
        for name, (low, high) in INTERNAL_PORTS.items():
            if not any(rule.covers(low, high, protocol) for protocol in internal_protocols(name)):
                continue
            # FreeSWITCH's SIP port included, carriers too: they come in through Kamailio
            for cidr in rule.internet:
                report(f"internal port {name} ({low}-{high}) open to {cidr}: only peers on the private "
                       "network may reach it")


# Without a policy config (a bare `--policy-pack policy`): SSH never from a range wider than these.
NO_CONFIG_SSH_PREFIX = {4: 16, 6: 48}
# A bastion is one machine (or its NAT): entries wider than this allow no SSH.
BASTION_PREFIX = {4: 24, 6: 56}
# A rule's sources holding more public addresses than one of these blocks are "the internet" for the
# API rule: 0.0.0.0/1 + 128.0.0.0/2 + ... opens it as surely as 0.0.0.0/0 (a /8 is the largest block
# one organisation holds; private ranges do not count). Per rule: AWS rules name one range each.
WORLD_PREFIX = {4: 8, 6: 32}


def _internet_sized(cidrs: list[str]) -> bool:
    nets = [ipaddress.ip_network(c, strict=False) for c in cidrs]
    for version, prefix in WORLD_PREFIX.items():
        public = [n for n in ipaddress.collapse_addresses([n for n in nets if n.version == version])]
        size = sum(n.num_addresses - sum(min(n.num_addresses, p.num_addresses) for p in PRIVATE_RANGES
                                         if p.version == version and n.overlaps(p)) for n in public)
        if size > 2 ** ((32 if version == 4 else 128) - prefix):
            return True
    return False


def _ssh_only_from_admin_cidrs(args: ResourceValidationArgs, report: ReportViolation) -> None:
    config = args.get_config()
    # the admins, and the bastion `pulumi up` jumps through (the stack's ssh.bastion: one machine,
    # so a bastion entry wider than BASTION_PREFIX allows nothing)
    bastions = [ipaddress.ip_network(c, strict=False) for c in config.get("bastionCidrs") or []]
    admin = [*(ipaddress.ip_network(c, strict=False) for c in config.get("adminCidrs") or []),
             *(b for b in bastions if b.prefixlen >= BASTION_PREFIX[b.version])]
    for rule in ingress_rules(args.resource_type, args.props):
        if not rule.covers(22, 22, protocol="tcp"):
            continue
        for cidr in rule.internet:
            net = ipaddress.ip_network(cidr, strict=False)
            if admin:
                if not any(net.version == a.version and net.subnet_of(a) for a in admin):
                    report(f"SSH open to {cidr}, outside adminCidrs ({', '.join(map(str, admin))})")
            elif net.prefixlen < NO_CONFIG_SSH_PREFIX[net.version]:
                report(f"SSH open to {cidr}: open it to the admins' CIDRs only (set adminCidrs in the policy config)")


def _api_open_to_world_only_over_tls(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """Crossbar's plain HTTP (8000) and Monster UI's (80) open to the whole internet carry the master
    password in clear: such a stack must put them behind the load balancer (dns.zone)."""
    for rule in ingress_rules(args.resource_type, args.props):
        for port, what in ((8000, "crossbar"), (80, "Monster UI")):
            if rule.covers(port, port, protocol="tcp") and rule.role == "application":
                if _internet_sized(rule.internet):
                    report(f"{what} ({port}, plain HTTP) open to {', '.join(rule.internet)}: a world-open API must be "
                           "HTTPS (set dns.zone: the cloud's load balancer terminates TLS)")


DATA_VOLUMES = {"aws:ebs/volume:Volume": "tags", "hcloud:index/volume:Volume": "labels"}


def _database_volumes_protected(args: ResourceValidationArgs, report: ReportViolation) -> None:
    labels_key = DATA_VOLUMES.get(args.resource_type)
    if labels_key is None:
        return
    labels = args.props.get(labels_key) or {}
    if labels.get("kazoo-role-database") != "true":
        return
    # The stack's scaleDown, labelled on the volume: keep (retainOnDelete: dropped from the stack,
    # left in the account) or release (deleted with its host, on purpose). Otherwise: protected.
    choice = labels.get("kazoo-scale-down")
    if choice == "keep":
        return
    if not args.opts.protect and choice != "release":
        report("a CouchDB data volume must be `protect`ed (or the stack must choose scaleDown: keep or release): "
               "deleting it deletes the calls' data")
    if args.resource_type.startswith("hcloud:") and not args.props.get("deleteProtection") and choice != "release":
        report("a CouchDB data volume on Hetzner must have deleteProtection")


def _imdsv2_required(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != "aws:ec2/instance:Instance":
        return
    tokens = (args.props.get("metadataOptions") or {}).get("httpTokens")
    if tokens != "required":
        report(f"metadataOptions.httpTokens is {tokens!r}: IMDSv2 ('required') keeps SSRF from reading credentials")


def _gzip_base64(value: str) -> bool:
    try:
        return base64.b64decode(value, validate=True)[:2] == b"\x1f\x8b"
    except (binascii.Error, ValueError):
        return False


def _user_data_not_in_clear(args: ResourceValidationArgs, report: ReportViolation) -> None:
    # A policy sees secret inputs unwrapped (pulumi-policy's validate hands over plain values), so it
    # cannot check secretness itself; the program marks user data secret and its tests check that.
    # What a policy can check: the user data is not readable cloud-config on the cloud's console.
    if args.resource_type == "aws:ec2/instance:Instance":
        if args.props.get("userData"):
            report("userData is plain text: pass the bootstrap as userDataBase64 (gzip), kept secret")
        encoded = args.props.get("userDataBase64")
        if encoded and not _gzip_base64(encoded):
            report("userDataBase64 is not gzip: the bootstrap carries secrets and must not be readable as is")
    elif args.resource_type == "hcloud:index/server:Server":
        data = args.props.get("userData")
        if data and not _gzip_base64(data):
            report("userData is readable cloud-config: the bootstrap carries secrets (render it gzip+base64)")


def _policy(name: str, description: str, validate, config: Optional[PolicyConfigSchema] = None) -> ResourceValidationPolicy:
    return ResourceValidationPolicy(
        name=name, description=description, validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY, config_schema=config,
    )


ALL_POLICIES = [
    _policy("kazoo-sip-rtp-only-where-needed",
            "SIP only on proxy hosts and RTP only on media hosts are open to outside callers.",
            _sip_rtp_only_where_needed),
    _policy("kazoo-no-internal-port-from-internet",
            "CouchDB, Erlang, AMQP, mod_kazoo and the media proxy are reachable from the private network only.",
            _no_internal_port_from_internet),
    _policy("kazoo-ssh-only-from-admin-cidrs",
            "SSH is open only to the admins' CIDRs.",
            _ssh_only_from_admin_cidrs,
            PolicyConfigSchema(properties={"adminCidrs": {"type": "array", "items": {"type": "string"}},
                                           "bastionCidrs": {"type": "array", "items": {"type": "string"}}})),
    _policy("kazoo-world-open-api-over-tls-only",
            "The API is open to the whole internet only over HTTPS.",
            _api_open_to_world_only_over_tls),
    _policy("kazoo-database-volumes-protected",
            "CouchDB data volumes are protected from deletion.",
            _database_volumes_protected),
    _policy("kazoo-imdsv2-required",
            "EC2 instances require IMDSv2 tokens.",
            _imdsv2_required),
    _policy("kazoo-user-data-not-in-clear",
            "Server user data (which carries the bootstrap's secrets) is never plain text.",
            _user_data_not_in_clear),
]
