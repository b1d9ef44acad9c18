"""Lifecycle under the engine's rules (issue 12), checked under mocks: replacements, re-runs,
scale-down, bastion, quotas and catalogues.

What a real engine does with these options (from Pulumi's documentation of resource options):
- delete_before_replace: the old resource goes first (AWS refuses a second instance on the same
  private IP, and a volume attached twice);
- replace_with: the resource is replaced whenever one of the named resources is (a command re-runs
  its create when its server is new);
- ignore_changes: the listed inputs keep their old values on update;
- protect / retain_on_delete: a protected resource stops a deletion; a retained one is dropped from
  the stack and left in the cloud.
"""

from __future__ import annotations

import pytest

from core.settings import load_settings
from harness import run_stack_file, stack_config

COMMAND = "command:remote:Command"
SERVER = {"hetzner": "hcloud:index/server:Server", "aws": "aws:ec2/instance:Instance"}
VOLUME = {"hetzner": "hcloud:index/volume:Volume", "aws": "aws:ebs/volume:Volume"}
PUBLIC_IP = {"hetzner": "hcloud:index/primaryIp:PrimaryIp", "aws": "aws:ec2/eip:Eip"}


def of(result, type_token):
    return {r.name: r for r in result.registrations if r.type == type_token}


@pytest.fixture(scope="module")
def results():
    return {stack: run_stack_file(stack) for stack in ("aws-maximal", "hetzner-maximal", "aws-dual")}


@pytest.mark.parametrize("stack", ["aws-maximal", "hetzner-maximal", "aws-dual"])
def test_every_server_is_replaced_delete_first(results, stack):
    servers = of(results[stack], SERVER[stack.split("-")[0]])
    assert servers and all(s.delete_before_replace for s in servers.values())


@pytest.mark.parametrize("stack", ["aws-maximal", "aws-dual"])
def test_every_step_runs_again_when_its_servers_are_replaced(results, stack):
    result = results[stack]
    servers = {s.urn: name for name, s in of(result, SERVER["aws"]).items()}
    for name, step in of(result, COMMAND).items():
        replaced_by = {servers[u] for u in step.replace_with}
        if name.startswith(("wait-", "config-", "readiness-")):
            assert replaced_by == {name.split("-", 1)[1]}, (name, replaced_by)
        elif name.startswith("register-"):  # on the first app host, about a media host
            assert replaced_by == {"app1" if stack == "aws-maximal" else "kazoo1", name.removeprefix("register-")}
        elif name == "couchdb-cluster" and stack == "aws-maximal":
            assert replaced_by == {"db1", "db2", "db3"}  # a replaced node is set up again
        elif name == "kazoo-first-start":
            assert replaced_by == {"app1" if stack == "aws-maximal" else "kazoo1"}
        assert replaced_by, name


def test_routine_changes_run_nothing_again(results):
    """A new dial limit changes how `pulumi up` reaches the hosts, not what runs on them. (A bastion
    also opens SSH to it in every host firewall: that configuration change is pushed.)"""
    before = of(results["aws-maximal"], COMMAND)
    after = of(run_stack_file("aws-maximal", {"ssh": {"dialErrorLimit": 7}}), COMMAND)
    assert set(after) == set(before)
    for name, step in after.items():
        old = before[name]
        # only the dial tuning differs, and the engine keeps its old value (ignoreChanges paths)
        assert set(step.inputs) == set(old.inputs), name
        changed = {k for k in step.inputs if step.inputs[k] != old.inputs[k]}
        assert changed == {"connection"}, (name, changed)
        changed = {f"connection.{k}" for k in step.inputs["connection"]
                   if step.inputs["connection"][k] != old.inputs["connection"].get(k)}
        assert changed == {"connection.dialErrorLimit"} and changed <= set(step.ignore_changes), (name, changed)
        assert step.inputs["addPreviousOutputInEnv"] is False  # no PULUMI_COMMAND_STDOUT asked of sshd


def test_a_new_address_reaches_the_steps():
    """Review 3, A3: with the whole connection ignored, a database host replaced (or an AWS instance
    stopped and started: a new public IPv4) was dialled at its old address for ten minutes. Where to
    dial, and through which bastion, is never ignored: only how patiently."""
    result = run_stack_file("aws-maximal")
    for name, step in of(result, COMMAND).items():
        ignored = set(step.ignore_changes)
        assert ignored and all(path.startswith("connection.") for path in ignored), name
        for kept in ("connection", "connection.host", "connection.proxy", "connection.privateKey",
                     "connection.hostKey", "connection.proxy.host"):
            assert kept not in ignored, (name, kept)
        assert {p.rsplit(".", 1)[1] for p in ignored} == {"dialErrorLimit", "perDialTimeout"}, name


