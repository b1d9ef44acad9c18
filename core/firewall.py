"""The firewall matrix: who may reach which port of which role. One table, read by everything.

The AWS security groups, the Hetzner firewalls, the nftables ruleset on every host, the offline plan
and the policy pack all derive from `firewall_matrix`. Sources are either another role (a peer on
the private network) or a named list of CIDRs from the stack config. Sources: the port matrix in
shared/reference/kazoo.md §1.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from typing import Optional, Union

from core.kamailio import FREESWITCH_FACING_PORT
from core.roles import Role
from core.settings import WORLD, Settings

# Erlang distribution ports are pinned so a firewall can name them (kazoo-couchdb's vm.args range).
ERLANG_DIST_PORTS = (11500, 11999)
# ecallmgr connects to mod_kazoo event streams on kernel-chosen ports: Linux's ephemeral range.
EPHEMERAL_PORTS = (32768, 60999)
RTP_PORTS = (16384, 32768)

# Label (Hetzner) / tag (AWS) naming the role a firewall or rule belongs to: the policy pack reads it.
FIREWALL_ROLE_LABEL = "kazoo-firewall-for"
# Label / tag of a data volume or public IP whose stack chose scaleDown keep or release (policy pack).
SCALE_DOWN_LABEL = "kazoo-scale-down"

# Ports that must never be reachable from the internet, by name (the policy pack checks these too).
INTERNAL_PORTS = {
    "couchdb": (5984, 5986),
    "epmd": (4369, 4369),
    "erlang-dist": ERLANG_DIST_PORTS,
    "amqp": (5672, 5672),
    "mod_kazoo": (8031, 8031),
    "media-proxy": (24517, 24518),
    "fax-proxy": (30950, 30950),
    "freeswitch-sip": (11000, 11001),  # Kamailio and, when listed, carriers only
    # Kamailio's socket facing FreeSWITCH (core/kamailio.py)
    "kamailio-for-freeswitch": (FREESWITCH_FACING_PORT, FREESWITCH_FACING_PORT),
}
# Internal ports are TCP, but for FreeSWITCH's SIP profile (UDP too). RTP (UDP) overlaps some of the
# ranges above (the media proxy, the Erlang ranges), which is why the protocol matters.
INTERNAL_UDP = {"freeswitch-sip", "kamailio-for-freeswitch"}


def internal_protocols(name: str) -> tuple[str, ...]:
    return ("tcp", "udp") if name in INTERNAL_UDP else ("tcp",)


@dataclass(frozen=True)
class Cidrs:
    """A named list of CIDRs from the stack config (adminCidrs, sipCidrs, ...)."""

    name: str  # config key, e.g. "sipCidrs"
    cidrs: tuple[str, ...]

    def __str__(self) -> str:
        return self.name


Source = Union[Role, Cidrs]


@dataclass(frozen=True)
class Rule:
    role: Role  # hosts carrying this role accept the traffic
    protocol: str  # "tcp" | "udp"
    ports: tuple[int, int]
    source: Source
    purpose: str  # short, stable: also used in resource names

    @property
    def public(self) -> bool:
        """True when the source is a CIDR list rather than a peer role."""
        return isinstance(self.source, Cidrs)

    @property
    def port_text(self) -> str:
        low, high = self.ports
        return str(low) if low == high else f"{low}-{high}"

    @property
    def from_world(self) -> bool:
        return isinstance(self.source, Cidrs) and any(c in WORLD for c in self.source.cidrs)


def _within(cidrs: tuple[str, ...], outer: tuple[str, ...]) -> bool:
    """Every network of `cidrs` inside one of `outer`."""
    nets = [ipaddress.ip_network(c) for c in outer]
    return all(any(n.version == o.version and n.subnet_of(o) for o in nets) for n in map(ipaddress.ip_network, cidrs))


def _both(role: Role, port: int, source: Source, purpose: str, high: Optional[int] = None) -> list[Rule]:
    ports = (port, high or port)
    return [Rule(role, proto, ports, source, purpose) for proto in ("udp", "tcp")]


def firewall_matrix(settings: Settings) -> list[Rule]:
    """Every allowed inbound flow, in a stable order. Anything not listed is dropped."""
    from core.plan import load_balancer_cidrs  # the planner's addresses (core.plan imports no firewall)

    admin = Cidrs("adminCidrs", tuple(settings.admin_cidrs))
    sip = Cidrs("sipCidrs", tuple(settings.sip_cidrs))
    api = Cidrs("apiCidrs", tuple(settings.effective_api_cidrs))
    carriers = Cidrs("carrierCidrs", tuple(settings.carrier_cidrs))
    D, B, A, M, P = Role.DATABASE, Role.BROKER, Role.APPLICATION, Role.MEDIA, Role.PROXY

    rules: list[Rule] = []
    # SSH to every role, from the admins only (and from the bastion `pulumi up` jumps through).
    rules += [Rule(role, "tcp", (22, 22), admin, "ssh") for role in (D, B, A, M, P)]
    if settings.ssh.bastion_source:
        bastion = Cidrs("ssh.bastion", (settings.ssh.bastion_source,))
        rules += [Rule(role, "tcp", (22, 22), bastion, "ssh-bastion") for role in (D, B, A, M, P)]

    # Kamailio: SIP from phones and carriers; FreeSWITCH sends calls for registered devices back.
    rules += _both(P, 5060, sip, "sip")
    rules += _both(P, 7000, sip, "sip-alg")
    if settings.sip.tls:
        rules += [Rule(P, "tcp", (5061, 5061), sip, "sip-tls"), Rule(P, "tcp", (7001, 7001), sip, "sip-alg-tls")]
    if settings.sip.websockets:
        rules.append(Rule(P, "tcp", (5064, 5064), sip, "sip-ws"))
        if settings.sip.tls:  # websockets-role.cfg listens on TLS_WSS only with the TLS role
            rules.append(Rule(P, "tcp", (5065, 5065), sip, "sip-wss"))
    # FreeSWITCH's own socket is 5080 (core/kamailio.py); 5060 and 7000 stay for the Proxy-Paths of
    # phones registered before it (until they register again) and for in-dialog requests of old calls.
    rules += _both(P, 5060, M, "sip-from-media")
    rules += _both(P, 7000, M, "sip-alg-from-media")
    rules += _both(P, FREESWITCH_FACING_PORT, M, "sip-internal-from-media")
    # Carriers come in through Kamailio, as phones do, and send RTP to FreeSWITCH. Never to
    # FreeSWITCH's SIP port: its profile advertises the private address (sip-ip, ext-sip-ip), so a
    # carrier's ACK and BYE could never reach it (review B6).
    if carriers.cidrs and not _within(carriers.cidrs, sip.cidrs):
        rules += _both(P, 5060, carriers, "sip-from-carriers")
        rules += _both(P, 7000, carriers, "sip-alg-from-carriers")
        rules.append(Rule(M, "udp", RTP_PORTS, carriers, "rtp-from-carriers"))

    # FreeSWITCH: RTP from the world of callers; SIP only from Kamailio.
    rules.append(Rule(M, "udp", RTP_PORTS, sip, "rtp"))
    rules += _both(M, 11000, P, "sip-from-proxy")
    # ecallmgr drives FreeSWITCH over Erlang: epmd, the mod_kazoo C-node and its event streams.
    rules.append(Rule(M, "tcp", (4369, 4369), A, "epmd-from-ecallmgr"))
    rules.append(Rule(M, "tcp", (8031, 8031), A, "mod-kazoo"))
    rules.append(Rule(M, "tcp", EPHEMERAL_PORTS, A, "mod-kazoo-events"))

    # Kazoo applications: the API and the UI from apiCidrs, or, with dns.zone, from the cloud's load
    # balancer that terminates HTTPS for them (plain HTTP then stays on the private network);
    # the media proxy for FreeSWITCH.
    lb = load_balancer_cidrs(settings)
    web = Cidrs("loadBalancer", lb) if lb else api
    rules.append(Rule(A, "tcp", (8000, 8000), web, "crossbar"))
    if settings.sources.monster_ui is not None:
        rules.append(Rule(A, "tcp", (80, 80), web, "monster-ui-http"))
    # (no fax proxy, 30950: the FreeSWITCH package has no mod_spandsp, so FreeSWITCH never fetches faxes)
    rules.append(Rule(A, "tcp", (24517, 24518), M, "media-proxy"))

    # RabbitMQ: AMQP from Kazoo and Kamailio (FreeSWITCH has no mod_amqp here: mod_kazoo speaks Erlang
    # to ecallmgr only); the management UI from the admins.
    rules += [Rule(B, "tcp", (5672, 5672), src, "amqp") for src in (A, P)]
    rules.append(Rule(B, "tcp", (15672, 15672), admin, "rabbitmq-management"))

    # CouchDB: HTTP from the HAProxy on application and media hosts; the cluster among its nodes.
    rules += [Rule(D, "tcp", (5984, 5984), src, "couchdb") for src in (A, M, D)]
    rules.append(Rule(D, "tcp", (4369, 4369), D, "epmd-cluster"))
    rules.append(Rule(D, "tcp", ERLANG_DIST_PORTS, D, "erlang-dist-cluster"))
    return rules


def rules_for(rules: list[Rule], role: Role) -> list[Rule]:
    return [r for r in rules if r.role is role]


def overlaps(ports: tuple[int, int], other: tuple[int, int]) -> bool:
    return ports[0] <= other[1] and other[0] <= ports[1]


def internal_port_names(rule: Rule) -> list[str]:
    """Names of the internal ports a rule opens (empty for SIP, RTP, SSH, HTTP...)."""
    return [
        name
        for name, ports in INTERNAL_PORTS.items()
        if overlaps(rule.ports, ports) and rule.protocol in internal_protocols(name)
    ]


@dataclass(frozen=True)
class HostRow:
    """One accept line of a host's nftables ruleset."""

    family: str  # "ip" | "ip6"
    sources: tuple[str, ...]
    protocol: str
    ports: str  # nft syntax: "5060" or "16384-32768"
    comment: str


def host_firewall(rules: list[Rule], plan, host) -> list[HostRow]:
    """The matrix rows that apply to `host`, with peer roles resolved to their private IPs."""
    rows = []
    for rule in rules:
        if not host.carries(rule.role):
            continue
        if isinstance(rule.source, Cidrs):
            v4 = tuple(c for c in rule.source.cidrs if ":" not in c)
            v6 = tuple(c for c in rule.source.cidrs if ":" in c)
            label = f"{rule.purpose} from {rule.source.name}"
        else:
            v4 = tuple(sorted({h.private_ip for h in plan.with_role(rule.source)}))
            v6 = ()
            label = f"{rule.purpose} from {rule.source.value} hosts"
        for family, sources in (("ip", v4), ("ip6", v6)):
            if sources:
                rows.append(HostRow(family, sources, rule.protocol, rule.port_text, label))
    # A host carrying several roles gets the same flow from several rules (SSH once per role, CouchDB
    # from every peer role that shares the same hosts): one rule, its reasons joined.
    merged: dict[tuple, HostRow] = {}
    for row in rows:
        key = (row.family, row.sources, row.protocol, row.ports)
        if key in merged:
            if row.comment not in merged[key].comment.split(", "):
                merged[key] = replace(merged[key], comment=f"{merged[key].comment}, {row.comment}")
        else:
            merged[key] = row
    return list(merged.values())


# Inbound rules an AWS security group holds by default, IPv4 and IPv6 counted apart (Amazon VPC
# quotas, "Inbound or outbound rules per security group": 60). Over it, `pulumi up` stops midway
# with RulesPerSecurityGroupLimitExceeded.
AWS_INBOUND_RULES_PER_GROUP = 60


def aws_inbound_rules(rules: list[Rule], role: Role) -> tuple[int, dict[str, int]]:
    """How many inbound rules the role's security group gets (one per IPv4 CIDR of a public rule, one
    per peer rule, as the AWS seam makes them), and how many each CIDR list brings."""
    total, by_list = 0, {}
    for rule in rules_for(rules, role):
        if rule.public:
            count = sum(1 for c in rule.source.cidrs if ":" not in c)
            by_list[rule.source.name] = by_list.get(rule.source.name, 0) + count
        else:
            count = 1
        total += count
    return total, by_list


def check_aws_rule_quota(settings: Settings, rules: list[Rule]) -> None:
    """Refuse, before any resource, a stack whose CIDR lists would overflow a security group."""
    from core.settings import NAMESPACE, Cloud, SettingsError

    if settings.cloud is not Cloud.AWS:
        return
    for role in Role:
        total, by_list = aws_inbound_rules(rules, role)
        if total > AWS_INBOUND_RULES_PER_GROUP:
            key = max(by_list, key=by_list.get)
            raise SettingsError(
                f"{NAMESPACE}:{key}: the {role.value} hosts' security group would hold {total} inbound rules "
                f"(AWS allows {AWS_INBOUND_RULES_PER_GROUP} per group by default): list fewer, wider ranges"
            )
