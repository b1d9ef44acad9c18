"""The firewall matrix as a table test, for the matrix itself and for each cloud's translation."""

import pytest

from core.firewall import INTERNAL_PORTS, firewall_matrix, internal_port_names, overlaps
from core.roles import Role
from core.settings import WORLD, load_settings
from harness import run_stack_file, stack_config
from tls_ca import ThrowawayCA

ADMIN = "203.0.113.0/24"
CARRIERS = "192.0.2.0/28"
RTP = (16384, 32768)
# Everything the internet may reach, and nothing more: (role, protocol, ports). Written from the
# upstream port lists, not from core/firewall.py: Kamailio's SIP listeners UDP/TCP 5060 and the ALG
# port 7000 (openkazoo/kamailio-configs local.cfg UDP_SIP, TCP_SIP, UDP_ALG_SIP, TCP_ALG_SIP) and
# FreeSWITCH's RTP range (kazoo-configs-freeswitch 4.3 autoload_configs/switch.conf.xml
# rtp-start-port 16384, rtp-end-port 32768).
WORLD_OPEN = {
    ("proxy", "udp", (5060, 5060)),
    ("proxy", "tcp", (5060, 5060)),
    ("proxy", "udp", (7000, 7000)),
    ("proxy", "tcp", (7000, 7000)),
    ("media", "udp", (16384, 32768)),
}


def matrix(stack="aws-maximal", **changes):
    return firewall_matrix(load_settings(stack_config(stack, changes)))


def test_world_reaches_only_sip_and_rtp():
    opened = {(r.role.value, r.protocol, r.ports) for r in matrix() if r.from_world}
    assert opened == WORLD_OPEN


def test_tls_and_websockets_add_their_ports_on_proxies_only(tmp_path):
    certificate, key = ThrowawayCA(tmp_path).issue("maximal.aws.voip.example.com", 1)
    tls = matrix(sip={"tls": True, "websockets": True}, sipTlsCertificate=certificate, sipTlsKey=key)
    opened = {(r.role.value, r.protocol, r.ports) for r in tls if r.from_world}
    assert opened - WORLD_OPEN == {
        ("proxy", "tcp", (5061, 5061)),
        ("proxy", "tcp", (7001, 7001)),
        ("proxy", "tcp", (5064, 5064)),
        ("proxy", "tcp", (5065, 5065)),
    }


def test_no_internal_port_from_any_cidr_list():
    for rule in matrix(sipCidrs=["0.0.0.0/0"], apiCidrs=["0.0.0.0/0"], dns={"zone": "aws.voip.example.com"}):
        if rule.public:
            assert internal_port_names(rule) == [], rule


def test_ssh_and_management_only_from_admins():
    for rule in matrix():
        if overlaps(rule.ports, (22, 22)) or overlaps(rule.ports, (15672, 15672)):
            assert rule.public and rule.source.name == "adminCidrs", rule


PEERS = [
    # role accepting, protocol, port, from role
    ("database", "tcp", 5984, "application"),
    ("database", "tcp", 5984, "media"),
    ("database", "tcp", 5984, "database"),
    ("database", "tcp", 4369, "database"),
    ("database", "tcp", 11500, "database"),
    ("broker", "tcp", 5672, "application"),
    ("broker", "tcp", 5672, "proxy"),
    ("media", "tcp", 8031, "application"),
    ("media", "tcp", 4369, "application"),
    ("media", "tcp", 40000, "application"),  # ecallmgr event streams, kernel-chosen ports
    ("media", "udp", 11000, "proxy"),
    ("media", "tcp", 11000, "proxy"),
    ("proxy", "udp", 5060, "media"),
    ("proxy", "udp", 7000, "media"),
    ("proxy", "udp", 5080, "media"),  # Kamailio's socket for FreeSWITCH, never advertised (review B1)
    ("proxy", "tcp", 5080, "media"),
    ("application", "tcp", 24517, "media"),
]


def peer_table(rules):
    return {
        (r.role.value, r.protocol, port, r.source.value)
        for r in rules
        if not r.public
        for port in (r.ports[0], r.ports[1], 40000)
        if r.ports[0] <= port <= r.ports[1]
    }


@pytest.mark.parametrize("row", PEERS, ids=lambda r: "-".join(map(str, r)))
def test_peer_rules_present(row):
    assert row in peer_table(matrix())


def test_peer_rules_absent_where_not_needed():
    table = peer_table(matrix())
    assert ("database", "tcp", 5984, "proxy") not in table  # Kamailio keeps no data in CouchDB
    assert ("broker", "tcp", 5672, "database") not in table
    assert ("broker", "tcp", 5672, "media") not in table  # no mod_amqp: mod_kazoo speaks Erlang only
    assert ("application", "tcp", 30950, "media") not in table  # no mod_spandsp: no faxes to fetch
    assert not any(row[0] == "application" and row[2] == 4369 for row in table)


# ----- AWS: security groups -------------------------------------------------------------------

@pytest.fixture(scope="module")
def aws():
    return run_stack_file("aws-maximal")


def sg_rules(result):
    groups = {r.id: r.name.removesuffix("-sg") for r in result.of_type("ec2/securityGroup:SecurityGroup")}
    rows = []
    for rule in result.of_type("vpc/securityGroupIngressRule:SecurityGroupIngressRule"):
        i = rule.inputs
        source = i.get("cidrIpv4") or groups[i["referencedSecurityGroupId"]]
        rows.append((groups[i["securityGroupId"]], i["ipProtocol"], int(i["fromPort"]), int(i["toPort"]), source))
    return rows


def test_aws_world_rules_only_sip_and_rtp(aws):
    opened = {(g, p, (lo, hi)) for g, p, lo, hi, src in sg_rules(aws) if src == "0.0.0.0/0"}
    assert opened == WORLD_OPEN


def test_aws_internal_ports_only_from_security_groups(aws):
    for group, proto, low, high, source in sg_rules(aws):
        if proto == "tcp" and any(overlaps((low, high), p) for p in INTERNAL_PORTS.values()):
            peer = source in {"database", "broker", "application", "media", "proxy"}
            assert peer, (group, low, source)
        if (low, high) == (22, 22):
            assert source == ADMIN


def test_aws_peer_rules_reference_groups(aws):
    rows = set(sg_rules(aws))
    assert ("database", "tcp", 5984, 5984, "application") in rows
    assert ("media", "tcp", 32768, 60999, "application") in rows
    assert ("broker", "tcp", 5672, 5672, "proxy") in rows


def test_aws_rule_names_come_from_content(aws):
    names = {r.name for r in aws.of_type("vpc/securityGroupIngressRule:SecurityGroupIngressRule")}
    assert "media-rtp-udp-16384-32768-from-0.0.0.0_0" in names
    assert "database-couchdb-tcp-5984-from-application" in names
    assert len(names) == len(aws.of_type("vpc/securityGroupIngressRule:SecurityGroupIngressRule"))


def test_aws_hosts_get_their_roles_groups(aws):
    groups = {r.id: r.name.removesuffix("-sg") for r in aws.of_type("ec2/securityGroup:SecurityGroup")}
    for instance in aws.of_type("ec2/instance:Instance"):
        role = instance.inputs["tags"]["Name"].split(".")[0].rstrip("0123456789")
        attached = {groups[g] for g in instance.inputs["vpcSecurityGroupIds"]}
        assert len(attached) == 1 and {"db": "database", "app": "application"}.get(role, role) in attached


# ----- Hetzner: firewalls (public traffic only; peers are the host firewall's job) -------------

@pytest.fixture(scope="module")
def hetzner():
    return run_stack_file("hetzner-maximal")


def test_hetzner_one_firewall_per_role_by_label(hetzner):
    firewalls = hetzner.of_type("index/firewall:Firewall")
    selectors = sorted(f.inputs["applyTos"][0]["labelSelector"] for f in firewalls)
    assert selectors == sorted(
        f"kazoo-stack=hetzner-maximal,kazoo-role-{role.value}=true" for role in Role
    )


def test_hetzner_firewalls_open_only_public_rules(hetzner):
    opened = set()
    for firewall in hetzner.of_type("index/firewall:Firewall"):
        role = firewall.name.removesuffix("-firewall")
        for rule in firewall.inputs["rules"]:
            assert rule["direction"] == "in"
            low, _, high = rule["port"].partition("-")
            ports = (int(low), int(high or low))
            sources = set(rule["sourceIps"])
            if sources & set(WORLD):
                opened.add((role, rule["protocol"], ports))
            if ports == (22, 22):
                assert sources == {ADMIN}
            # internal ports are TCP (Erlang, HTTP, AMQP), but for FreeSWITCH's SIP on 11000
            tcp_internal = rule["protocol"] == "tcp" and any(overlaps(ports, p) for p in INTERNAL_PORTS.values())
            if tcp_internal or ports == (11000, 11000):
                assert (role, ports, sources) == ("media", (11000, 11000), {CARRIERS})
    assert opened == WORLD_OPEN


def test_monster_ui_port_only_when_monster_ui_is_configured():
    without = {(r.role.value, r.ports) for r in matrix()}
    assert ("application", (80, 80)) not in without
    monster = {"monsterUi": {"url": "https://mirror.example.com/monster-ui.tar.gz"}}
    with_ui = [r for r in matrix(sources=monster) if r.ports == (80, 80)]
    assert [(r.role.value, r.source.name) for r in with_ui] == [("application", "apiCidrs")]


def test_carriers_come_in_through_kamailio_and_send_rtp_to_freeswitch():
    """Review B6: a carrier never talks SIP to FreeSWITCH (its profile advertises the private
    address); outside sipCidrs it is let in on Kamailio's SIP ports and FreeSWITCH's RTP."""
    narrow = matrix(sipCidrs=["198.51.100.0/24"], carrierCidrs=[CARRIERS])
    from_carriers = {(r.role.value, r.protocol, r.ports) for r in narrow if r.public and r.source.name == "carrierCidrs"}
    assert from_carriers == {("proxy", "udp", (5060, 5060)), ("proxy", "tcp", (5060, 5060)),
                             ("proxy", "udp", (7000, 7000)), ("proxy", "tcp", (7000, 7000)),
                             ("media", "udp", RTP)}
    # inside sipCidrs already (the default, the world): nothing more to open
    assert not [r for r in matrix(carrierCidrs=[CARRIERS]) if r.public and r.source.name == "carrierCidrs"]
    for rules in (narrow, matrix(carrierCidrs=[CARRIERS])):
        assert not [r for r in rules if r.role.value == "media" and r.public and overlaps(r.ports, (11000, 11000))
                    and r.protocol in ("udp", "tcp") and r.ports != RTP]


def test_the_security_group_quota_check_counts_what_the_seam_makes():
    """The quota check (60 inbound rules per AWS security group) counts the rules the AWS seam really
    registers, per group, on a stack near the limit; one range more is refused before any resource."""
    from core.firewall import AWS_INBOUND_RULES_PER_GROUP, aws_inbound_rules
    from core.settings import load_settings
    from harness import stack_config

    sip = [f"198.51.{i}.0/24" for i in range(9)]
    result = run_stack_file("aws-maximal", {"sipCidrs": sip, "sip": {"websockets": True}})
    groups = {r.id: r.name.removesuffix("-sg") for r in result.registrations if r.type == "aws:ec2/securityGroup:SecurityGroup"}
    made: dict[str, int] = {}
    for r in result.registrations:
        if r.type == "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule" and r.inputs["securityGroupId"] in groups:
            role = groups[r.inputs["securityGroupId"]]
            made[role] = made.get(role, 0) + 1
    settings = load_settings(stack_config("aws-maximal", {"sipCidrs": sip, "sip": {"websockets": True}}))
    rules = matrix(sipCidrs=sip, sip={"websockets": True})
    counted = {role.value: aws_inbound_rules(rules, role)[0] for role in Role}
    assert {k: v for k, v in made.items() if k in counted} == counted
    assert AWS_INBOUND_RULES_PER_GROUP - 8 < counted["proxy"] <= AWS_INBOUND_RULES_PER_GROUP, counted
    assert settings.sip_cidrs == sip
