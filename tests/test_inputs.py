"""Hostile and careless stack files: each is refused with one line naming the key, before any resource
is registered, or accepted and rendered safely. Never a traceback, never a secret echoed.

The corpus covers what a probe of the program found (issue 11): shell and config syntax in values
that reach root shells (host.env is sourced as root) and configuration files, over-wide trust
(carriers, admins), addresses in the wrong ranges, duplicates that would collide in the plan or in
resource names, names that are not names, unsupported images, and malformed keys.
"""

from __future__ import annotations

import pulumi
import pytest

from core.bootstrap import HostContext, render_template
from core.plan import plan_hosts
from core.settings import load_settings
from harness import STACKS, RecordingMonitor, config_from_stack_file, run_program, stack_config

HETZNER = config_from_stack_file(STACKS / "Pulumi.hetzner-maximal.yaml")
AWS = config_from_stack_file(STACKS / "Pulumi.aws-maximal.yaml")
KEY = HETZNER["kazoo:sshPublicKeys"][0]
PWNED = "$(touch /tmp/pwned)"

# (base, changes, the key the one line must name)
REFUSED = [
    # values that would reach a root shell, a config file or a command line
    (HETZNER, {"sources": {"kazoo": {"repo": f"https://m/{PWNED}"}}}, "kazoo:sources.kazoo"),
    (HETZNER, {"sources": {"couchdb": {"repo": "https://mirror.example.com/x;reboot"}}}, "kazoo:sources.couchdb"),
    (HETZNER, {"sources": {"couchdb": {"key": "https://example.com/k`id`.asc"}}}, "kazoo:sources.couchdb.key"),
    (HETZNER, {"sources": {"erlang": {"version": "26'; rm -rf /; '"}}}, "kazoo:sources.erlang.version"),
    (HETZNER, {"sources": {"kamailio": {"version": "5.8 8"}}}, "kazoo:sources.kamailio.version"),
    (HETZNER, {"sources": {"freeswitch": {"suite": "bookworm main contrib"}}}, "kazoo:sources.freeswitch.suite"),
    (HETZNER, {"sources": {"freeswitch": {"suite": "Bookworm"}}}, "kazoo:sources.freeswitch.suite"),
    (HETZNER, {"sources": {"monsterUi": {"url": "https://example.com/m.tgz?a=1&b=2"}}}, "kazoo:sources.monsterUi.url"),
    (HETZNER, {"sources": {"monsterUi": {"url": "ftp://example.com/m.tgz"}}}, "kazoo:sources.monsterUi.url"),
    (HETZNER, {"sources": {"kamailioConfigs": {"url": "https://example.com/a b.tgz"}}}, "kazoo:sources.kamailioConfigs.url"),
    (HETZNER, {"sources": {"kamailioConfigs": {"url": "https://example.com:99999/a.tgz"}}}, "kazoo:sources.kamailioConfigs.url"),
    (HETZNER, {"sources": {"kazooConfigs": {"sha256": "ABC"}}}, "kazoo:sources.kazooConfigs.sha256"),
    (HETZNER, {"sources": {"kazooConfigs": {"url": "https://bücher.example/a.tgz"}}}, "kazoo:sources.kazooConfigs.url"),
    (HETZNER, {"sources": {"kazoo": {"repo": "https://example.com/debian", "key": None}}}, "kazoo:sources.kazoo"),
    (HETZNER, {"sources": {"nodejs": {"repo": "https://example.com"}}}, "kazoo:sources.nodejs"),
    # Kamailio's antiflood limit: a number in range, never text that reaches local.cfg
    (HETZNER, {"sip": {"antifloodRequests": "400\n#!define X"}}, "kazoo:sip.antifloodRequests"),
    (HETZNER, {"sip": {"antifloodRequests": 5}}, "kazoo:sip.antifloodRequests"),
    # names
    (HETZNER, {"domain": "x{a,b}.example.com"}, "kazoo:domain"),
    (HETZNER, {"domain": "bücher.example.com"}, "kazoo:domain"),
    (HETZNER, {"domain": "voip example.com"}, "kazoo:domain"),
    (HETZNER, {"domain": "localhost"}, "kazoo:domain"),
    (HETZNER, {"domain": "-bad.example.com"}, "kazoo:domain"),
    (HETZNER, {"domain": ("a" * 64) + ".example.com"}, "kazoo:domain"),
    (HETZNER, {"domain": ".".join(["abcdefghij"] * 25)}, "kazoo:domain"),
    (HETZNER, {"domain": "example.123"}, "kazoo:domain"),
    (HETZNER, {"domain": 42}, "kazoo:domain"),
    (HETZNER, {"masterAccount": {"realm": "x{a,b}"}}, "kazoo:masterAccount.realm"),
    (HETZNER, {"masterAccount": {"realm": "my realm.example.com"}}, "kazoo:masterAccount.realm"),
    (HETZNER, {"masterAccount": {"name": "master; reboot"}}, "kazoo:masterAccount.name"),
    (HETZNER, {"masterAccount": {"user": "-rf"}}, "kazoo:masterAccount.user"),
    (HETZNER, {"masterAccount": {"name": ""}}, "kazoo:masterAccount.name"),
    (HETZNER, {"roles": {"media": {"size": "ccx13; reboot"}}}, "kazoo:roles.media.size"),
    (HETZNER, {"combinedSize": "CX43"}, "kazoo:combinedSize"),
    (AWS, {"aws": {"region": "eu-central-1; x"}}, "kazoo:aws.region"),
    (AWS, {"aws": {"region": "mars-north-1", "zones": ["eu-central-1a"]}}, "kazoo:aws"),
    (AWS, {"aws": {"zones": ["eu-central-1a", "eu-central-1a"]}}, "kazoo:aws"),
    (AWS, {"aws": {"zones": ["eu-central-1a", "us-east-1b"]}}, "kazoo:aws"),
    (AWS, {"aws": {"zones": []}}, "kazoo:aws.zones"),
    (HETZNER, {"hetzner": {"locations": ["fsn1", "fsn1"]}}, "kazoo:hetzner.locations"),
    (HETZNER, {"hetzner": {"locations": ["fsn1; x"]}}, "kazoo:hetzner.locations"),
    # images
    (HETZNER, {"image": "ubuntu-24.04"}, "kazoo:image"),
    (HETZNER, {"image": "debian-13"}, "kazoo:image"),
    (AWS, {"image": "ami-$(id)"}, "kazoo:image"),
    # review 5, B3: a Xen type shows the CouchDB volume as /dev/xvdf, without the NVMe name looked for
    (AWS, {"roles": {"database": {"size": "m4.large"}}}, "kazoo:roles.database.size"),
    (AWS, {"layout": "dual", "combinedSize": "t2.xlarge"}, "kazoo:combinedSize"),
    (HETZNER, {"roles": {"media": {"image": "debian-13"}}}, "kazoo:roles.media.image"),
    (HETZNER, {"roles": {"proxy": {"image": "debian-13"}}}, "kazoo:sources.kamailio.repo"),
    # trust that is too wide
    (HETZNER, {"carrierCidrs": ["0.0.0.0/0"]}, "kazoo:carrierCidrs"),
    (HETZNER, {"carrierCidrs": ["10.0.0.0/8"]}, "kazoo:carrierCidrs"),
    (HETZNER, {"carrierCidrs": ["2001:db8::/16"]}, "kazoo:carrierCidrs"),
    (HETZNER, {"carrierCidrs": ["198.50.0.0/15"]}, "kazoo:carrierCidrs"),  # public, just wider than /16
    (HETZNER, {"carrierCidrs": ["2001:db8::/31"]}, "kazoo:carrierCidrs"),  # just wider than /32
    (HETZNER, {"adminCidrs": ["0.0.0.0/1", "128.0.0.0/1"]}, "kazoo:adminCidrs"),
    (HETZNER, {"adminCidrs": ["::/0"]}, "kazoo:adminCidrs"),
    (HETZNER, {"adminCidrs": ["203.0.113.0/24", "203.0.113.0/24"]}, "kazoo:adminCidrs"),
    (HETZNER, {"carrierCidrs": ["192.0.2.0/28", "192.0.2.0/28"]}, "kazoo:carrierCidrs"),
    (HETZNER, {"sipCidrs": []}, "kazoo:sipCidrs"),
    (HETZNER, {"apiCidrs": ["0.0.0.0/0"]}, "kazoo:apiCidrs"),  # a world-open API in plain HTTP
    (AWS, {"apiCidrs": ["0.0.0.0/1", "128.0.0.0/1"]}, "kazoo:apiCidrs"),
    (HETZNER, {"dns": {"zone": "example.org"}}, "kazoo:dns.zone"),  # does not hold the domain
    (HETZNER, {"sip": {"tls": True}}, "kazoo:sipTlsCertificate"),
    (HETZNER, {"adminCidrs": ["203.0.113.5/24"]}, "kazoo:adminCidrs"),
    # review 3, B5: more rules than an AWS security group holds (60 inbound): SIP rows x 16 ranges
    (AWS, {"sipCidrs": [f"198.51.{i}.0/24" for i in range(16)], "sip": {"websockets": True}},
     "kazoo:sipCidrs"),
    (AWS, {"adminCidrs": [f"203.0.{i}.0/24" for i in range(61)]}, "kazoo:adminCidrs"),
    # networks in the wrong ranges
    (HETZNER, {"network": {"cidr": "127.0.0.0/16"}}, "kazoo:network.cidr"),
    (HETZNER, {"network": {"cidr": "169.254.0.0/16"}}, "kazoo:network.cidr"),
    (HETZNER, {"network": {"cidr": "100.64.0.0/16"}}, "kazoo:network.cidr"),
    (HETZNER, {"network": {"cidr": "fd00::/48"}}, "kazoo:network.cidr"),
    # connections
    (HETZNER, {"ssh": {"bastion": "bastion.example.com:abc"}}, "kazoo:ssh.bastion"),
    (HETZNER, {"ssh": {"bastion": "bastion.example.com:0"}}, "kazoo:ssh.bastion"),
    (HETZNER, {"ssh": {"bastion": "bastion.example.com:65536"}}, "kazoo:ssh.bastion"),
    (HETZNER, {"ssh": {"bastion": "2001:db8::1:22"}}, "kazoo:ssh.bastion"),
    (HETZNER, {"ssh": {"bastion": "[203.0.113.1]:22"}}, "kazoo:ssh.bastion"),
    (HETZNER, {"ssh": {"bastion": "host$(id)"}}, "kazoo:ssh.bastion"),
    (HETZNER, {"ssh": {"bastionUser": "ops; id"}}, "kazoo:ssh.bastionUser"),
    # keys
    (HETZNER, {"sshPublicKeys": ["ssh-ed25519 AAAA op@example.com"]}, "kazoo:sshPublicKeys[0]"),
    (HETZNER, {"sshPublicKeys": ["ssh-dss AAAAB3NzaC1kc3MAAACBAP op@example.com"]}, "kazoo:sshPublicKeys[0]"),
    (HETZNER, {"sshPublicKeys": [KEY + "\nssh-ed25519 AAAA evil"]}, "kazoo:sshPublicKeys[0]"),
    (HETZNER, {"sshPublicKeys": [KEY.replace("ssh-ed25519", "ssh-rsa", 1)]}, "kazoo:sshPublicKeys[0]"),
    (HETZNER, {"sshPublicKeys": []}, "kazoo:sshPublicKeys"),
    # structure
    (HETZNER, {"roles": "many"}, "kazoo:roles"),
    (HETZNER, {"roles": {"media": {"count": 10**9}}}, "kazoo:roles.media.count"),
    (HETZNER, {"roles": {"media": {"count": True}}}, "kazoo:roles.media.count"),
    (HETZNER, {"bootstrap": {"skip": ["nginx"]}}, "kazoo:bootstrap.skip[0]"),
    (HETZNER, {"sip": {"tls": "yes"}}, "kazoo:sip.tls"),
    # review 9 (security): an IPv6 %scope is kept by Python and breaks nftables (or crashed late)
    (HETZNER, {"sipCidrs": ["0.0.0.0/0", "fe80::%x/128"]}, "kazoo:sipCidrs[1]"),
    (HETZNER, {"carrierCidrs": ["2001:db8::1%x/128"]}, "kazoo:carrierCidrs[0]"),
    (AWS, {"carrierCidrs": ["2001:db8::%$(id)/128"]}, "kazoo:carrierCidrs[0]"),
    (AWS, {"ssh": {"bastion": "[fe80::1%x y]:22"}}, "kazoo:ssh.bastion"),
    (HETZNER, {"ssh": {"bastion": "2001:db8::1%eth0"}}, "kazoo:ssh.bastion"),
    # ... a bastion range as wide as the internet, the internet in pieces
    (HETZNER, {"ssh": {"bastion": "bastion.example.com", "bastionCidr": "0.0.0.0/0"}}, "kazoo:ssh.bastionCidr"),
    (AWS, {"ssh": {"bastion": "bastion.example.com", "bastionCidr": "198.51.0.0/16"}}, "kazoo:ssh.bastionCidr"),
    (HETZNER, {"adminCidrs": ["0.0.0.0/1", "128.0.0.0/2", "192.0.0.0/3"]}, "kazoo:adminCidrs"),
    (HETZNER, {"adminCidrs": ["2000::/3"]}, "kazoo:adminCidrs"),
    (AWS, {"apiCidrs": ["1.0.0.0/8", "2.0.0.0/7", "4.0.0.0/6"]}, "kazoo:apiCidrs"),
    # ... ranges no outside traffic comes from; a carrier inside the stack's own network
    (HETZNER, {"adminCidrs": ["127.0.0.0/8"]}, "kazoo:adminCidrs[0]"),
    (HETZNER, {"sipCidrs": ["169.254.169.254/32"]}, "kazoo:sipCidrs[0]"),
    (HETZNER, {"apiCidrs": ["fe80::/64"]}, "kazoo:apiCidrs[0]"),
    (HETZNER, {"carrierCidrs": ["127.0.0.1/32"]}, "kazoo:carrierCidrs[0]"),
    (HETZNER, {"carrierCidrs": ["::ffff:0:0/96"]}, "kazoo:carrierCidrs[0]"),
    (HETZNER, {"carrierCidrs": ["0.0.0.0/16"]}, "kazoo:carrierCidrs[0]"),
    (HETZNER, {"carrierCidrs": ["10.20.1.0/24"]}, "kazoo:carrierCidrs"),
    (HETZNER, {"ssh": {"bastion": "127.0.0.1"}}, "kazoo:ssh.bastionCidr"),  # a tunnel: where does SSH come from?
    (HETZNER, {"ssh": {"bastion": "169.254.169.254"}}, "kazoo:ssh.bastion"),
    (HETZNER, {"ssh": {"bastion": "[::]:22"}}, "kazoo:ssh.bastion"),
    # ... digits and letters that are not ASCII
    (HETZNER, {"sources": {"kazoo": {"version": "\u0661:4.4.0"}}}, "kazoo:sources.kazoo.version"),
    (AWS, {"image": "ami-\uff41\uff42\uff43\uff44\uff45\uff46\uff47\uff48"}, "kazoo:image"),
    (HETZNER, {"ssh": {"bastion": "bastion.example.com:\uff12\uff12"}}, "kazoo:ssh.bastion"),
    # ... just past the edges (review 9: loosened bounds went unseen)
    (HETZNER, {"ssh": {"dialErrorLimit": 241}}, "kazoo:ssh.dialErrorLimit"),
    (HETZNER, {"ssh": {"dialErrorLimit": 0}}, "kazoo:ssh.dialErrorLimit"),
    # ... a signing key over http (apt trusts it), an http archive with no sha256
    (HETZNER, {"sources": {"couchdb": {"key": "http://mirror.example.com/keys.asc"}}}, "kazoo:sources.couchdb.key"),
    (HETZNER, {"sources": {"kazooConfigs": {"url": "http://mirror.example.com/kazoo-configs.tar.gz"}}},
     "kazoo:sources.kazooConfigs"),
]


