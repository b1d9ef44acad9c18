"""The post-boot orchestration: the planned steps and their dependencies under mocks, day-2 growth,
and shellcheck on the remote scripts. The scripts themselves run on a fake host in
tests/test_remote_scripts.py (and couchdb-cluster.sh in tests/test_database.py)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from core.bootstrap import CLOUD_INIT_DIR
from core.user_data import decode_user_data
from core.orchestration import plan_steps
from core.plan import plan_hosts
from core.roles import Role
from core.settings import load_settings
from harness import run_stack_file, stack_config

COMMAND = "command:remote:Command"
SERVER = {"hetzner": "index/server:Server", "aws": "ec2/instance:Instance"}


def commands(result):
    return {r.name: r for r in result.of_type(COMMAND)}


def step_deps(result, name, kinds=(COMMAND,)):
    """The names of the resources of `kinds` a command depends on (by default: the steps before it;
    what its inputs are made of, such as secrets and addresses, is left out)."""
    by_urn = {r.urn: r for r in result.registrations}
    deps = [by_urn[u] for u in commands(result)[name].dependencies]
    return {d.name for d in deps if d.type in kinds}


@pytest.fixture(scope="module")
def maximal():
    return run_stack_file("aws-maximal")


@pytest.fixture(scope="module")
def single():
    return run_stack_file("hetzner-single")


# ----- the plan of steps, under mocks ------------------------------------------------------------

@pytest.mark.parametrize("stack", ["hetzner-single", "aws-dual", "hetzner-maximal", "aws-maximal"])
def test_every_host_waits_for_cloud_init_after_its_server(stack):
    cloud = stack.split("-")[0]
    result = run_stack_file(stack)
    servers = {r.name: r for r in result.of_type(SERVER[cloud])}
    cmds = commands(result)
    for name, server in servers.items():
        wait = cmds[f"wait-{name}"]
        assert "cloud-init status --wait" in wait.inputs["create"]
        assert server.urn in wait.dependencies
        # deleted with the server it runs on: a destroy never dials a host that is going away
        assert wait.deleted_with == server.urn
    assert all(c.deleted_with in {s.urn for s in servers.values()} for c in cmds.values())


def test_wait_also_waits_for_the_public_ip_and_the_data_volume(maximal):
    kinds = ("aws:ec2/instance:Instance", "aws:ec2/volumeAttachment:VolumeAttachment",
             "aws:ec2/eipAssociation:EipAssociation", COMMAND)
    assert step_deps(maximal, "wait-db1", kinds) == {"db1", "db1-couchdb"}  # instance, volume attachment
    assert step_deps(maximal, "wait-media1", kinds) == {"media1", "media1-eip"}  # instance, EIP association


def test_pushes_that_restart_a_shared_service_go_one_host_at_a_time(maximal):
    """A change every proxy (or Kazoo, RabbitMQ, CouchDB node) takes restarts them in turn, never
    all at once: each host's push waits for the previous one's of its role (in the engine's graph,
    as registered). Media hosts push side by side (FreeSWITCH never restarts on a push)."""
    for first, second in [("proxy1", "proxy2"), ("app1", "app2"), ("broker1", "broker2"), ("db1", "db2"), ("db2", "db3")]:
        assert f"config-{first}" in step_deps(maximal, f"config-{second}"), second
    for host in ("proxy1", "app1", "broker1", "db1", "media1", "media2"):
        assert step_deps(maximal, f"config-{host}") == {f"wait-{host}"}, host
    dual = run_stack_file("aws-dual")
    assert step_deps(dual, "config-kazoo2") == {"wait-kazoo2", "config-kazoo1"}


def test_each_step_needs_the_hosts_it_talks_to_and_nothing_more(maximal):
    assert step_deps(maximal, "config-app2") == {"wait-app2", "config-app1"}  # one after the other
    assert step_deps(maximal, "couchdb-cluster") == {"config-db1", "wait-db2", "wait-db3"}
    # Kazoo starts on each application host once the cluster is formed (review A5)
    assert step_deps(maximal, "kazoo-start-app1") == {"couchdb-cluster", "config-app1"}
    assert step_deps(maximal, "kazoo-start-app2") == {"couchdb-cluster", "config-app2"}
    assert step_deps(maximal, "kazoo-first-start") == {"kazoo-start-app1", "config-app1", "wait-broker1", "wait-broker2"}
    assert step_deps(maximal, "readiness-app2") == {"config-app2", "kazoo-start-app2"}
    assert step_deps(maximal, "register-media2") == {"kazoo-first-start", "wait-media2"}
    assert step_deps(maximal, "trust-proxy1") == {"kazoo-first-start", "wait-proxy1"}
    assert step_deps(maximal, "carrier-192-0-2-0-28") == {"kazoo-first-start"}
    assert step_deps(maximal, "master-account") == {"kazoo-first-start"}
    assert step_deps(maximal, "readiness-media1") == {"config-media1", "register-media1"}
    assert step_deps(maximal, "readiness-db2") == {"config-db2"}


def test_maximal_forms_a_three_node_cluster_with_three_copies(maximal):
    cluster = commands(maximal)["couchdb-cluster"]
    fqdns = [f"db{i}.maximal.aws.voip.example.com" for i in (1, 2, 3)]
    assert cluster.inputs["create"] == "sudo -n /opt/kazoo-bootstrap/remote/couchdb-cluster.sh " + " ".join(fqdns)
    assert cluster.inputs["connection"]["host"] == maximal.outputs["hosts"]["db1"]["publicIp"]


@pytest.mark.parametrize("layout,n,q", [("single", 1, 1), ("dual", 2, 2), ("maximal", 3, 2)])
def test_couchdb_n_and_q_fit_the_layout(layout, n, q):
    settings = load_settings({**stack_config(f"hetzner-{layout}")})
    assert (settings.couchdb_n, settings.couchdb_q) == (n, q)


def test_registrations_trust_and_carriers_run_on_the_first_app_host(maximal):
    cmds = commands(maximal)
    app1 = maximal.outputs["hosts"]["app1"]
    proxy1 = maximal.outputs["hosts"]["proxy1"]
    register = cmds["register-media1"]
    assert register.inputs["connection"]["host"] == app1["publicIp"]
    assert register.inputs["create"].endswith("ecallmgr.sh add-media media1.maximal.aws.voip.example.com")
    assert register.inputs["delete"].endswith("ecallmgr.sh remove-media media1.maximal.aws.voip.example.com")
    trust = cmds["trust-proxy1"]
    assert trust.inputs["create"].endswith(f"ecallmgr.sh allow-sbc proxy1 {proxy1['privateIp']}")
    assert trust.inputs["delete"].endswith("ecallmgr.sh remove-acl proxy1")
    assert cmds["carrier-192-0-2-0-28"].inputs["create"].endswith("allow-carrier carrier-192-0-2-0-28 192.0.2.0/28")


def test_secrets_travel_on_stdin_never_on_a_command_line(maximal):
    cmds = commands(maximal)
    password = maximal.outputs["masterAccount"]["password"]
    assert password and len(password) == 24
    assert cmds["master-account"].inputs["stdin"] == password + "\n"
    assert "stdin" in cmds["master-account"].secret_inputs
    for name, cmd in cmds.items():
        assert "connection" in cmd.secret_inputs, name  # the private key is in there
        assert password not in cmd.inputs["create"]
        assert "PRIVATE KEY" not in cmd.inputs["create"]
        if name.startswith("config-"):
            assert "stdin" in cmd.secret_inputs
            assert re.fullmatch(r"sha256:[0-9a-f]{16}", cmd.inputs["triggers"][0])
            assert "triggers" not in cmd.secret_inputs  # readable in a preview diff


def test_the_pushed_bundle_is_what_the_host_renders(maximal):
    bundle = commands(maximal)["config-app1"].inputs["stdin"]
    settings = load_settings(stack_config("aws-maximal"))
    plan = plan_hosts(settings)
    assert re.fullmatch(r"[A-Za-z0-9+/=]+", bundle)
    names = subprocess.run(["bash", "-c", "base64 -d | tar -tzf -"], input=bundle, capture_output=True, text=True)
    listed = set(names.stdout.split())
    assert {"etc/kazoo-bootstrap/files/etc/kazoo/config.ini", "etc/kazoo-bootstrap/files/etc/hosts",
            "opt/kazoo-bootstrap/configure.sh", "opt/kazoo-bootstrap/remote/ecallmgr.sh"} <= listed
    config = subprocess.run(
        ["bash", "-c", "base64 -d | tar -xzOf - etc/kazoo-bootstrap/files/etc/kazoo/config.ini"],
        input=bundle, capture_output=True, text=True,
    ).stdout
    for broker in plan.with_role(Role.BROKER):
        assert f"@{broker.fqdn}:5672" in config


def test_generated_key_is_installed_by_cloud_init_and_used_to_connect(single):
    from core.user_data import decode_user_data

    key = single.named("orchestration-ssh")
    server = single.of_type(SERVER["hetzner"])[0]
    user_data = decode_user_data(server.inputs["userData"])
    assert key.state["publicKeyOpenssh"].strip() in user_data
    wait = commands(single)["wait-kazoo1"]
    assert wait.inputs["connection"]["privateKey"] == key.state["privateKeyOpenssh"]
    assert wait.inputs["connection"]["user"] == "ops"
    assert wait.inputs["connection"]["dialErrorLimit"] == 40


@pytest.mark.parametrize("stack,host", [("hetzner-single", "kazoo1"), ("aws-maximal", "media2")])
def test_each_host_key_is_installed_by_cloud_init_and_pinned(stack, host):
    from core.user_data import decode_user_data

    import yaml

    result = run_stack_file(stack)
    key = result.named(f"{host}-ssh-host-key")
    assert key.inputs["algorithm"] == "ED25519"
    server = result.named(host, SERVER[stack.split("-")[0]])
    encoded = server.inputs.get("userData") or server.inputs["userDataBase64"]
    config = yaml.safe_load(decode_user_data(encoded))
    assert config["ssh_keys"] == {"ed25519_private": key.state["privateKeyOpenssh"],
                                  "ed25519_public": key.state["publicKeyOpenssh"].strip()}
    for name, cmd in commands(result).items():
        if name.endswith(f"-{host}") and not name.startswith(("register-", "trust-")):
            assert cmd.inputs["connection"]["hostKey"] == key.state["publicKeyOpenssh"].strip(), name


def test_a_given_private_key_replaces_the_generated_one(tmp_path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "key")], check=True)
    pem = (tmp_path / "key").read_text()  # a real unencrypted OpenSSH key: the settings parse it
    result = run_stack_file("hetzner-single", secrets={"kazoo:sshPrivateKey": pem})
    assert [r.name for r in result.of_type("index/privateKey:PrivateKey")] == ["kazoo1-ssh-host-key"]
    assert commands(result)["wait-kazoo1"].inputs["connection"]["privateKey"] == pem


def test_bastion_reaches_hosts_on_their_private_ips():
    result = run_stack_file("aws-maximal", {"ssh": {"bastion": "198.51.100.7:2222"}})
    conn = commands(result)["wait-db2"].inputs["connection"]
    assert conn["host"] == result.outputs["hosts"]["db2"]["privateIp"]
    assert conn["proxy"]["host"] == "198.51.100.7" and conn["proxy"]["port"] == 2222


def test_orchestrate_false_runs_nothing_over_ssh():
    result = run_stack_file("aws-maximal", {"orchestrate": False})
    assert not result.of_type(COMMAND)
    assert "readiness" not in result.outputs and "masterAccount" not in result.outputs
    # no operator key handed to the hosts: nothing is meant to log in with it
    stack_keys = stack_config("aws-maximal")["kazoo:sshPublicKeys"]
    for server in result.of_type("aws:ec2/instance:Instance"):
        config = yaml.safe_load(decode_user_data(server.inputs["userDataBase64"]))
        [ops] = [u for u in config["users"] if isinstance(u, dict)]
        assert ops["ssh_authorized_keys"] == stack_keys, server.name
        assert config["ssh_keys"]["ed25519_public"].startswith("ssh-ed25519 ")  # pinned all the same


def test_switching_orchestration_off_and_on_keeps_the_keys_hosts_were_given():
    """Review 3, B3: the host keys and the operator key were made only with `orchestrate` on, so a
    run with it off deleted them and the next run with it on made new ones: every running host then
    refused `pulumi up` (another host key, an operator key it never got)."""
    on = run_stack_file("aws-maximal")
    off = run_stack_file("aws-maximal", {"orchestrate": False})
    keys = lambda r: {k.urn for k in r.of_type("tls:index/privateKey:PrivateKey")}
    assert keys(on) and keys(on) == keys(off)
    assert {k.name for k in off.of_type("tls:index/privateKey:PrivateKey")} >= {"orchestration-ssh", "media1-ssh-host-key"}
    passwords = lambda r: {p.urn for p in r.of_type("random:index/randomPassword:RandomPassword")}
    assert passwords(on) == passwords(off)  # the master password too


def test_skipped_components_have_no_steps():
    settings = load_settings({**stack_config("hetzner-single"), "kazoo:bootstrap": {"skip": ["couchdb", "kazoo"]}})
    names = {s.name for s in plan_steps(settings, plan_hosts(settings))}
    assert names == {"wait-kazoo1", "config-kazoo1", "readiness-kazoo1"}


def test_readiness_output_per_host(single):
    assert single.outputs["readiness"] == {"kazoo1": "ran readiness-kazoo1"}
    assert commands(single)["readiness-kazoo1"].inputs["create"].endswith(
        "readiness.sh database broker application media proxy"
    )


def test_monster_ui_apps_are_registered_with_the_public_api_address():
    result = run_stack_file(
        "aws-maximal", {"sources": {"monsterUi": {"url": "https://example.com/monster-ui.tar.gz"}}}
    )
    ip = result.outputs["hosts"]["app1"]["publicIp"]
    assert commands(result)["master-account"].inputs["create"].endswith(f"admin http://{ip}:8000/v2")


# ----- day 2: growing never touches running servers -----------------------------------------------

def changed_inputs(before, after, name):
    old, new = commands(before)[name], commands(after)[name]
    return {k for k in set(old.inputs) | set(new.inputs) if old.inputs.get(k) != new.inputs.get(k)}


@pytest.mark.parametrize("cloud", ["hetzner", "aws"])
def test_adding_a_media_host_registers_it_and_updates_its_peers(cloud):
    before = run_stack_file(f"{cloud}-maximal")
    after = run_stack_file(f"{cloud}-maximal", {"roles": {"media": {"count": 3}}})
    added = set(commands(after)) - set(commands(before))
    assert added == {"wait-media3", "config-media3", "register-media3", "readiness-media3"}
    assert set(commands(before)) <= set(commands(after))
    # the hosts that must now know media3 get a new configuration push, by its digest...
    for host in ("app1", "app2", "db1", "broker1", "proxy1"):
        assert changed_inputs(before, after, f"config-{host}") == {"stdin", "triggers"}, host
    # ...while the running servers themselves do not change (user data aside, which is ignored)
    servers_before = {r.name: r for r in before.of_type(SERVER[cloud])}
    for server in after.of_type(SERVER[cloud]):
        if server.name in servers_before:
            old = servers_before[server.name]
            keep = lambda r: {k: v for k, v in r.inputs.items() if k not in r.ignore_changes}
            assert keep(old) == keep(server), server.name
    # nothing else runs again: no other step's command line changed
    for name in set(commands(before)):
        if not name.startswith(("config-", "readiness-")):
            assert changed_inputs(before, after, name) == set(), name


def test_removing_a_media_host_deregisters_it_before_its_server_goes():
    """Pulumi deletes what depends on a resource before the resource: the registration (run on app1,
    with a delete command) depends on wait-media3, which depends on the media3 server."""
    grown = run_stack_file("aws-maximal", {"roles": {"media": {"count": 3}}})
    shrunk = run_stack_file("aws-maximal")
    gone = set(commands(grown)) - set(commands(shrunk))
    assert gone == {"wait-media3", "config-media3", "register-media3", "readiness-media3"}
    register = commands(grown)["register-media3"]
    assert register.inputs["delete"].endswith("ecallmgr.sh remove-media media3.maximal.aws.voip.example.com")
    assert "wait-media3" in step_deps(grown, "register-media3")
    media3 = grown.named("media3", "ec2/instance:Instance")
    assert media3.urn in commands(grown)["wait-media3"].dependencies
    # it runs on app1, which stays: the delete command can run
    assert register.deleted_with == grown.named("app1", "ec2/instance:Instance").urn


def test_single_to_dual_grows_the_cluster_and_keeps_kazoo1():
    before = run_stack_file("hetzner-dual", {"layout": "single"})
    after = run_stack_file("hetzner-dual")
    assert changed_inputs(before, after, "couchdb-cluster") == {"create"}
    rerun = {name for name in commands(before) if changed_inputs(before, after, name)}
    assert rerun == {"config-kazoo1", "readiness-kazoo1", "couchdb-cluster"}  # as the README says
    assert commands(after)["couchdb-cluster"].inputs["create"].endswith(
        "kazoo1.dual.hetzner.voip.example.com kazoo2.dual.hetzner.voip.example.com"
    )
    assert {"register-kazoo2", "trust-kazoo2", "wait-kazoo2"} <= set(commands(after)) - set(commands(before))


# ----- the remote scripts ------------------------------------------------------------------------

def test_remote_scripts_pass_shellcheck():
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (.ci/run installs it)")
    scripts = sorted((CLOUD_INIT_DIR / "remote").glob("*.sh"))
    assert len(scripts) == 11
    for script in scripts:
        assert "set -euo pipefail" in script.read_text(), script.name
    run = subprocess.run([shellcheck, "-x", "-P", "SCRIPTDIR", *map(str, scripts)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout

