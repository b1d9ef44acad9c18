"""Bad input stops the program with one line naming the key, before any resource is registered."""

import pulumi
import pytest

from core.roles import ALL_ROLES
from core.settings import Layout, SettingsError, load_settings
from harness import STACKS, TEST_SECRETS, config_from_stack_file, run_program

BASE = config_from_stack_file(STACKS / "Pulumi.hetzner-maximal.yaml")
KEY = BASE["kazoo:sshPublicKeys"][0]


def with_(**changes):
    config = dict(BASE)
    for key, value in changes.items():
        if value is None:
            config.pop(f"kazoo:{key}", None)
        else:
            config[f"kazoo:{key}"] = value
    return config


BAD_INPUTS = [
    # (change, key named in the message, words in the message)
    (dict(layout="triple"), "kazoo:layout", "'triple' is not one of"),
    (dict(cloud="gcp"), "kazoo:cloud", "'gcp' is not one of"),
    (dict(cloud=None), "kazoo:cloud", "is required"),
    (dict(colour="blue"), "kazoo:colour", "unknown key"),
    (dict(roles={"sbc": {"count": 1}}), "kazoo:roles.sbc", "unknown key"),
    (dict(roles={"media": {"count": 2, "cpus": 4}}), "kazoo:roles.media.cpus", "unknown key"),
    (dict(adminCidrs=["203.0.113.0/33"]), "kazoo:adminCidrs", "is not a CIDR"),
    (dict(adminCidrs=["203.0.113.7/24"]), "kazoo:adminCidrs", "is not a CIDR"),
    (dict(sipCidrs=["everyone"]), "kazoo:sipCidrs", "is not a CIDR"),
    (dict(carrierCidrs=["192.0.2.300/32"]), "kazoo:carrierCidrs", "is not a CIDR"),
    (dict(network={"cidr": "10.0.0.0/40"}), "kazoo:network.cidr", "is not a CIDR"),
    (dict(network={"cidr": "8.8.0.0/16"}), "kazoo:network.cidr", "private IPv4"),
    (dict(adminCidrs=["0.0.0.0/0"]), "kazoo:adminCidrs", "whole internet"),
    (dict(adminCidrs=None), "kazoo:adminCidrs", "is required"),
    (dict(adminCidrs=[]), "kazoo:adminCidrs", "at least 1"),
    (dict(roles={"media": {"count": 0}}), "kazoo:roles.media.count", "between 1 and 1000"),
    (dict(roles={"database": {"count": 2}}), "kazoo:roles.database.count", "lose quorum"),
    (dict(roles={"proxy": {"size": 3}}), "kazoo:roles.proxy.size", "must be a string"),
    (dict(combinedSize=8), "kazoo:combinedSize", "must be a string"),
    (dict(domain="Not A Domain"), "kazoo:domain", "DNS name"),
    (dict(sshPublicKeys=["hunter2"]), "kazoo:sshPublicKeys", "OpenSSH public key"),
    (dict(hetzner={"locations": ["fsn1", "ash"]}), "kazoo:hetzner.locations", "one network zone"),
    (dict(hetzner={"locations": ["mars1"]}), "kazoo:hetzner.locations", "unknown location"),
    (dict(image="ami-0123456789abcdef0"), "kazoo:image", "not a Hetzner image"),
    (dict(network={"cidr": "10.0.0.0/20"}, roles={"media": {"count": 60}}), "kazoo:network.cidr", "too small"),
    (dict(roles={"database": {"count": 3, "n": 4}}), "kazoo:roles.database.n", "need 4 database nodes"),
    (dict(layout="dual", roles={"database": {"n": 3}}), "kazoo:roles.database.n", "dual layout has 2"),
    (dict(roles={"database": {"q": 0}}), "kazoo:roles.database.q", "between 1 and 64"),
    (dict(orchestrate="yes"), "kazoo:orchestrate", "valid boolean"),
    (dict(ssh={"dialErrorLimit": -1}), "kazoo:ssh.dialErrorLimit", "unbounded dials"),
    (dict(ssh={"bastionHost": "x"}), "kazoo:ssh.bastionHost", "unknown key"),
    (dict(masterAccount={"name": "my master"}), "kazoo:masterAccount.name", "letters, digits"),
]


