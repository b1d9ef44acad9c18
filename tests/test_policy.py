"""The policy pack, offline: each policy's validate() called with resource properties, as the engine
would send them. Every example stack passes; each policy catches what it is there for."""

from __future__ import annotations

import pytest
from pulumi_policy import PolicyCustomTimeouts, PolicyResourceOptions, ResourceValidationArgs

from core.bootstrap import encode_user_data
from harness import STACKS, config_from_stack_file, run_stack_file
from policy.kazoo_policies import ALL_POLICIES

POLICIES = {p.name: p for p in ALL_POLICIES}
EXAMPLES = [f"{c}-{l}" for c in ("hetzner", "aws") for l in ("single", "dual", "maximal")]


def violations(policy: str, resource_type: str, props: dict, protect: bool = False, config: dict | None = None):
    found: list[str] = []
    opts = PolicyResourceOptions(protect, [], False, [], PolicyCustomTimeouts(0, 0, 0), [])
    args = ResourceValidationArgs(resource_type, props, f"urn:test::{resource_type}", "r", opts, None, config or {})
    POLICIES[policy].validate(args, lambda message, urn=None: found.append(message))
    return found


@pytest.mark.parametrize("stack", EXAMPLES)
def test_every_example_stack_passes_every_policy(stack):
    result = run_stack_file(stack)
    admin = config_from_stack_file(STACKS / f"Pulumi.{stack}.yaml")["kazoo:adminCidrs"]
    checked = 0
    for r in result.registrations:
        if not r.custom:
            continue
        for name in POLICIES:
            found = violations(name, r.type, r.inputs, r.protect, {"adminCidrs": admin})
            assert found == [], (r.name, name, found)
            checked += 1
    assert checked > 100


AWS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
HC_FIREWALL = "hcloud:index/firewall:Firewall"


def aws_rule(role, port, cidr, protocol="tcp", high=None):
    return {"ipProtocol": protocol, "fromPort": port, "toPort": high or port, "cidrIpv4": cidr,
            "tags": {"kazoo-firewall-for": role}}


def hc_firewall(role, *rules):
    return {"labels": {"kazoo-firewall-for": role},
            "rules": [{"direction": "in", "protocol": p, "port": port, "sourceIps": ips} for p, port, ips in rules]}


def test_sip_and_rtp_only_on_their_roles():
    name = "kazoo-sip-rtp-only-where-needed"
    assert violations(name, AWS_RULE, aws_rule("proxy", 5060, "0.0.0.0/0", "udp")) == []
    assert violations(name, AWS_RULE, aws_rule("media", 16384, "0.0.0.0/0", "udp", 32768)) == []
    assert "only proxy" in violations(name, AWS_RULE, aws_rule("application", 5060, "0.0.0.0/0", "udp"))[0]
    assert "only media" in violations(name, HC_FIREWALL, hc_firewall("proxy", ("udp", "10000-20000", ["0.0.0.0/0"])))[0]
    # a peer rule on the private network is not "outside"
    assert violations(name, AWS_RULE, aws_rule("media", 5060, "10.20.0.0/16", "udp")) == []
    # an inline security group rule has no role label: SIP there is reported
    inline = {"ingress": [{"protocol": "-1", "fromPort": 0, "toPort": 0, "cidrBlocks": ["0.0.0.0/0"]}]}
    assert violations(name, "aws:ec2/securityGroup:SecurityGroup", inline)


@pytest.mark.parametrize("port,label", [(5984, "couchdb"), (4369, "epmd"), (11600, "erlang-dist"), (5672, "amqp"),
                                        (8031, "mod_kazoo"), (24517, "media-proxy")])
def test_internal_ports_never_from_the_internet(port, label):
    name = "kazoo-no-internal-port-from-internet"
    found = violations(name, AWS_RULE, aws_rule("database", port, "198.51.100.0/24"))
    assert found and label in found[0]
    assert violations(name, HC_FIREWALL, hc_firewall("broker", ("tcp", str(port), ["0.0.0.0/0", "::/0"])))
    assert violations(name, AWS_RULE, aws_rule("database", port, "10.20.0.0/16")) == []


def test_freeswitch_sip_is_never_open_to_the_internet_not_even_to_carriers():
    """Carriers come in through Kamailio: FreeSWITCH's profile advertises its private address, so a
    carrier talking to it directly could not finish a call (review B6)."""
    name = "kazoo-no-internal-port-from-internet"
    assert violations(name, AWS_RULE, aws_rule("media", 11000, "192.0.2.0/28", "udp"))
    assert violations(name, AWS_RULE, aws_rule("media", 11000, "0.0.0.0/0", "udp"))
    assert violations(name, AWS_RULE, aws_rule("media", 11000, "10.20.0.0/16", "udp")) == []
    # an "all traffic" rule from the world opens everything
    assert violations(name, AWS_RULE, {"ipProtocol": "-1", "cidrIpv4": "0.0.0.0/0"})


def test_ssh_only_from_admin_cidrs():
    name = "kazoo-ssh-only-from-admin-cidrs"
    admins = {"adminCidrs": ["203.0.113.0/24"]}
    assert violations(name, AWS_RULE, aws_rule("media", 22, "203.0.113.0/25"), config=admins) == []
    assert "outside adminCidrs" in violations(name, AWS_RULE, aws_rule("media", 22, "198.51.100.0/24"), config=admins)[0]
    assert violations(name, HC_FIREWALL, hc_firewall("proxy", ("tcp", "22", ["0.0.0.0/0"])))
    assert violations(name, HC_FIREWALL, hc_firewall("proxy", ("tcp", "20-30", ["203.0.113.9/32"]))) == []


def test_database_volumes_are_protected():
    name = "kazoo-database-volumes-protected"
    hc = {"labels": {"kazoo-role-database": "true"}, "deleteProtection": True, "size": 50}
    assert violations(name, "hcloud:index/volume:Volume", hc, protect=True) == []
    assert violations(name, "hcloud:index/volume:Volume", hc, protect=False)
    assert violations(name, "hcloud:index/volume:Volume", {**hc, "deleteProtection": False}, protect=True)
    ebs = {"tags": {"kazoo-role-database": "true"}, "size": 50}
    assert violations(name, "aws:ebs/volume:Volume", ebs, protect=False)
    assert violations(name, "aws:ebs/volume:Volume", {"tags": {}, "size": 8}, protect=False) == []


def test_imdsv2_required():
    name = "kazoo-imdsv2-required"
    assert violations(name, "aws:ec2/instance:Instance", {"metadataOptions": {"httpTokens": "required"}}) == []
    assert violations(name, "aws:ec2/instance:Instance", {"metadataOptions": {"httpTokens": "optional"}})
    assert violations(name, "aws:ec2/instance:Instance", {})


def test_user_data_never_in_clear():
    name = "kazoo-user-data-not-in-clear"
    clear = "#cloud-config\nwrite_files: []\n"
    assert violations(name, "aws:ec2/instance:Instance", {"userDataBase64": encode_user_data(clear)}) == []
    assert violations(name, "aws:ec2/instance:Instance", {"userData": clear})
    assert violations(name, "hcloud:index/server:Server", {"userData": clear})
    assert violations(name, "hcloud:index/server:Server", {"userData": encode_user_data(clear)}) == []


def test_the_pack_entrypoint_builds_the_pack_from_any_directory(tmp_path, monkeypatch):
    """Run policy/__main__.py as the CLI would, from elsewhere, with PolicyPack stood in (the real one
    starts a server and never returns)."""
    import runpy
    import sys

    import pulumi_policy

    built = {}
    monkeypatch.setattr(pulumi_policy, "PolicyPack", lambda **kwargs: built.update(kwargs))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if "policy" not in p])
    monkeypatch.delitem(sys.modules, "kazoo_policies", raising=False)
    runpy.run_path(str(STACKS.parent / "policy" / "__main__.py"), run_name="__main__")
    assert built["name"] == "kazoo"
    assert [p.name for p in built["policies"]] == list(POLICIES)


def test_a_world_open_api_is_https_only():
    name = "kazoo-world-open-api-over-tls-only"
    assert "must be HTTPS" in violations(name, AWS_RULE, aws_rule("application", 8000, "0.0.0.0/0"))[0]
    assert violations(name, HC_FIREWALL, hc_firewall("application", ("tcp", "80", ["0.0.0.0/0", "::/0"])))
    assert violations(name, AWS_RULE, aws_rule("application", 8000, "203.0.113.0/24")) == []  # the admins' API
    assert violations(name, AWS_RULE, aws_rule("application", 8000, "10.20.224.0/20")) == []  # the load balancer
    # a stack that opens its API to the world with dns.zone passes (crossbar behind the balancer)
    result = run_stack_file("aws-maximal", {"dns": {"zone": "aws.voip.example.com"}, "apiCidrs": ["0.0.0.0/0"]})
    for r in result.registrations:
        assert violations(name, r.type, r.inputs) == [], r.name


def test_a_stack_that_chose_to_keep_or_release_its_volumes_passes_the_volume_policy():
    name = "kazoo-database-volumes-protected"
    for mode in ("keep", "release"):
        result = run_stack_file("hetzner-maximal", {"scaleDown": mode})
        volumes = [r for r in result.registrations if r.type == "hcloud:index/volume:Volume"]
        assert volumes and all(violations(name, v.type, v.inputs, v.protect) == [] for v in volumes)
    unlabelled = {"labels": {"kazoo-role-database": "true"}, "deleteProtection": True}
    assert violations(name, "hcloud:index/volume:Volume", unlabelled, protect=False)  # no choice made: protect


def test_ssh_from_the_bastion_passes_with_the_pack_told_of_it():
    name = "kazoo-ssh-only-from-admin-cidrs"
    rule = aws_rule("proxy", 22, "198.51.100.9/32")
    assert violations(name, AWS_RULE, rule, config={"adminCidrs": ["203.0.113.0/24"]})
    assert violations(name, AWS_RULE, rule, config={"adminCidrs": ["203.0.113.0/24"],
                                                     "bastionCidrs": ["198.51.100.9/32"]}) == []