def run_refused(base: dict, changes: dict, secrets: dict | None = None) -> str:
    config = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(config.get(f"kazoo:{key}"), dict):
            merged = dict(config[f"kazoo:{key}"])
            for k, v in value.items():
                merged[k] = {**merged.get(k, {}), **v} if isinstance(v, dict) and isinstance(merged.get(k), dict) else v
            config[f"kazoo:{key}"] = merged
        else:
            config[f"kazoo:{key}"] = value
    with pytest.raises(pulumi.RunError) as raised:
        run_program(config, secrets=secrets or {})
    return str(raised.value)


def test_the_corpus_is_large_enough():
    assert len(REFUSED) >= 60


@pytest.mark.parametrize("base,changes,key", REFUSED, ids=[f"{i}:{k}" for i, (_, _, k) in enumerate(REFUSED)])
def test_refused_with_one_line_naming_the_key(base, changes, key, monkeypatch):
    registered = []
    original = RecordingMonitor.RegisterResource
    monkeypatch.setattr(RecordingMonitor, "RegisterResource",
                        lambda self, request: (registered.append(request.type), original(self, request))[1])
    message = run_refused(base, changes)
    assert "\n" not in message and "Traceback" not in message, message
    assert message.startswith(key), message
    assert message[len(key)] in ":[.", message
    assert [t for t in registered if t != "pulumi:pulumi:Stack"] == []  # refused before any resource


SECRET_VALUE = "12345678901234"


@pytest.mark.parametrize("secrets,key", [
    ({"kazoo:masterPassword": "short"}, "kazoo:masterPassword"),
    ({"kazoo:masterPassword": SECRET_VALUE + "\x07bell"}, "kazoo:masterPassword"),
    ({"kazoo:masterPassword": "Abcdefgh123"}, "kazoo:masterPassword"),  # 11: one short of the minimum
    # snake_case spellings are unknown keys, not secrets parsed as JSON and echoed (review 9, 4)
    ({"kazoo:master_password": SECRET_VALUE}, "kazoo:master_password"),
    ({"kazoo:sip_tls_key": '{"k": "' + SECRET_VALUE + '"}'}, "kazoo:sip_tls_key"),
    ({"kazoo:sshPrivateKey": SECRET_VALUE}, "kazoo:sshPrivateKey"),
    ({"kazoo:sshPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----\n" + SECRET_VALUE + "\n-----END OPENSSH PRIVATE KEY-----\n"},
     "kazoo:sshPrivateKey"),
])
def test_an_error_about_a_secret_never_shows_it(secrets, key):
    message = run_refused(HETZNER, {}, secrets)
    assert message.startswith(key) and SECRET_VALUE not in message and "short" not in message, message


# ----- accepted, and rendered safely --------------------------------------------------------------

ACCEPTED = [
    {"ssh": {"bastion": "[2001:db8::10]:2222"}},
    {"ssh": {"bastion": "203.0.113.10"}},
    {"sources": {"kamailio": {"repo": "http://10.0.0.5:8080/debian", "key": "https://10.0.0.5:8443/key.gpg"}}},
    {"sources": {"kazooConfigs": {"url": "http://10.0.0.5:8080/kazoo-configs.tar.gz", "sha256": "0" * 64}}},
    {"masterAccount": {"name": "Reseller-1", "realm": "sip.reseller.example.com", "user": "admin.ops"}},
    {"carrierCidrs": ["192.0.2.0/24", "2001:db8:1::/48"]},
    {"adminCidrs": ["10.0.0.0/8", "2001:db8::/32"]},  # as wide as an admin list may be
    {"adminCidrs": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]},  # every private range: not the internet
    {"ssh": {"bastion": "127.0.0.1:2222", "bastionCidr": "198.51.100.9/32"}},  # an ssh -L tunnel to the bastion
]


@pytest.mark.parametrize("changes", ACCEPTED)
def test_accepted_and_quoted_in_host_env(changes):
    config = dict(HETZNER)
    for key, value in changes.items():
        config[f"kazoo:{key}"] = value
    settings = load_settings(config)
    plan = plan_hosts(settings)
    env = render_template("host.env.j2", HostContext(plan.hosts[0], plan, settings, "198.51.100.7", {}))
    for line in env.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            assert name.isidentifier(), line
            # every value is one shell word, single-quoted or made of characters that need no quotes
            assert (value.startswith("'") and value.endswith("'") and value.count("'") == 2) or \
                all(c.isalnum() or c in "@%+=:,./_-" for c in value), line


def test_ipv6_carriers_never_share_a_step_or_acl_name():
    """`1::2/128` and `1:2::/128` once became the same ACL and step name (a duplicate URN)."""
    from core.orchestration import acl_name

    cidrs = ["1::2/128", "1:2::/128", "2001:db8::/48", "2001:db8:0:1::/64", "192.0.2.0/28", "192.0.2.16/28"]
    names = {acl_name("carrier", c) for c in cidrs}
    assert len(names) == len(cidrs)
    assert acl_name("carrier", "192.0.2.0/28") == "carrier-192-0-2-0-28"  # IPv4 names unchanged


def test_hetzner_outside_the_eu_gets_types_sold_there():
    settings = load_settings({**HETZNER, "kazoo:hetzner": {"locations": ["ash"]}})
    from core.roles import ALL_ROLES
    assert all(not settings.size_of(r).startswith(("cx", "cax")) for r in [None, *ALL_ROLES])
    message = run_refused(HETZNER, {"hetzner": {"locations": ["sin"]}, "roles": {"media": {"size": "cx33"}}})
    assert message.startswith("kazoo:roles.media.size: cx33 is sold in Hetzner's EU locations only")


def test_a_secret_in_clear_text_gets_a_warning(caplog):
    run_program({**HETZNER, "kazoo:masterPassword": "correct-horse-battery"}, secrets={})
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(w.startswith("kazoo:masterPassword is in clear text") and "--secret" in w for w in warnings), warnings
    assert not any("correct-horse-battery" in w for w in warnings)
    caplog.clear()
    run_program(HETZNER, secrets={"kazoo:masterPassword": "correct-horse-battery"})
    assert not [r for r in caplog.records if "clear text" in r.getMessage()]