@pytest.mark.parametrize("change,key,words", BAD_INPUTS, ids=[b[1] + ":" + b[2] for b in BAD_INPUTS])
def test_bad_input_stops_before_any_resource(change, key, words):
    with pytest.raises(pulumi.RunError) as raised:
        run_program(with_(**change))
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith((key + ":", key + "[")), message
    assert words in message


def test_bad_input_registers_nothing(monkeypatch):
    """The error happens in load(), before the first resource: record registrations to prove it."""
    from harness import RecordingMonitor

    seen = []
    original = RecordingMonitor.RegisterResource

    def spy(self, request):
        seen.append(request.type)
        return original(self, request)

    monkeypatch.setattr(RecordingMonitor, "RegisterResource", spy)
    with pytest.raises(pulumi.RunError):
        run_program(with_(layout="triple"))
    assert [t for t in seen if t != "pulumi:pulumi:Stack"] == []


def test_the_retired_signalwire_token_is_named_with_what_to_do():
    """FreeSWITCH now comes from the openkazoo repository: a stack that still sets the token is told so."""
    with pytest.raises(pulumi.RunError) as raised:
        run_program(BASE, secrets={"kazoo:signalwireToken": "pat_x"})
    message = str(raised.value)
    assert message.startswith("kazoo:signalwireToken: no longer used") and "pat_x" not in message
    run_program(BASE, secrets={})  # and no token is needed


def test_a_private_key_that_is_not_one_stops_without_echoing_it():
    with pytest.raises(pulumi.RunError) as raised:
        run_program(BASE, secrets={**TEST_SECRETS, "kazoo:sshPrivateKey": "hunter2"})
    assert str(raised.value) == "kazoo:sshPrivateKey: not a PEM/OpenSSH private key"


def test_below_quorum_can_be_acknowledged():
    settings = load_settings({**with_(roles={"database": {"count": 2, "allowBelowQuorum": True}}), **TEST_SECRETS})
    assert settings.roles.database.count == 2


def test_defaults():
    settings = load_settings(
        {
            "kazoo:cloud": "aws",
            "kazoo:domain": "voip.example.com",
            "kazoo:adminCidrs": '["203.0.113.0/24"]',
            "kazoo:sshPublicKeys": [KEY],
        }
    )
    assert settings.layout is Layout.SINGLE
    assert settings.sip_cidrs == ["0.0.0.0/0", "::/0"]
    assert settings.effective_api_cidrs == ["203.0.113.0/24"]  # the API is not public unless asked
    assert [settings.roles.of(r).count for r in ALL_ROLES] == [3, 2, 2, 2, 2]
    assert settings.size_of(None) == "m6i.xlarge"
    assert settings.aws.zone_names == ["eu-central-1a", "eu-central-1b", "eu-central-1c"]
    assert settings.image == "debian-12"


def test_settings_error_is_one_line_for_several_problems():
    with pytest.raises(SettingsError) as raised:
        load_settings({"kazoo:cloud": "gcp", "kazoo:layout": "huge"})
    assert "\n" not in str(raised.value)
    assert "more problem" in str(raised.value)


def test_a_source_given_in_part_keeps_its_defaults():
    settings = load_settings({**with_(sources={"kazoo": {"version": "4.4.0~4.4.20260921*"},
                                               "kamailioConfigs": {"sha256": "0" * 64}}), **TEST_SECRETS})
    assert settings.sources.kazoo.version == "4.4.0~4.4.20260921*"
    assert settings.sources.kazoo.repo == "https://cloudpbx.github.io/openkazoo-kazoo4-builder/debian"
    assert settings.sources.kamailio_configs.url.endswith("/openkazoo/kamailio-configs/archive/"
                                                          "70448ef0d18c1bb96c82294c0c1cf0f646617956.tar.gz")
    assert settings.sources.kamailio_configs.sha256 == "0" * 64