def test_steps_that_undo_themselves_undo_the_old_before_the_new_runs():
    """Review 3, B1: a replaced registration (a replaced media server, or a carrier's new address) ran
    `add-media media1` and then the old step's `remove-media media1`: the host ended unknown to ecallmgr
    while `pulumi up` said success. A step with a delete command is replaced delete-first."""
    result = run_stack_file("aws-maximal", {"carrierCidrs": ["198.51.100.0/28"]})
    steps = of(result, COMMAND)
    undoing = {name for name, step in steps.items() if step.inputs.get("delete")}
    assert {"register-media1", "trust-proxy1"} <= undoing and any(n.startswith("carrier-") for n in undoing)
    for name, step in steps.items():
        assert step.delete_before_replace is (name in undoing), name


def test_a_bastion_is_let_in_by_every_firewall_and_pinned():
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK5sP3xG4n9oitEl6DwtL8bvPNfK/jZqZ0YF44qQ1xtt bastion"
    result = run_stack_file("aws-maximal", {"ssh": {"bastion": "10.20.255.5:2222", "bastionHostKey": key}})
    ssh_rules = [r for r in result.registrations if r.type == "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
                 and r.inputs.get("fromPort") == 22]
    assert {r.inputs.get("cidrIpv4") for r in ssh_rules} == {"203.0.113.0/24", "10.20.255.5/32"}
    step = of(result, COMMAND)["wait-media1"]
    proxy = step.inputs["connection"]["proxy"]
    assert (proxy["host"], proxy["port"], proxy["hostKey"]) == ("10.20.255.5", 2222, key)
    assert step.inputs["connection"]["host"] == result.outputs["hosts"]["media1"]["privateIp"]


def test_a_named_bastion_needs_the_address_it_comes_from():
    from core.settings import SettingsError

    with pytest.raises(SettingsError, match=r"^kazoo:ssh.bastionCidr: needed when ssh.bastion is a name"):
        load_settings(stack_config("aws-maximal", {"ssh": {"bastion": "jump.example.com"}}))
    settings = load_settings(stack_config("aws-maximal", {"ssh": {"bastion": "jump.example.com",
                                                                   "bastionCidr": "198.51.100.0/28"}}))
    assert settings.ssh.bastion_source == "198.51.100.0/28"


@pytest.mark.parametrize("cloud", ["aws", "hetzner"])
@pytest.mark.parametrize("mode", ["protect", "keep", "release"])
def test_scale_down_does_what_the_switch_says(cloud, mode):
    """Lowering the media count from 2 to 1 removes media2; its public IP (and a database host's
    volume) is protected (the update stops), kept in the account (retainOnDelete) or released."""
    full = run_stack_file(f"{cloud}-maximal", {"scaleDown": mode})
    lower = run_stack_file(f"{cloud}-maximal", {"scaleDown": mode, "roles": {"media": {"count": 1},
                                                                             "database": {"count": 3}}})
    removed = full.urns - lower.urns
    ip = of(full, PUBLIC_IP[cloud])["media2-ipv4" if cloud == "hetzner" else "media2-eip"]
    assert ip.urn in removed
    volume = of(full, VOLUME[cloud])["db1-couchdb"]
    labels = volume.inputs["labels" if cloud == "hetzner" else "tags"]
    for lasting in (ip, volume):
        assert lasting.protect is (mode == "protect")
        assert lasting.retain_on_delete is (mode == "keep")
        if cloud == "hetzner":
            assert lasting.inputs["deleteProtection"] is (mode != "release")
    assert labels.get("kazoo-scale-down") == (None if mode == "protect" else mode)  # the choice, in the open


def test_aws_zones_default_to_the_regions_real_zones():
    result = run_stack_file("aws-maximal", {"aws": {"region": "ap-northeast-1", "zones": None}})
    assert sorted({h["zone"] for h in result.outputs["hosts"].values()}) == \
        ["ap-northeast-1a", "ap-northeast-1c", "ap-northeast-1d"]  # no 1b in that region (mock answers so)


def test_more_elastic_ips_than_the_default_quota_are_announced(caplog):
    """A warning in the preview (the mock engine hands engine logs to Python's root logger)."""
    run_stack_file("aws-maximal")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("6 Elastic IPs" in w and "L-0263D0A3" in w for w in warnings), warnings
    caplog.clear()
    run_stack_file("aws-dual")  # two addresses: nothing to say
    assert not [r for r in caplog.records if "Elastic IPs" in r.getMessage()]