@pytest.mark.parametrize("stack", ["s" * 64, "prod-", "-prod"])
def test_a_stack_name_that_cannot_label_resources_is_refused(stack):
    """Review 3, C4: the stack's name is the kazoo-stack label of every resource; Hetzner refuses a
    label value over 63 characters or not starting and ending with a letter or digit."""
    with pytest.raises(pulumi.RunError, match=r"^stack name '") as raised:
        run_program(stack_config("hetzner-single"), stack=stack)
    assert "\n" not in str(raised.value)


def test_a_long_stack_name_that_fits_is_accepted():
    assert run_program(stack_config("hetzner-single"), stack="p" * 63).outputs["hosts"]


@pytest.mark.parametrize("layout,tls", [("single", False), ("dual", False), ("dual", True)])
def test_aws_hosts_carrying_every_role_need_the_orchestration(layout, tls, tmp_path, monkeypatch):
    """Without the orchestration, an AWS host carrying every role would carry FreeSWITCH (and the SIP
    certificate, Monster UI) in user-data: 16.3-16.4 KB of 16, at the edge (review 5, B1: 16.9 KB
    with a certificate). Refused, always, with one line and before any resource; maximal is fine."""
    from tls_ca import ThrowawayCA

    registered = []
    original = RecordingMonitor.RegisterResource
    monkeypatch.setattr(RecordingMonitor, "RegisterResource",
                        lambda self, request: (registered.append(request.type), original(self, request))[1])
    base = config_from_stack_file(STACKS / f"Pulumi.aws-{layout}.yaml")
    overrides, secrets = {"orchestrate": False}, {}
    if tls:
        certificate, key = ThrowawayCA(tmp_path).issue(f"{layout}.aws.voip.example.com", 5)
        overrides.update({"sip": {"tls": True}, "sipTlsCertificate": certificate})
        secrets = {"kazoo:sipTlsKey": key}
    message = run_refused(base, overrides, secrets=secrets)
    assert message.startswith("kazoo:orchestrate: false needs layout maximal on AWS") and "\n" not in message
    assert [t for t in registered if t != "pulumi:pulumi:Stack"] == []


def test_user_data_that_would_not_fit_is_refused_before_any_resource(monkeypatch):
    """Each kind of host is rendered at load with random stand-ins of the real lengths for secrets and
    keys. /etc/hosts names every host of the plan (some 9 bytes each, compressed): an AWS maximal
    stack of 900 media hosts puts a host over AWS's 16 KB. Refused with one line before any
    resource, instead of failing midway through `pulumi up` in the apply that encodes it."""
    registered = []
    original = RecordingMonitor.RegisterResource
    monkeypatch.setattr(RecordingMonitor, "RegisterResource",
                        lambda self, request: (registered.append(request.type), original(self, request))[1])
    base = config_from_stack_file(STACKS / "Pulumi.aws-maximal.yaml")
    message = run_refused(base, {"roles": {"media": {"count": 900}}})
    assert message.startswith("kazoo:layout: the user-data of ") and " would not fit: user-data of " in message
    assert "\n" not in message
    assert [t for t in registered if t != "pulumi:pulumi:Stack"] == []


def test_the_edges_themselves_are_accepted():
    """The bounds refused just past them above hold their own values: a 12-character password, 240 dials."""
    config = {**HETZNER, "kazoo:ssh": {"dialErrorLimit": 240}}
    settings = load_settings({**config, "kazoo:masterPassword": "Abcdefgh1234"})
    assert settings.ssh.dial_error_limit == 240
    assert settings.master_password.get_secret_value() == "Abcdefgh1234"
