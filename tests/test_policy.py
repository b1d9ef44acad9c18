"""The policy pack, offline: each policy's validate() called with resource properties, as the engine
would send them. Every example stack passes; each policy catches what it is there for. And once for
real: the pack started the way the CLI starts it, driven over gRPC as the engine drives it."""

from __future__ import annotations

import pytest
from pulumi_policy import PolicyCustomTimeouts, PolicyResourceOptions, ResourceValidationArgs

from core.user_data import encode_user_data
from harness import ROOT, STACKS, config_from_stack_file, run_stack_file
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
    runpy.run_path(str(ROOT / "policy" / "__main__.py"), run_name="__main__")
    assert built["name"] == "kazoo"
    assert [p.name for p in built["policies"]] == list(POLICIES)


def test_a_world_open_api_is_https_only():
    name = "kazoo-world-open-api-over-tls-only"
    assert "must be HTTPS" in violations(name, AWS_RULE, aws_rule("application", 8000, "0.0.0.0/0"))[0]
    assert violations(name, HC_FIREWALL, hc_firewall("application", ("tcp", "80", ["0.0.0.0/0", "::/0"])))
    assert violations(name, AWS_RULE, aws_rule("application", 8000, "203.0.113.0/24")) == []  # the admins' API
    assert violations(name, AWS_RULE, aws_rule("application", 8000, "10.20.224.0/20")) == []  # the load balancer
    # the internet in pieces (review 9, 3): every unicast IPv4 address without 0.0.0.0/0
    pieces = ["0.0.0.0/1", "128.0.0.0/2", "192.0.0.0/3"]
    assert violations(name, HC_FIREWALL, hc_firewall("application", ("tcp", "8000", pieces)))
    assert violations(name, AWS_RULE, aws_rule("application", 8000, "2000::/3"))
    assert violations(name, AWS_RULE, aws_rule("application", 8000, "10.0.0.0/8")) == []  # one organisation's /8
    many = [f"{i}.0.0.0/8" for i in range(1, 100)]  # a /8 each, the internet together (review 10)
    assert violations(name, HC_FIREWALL, hc_firewall("application", ("tcp", "8000", many)))
    private = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]  # private ranges are not the internet
    assert violations(name, HC_FIREWALL, hc_firewall("application", ("tcp", "8000", private))) == []
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
    # a "bastion" as wide as the internet allows nothing (review 9, 2)
    world = aws_rule("proxy", 22, "0.0.0.0/0")
    assert violations(name, AWS_RULE, world, config={"adminCidrs": ["203.0.113.0/24"], "bastionCidrs": ["0.0.0.0/0"]})


def test_protocol_numbers_read_as_their_names():
    """AWS takes "6" for tcp and "17" for udp: a numbered rule gets no free pass (review C5)."""
    assert violations("kazoo-no-internal-port-from-internet", AWS_RULE, aws_rule("database", 5984, "0.0.0.0/0", "6"))
    assert violations("kazoo-sip-rtp-only-where-needed", AWS_RULE, aws_rule("application", 5060, "0.0.0.0/0", "17"))
    assert violations("kazoo-ssh-only-from-admin-cidrs", AWS_RULE, aws_rule("proxy", 22, "0.0.0.0/0", "6"))
    for icmp in ("1", "58", "icmpv6"):  # ICMP has no ports
        assert violations("kazoo-no-internal-port-from-internet", AWS_RULE,
                          {"ipProtocol": icmp, "fromPort": -1, "toPort": -1, "cidrIpv4": "0.0.0.0/0"}) == []


def test_ssh_without_config_is_never_wider_than_a_v4_16_or_a_v6_48():
    """The fallback when the pack has no config (review C6): a /17 of IPv6 is 2^111 addresses."""
    name = "kazoo-ssh-only-from-admin-cidrs"
    v6 = lambda cidr: {"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "cidrIpv6": cidr}  # noqa: E731
    assert violations(name, AWS_RULE, v6("2001:db8::/17"))
    assert violations(name, AWS_RULE, v6("2001:db8::/47"))
    assert violations(name, AWS_RULE, v6("2001:db8:1::/48")) == []
    assert violations(name, AWS_RULE, aws_rule("proxy", 22, "198.51.0.0/16")) == []
    assert violations(name, AWS_RULE, aws_rule("proxy", 22, "198.0.0.0/15"))


def test_the_pack_has_a_version():
    """Without one the CLI reports the pack as kazoo@v0.0.1 (review C8)."""
    import re

    import yaml

    project = yaml.safe_load((ROOT / "policy" / "PulumiPolicy.yaml").read_text())
    assert re.fullmatch(r"\d+\.\d+\.\d+", str(project["version"]))


# ----- the pack over gRPC, as the CLI runs it -----------------------------------------------------

UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # the engine's sentinel for a value not known in preview
SECRET_SIG = "4dabf18193072939515e22adb298388d"
SECRET = "1b47061264138c4ac30d75fd1eb44270"


@pytest.fixture(scope="module")
def analyzer(tmp_path_factory):
    """`python -u -m pulumi.policy <engine> <pack>` from another directory, as the CLI's language host
    starts a Python pack (PulumiPolicy.yaml's virtualenv is this .venv); it prints its port."""
    import os
    import subprocess
    import sys

    import grpc
    from pulumi.runtime.proto import analyzer_pb2_grpc

    env = {**os.environ, "PULUMI_PROJECT": "kazoo", "PULUMI_STACK": "test", "PULUMI_DRY_RUN": "true"}
    server = subprocess.Popen([sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:1", str(ROOT / "policy")],
                              cwd=tmp_path_factory.mktemp("elsewhere"), env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        port = server.stdout.readline().decode().strip()
        assert port.isdigit(), server.stderr.read().decode() if server.poll() is not None else port
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=10)
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        server.kill()
        server.wait()


def analyze(stub, resource_type: str, props: dict, protect: bool = False) -> list[tuple[str, int, str]]:
    from google.protobuf import struct_pb2
    from pulumi.runtime.proto import analyzer_pb2

    properties = struct_pb2.Struct()
    properties.update(props)
    reply = stub.Analyze(analyzer_pb2.AnalyzeRequest(
        type=resource_type, properties=properties, urn=f"urn:pulumi:test::kazoo::{resource_type}::r", name="r",
        options=analyzer_pb2.AnalyzerResourceOptions(protect=protect)), timeout=10)
    return [(d.policyName, d.enforcementLevel, d.message) for d in reply.diagnostics]


def configure(stub, config: dict) -> None:
    from pulumi.runtime.proto import analyzer_pb2

    request = analyzer_pb2.ConfigureAnalyzerRequest()
    for policy, properties in config.items():
        entry = analyzer_pb2.PolicyConfig(enforcementLevel=analyzer_pb2.MANDATORY)
        entry.properties.update(properties)
        request.policyConfig[policy].CopyFrom(entry)
    stub.Configure(request, timeout=10)


def test_the_pack_over_grpc(analyzer, tmp_path):
    """One real round trip: the pack's name and policies, numbers as protobuf floats, secrets wrapped,
    the policy config CI writes (.ci/stack-setup) through Configure, and unknowns in preview."""
    import json
    import os
    import subprocess

    from google.protobuf import empty_pb2
    from pulumi.runtime.proto import analyzer_pb2

    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty(), timeout=10)
    assert info.name == "kazoo"
    assert [p.name for p in info.policies] == list(POLICIES)
    assert {p.enforcementLevel for p in info.policies} == {analyzer_pb2.MANDATORY}

    ssh = {"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "cidrIpv4": "198.51.100.0/24", "tags": {}}
    # CouchDB open to the world, as protocol number 6: mandatory
    found = analyze(analyzer, AWS_RULE, {"ipProtocol": "6", "fromPort": 5984, "toPort": 5984, "cidrIpv4": "0.0.0.0/0"})
    assert [(p, level) for p, level, _ in found] == [("kazoo-no-internal-port-from-internet", analyzer_pb2.MANDATORY)]
    # user data in clear behind a secret wrapper: the policy sees the plain value
    found = analyze(analyzer, "hcloud:index/server:Server", {"userData": {SECRET_SIG: SECRET, "value": "#cloud-config\n"}})
    assert [p for p, _, _ in found] == ["kazoo-user-data-not-in-clear"]
    # an unknown input in preview: the policy cannot run and says so, advisory (README: Policy pack)
    found = analyze(analyzer, AWS_RULE, {**ssh, "cidrIpv4": UNKNOWN})
    assert found and {level for _, level, _ in found} == {analyzer_pb2.ADVISORY}
    assert all("can't run policy" in message for _, _, message in found)

    # SSH from a /24 that is not the admins': unconfigured, the /16 fallback lets it through ...
    assert analyze(analyzer, AWS_RULE, ssh) == []
    # ... configured from a stack file as CI does it, it is refused, and the admins' own passes
    stack = tmp_path / "Pulumi.s.yaml"
    stack.write_text(json.dumps({"config": {"kazoo:cloud": "aws", "kazoo:adminCidrs": ["203.0.113.0/24"]}}))
    secrets = {"PULUMI_BACKEND_URL": "file:///srv/state", "PULUMI_CONFIG_PASSPHRASE": "p", "AWS_ROLE_ARN": "arn"}
    done = subprocess.run([str(ROOT / ".ci" / "stack-setup"), str(stack), str(tmp_path / "policy.json")],
                          capture_output=True, text=True, env={**os.environ, **secrets})
    assert done.returncode == 0, done.stderr
    configure(analyzer, json.loads((tmp_path / "policy.json").read_text()))
    found = analyze(analyzer, AWS_RULE, ssh)
    assert [(p, level) for p, level, _ in found] == [("kazoo-ssh-only-from-admin-cidrs", analyzer_pb2.MANDATORY)]
    assert "outside adminCidrs" in found[0][2]
    assert analyze(analyzer, AWS_RULE, {**ssh, "cidrIpv4": "203.0.113.0/25"}) == []
