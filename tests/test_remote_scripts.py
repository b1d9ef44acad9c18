"""The remote scripts (cloud-init/remote/*.sh) and configure.sh, run on a fake host (tests/fakehost.py)
with the orchestration's own command lines (core/orchestration.py plan_steps), against stand-ins that
answer as the real programs do, failures included:

- tests/stubs/sup: Kazoo 4.4's maintenance shell and the Kazoo nodes behind it (the cookie from
  config.ini, the node from -n, exit codes and output of each maintenance function); it keeps what
  the functions change in $STUB_STATE/kazoo/state.json;
- tests/stubs/fake_crossbar.py: crossbar's user_auth and users PATCH, on that same state;
- tests/stubs/fake_couchdb.py: CouchDB 3.5 (see tests/test_database.py for how to start it);
- tests/stubs/systemctl (systemd 252: missing units, failed jobs, unit states) and
  tests/stubs/cloud-init (`cloud-init status --wait` exit codes).

Every test asserts what a script leaves behind (the stand-ins' state, files with their owners and
modes, the live nftables ruleset, the jobs systemd ran), not what it logs. The CouchDB cluster script
is tested in tests/test_database.py.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import socket
import sys
import time
from pathlib import Path

import pytest

import core.bootstrap as bootstrap
from core.bootstrap import CLOUD_INIT_DIR, HostContext, config_bundle, config_digest, render_template, rendered_files
from core.roles import Role
from core.orchestration import plan_steps
from core.plan import plan_hosts
from core.settings import load_settings
import upstream
from fakehost import PROC_WATCH, STUBS, FakeHost, available
from harness import stack_config

needs_root = pytest.mark.skipif(not available(), reason="needs root and unshare (as in .ci/run)")
PY = sys.executable  # not `python3` from PATH, which may be a slow shim
# Distinct, alphanumeric (as components/secrets.py generates them), none a substring of another.
SECRETS = {
    "erlang_cookie": "ErlangCookieQ7xv2Lm9Rt4Wz8Kp3Nd6Hs1Jf5Gb0Yc",
    "couchdb_cookie": "CouchCookieZ3kd8Fw2Qp7Lm4Xr9Tn1Vb6Hy0Js5Ge",
    "couchdb_password": "CouchPassA8sd7F6gH5jK4lZ3xC2vB1n",
    "rabbitmq_password": "RabbitPassQ1w2E3r4T5y6U7i8O9p0As",
    "kamailio_db_password": "KamailioPassM1n2B3v4C5x6Z7l8K9j0",
}
COOKIE = SECRETS["erlang_cookie"]
MASTER_PASSWORD = "MasterPassW3e4R5t6Y7u8I9o0P1a2S3d"
REMOTE = "/opt/kazoo-bootstrap/remote/"
STATE_DIR = "/var/lib/kazoo-bootstrap"
# The machine's own units (/lib is /usr/lib on Debian 12) are not the fake host's: hidden in each run.
HIDE_UNITS = "mount -t tmpfs tmpfs /usr/lib/systemd/system"
REAL_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_spec = importlib.util.spec_from_file_location("fake_couchdb", STUBS / "fake_couchdb.py")
fake_couchdb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fake_couchdb)


# ----- helpers -------------------------------------------------------------------------------------

def context(stack: str, name: str, overrides: dict | None = None, public_ip: str = "198.51.100.7") -> HostContext:
    settings = load_settings(stack_config(stack, overrides))
    plan = plan_hosts(settings)
    return HostContext(plan.host(name), plan, settings, public_ip, SECRETS)


def steps(ctx: HostContext) -> dict:
    return {s.name: s for s in plan_steps(ctx.settings, ctx.plan)}


def files(ctx: HostContext) -> dict[str, str]:
    return {path: content for path, (content, _) in rendered_files(ctx).items()}


def fake_host(tmp: Path, ctx: HostContext) -> FakeHost:
    """A fake host with the host.env cloud-init writes for `ctx`."""
    host = FakeHost(tmp, {})
    (tmp / "host.env").write_text(render_template("host.env.j2", ctx))
    return host


def stage(tmp: Path, name: str, text: str) -> Path:
    path = tmp / "stage" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def on_host(tmp: Path, path: str) -> Path:
    """Where the fake host's overlays keep `path` (a file the runs wrote or left)."""
    top, _, rest = path.lstrip("/").partition("/")
    return tmp / "ovl" / top / "u" / rest


def exists_on_host(tmp: Path, path: str) -> bool:
    return on_host(tmp, path).is_file()


def kazoo_node(host: FakeHost, name: str, cookie: str = COOKIE) -> None:
    """The Kazoo node `name` runs, with `cookie` (what the sup stand-in connects to)."""
    nodes = host.state / "kazoo" / "nodes"
    nodes.mkdir(parents=True, exist_ok=True)
    (nodes / f"{name}.cookie").write_text(cookie + "\n")


def kazoo(host: FakeHost) -> dict:
    """The Kazoo stand-in's state (sup and crossbar)."""
    path = host.state / "kazoo" / "state.json"
    return json.loads(path.read_text()) if path.exists() else {}


def sup_calls(host: FakeHost) -> list[str]:
    return [c for c in host.calls if c.startswith("sup")]


def systemd(host: FakeHost) -> dict:
    path = host.state / "systemd.json"
    return json.loads(path.read_text()) if path.exists() else {"units": {}, "jobs": [], "daemon_reloads": 0}


def ecallmgr_node() -> str:
    return f"ecallmgr@{socket.gethostname()}"  # sup.erl: Node ++ "@" ++ net_adm:localhost()


def config_ini_setup(tmp: Path, ctx: HostContext, text: str | None = None) -> str:
    """/etc/kazoo/config.ini as configure.sh installs it (root:kazoo 0640)."""
    staged = stage(tmp, "config.ini", files(ctx)["/etc/kazoo/config.ini"] if text is None else text)
    return (f". /opt/kazoo-bootstrap/lib.sh && ensure_system_user kazoo /opt/kazoo\n"
            f"install -D -m 0640 -o root -g kazoo {staged} /etc/kazoo/config.ini")


# ----- the Kazoo world of one host: CouchDB, both Kazoo nodes, crossbar ----------------------------

DEFAULT_INI = "[couchdb]\ndatabase_dir = ./data\n[chttpd]\nport = 5984\nbind_address = 127.0.0.1\n"


def couch_node(ctx: HostContext) -> str:
    return f"couchdb@{ctx.host.fqdn}"


def seed_couchdb(host: FakeHost, ctx: HostContext, dbs: int = 25, accounts: tuple | None = ()) -> None:
    """The node's databases before it starts: `dbs` of them, the system databases create_account
    checks (system_config, system_schemas) and, unless None, `accounts` with these account ids."""
    state = host.state / "couchdb"
    fake_couchdb.seed_node(state, couch_node(ctx), dbs, accounts)
    path = state / couch_node(ctx) / "state.json"
    data = json.loads(path.read_text())
    for db in ("system_config", "system_schemas"):
        data["dbs"].setdefault(db, {})
    path.write_text(json.dumps(data))


def couchdb_setup(tmp: Path, ctx: HostContext, etc: str = "/opt/couchdb/etc") -> str:
    """Shell lines that start the fake CouchDB of `ctx` (a host carrying the database role) on
    127.0.0.1:5984 from its rendered files, as configure.sh and install-database.sh leave them
    (in `etc`: another directory keeps them out of the way of a push that installs them)."""
    rendered = files(ctx)
    staged = {name: stage(tmp, f"couchdb/{name}", text) for name, text in (
        ("default.ini", DEFAULT_INI), ("local.ini", "[couchdb]\n[admins]\n"),
        ("10-kazoo.ini", rendered["/opt/couchdb/etc/local.d/10-kazoo.ini"]),
        ("kazoo.vm.args", rendered["/opt/couchdb/etc/kazoo.vm.args"]),
        ("erlang.cookie", rendered["/opt/couchdb/.erlang.cookie"]))}
    return "\n".join([
        ". /opt/kazoo-bootstrap/lib.sh && ensure_system_user couchdb /opt/couchdb",
        f"install -D -m 0644 -o couchdb -g couchdb {staged['default.ini']} {etc}/default.ini",
        f"install -D -m 0644 -o couchdb -g couchdb {staged['local.ini']} {etc}/local.ini",
        f"install -D -m 0640 -o root -g couchdb {staged['10-kazoo.ini']} {etc}/local.d/10-kazoo.ini",
        f"install -D -m 0640 -o root -g couchdb {staged['kazoo.vm.args']} {etc}/kazoo.vm.args",
        f"install -D -m 0400 -o couchdb -g couchdb {staged['erlang.cookie']} /opt/couchdb/.erlang.cookie",
        f"install -m 0640 -o couchdb -g couchdb /dev/null {etc}/local.d/zz-runtime.ini",
        f"{PY} {STUBS}/fake_couchdb.py start --etc {etc} --args-file {etc}/kazoo.vm.args --home /opt/couchdb --listen 127.0.0.1",
    ])


CROSSBAR = f"{PY} {STUBS}/fake_crossbar.py start"


def serving_setup(tmp: Path, ctx: HostContext, after: float = 0) -> str:
    """The host's CouchDB and crossbar answering, as after a restart that worked (`after` seconds
    from now, as a restarted service takes its time): a later push waits for them before it ends
    (configure.sh wait_serving), so the next host of the role goes on."""
    roles = {r.value for r in ctx.host.roles}
    lines = ["set -e"] + ([f"sleep {after}"] if after else [])
    if "database" in roles:
        lines.append(couchdb_setup(tmp, ctx, etc="/var/lib/serving-couchdb/etc"))  # /var: the fake host's overlay
    if "application" in roles:
        lines.append(CROSSBAR)
    return "\n".join(lines)
COUCH_ENV = {"COUCHDB_API": "http://127.0.0.1:5984", "RETRY_SECONDS": "0"}
SINGLE = "hetzner-single"  # one host with every role: CouchDB, Kazoo and the rest side by side


def kazoo_world(tmp: Path, couchdb: bool = True, crossbar: bool = True, dbs: int = 25,
                accounts: tuple | None = ()) -> tuple[FakeHost, HostContext, str]:
    """kazoo1 of hetzner-single with config.ini, both Kazoo nodes running with its cookie, and (as
    asked) its CouchDB seeded with `dbs` databases and the accounts database, and crossbar."""
    ctx = context(SINGLE, "kazoo1")
    host = fake_host(tmp, ctx)
    kazoo_node(host, "kazoo_apps")
    kazoo_node(host, "ecallmgr")
    seed_couchdb(host, ctx, dbs, accounts)
    lines = ["set -e", config_ini_setup(tmp, ctx)]
    if couchdb:
        lines.append(couchdb_setup(tmp, ctx))
    if crossbar:
        lines.append(CROSSBAR)
    return host, ctx, "\n".join(lines)


# ----- ecallmgr.sh ---------------------------------------------------------------------------------

def app_host(tmp: Path, config_ini: str | None = None) -> tuple[FakeHost, HostContext]:
    """app1 of aws-maximal: its config.ini in place, both Kazoo nodes running with the cookie."""
    ctx = context("aws-maximal", "app1")
    host = fake_host(tmp, ctx)
    run = host.run(config_ini_setup(tmp, ctx, config_ini))
    assert run.returncode == 0, run.stderr
    kazoo_node(host, "kazoo_apps")
    kazoo_node(host, "ecallmgr")
    return host, ctx


def run_steps(host: FakeHost, commands: list[tuple[str, str]]):
    """Run each (name, command line) in turn; the state after each is kept as snap-<name>.json.
    Returns the run and {name: exit code}."""
    lines = []
    for name, command in commands:
        lines += [f"echo '== {name}' >&2", f"{command}; echo \"{name}=$?\"",
                  f"cp $STUB_STATE/kazoo/state.json $STUB_STATE/snap-{name}.json 2>/dev/null || true"]
    run = host.run("\n".join(lines))
    codes = dict(re.findall(r"^([\w-]+)=(\d+)$", run.stdout, re.M))
    return run, {k: int(v) for k, v in codes.items()}


def snap(host: FakeHost, name: str) -> dict:
    return json.loads((host.state / f"snap-{name}.json").read_text())


@needs_root
def test_ecallmgr_stores_every_setting_as_the_default_of_every_ecallmgr(tmp_path):
    """Every ecallmgr (app1's and app2's) reads system_config/ecallmgr `default`; a node's own entry
    only that node. AsDefault `true` writes `default` even where this node has an entry of its own
    (here a list left by an add_fs_node without it), where add_fs_node/1 would write that entry
    (kapps_config.erl set/3 -> update_category/6)."""
    host, ctx = app_host(tmp_path)
    own = {"fs_nodes": ["freeswitch@old.example.com"]}
    (host.state / "kazoo" / "state.json").write_text(json.dumps({"system_config": {"ecallmgr": {ecallmgr_node(): own}}}))
    plan = steps(ctx)
    media1, media2 = (ctx.plan.host(n).fqdn for n in ("media1", "media2"))
    proxy1 = ctx.plan.host("proxy1")
    carrier = next(s for s in plan if s.startswith("carrier-"))
    (host.state / "kazoo" / "unreachable").mkdir(parents=True)
    (host.state / "kazoo" / "unreachable" / f"freeswitch@{media2}").touch()  # ecallmgr cannot reach it
    run, codes = run_steps(host, [
        ("add1", plan["register-media1"].create),
        ("add1-again", plan["register-media1"].create),  # sup exits 2: {error,node_exists}
        ("add2", plan["register-media2"].create),  # sup exits 2: {error,no_connection}
        ("sbc", plan["trust-proxy1"].create),
        ("carrier", plan[carrier].create),
        ("remove-carrier", plan[carrier].delete),
        ("remove-media1", plan["register-media1"].delete),
    ])
    assert codes == dict.fromkeys(["add1", "add1-again", "add2", "sbc", "carrier", "remove-carrier", "remove-media1"], 0), run.stderr
    me = ecallmgr_node()

    def default(name):
        return snap(host, name)["system_config"]["ecallmgr"]["default"]

    assert default("add1")["fs_nodes"] == [f"freeswitch@{media1}"]
    assert snap(host, "add1")["fs_nodes_known"][me] == {f"freeswitch@{media1}": True}
    assert snap(host, "add1-again") == snap(host, "add1")
    assert default("add2")["fs_nodes"] == [f"freeswitch@{media2}", f"freeswitch@{media1}"]  # saved all the same
    assert snap(host, "add2")["fs_nodes_known"][me][f"freeswitch@{media2}"] is False
    assert "keeps trying" in run.stderr.split("== add2")[1].split("== sbc")[0]  # the step says why it passed
    sbc = {"type": "allow", "network-list-name": "authoritative", "cidr": f"{proxy1.private_ip}/32"}
    assert default("sbc")["acls"] == {"proxy1": sbc}
    cidr = ctx.settings.carrier_cidrs[0]
    assert default("carrier")["acls"] == {"proxy1": sbc, carrier: {"type": "allow", "network-list-name": "trusted", "cidr": cidr}}
    assert default("remove-carrier")["acls"] == {"proxy1": sbc}
    final = kazoo(host)
    assert final["system_config"]["ecallmgr"]["default"]["fs_nodes"] == [f"freeswitch@{media2}"]
    assert f"freeswitch@{media1}" not in final["fs_nodes_known"][me]
    # AsDefault `true` every time: nothing was stored for one ecallmgr node only
    assert final["system_config"]["ecallmgr"][me] == own
    assert {w["scope"] for w in final["writes"]} == {"default"}
    assert all(c.startswith("sup -n ecallmgr ecallmgr_maintenance ") for c in sup_calls(host))
    assert COOKIE not in "\n".join(host.calls)
    # sup runs as kazoo, never as root (review B4): each call comes through `runuser -u kazoo`
    calls = host.calls
    assert sup_calls(host) and all(calls[i - 1] == "runuser -u kazoo" for i, c in enumerate(calls) if c.startswith("sup "))


@needs_root
@pytest.mark.parametrize("case", ["another cookie in config.ini", "no config.ini", "ecallmgr not running"])
def test_ecallmgr_fails_the_step_when_sup_cannot_reach_ecallmgr(tmp_path, case):
    """sup takes the cookie from config.ini [ecallmgr] (sup.erl get_cookie/2), or change_me when it
    cannot read config.ini: either way "Connection to service failed!", exit 1."""
    ctx = context("aws-maximal", "app1")
    text = files(ctx)["/etc/kazoo/config.ini"]
    if case == "another cookie in config.ini":
        text = text.replace(COOKIE, "AnotherCookieY5tg7Uj8Ik9Ol0Pq1Aw2Se3Dr4Ft6")
    host, _ = app_host(tmp_path, text)
    if case == "no config.ini":
        assert host.run("rm /etc/kazoo/config.ini").returncode == 0
    if case == "ecallmgr not running":
        (host.state / "kazoo" / "nodes" / "ecallmgr.cookie").unlink()
    run = host.run(steps(ctx)["register-media1"].create)
    assert run.returncode != 0
    assert "fs_nodes" not in kazoo(host).get("system_config", {}).get("ecallmgr", {}).get("default", {})


@needs_root
def test_a_failed_connection_does_not_print_the_cookie(tmp_path):
    """On a failed connection sup prints the cookie it used ('Failed to connect to service ... with
    cookie X', sup.erl print_ping_failed/2); lib.sh's kz_sup hides it before the step output sees it."""
    host, ctx = app_host(tmp_path)
    kazoo_node(host, "ecallmgr", "TheNodeRunsWithAnotherCookie000000000000")
    run = host.run(steps(ctx)["register-media1"].create)
    assert run.returncode != 0
    assert COOKIE not in run.stdout + run.stderr


@needs_root
@pytest.mark.parametrize("action", [
    "allow-carrier carrier-x 192.0.2.1/28",  # host bits set: neither a CIDR nor an IP (inet_cidr:parse/2)
    "allow-sbc proxy9 proxy9.internal.example",  # a name: resolved through DNS only, which fails
])
def test_an_address_ecallmgr_cannot_process_fails_the_step(tmp_path, action):
    """allow_sbc/allow_carrier return no_return (sup exits 0) after "the supplied address ... could
    not be processed.": the script reads the output."""
    host, _ = app_host(tmp_path)
    run = host.run(f"sudo -n {REMOTE}ecallmgr.sh {action}")
    assert run.returncode != 0
    assert sup_calls(host)  # sup was asked, and said no
    assert "acls" not in kazoo(host).get("system_config", {}).get("ecallmgr", {}).get("default", {})


@needs_root
def test_an_acl_the_node_does_not_see_fails_the_step(tmp_path):
    """A node-specific ACL list (left by an allow_sbc without AsDefault) hides the default one:
    ecallmgr_maintenance maybe_reload_acls/3 gives up with "Timeout during updating ACLs"."""
    host, ctx = app_host(tmp_path)
    stale = {"old": {"type": "allow", "network-list-name": "authoritative", "cidr": "10.9.9.9/32"}}
    (host.state / "kazoo" / "state.json").write_text(json.dumps(
        {"system_config": {"ecallmgr": {ecallmgr_node(): {"acls": stale}}}}))
    run = host.run(steps(ctx)["trust-proxy1"].create)
    assert run.returncode != 0
    state = kazoo(host)["system_config"]["ecallmgr"]
    assert "proxy1" in state["default"]["acls"] and state[ecallmgr_node()]["acls"] == stale


@needs_root
def test_an_unknown_action_fails_without_asking_sup(tmp_path):
    host, _ = app_host(tmp_path)
    run = host.run(f"sudo -n {REMOTE}ecallmgr.sh add-carrier x 192.0.2.0/28")
    assert run.returncode != 0 and "unknown action 'add-carrier'" in run.stderr
    assert sup_calls(host) == []


# ----- master-account.sh -----------------------------------------------------------------------------

def argv_logging_path(tmp: Path) -> tuple[str, Path]:
    """A PATH whose first directory holds a shim for every program on this machine's PATH and every
    stand-in: each appends its argv to a log, then runs the program (stand-ins first)."""
    shims, log = tmp / "argv-shims", tmp / "state" / "shim-argv.log"
    shims.mkdir()
    dirs = [str(STUBS)] + REAL_PATH.split(":")
    logger = tmp / "log-argv"
    logger.write_text(
        "#!/bin/bash\n"
        f"printf '%s\\0' \"${{0##*/}}\" \"$@\" >> '{log}'; printf '\\n' >> '{log}'\n"
        f"for d in {' '.join(dirs)}; do [ -x \"$d/${{0##*/}}\" ] && exec \"$d/${{0##*/}}\" \"$@\"; done\n"
        "exit 127\n"
    )
    logger.chmod(0o755)
    for directory in dirs:
        if os.path.isdir(directory):
            for entry in os.scandir(directory):
                if not (shims / entry.name).exists() and entry.is_file() and os.access(entry.path, os.X_OK):
                    (shims / entry.name).symlink_to(logger)
    return f"{shims}:{STUBS}:{REAL_PATH}", log


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def master_account(host: FakeHost, ctx: HostContext, setup: str, env: dict | None = None, command: str | None = None):
    return host.run(command or steps(ctx)["master-account"].create, stdin=MASTER_PASSWORD + "\n", setup=setup,
                    env={**COUCH_ENV, **(env or {})})


def accounts_in_couchdb(host: FakeHost, ctx: HostContext) -> list[str]:
    data = json.loads((host.state / "couchdb" / couch_node(ctx) / "state.json").read_text())
    return sorted(i for i in data["dbs"].get("accounts", {}) if re.fullmatch(r"[0-9a-f]{32}", i))


@needs_root
def test_master_account_is_created_once_with_the_password_given_on_stdin(tmp_path):
    host, ctx, setup = kazoo_world(tmp_path)
    (tmp_path / "watch.py").write_text(PROC_WATCH)
    # a second sampler as nobody (its output through a file root opened): what any other account sees
    nobody = (f'setpriv --reuid=nobody --regid=nogroup --clear-groups /usr/bin/python3 -c "$(cat {tmp_path}/watch.py)" - '
              f"> {host.state}/nobody-argv.log 2>&1")
    watched = setup + f"\n{PY} {tmp_path}/watch.py {host.state}/proc-argv.log & {nobody} & sleep 0.2"
    path, shim_log = argv_logging_path(tmp_path)
    run = master_account(host, ctx, watched, env={"PATH": path})
    assert run.returncode == 0, run.stderr

    state = kazoo(host)
    ((account_id, account),) = state["accounts"].items()
    user = ctx.settings.master_account.user
    assert (account["name"], account["realm"]) == (ctx.settings.master_account.name, ctx.settings.master_realm)
    # the real password never was on a command line: not sup's, not any program's, not any process's
    sampled = (host.state / "proc-argv.log").read_text()
    shimmed = shim_log.read_text()
    assert "master-account.sh" in sampled and "create_account" in sampled  # the sampler did look
    assert "curl" in shimmed and "md5sum" in shimmed  # and the shims saw the programs
    for where in (sampled, shimmed, "\n".join(host.calls)):
        assert MASTER_PASSWORD not in where
        assert SECRETS["couchdb_password"] not in where
    assert MASTER_PASSWORD not in run.stdout + run.stderr

    owner = account["users"][account["owner_id"]]
    # the master user's password is the one given on stdin; the one-off of create_account is dead
    assert owner["md5"] == md5(f"{user}:{MASTER_PASSWORD}")
    (create,) = [c for c in sup_calls(host) if " create_account " in c]
    one_off = create.split()[-1]
    assert owner["md5"] != md5(f"{user}:{one_off}")
    # the one-off went on sup's command line, which root saw and no other account did: /proc hid
    # other accounts' processes while create_account ran, and showed them again after
    others = (host.state / "nobody-argv.log").read_text()
    assert "master-account.sh" in others and "user_auth" in sampled  # nobody saw root's processes before
    assert one_off in sampled and one_off not in others and "create_account" not in others
    assert any("curl" in line and "user_auth" in line for line in others.splitlines()), others  # and after
    assert state["system_config"]["accounts"]["default"]["master_account_id"] == account_id
    assert accounts_in_couchdb(host, ctx) == [account_id]  # where the next run looks
    assert not exists_on_host(tmp_path, f"{STATE_DIR}/master-account.one-off")

    # a second run finds the account and does nothing
    again = master_account(host, ctx, setup)
    assert again.returncode == 0, again.stderr
    assert [c for c in sup_calls(host) if " create_account " in c] == [create]
    assert kazoo(host)["accounts"] == state["accounts"]


@needs_root
def test_the_one_off_password_never_goes_on_a_command_line_others_see(tmp_path):
    """When /proc cannot be remounted hidepid=invisible (a container, say), create_account does not
    run in the open: the step fails before it (review 10)."""
    host, ctx, setup = kazoo_world(tmp_path)
    shims = tmp_path / "no-remount"
    shims.mkdir()
    (shims / "mount").write_text('#!/bin/bash\n[[ " $* " == *" remount,hidepid="* ]] && { echo "mount: permission denied" >&2; exit 32; }\n'
                                 'exec /usr/bin/mount "$@"\n')
    (shims / "mount").chmod(0o755)
    run = master_account(host, ctx, setup, env={"PATH": f"{shims}:{STUBS}:{REAL_PATH}"})
    assert run.returncode != 0
    assert "could not hide processes (hidepid): not run" in run.stdout + run.stderr
    assert [c for c in sup_calls(host) if "create_account" in c] == []


@needs_root
@pytest.mark.parametrize("case", ["no accounts database", "CouchDB down"])
def test_master_account_is_never_created_blind(tmp_path, case):
    """Without an answer from the accounts database the script cannot know whether a master exists:
    it fails, and creates nothing."""
    host, ctx, setup = kazoo_world(tmp_path, couchdb=case != "CouchDB down",
                                   accounts=None if case == "no accounts database" else ())
    run = master_account(host, ctx, setup)
    assert run.returncode != 0
    assert [c for c in sup_calls(host) if "create_account" in c] == []
    assert kazoo(host).get("accounts", {}) == {}


@needs_root
def test_a_master_account_crossbar_refused_is_finished_by_the_next_run(tmp_path):
    host, ctx, setup = kazoo_world(tmp_path, crossbar=False)
    first = master_account(host, ctx, setup)
    assert first.returncode != 0
    assert "crossbar did not accept the new master user" in first.stderr
    assert len(kazoo(host)["accounts"]) == 1  # created, with the one-off password
    pending = on_host(tmp_path, f"{STATE_DIR}/master-account.one-off")
    assert pending.is_file() and oct(pending.stat().st_mode & 0o777) == "0o600"

    # crossbar answers now: the next run sets the password instead of finding "an account"
    second = master_account(host, ctx, setup + "\n" + CROSSBAR)
    assert second.returncode == 0, second.stderr
    ((_, account),) = kazoo(host)["accounts"].items()
    assert account["users"][account["owner_id"]]["md5"] == md5(f"{ctx.settings.master_account.user}:{MASTER_PASSWORD}")
    assert len([c for c in sup_calls(host) if " create_account " in c]) == 1
    assert not exists_on_host(tmp_path, f"{STATE_DIR}/master-account.one-off")


@needs_root
def test_a_master_user_name_with_capitals_can_log_in(tmp_path):
    """crossbar stores user names lower-cased and hashes them so (kzd_users.erl)."""
    host, ctx, setup = kazoo_world(tmp_path)
    run = master_account(host, ctx, setup, command=f"sudo -n {REMOTE}master-account.sh master master.example.com Admin")
    assert run.returncode == 0, run.stderr
    ((_, account),) = kazoo(host)["accounts"].items()
    assert account["users"][account["owner_id"]]["md5"] == md5(f"admin:{MASTER_PASSWORD}")


@needs_root
def test_master_account_creation_failing_fails_the_step(tmp_path):
    host, ctx, setup = kazoo_world(tmp_path)
    (host.state / "kazoo" / "fail-create").touch()  # crossbar_maintenance:create_account -> failed
    run = master_account(host, ctx, setup)
    assert run.returncode != 0
    assert kazoo(host).get("accounts", {}) == {}
    assert MASTER_PASSWORD not in run.stdout + run.stderr
    assert not exists_on_host(tmp_path, f"{STATE_DIR}/master-account.one-off")


@needs_root
def test_monster_ui_apps_are_registered_with_the_api_url(tmp_path):
    ctx = context(SINGLE, "kazoo1", {"sources": {"monsterUi": {"url": "https://example.com/monster-ui.tar.gz"}}})
    command = steps(ctx)["master-account"].create.replace("{public_ip}", "198.51.100.7")
    api = command.split()[-1]
    assert api == "http://198.51.100.7:8000/v2"
    host, _, setup = kazoo_world(tmp_path)
    first = master_account(host, ctx, setup, command=command)  # no Monster UI on the host: no init_apps
    assert first.returncode == 0, first.stderr
    assert kazoo(host)["apps"] == {} and not [c for c in sup_calls(host) if "init_apps" in c]
    apps = "\n".join(f"mkdir -p /var/www/monster-ui/apps/{a}/metadata && echo '{{\"name\":\"{a}\",\"api_url\":\"x\"}}' "
                     f"> /var/www/monster-ui/apps/{a}/metadata/app.json" for a in ("accounts", "voip"))
    second = master_account(host, ctx, setup + "\n" + apps, command=command)
    assert second.returncode == 0, second.stderr
    master = kazoo(host)["system_config"]["accounts"]["default"]["master_account_id"]
    assert kazoo(host)["apps"] == {a: {"account_id": master, "api_url": api, "path": f"/var/www/monster-ui/apps/{a}"}
                                   for a in ("accounts", "voip")}


# ----- kazoo-first-start.sh -------------------------------------------------------------------------

def first_start(host: FakeHost, ctx: HostContext, setup: str, before: str = "", **env):
    return host.run(before + steps(ctx)["kazoo-first-start"].create, setup=setup, env={**COUCH_ENV, **env})


@needs_root
def test_first_start_waits_for_the_system_databases_then_refreshes(tmp_path):
    host, ctx, setup = kazoo_world(tmp_path, crossbar=False, dbs=3)
    later = f"(sleep 1; {PY} {STUBS}/fake_couchdb.py seed --node {couch_node(ctx)} --dbs 25) & "
    run = first_start(host, ctx, setup, before=later, WAIT_SECONDS="0.3", WAIT_TRIES="30")
    assert run.returncode == 0, run.stderr
    refreshed = kazoo(host)["refreshed"]
    assert {f"db_{i:03d}" for i in range(25)} <= set(refreshed)  # after Kazoo's databases were there
    assert "system_config" in refreshed and "accounts" in refreshed
    assert kazoo(host)["prompts"] == {}  # no prompts on the host: none imported


@needs_root
def test_first_start_gives_up_after_its_tries(tmp_path):
    host, ctx, setup = kazoo_world(tmp_path, crossbar=False, dbs=3)
    run = first_start(host, ctx, setup, WAIT_SECONDS="0", WAIT_TRIES="3")
    assert run.returncode != 0 and "expected more than 20" in run.stderr
    assert sup_calls(host) == [] and "refreshed" not in kazoo(host)


@needs_root
@pytest.mark.parametrize("case", ["readable", "one file unreadable", "directory unreadable", "parent unreadable"])
def test_first_start_imports_the_prompts_as_the_kazoo_account(tmp_path, case):
    """import_prompts reads the files as the Kazoo node's account (kazoo) and always exits 0: the
    script reads its output. A file kazoo cannot read: "errors encountered during import"; a
    directory it cannot list: "failed to find media files"; one it cannot reach: "not a directory,
    or is inaccessible" (kazoo_media_maintenance.erl import_prompts/2)."""
    host, ctx, setup = kazoo_world(tmp_path, crossbar=False)
    prompts = "/opt/kazoo/sounds/en/us"
    before = (f"mkdir -p {prompts} && echo RIFF > {prompts}/vm-hello.wav && echo ID3 > {prompts}/menu.mp3 "
              f"&& echo x > {prompts}/README; ")
    if case == "one file unreadable":
        before += f"chmod 0600 {prompts}/menu.mp3; "
    if case == "directory unreadable":
        before += f"chmod 0700 {prompts}; "
    if case == "parent unreadable":
        before += f"chmod 0700 {os.path.dirname(prompts)}; "
    run = first_start(host, ctx, setup, before=before)
    if case == "readable":
        assert run.returncode == 0, run.stderr
        assert kazoo(host)["prompts"] == {"en-us/vm-hello": f"{prompts}/vm-hello.wav", "en-us/menu": f"{prompts}/menu.mp3"}
        assert "refreshed" in kazoo(host)
    else:
        assert run.returncode != 0
        assert "refreshed" not in kazoo(host)  # stopped before the refresh


# ----- readiness.sh ----------------------------------------------------------------------------------

def readiness(stdout: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in stdout.splitlines() if ": " in line)


@needs_root
def test_readiness_reports_what_answers(tmp_path):
    if shutil.which("nft") is None:
        pytest.skip("nft not installed (.ci/run installs it)")
    host, ctx, setup = kazoo_world(tmp_path)
    command = steps(ctx)["readiness-kazoo1"].create
    assert command.endswith("readiness.sh database broker application media proxy")
    (host.state / "units").write_text("rabbitmq-server\nhaproxy\nkazoo-applications\nkazoo-ecallmgr\nfreeswitch\npostgresql\nkamailio\n")
    (host.state / "fail-kamailio").touch()
    ruleset = stage(tmp_path, "nftables.conf", files(ctx)["/etc/nftables.conf"])
    up = (f"{HIDE_UNITS}; nft -f {ruleset}; "
          "for u in rabbitmq-server haproxy kazoo-applications kazoo-ecallmgr postgresql kamailio; do systemctl restart $u; done; ")
    run = host.run(up + command, setup=setup, env=COUCH_ENV)
    assert run.returncode == 0, run.stderr
    assert readiness(run.stdout) == {
        "nftables": "ok", "couchdb": "ok", "rabbitmq": "ok", "haproxy": "ok", "kazoo_apps": "ok",
        "ecallmgr": "ok", "crossbar": "ok",
        "freeswitch": "DOWN",  # never started
        "postgresql": "ok",
        "kamailio": "DOWN",  # its start failed
    }
    # nothing up: every check DOWN, and the step still succeeds (it reports)
    down = host.run(f"{HIDE_UNITS}; systemctl stop rabbitmq-server haproxy kazoo-applications kazoo-ecallmgr postgresql; {command}")
    assert down.returncode == 0, down.stderr
    assert set(readiness(down.stdout).values()) == {"DOWN"} and len(readiness(down.stdout)) == 10


# ----- wait-for-bootstrap.sh -------------------------------------------------------------------------

STAGES = ("init-local", "init", "modules-config", "modules-final")


def status_json(errors: list | None = None, recoverable: dict | None = None) -> str:
    v1 = {stage: {"start": 1700000000.0 + i, "finished": 1700000000.5 + i, "errors": [], "recoverable_errors": {}}
          for i, stage in enumerate(STAGES)}
    v1["modules-final"]["errors"] = errors or []
    v1["modules-final"]["recoverable_errors"] = recoverable or {}
    return json.dumps({"v1": {**v1, "datasource": "DataSourceHetzner", "stage": None}})


@needs_root
@pytest.mark.parametrize("case,code", [("done", 0), ("recoverable errors", 2), ("error", 1), ("running, then done", 0),
                                       ("done, but no bootstrap", 1)])
def test_wait_for_bootstrap_follows_cloud_init_status(tmp_path, case, code):
    ctx = context(SINGLE, "kazoo1")
    host = fake_host(tmp_path, ctx)
    status = stage(tmp_path, "status.json", status_json(
        errors=["('scripts_user', RuntimeError('runparts: 1 failed'))"] if case == "error" else None,
        recoverable={"DEPRECATED": ["key x is deprecated"]} if case == "recoverable errors" else None))
    finished = "" if case == "done, but no bootstrap" else \
        "2026-01-01T00:00:00Z kazoo-bootstrap[bootstrap.sh]: bootstrap of kazoo1.example.com finished\n"
    log = stage(tmp_path, "bootstrap.log", "".join(f"bootstrap line {i}\n" for i in range(1, 50)) + finished)
    finish = "touch /run/cloud-init/result.json" if case != "running, then done" else \
        "(sleep 0.6; echo '{}' > /run/cloud-init/result.json) &"
    setup = (f"mount -t tmpfs tmpfs /run && mkdir -p /run/cloud-init && cp {status} /run/cloud-init/status.json\n"
             f"cp {log} /var/log/kazoo-bootstrap.log\n{finish}")
    started = time.monotonic()
    run = host.run(steps(ctx)["wait-kazoo1"].create, setup=setup)
    assert [c for c in host.calls if c.startswith("cloud-init")] == ["cloud-init status --wait"]
    if code == 1:
        assert run.returncode == 1
        tail = run.stderr.split("the end of /var/log/kazoo-bootstrap.log:")[1]
        first = 11 if case == "error" else 10  # 40 lines: the bootstrap's last, or the 49 without it
        assert "bootstrap line 49" in tail and f"bootstrap line {first}\n" in tail and f"bootstrap line {first - 1}\n" not in tail
        if case == "done, but no bootstrap":
            assert "but the Kazoo bootstrap did not" in run.stderr
    else:
        assert run.returncode == 0, run.stderr
        assert f"(cloud-init status {code})" in run.stdout
    if case == "running, then done":
        assert time.monotonic() - started >= 0.6


# ----- configure.sh, through the configuration push ----------------------------------------------------

# configure.sh's promise (owner_of): files with secrets 0640, readable by their service's group;
# mod_kazoo's cookie file 0600, owned by freeswitch; everything else root:root.
GROUPS = [("/etc/rabbitmq/", "root:rabbitmq"), ("/opt/couchdb/etc/", "root:couchdb"), ("/etc/kazoo/config.ini", "root:kazoo"),
          ("/etc/kazoo/kazoo_apps.vm.args", "root:kazoo"), ("/etc/kazoo/ecallmgr.vm.args", "root:kazoo"),
          ("/etc/kazoo/kamailio/", "root:kamailio"), ("/etc/kazoo/freeswitch/kazoo-cookie", "freeswitch:freeswitch"),
          ("/etc/kazoo/freeswitch/", "root:freeswitch"),
          # Erlang reads $HOME/.erlang.cookie only when its owner alone may read it (OTP auth.erl)
          ("/opt/kazoo/.erlang.cookie", "kazoo:kazoo"), ("/opt/couchdb/.erlang.cookie", "couchdb:couchdb")]
ACCOUNTS = ("couchdb", "rabbitmq", "kazoo", "kamailio", "freeswitch")
UNITS = "postgresql\ncouchdb\nrabbitmq-server\nhaproxy\nkamailio\nnginx\nepmd.socket\n"  # what the packages ship


def owner(path: str) -> str:
    return next((o for prefix, o in GROUPS if path == prefix or (prefix.endswith("/") and path.startswith(prefix))), "root:root")


def push_host(tmp: Path, ctx: HostContext, kazoo_units: tuple = ("kazoo-applications", "kazoo-ecallmgr"),
              cluster_ready: bool = True, units: str = UNITS) -> FakeHost:
    """A host as its first boot leaves it before the push: the service accounts, the packages'
    units (`units`) and kazoo-configs' units (install-application.sh puts them in /etc/systemd/system).
    `cluster_ready`: the orchestration's kazoo-start step has run (the CouchDB cluster is formed)."""
    host = fake_host(tmp, ctx)
    (host.state / "units").write_text(units)
    units = " ".join(f"/etc/systemd/system/{u}.service" for u in kazoo_units)
    ready = f" && mkdir -p {STATE_DIR} && touch {STATE_DIR}/couchdb-cluster-ready" if cluster_ready else ""
    # today's first boot started the host's one epmd (lib.sh ensure_epmd)
    ready += " && systemctl enable --now epmd.socket"
    run = host.run(f". /opt/kazoo-bootstrap/lib.sh && for a in {' '.join(ACCOUNTS)}; do ensure_system_user $a /nonexistent; done"
                   + (f" && mkdir -p /etc/systemd/system && printf '[Service]\\nExecStart=/bin/true\\n' | tee {units} >/dev/null" if units else "")
                   + ready)
    assert run.returncode == 0, run.stderr
    state = json.loads((host.state / "systemd.json").read_text())
    state["jobs"] = []  # the tests count the pushes' jobs only
    (host.state / "systemd.json").write_text(json.dumps(state))
    return host


def bundle_file(tmp: Path, ctx: HostContext, name: str) -> Path:
    return stage(tmp, f"bundle-{name}", config_bundle(ctx))


def push_line(ctx: HostContext, bundle: Path) -> str:
    """The config step's own command (receive-config.sh), the bundle on its stdin."""
    return f'bash -c "$RECEIVE" < {bundle}'


def receive_env(ctx: HostContext, **extra) -> dict:
    return {"RECEIVE": steps(ctx)[f"config-{ctx.host.name}"].create, **extra}


STAT = "find /etc/kazoo-bootstrap/files -type f | sed 's#^/etc/kazoo-bootstrap/files##' | sort | xargs stat -c 'STAT %n|%U:%G|%a|%i|%.9Z'"


def stats(stdout: str, marker: str = "") -> dict[str, tuple]:
    part = stdout.split(marker)[1] if marker else stdout
    part = part.split("== ")[0]
    return {fields[0]: tuple(fields[1:]) for fields in
            (line[5:].split("|") for line in part.splitlines() if line.startswith("STAT "))}


def nft_lines(tmp: Path, name: str) -> str:
    return f"nft list ruleset > {tmp}/state/{name}"


@needs_root
def test_config_push_installs_each_file_with_its_owner_and_mode_then_changes_nothing(tmp_path):
    if shutil.which("nft") is None:
        pytest.skip("nft not installed (.ci/run installs it)")
    ctx = context(SINGLE, "kazoo1")  # every role: every kind of file
    host = push_host(tmp_path, ctx)
    bundle = bundle_file(tmp_path, ctx, "1")
    command = "\n".join([
        HIDE_UNITS,
        push_line(ctx, bundle), 'echo "push1=$?"', "echo '== first'", STAT, nft_lines(tmp_path, "live"),
        push_line(ctx, bundle), 'echo "push2=$?"', "echo '== second'", STAT, nft_lines(tmp_path, "live-again"),
        # the ruleset in force is the pushed file's: the file applied anew gives the same listing
        "nft flush ruleset && nft -f /etc/kazoo-bootstrap/files/etc/nftables.conf", nft_lines(tmp_path, "expected"),
    ])
    unpacked = tmp_path / "tmpdir"  # where receive-config.sh unpacks the bundle (mktemp -d)
    unpacked.mkdir()
    run = host.run(command, env=receive_env(ctx, TMPDIR=str(unpacked)), setup=serving_setup(tmp_path, ctx))
    assert "push1=0" in run.stdout and "push2=0" in run.stdout, run.stdout + run.stderr
    assert not list(unpacked.iterdir())  # the unpacked bundle (this host's secrets) is gone
    rendered = rendered_files(ctx)
    first, second = stats(run.stdout, "== first"), stats(run.stdout, "== second")
    assert set(first) == set(rendered) | {bootstrap.HOST_ENV}  # host.env travels with every push
    assert first[bootstrap.HOST_ENV][:2] == ("root:root", "600")
    assert on_host(tmp_path, bootstrap.HOST_ENV).read_text() == bootstrap.host_env(ctx)
    secrets = set(SECRETS.values())
    for path, (content, mode) in rendered.items():
        who, got_mode = first[path][0], first[path][1]
        assert (who, got_mode) == (owner(path), mode.lstrip("0")), path
        assert on_host(tmp_path, path).read_text() == content, path
        if any(s in content for s in secrets):  # a secret is never readable by others
            assert int(got_mode, 8) & 0o007 == 0, path
    assert first["/etc/kazoo/freeswitch/kazoo-cookie"][:2] == ("freeswitch:freeswitch", "600")
    assert first["/etc/kazoo/config.ini"][:2] == ("root:kazoo", "640")
    # the second push: no file rewritten (same inode, same change time), nothing restarted
    assert second == first
    jobs = systemd(host)["jobs"]
    assert jobs == ["restart postgresql.service", "restart couchdb.service", "restart rabbitmq-server.service",
                    "reload-or-restart haproxy.service", "restart kazoo-applications.service",
                    "restart kazoo-ecallmgr.service", "restart kamailio.service"]  # data and bus first
    assert systemd(host)["units"]["freeswitch.service"]["restarts"] == 0  # not at a push: no first boot
    assert not list(on_host(tmp_path, f"{STATE_DIR}/pending").glob("*"))
    live = (host.state / "live").read_text()
    assert "table inet kazoo" in live
    assert live == (host.state / "live-again").read_text() == (host.state / "expected").read_text()


@needs_root
def test_a_grown_plan_reaches_hosts_and_firewall_and_restarts_nothing(tmp_path):
    if shutil.which("nft") is None:
        pytest.skip("nft not installed (.ci/run installs it)")
    ctx = context("aws-maximal", "app1")
    grown = context("aws-maximal", "app1", {"roles": {"media": {"count": 3}}})
    media3 = grown.plan.host("media3")
    host = push_host(tmp_path, ctx)
    b1, b2 = bundle_file(tmp_path, ctx, "1"), bundle_file(tmp_path, grown, "2")
    run = host.run("\n".join([HIDE_UNITS, push_line(ctx, b1), 'echo "push1=$?"', nft_lines(tmp_path, "before"),
                              push_line(ctx, b2), 'echo "push2=$?"', nft_lines(tmp_path, "after")]),
                   env=receive_env(ctx), setup=serving_setup(tmp_path, ctx))
    assert "push1=0" in run.stdout and "push2=0" in run.stdout, run.stdout + run.stderr
    assert media3.private_ip not in (host.state / "before").read_text()
    assert media3.private_ip in (host.state / "after").read_text()  # in force, not only on disk
    assert media3.fqdn in on_host(tmp_path, "/etc/hosts").read_text()
    assert [j.split()[-1] for j in systemd(host)["jobs"]] == [
        "haproxy.service", "kazoo-applications.service", "kazoo-ecallmgr.service"]  # the first push's only
    assert f"amqp://kazoo:{SECRETS['rabbitmq_password']}@{ctx.plan.host('broker1').fqdn}" in \
        on_host(tmp_path, "/etc/kazoo/config.ini").read_text()


@needs_root
def test_host_env_is_never_removed_as_a_file_dropped_from_the_bundle(tmp_path):
    """apply-config.sh installs host.env; configure.sh neither installs nor removes it, even where an
    earlier version listed it among the files it installed (review 11: the next push deleted it, and
    every script after it failed)."""
    ctx = context("aws-maximal", "app1")
    host = push_host(tmp_path, ctx)
    bundle = bundle_file(tmp_path, ctx, "1")
    manifest = f"{STATE_DIR}/installed-files"
    run = host.run("\n".join([HIDE_UNITS, push_line(ctx, bundle), 'echo "push1=$?"',
                              f"grep -c host.env {manifest} || true", f"echo /etc/kazoo-bootstrap/host.env >> {manifest}",
                              push_line(ctx, bundle), 'echo "push2=$?"']),
                   env=receive_env(ctx), setup=serving_setup(tmp_path, ctx))
    assert "push1=0" in run.stdout and "push2=0" in run.stdout, run.stdout + run.stderr
    assert run.stdout.splitlines()[run.stdout.splitlines().index("push1=0") + 1] == "0"  # not in today's manifest
    assert on_host(tmp_path, "/etc/kazoo-bootstrap/host.env").read_text() == bootstrap.host_env(ctx)


@needs_root
def test_a_ruleset_nft_rejects_is_never_installed(tmp_path, monkeypatch):
    """A ruleset that does not load must not reach /etc/nftables.conf, where nftables.service would
    load nothing at the next boot (no firewall, the metadata service open to every account). The push
    fails before any file moves (review 9: an IPv6 %scope once made such a ruleset)."""
    if shutil.which("nft") is None:
        pytest.skip("nft not installed (.ci/run installs it)")
    ctx = context("aws-maximal", "app1")
    grown = context("aws-maximal", "app1", {"roles": {"media": {"count": 3}}})
    host = push_host(tmp_path, ctx)
    b1 = bundle_file(tmp_path, ctx, "1")
    real = bootstrap.bundle_files

    def broken(c):
        out = dict(real(c))
        path = bootstrap.RENDERED_DIR + "/etc/nftables.conf"
        content, mode = out[path]
        out[path] = (content.replace("tcp dport 22 accept", "tcp dport 22 acept", 1), mode)
        return out

    monkeypatch.setattr(bootstrap, "bundle_files", broken)
    b2 = bundle_file(tmp_path, grown, "2")
    run = host.run("\n".join([HIDE_UNITS, push_line(ctx, b1), 'echo "push1=$?"', nft_lines(tmp_path, "before"),
                              push_line(grown, b2), 'echo "push2=$?"', nft_lines(tmp_path, "after")]),
                   env=receive_env(ctx), setup=serving_setup(tmp_path, ctx))
    assert "push1=0" in run.stdout and "push2=0" not in run.stdout, run.stdout + run.stderr
    assert "nft rejects the new firewall ruleset: nothing installed" in run.stdout + run.stderr
    assert on_host(tmp_path, "/etc/nftables.conf").read_text() == files(ctx)["/etc/nftables.conf"]
    assert on_host(tmp_path, "/etc/hosts").read_text() == files(ctx)["/etc/hosts"]  # nothing else moved either
    kept = on_host(tmp_path, "/etc/kazoo-bootstrap/files/etc/nftables.conf").read_text()
    assert kept == files(ctx)["/etc/nftables.conf"]  # not even the rendered tree
    assert (host.state / "after").read_text() == (host.state / "before").read_text()


MONSTER_UI_URL = "https://example.com/monster-ui.tar.gz"
# Monster UI's js/config.js as its tree has it (2600hz/monster-ui src/js/config.js: `api: { default:
# 'http://localhost:8000/v2/' ...}`), in a tarball with one top folder like a GitHub archive.
MONSTER_CONFIG_JS = "define(function(require){\n\treturn {\n\t\tapi: {\n\t\t\tdefault: 'http://localhost:8000/v2/' // could be formatted like http://api.server.net:8000/v2/\n\t\t}\n\t};\n});\n"


def monster_ui_archive(tmp: Path) -> tuple[Path, str]:
    import io
    import tarfile
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, text in (("monster-ui/index.html", "<html></html>\n"), ("monster-ui/js/config.js", MONSTER_CONFIG_JS)):
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    path = tmp / "monster-ui.tar.gz"
    path.write_bytes(raw.getvalue())
    return path, hashlib.sha256(raw.getvalue()).hexdigest()


def monster_ui_shims(tmp: Path, host: FakeHost, archive: Path, nginx_installed: bool, url: str = MONSTER_UI_URL) -> dict:
    """PATH for a push that installs Monster UI without a network: dpkg-query says nginx is missing
    until apt-get installs it (which adds its unit), curl serves `archive` at `url` and leaves every
    other request (the push's checks of CouchDB and crossbar) to the real curl."""
    shims = tmp / "shims"
    shims.mkdir()
    if nginx_installed:
        (host.state / "nginx-installed").touch()
    (shims / "dpkg-query").write_text(
        '#!/bin/bash\nif [ "${*: -1}" = nginx ]; then [ -e "$STUB_STATE/nginx-installed" ] && '
        'echo "install ok installed" && exit 0; exit 1; fi\nexec /usr/bin/dpkg-query "$@"\n')
    (shims / "apt-get").write_text(
        '#!/bin/bash\necho "apt-get $*" >> "$STUB_STATE/calls.log"\n'
        'if [[ " $* " == *" nginx "* ]]; then touch "$STUB_STATE/nginx-installed"; echo nginx.service >> "$STUB_STATE/units"; fi\n')
    (shims / "curl").write_text(
        '#!/bin/bash\nargs=("$@") out="" url=""\nwhile [ $# -gt 0 ]; do case $1 in -o) out=$2; shift 2 ;; -*) shift ;; *) url=$1; shift ;; esac; done\n'
        f'[ "$url" = {url} ] || exec /usr/bin/curl "${{args[@]}}"\necho "curl $url" >> "$STUB_STATE/calls.log"\ncp {archive} "$out"\n')
    for shim in shims.iterdir():
        shim.chmod(0o755)
    return {"PATH": f"{shims}:{STUBS}:{REAL_PATH}"}


@needs_root
def test_monster_ui_added_to_a_running_stack_is_installed_by_the_push_and_follows_the_api(tmp_path):
    """Review 9 (names): Monster UI turned on for a running stack came as an nginx site for an nginx
    never installed (the push failed: no such unit), and config.js kept the API address of the first
    boot when dns.zone came later. The push now installs nginx and the build, and rewrites the address."""
    archive, sha = monster_ui_archive(tmp_path)
    ui = {"monsterUi": {"url": MONSTER_UI_URL, "sha256": sha}}
    without = context("aws-maximal", "app1")
    with_ui = context("aws-maximal", "app1", {"sources": ui})
    with_names = context("aws-maximal", "app1", {"sources": ui, "dns": {"zone": "voip.example.com"}})
    host = push_host(tmp_path, without, units=UNITS.replace("nginx\n", ""))  # made before Monster UI: no nginx
    env = monster_ui_shims(tmp_path, host, archive, nginx_installed=False)
    config_js = on_host(tmp_path, "/var/www/monster-ui/js/config.js")

    def push(ctx, name):
        run = host.run(f"{HIDE_UNITS}\n{push_line(ctx, bundle_file(tmp_path, ctx, name))}",
                       env={**receive_env(ctx), **env}, setup=serving_setup(tmp_path, ctx))
        assert run.returncode == 0, run.stdout + run.stderr
        return run

    push(without, "1")
    assert not config_js.exists() and not any(c.startswith("apt-get") for c in host.calls)
    push(with_ui, "2")
    assert any(c.startswith("apt-get") and c.endswith(" nginx") for c in host.calls)
    assert host.calls.count(f"curl {MONSTER_UI_URL}") == 1
    assert "default: 'http://198.51.100.7:8000/v2/'" in config_js.read_text()  # this host's public address
    assert "reload-or-restart nginx.service" in systemd(host)["jobs"]
    # dns.zone: the API moves behind the load balancer; the same build is not fetched again
    push(with_names, "3")
    assert f"default: 'https://api.{with_names.settings.domain}/v2/'" in config_js.read_text()
    assert host.calls.count(f"curl {MONSTER_UI_URL}") == 1
    assert on_host(tmp_path, "/etc/kazoo-bootstrap/host.env").read_text() == bootstrap.host_env(with_names)


@needs_root
def test_a_file_dropped_from_the_bundle_leaves_the_rendered_tree(tmp_path):
    archive, sha = monster_ui_archive(tmp_path)
    with_ui = context("aws-maximal", "app1", {"sources": {"monsterUi": {"url": MONSTER_UI_URL,
                                                                        "sha256": sha}}})
    without = context("aws-maximal", "app1")
    site = "/etc/nginx/sites-enabled/monster-ui.conf"
    assert site in files(with_ui) and site not in files(without)
    host = push_host(tmp_path, without)
    shims = monster_ui_shims(tmp_path, host, archive, nginx_installed=True)
    b1, b2 = bundle_file(tmp_path, with_ui, "1"), bundle_file(tmp_path, without, "2")
    run = host.run(f"{HIDE_UNITS}\n{push_line(with_ui, b1)} && test -f /etc/kazoo-bootstrap/files{site} && "
                   f"test -f {site} && echo 'site installed' && "
                   f"{push_line(without, b2)} && find /etc/kazoo-bootstrap/files -type f", env={**receive_env(without), **shims},
                   setup=serving_setup(tmp_path, without))
    assert run.returncode == 0, run.stderr
    tree = {line.removeprefix("/etc/kazoo-bootstrap/files") for line in run.stdout.splitlines() if line.startswith("/etc/kazoo-bootstrap/")}
    assert tree == set(files(without)) | {bootstrap.HOST_ENV}
    # the installed copy goes too (nginx would otherwise go on serving the removed Monster UI)
    assert "site installed" in run.stdout and f"removed {site}" in run.stdout
    assert not on_host(tmp_path, site).exists()


# What reads each file, from the software's own sources (not from configure.sh's table): both Kazoo
# nodes read config.ini and the cookie (kazoo-configs 4.4 units: one release, one config.ini); a
# unit's drop-in is read by systemd first (daemon-reload), then by the restarted service;
# HAProxy reloads in place (haproxy(1): -sf); PostgreSQL's settings need a restart, and Kamailio's
# unit Requires= it, so Kamailio goes with it.
ONE_FILE_CHANGED = [
    ("/etc/kazoo/config.ini", ["restart kazoo-applications.service", "restart kazoo-ecallmgr.service"], 0),
    ("/etc/kazoo/ecallmgr.vm.args", ["restart kazoo-ecallmgr.service"], 0),
    ("/etc/systemd/system/rabbitmq-server.service.d/kazoo.conf", ["restart rabbitmq-server.service"], 1),
    ("/etc/systemd/system/couchdb.service.d/kazoo.conf", ["restart couchdb.service"], 1),
    ("/etc/haproxy/haproxy.cfg", ["reload-or-restart haproxy.service"], 0),
    # Kamailio goes with PostgreSQL (Requires=), once: not restarted again on its own
    ("/etc/kazoo/kamailio/postgresql.conf", ["restart postgresql.service"], 0),
    ("/etc/hosts", [], 0),
]


@needs_root
@pytest.mark.parametrize("path,jobs,reloads", ONE_FILE_CHANGED, ids=[p for p, _, _ in ONE_FILE_CHANGED])
def test_one_file_changed_restarts_what_reads_it_and_nothing_else(tmp_path, monkeypatch, path, jobs, reloads):
    ctx = context(SINGLE, "kazoo1")
    host = push_host(tmp_path, ctx)
    tree = stage(tmp_path, "kamailio.cfg", (upstream.tree("kamailio_configs") / "kamailio/kamailio.cfg").read_text())
    assert host.run(f"install -D -m 0644 {tree} /etc/kazoo/kamailio/kamailio.cfg").returncode == 0  # the first boot's tree
    first = bundle_file(tmp_path, ctx, "1")
    real = bootstrap.bundle_files

    def one_changed(c):
        out = dict(real(c))
        content, mode = out[bootstrap.RENDERED_DIR + path]
        comment = "; " if path.endswith(".ini") else "# "
        out[bootstrap.RENDERED_DIR + path] = (content + f"{comment}changed\n", mode)
        return out

    monkeypatch.setattr(bootstrap, "bundle_files", one_changed)
    second = bundle_file(tmp_path, ctx, "2")
    run = host.run("\n".join([HIDE_UNITS, push_line(ctx, first), 'echo "push1=$?"',
                              "cp $STUB_STATE/systemd.json $STUB_STATE/after-first.json",
                              push_line(ctx, second), 'echo "push2=$?"']),
                   env=receive_env(ctx), setup=serving_setup(tmp_path, ctx))
    assert "push1=0" in run.stdout and "push2=0" in run.stdout, run.stdout + run.stderr
    before = json.loads((host.state / "after-first.json").read_text())
    after = systemd(host)
    assert after["jobs"][len(before["jobs"]):] == jobs
    assert after["daemon_reloads"] - before["daemon_reloads"] == reloads
    restarted = {u for u, r in after["units"].items() if r["restarts"] != before["units"].get(u, {}).get("restarts", 0)}
    expected = {j.split()[-1] for j in jobs} | ({"kamailio.service"} if "postgresql" in path else set())
    assert restarted == expected
    assert all(after["units"][u]["restarts"] - before["units"].get(u, {}).get("restarts", 0) == 1 for u in restarted)


@needs_root
def test_a_unit_missing_for_an_installed_component_fails_the_push(tmp_path):
    ctx = context("aws-maximal", "app1")
    host = push_host(tmp_path, ctx, kazoo_units=("kazoo-applications",))  # kazoo-ecallmgr.service is missing
    bundle = bundle_file(tmp_path, ctx, "1")
    run = host.run(f"{HIDE_UNITS}\n{push_line(ctx, bundle)}", env=receive_env(ctx), setup=serving_setup(tmp_path, ctx))
    assert run.returncode != 0
    assert "kazoo-ecallmgr (no such unit)" in run.stderr + run.stdout
    assert [j.split()[-1] for j in systemd(host)["jobs"]] == ["haproxy.service", "kazoo-applications.service"]
    assert {p.name for p in on_host(tmp_path, f"{STATE_DIR}/pending").iterdir()} == {"kazoo-ecallmgr"}


@needs_root
def test_a_failed_restart_stays_pending_and_the_next_push_restarts_it(tmp_path):
    ctx = context("aws-maximal", "app1")
    host = push_host(tmp_path, ctx)
    bundle = bundle_file(tmp_path, ctx, "1")
    (host.state / "fail-haproxy").touch()
    first = host.run(f"{HIDE_UNITS}\n{push_line(ctx, bundle)}", env=receive_env(ctx), setup=serving_setup(tmp_path, ctx))
    assert first.returncode != 0
    pending = on_host(tmp_path, f"{STATE_DIR}/pending")
    assert {p.name for p in pending.iterdir()} == {"haproxy"}
    assert systemd(host)["units"]["haproxy.service"]["active"] == "failed"
    (host.state / "fail-haproxy").unlink()
    # the same bundle again: no file changes, yet haproxy is restarted, and only haproxy
    second = host.run(f"{HIDE_UNITS}\n{push_line(ctx, bundle)}", env=receive_env(ctx), setup=serving_setup(tmp_path, ctx))
    assert second.returncode == 0, second.stderr
    assert systemd(host)["jobs"] == ["reload-or-restart haproxy.service", "restart kazoo-applications.service",
                                     "restart kazoo-ecallmgr.service", "reload-or-restart haproxy.service"]
    assert systemd(host)["units"]["haproxy.service"]["active"] == "active"
    assert not list(pending.iterdir())


@needs_root
def test_a_push_ends_only_once_couchdb_and_crossbar_serve_again(tmp_path):
    """The pushes of a role run one host after another; a host's push ends only when its restarted
    CouchDB answers /_up and its crossbar answers HTTP, so the next host never restarts while this one
    is still starting. A service that does not come back fails the push, which stops the chain."""
    ctx = context(SINGLE, "kazoo1")
    host = push_host(tmp_path, ctx)
    bundle = bundle_file(tmp_path, ctx, "1")
    quick = {"SERVE_TRIES": "3", "SERVE_SECONDS": "0"}
    down = host.run(f"{HIDE_UNITS}\n{push_line(ctx, bundle)}", env=receive_env(ctx, **quick))
    assert down.returncode != 0
    out = down.stdout + down.stderr
    assert "couchdb (restarted, not serving after 3 tries)" in out  # nothing answers 5984/_up here
    assert "kazoo-applications (restarted, not serving" in out
    # the push retried, nothing left to restart: it still waits, and fails while they do not answer
    retried = host.run(f"{HIDE_UNITS}\n{push_line(ctx, bundle)}", env=receive_env(ctx, **quick))
    assert retried.returncode != 0, retried.stdout + retried.stderr
    assert "couchdb (restarted by an earlier run, still not serving after 3 tries)" in retried.stdout + retried.stderr
    restarts = systemd(host)["jobs"].count("restart couchdb.service")
    assert restarts == 1  # waited for, not restarted again
    # a new configuration with both answering, CouchDB after a few seconds (as after a restart): waited for
    changed = context(SINGLE, "kazoo1", {"roles": {"database": {"q": 4}}})  # a new 10-kazoo.ini: CouchDB restarts
    slow = serving_setup(tmp_path, changed, after=3)
    later = host.run(f"{HIDE_UNITS}\n({slow}) >/dev/null 2>&1 &\n"
                     f"{push_line(changed, bundle_file(tmp_path, changed, '2'))}",
                     env=receive_env(changed, SERVE_TRIES="30", SERVE_SECONDS="0.5"))
    assert later.returncode == 0, later.stdout + later.stderr
    assert systemd(host)["jobs"].count("restart couchdb.service") == 2
    assert not list(on_host(tmp_path, STATE_DIR).glob("unserved-*"))
    # a first boot does not wait: kazoo-first-start.sh does, for Kazoo's first start
    again = context(SINGLE, "kazoo1", {"roles": {"database": {"q": 8}}})
    boot = host.run(f"{HIDE_UNITS}\n{push_line(again, bundle_file(tmp_path, again, '3'))}",
                    env=receive_env(again, KAZOO_FIRST_BOOT="1", **quick))
    assert boot.returncode == 0, boot.stdout + boot.stderr


@needs_root
def test_a_configuration_kamailio_rejects_never_stops_the_running_proxy(tmp_path):
    """Kamailio's unit checks its configuration only once the old process is stopped: configure.sh
    asks `kamailio -c` first (stubs/kamailio, as Kamailio answers) and leaves a running proxy alone
    when it says no, failing the push with the mark kept; the next push restarts it."""
    ctx = context("aws-maximal", "proxy1")
    host = push_host(tmp_path, ctx, kazoo_units=())
    tree = stage(tmp_path, "kamailio.cfg", (upstream.tree("kamailio_configs") / "kamailio/kamailio.cfg").read_text())
    assert host.run(f"install -D -m 0644 {tree} /etc/kazoo/kamailio/kamailio.cfg").returncode == 0  # the first boot's tree
    first = host.run(f"{HIDE_UNITS}\n{push_line(ctx, bundle_file(tmp_path, ctx, '1'))}", env=receive_env(ctx))
    assert first.returncode == 0, first.stderr
    assert systemd(host)["units"]["kamailio.service"]["active"] == "active"
    restarts = systemd(host)["jobs"].count("restart kamailio.service")
    assert restarts == 1 and not any(c.startswith("kamailio -c") for c in host.calls)  # not running yet: nothing to keep
    changed = context("aws-maximal", "proxy1", {"sip": {"antifloodRequests": 200}})  # a new local.cfg
    bundle = bundle_file(tmp_path, changed, "2")
    (host.state / "kamailio-rejects").touch()
    # PostgreSQL pending too (its settings follow Kamailio's processes): the unit Requires= it, so
    # its restart would restart Kamailio through the unit's own check, after the stop
    assert host.run(f"touch {STATE_DIR}/pending/postgresql").returncode == 0
    jobs = len(systemd(host)["jobs"])
    second = host.run(f"{HIDE_UNITS}\n{push_line(changed, bundle)}", env=receive_env(changed))
    assert second.returncode != 0
    assert "kamailio -c rejects the new configuration; the running one stays" in second.stderr + second.stdout
    assert "bad config file" in second.stdout + second.stderr  # Kamailio's own words, logged
    assert "runuser -u kamailio" in host.calls  # the unit runs its check as kamailio
    assert "kamailio -c -f /etc/kazoo/kamailio/kamailio.cfg -m 256 -M 32" in host.calls
    assert systemd(host)["jobs"][jobs:] == []  # neither Kamailio nor PostgreSQL restarted
    assert systemd(host)["units"]["kamailio.service"]["active"] == "active"
    assert {"kamailio", "postgresql"} <= {p.name for p in on_host(tmp_path, f"{STATE_DIR}/pending").iterdir()}
    (host.state / "kamailio-rejects").unlink()
    third = host.run(f"{HIDE_UNITS}\n{push_line(changed, bundle)}", env=receive_env(changed))
    assert third.returncode == 0, third.stderr
    assert systemd(host)["jobs"][jobs:] == ["restart postgresql.service"]  # Kamailio with it (Requires=), once
    assert systemd(host)["propagated"][-1] == "restart kamailio.service (Requires=postgresql.service)"


@needs_root
def test_freeswitch_restarts_at_first_boot_only(tmp_path):
    ctx = context("aws-maximal", "media1")
    moved = context("aws-maximal", "media1", public_ip="198.51.100.99")  # a new local.env for FreeSWITCH
    host = push_host(tmp_path, ctx, kazoo_units=())
    b1, b2 = bundle_file(tmp_path, ctx, "1"), bundle_file(tmp_path, moved, "2")
    boot = host.run(f"{HIDE_UNITS}\n{push_line(ctx, b1)}", env=receive_env(ctx, KAZOO_FIRST_BOOT="1"))
    assert boot.returncode == 0, boot.stderr
    # HAProxy (FreeSWITCH's way to CouchDB-held media) first, in configure.sh's ORDER
    assert systemd(host)["jobs"] == ["reload-or-restart haproxy.service", "restart freeswitch.service"]
    later = host.run(f"{HIDE_UNITS}\n{push_line(moved, b2)}", env=receive_env(moved))
    assert later.returncode == 0, later.stderr
    assert "198.51.100.99" in on_host(tmp_path, "/etc/kazoo/freeswitch/local.env").read_text()
    # a running FreeSWITCH keeps its calls
    assert systemd(host)["jobs"] == ["reload-or-restart haproxy.service", "restart freeswitch.service"]
    assert not list(on_host(tmp_path, f"{STATE_DIR}/pending").iterdir())  # deferred to the operator, not retried


@needs_root
def test_a_freeswitch_tree_that_cannot_take_this_hosts_values_fails_the_push(tmp_path):
    """freeswitch-local.sh exits 10 when it changed a file and anything else but 0 on an error: an
    error fails the push (a FreeSWITCH left on the wrong addresses is not a success)."""
    ctx = context("aws-maximal", "media1")
    host = push_host(tmp_path, ctx, kazoo_units=())
    broken = stage(tmp_path, "kazoo.conf.xml", "<configuration name=\"kazoo.conf\"><settings></configuration>\n")
    assert host.run(f"install -D -m 0644 {broken} /etc/kazoo/freeswitch/autoload_configs/kazoo.conf.xml").returncode == 0
    run = host.run(f"{HIDE_UNITS}\n{push_line(ctx, bundle_file(tmp_path, ctx, '1'))}", env=receive_env(ctx))
    assert run.returncode != 0
    assert "freeswitch-local.sh failed (1)" in run.stdout + run.stderr
    assert "kazoo.conf.xml" in run.stdout + run.stderr  # its own words say which file


def test_a_changed_script_changes_the_push_fingerprint(tmp_path, monkeypatch):
    """config_digest triggers the push: a script edit must reach running hosts, a comment need not
    (hosts get the scripts without their comments)."""
    ctx = context("aws-maximal", "app1")
    copy = tmp_path / "cloud-init"
    shutil.copytree(CLOUD_INIT_DIR, copy)
    bootstrap.cloud_init_file.cache_clear()  # read the files as they are now (and as copied)
    before = config_digest(ctx)
    script = copy / "remote" / "ecallmgr.sh"
    try:
        monkeypatch.setattr(bootstrap, "CLOUD_INIT_DIR", copy)
        bootstrap.cloud_init_file.cache_clear()
        assert config_digest(ctx) == before  # the same files: the same fingerprint
        script.write_text(script.read_text() + "# a comment only\n")
        bootstrap.cloud_init_file.cache_clear()
        assert config_digest(ctx) == before
        script.write_text(script.read_text().replace("true", "yes"))
        bootstrap.cloud_init_file.cache_clear()
        changed = config_digest(ctx)
        assert changed != before and re.fullmatch(r"sha256:[0-9a-f]{16}", changed)
        assert "add_fs_node \"freeswitch@${2:?FQDN}\" yes" in bootstrap.bundle_files(ctx)[REMOTE + "ecallmgr.sh"][0]
    finally:
        monkeypatch.undo()
        bootstrap.cloud_init_file.cache_clear()
    assert config_digest(ctx) == before


@needs_root
def test_kazoo_waits_for_the_couchdb_cluster_then_kazoo_start_starts_it(tmp_path):
    """Review A5. With three database nodes, the first boot and every push before the cluster is
    formed leave the Kazoo units stopped and pending: Kazoo's first connection would create its
    system databases on unjoined nodes, one copy each (kazoo_data_bootstrap.erl init_dbs; couchdb
    mem3_util.erl n_val/2). The orchestration's kazoo-start step (after couchdb-cluster) starts them."""
    ctx = context("aws-maximal", "app1")
    assert "KAZOO_START_AFTER_CLUSTER=1" in files(ctx)["/etc/kazoo/kazoo-start.env"]
    host = push_host(tmp_path, ctx, cluster_ready=False)
    bundle = bundle_file(tmp_path, ctx, "1")
    boot = host.run(f"{HIDE_UNITS}\n{push_line(ctx, bundle)}", env=receive_env(ctx, KAZOO_FIRST_BOOT="1"))
    assert boot.returncode == 0, boot.stdout + boot.stderr
    assert "kazoo-applications waits for the CouchDB cluster" in boot.stdout + boot.stderr
    assert systemd(host)["jobs"] == ["reload-or-restart haproxy.service"]
    assert not systemd(host)["units"].get("kazoo-applications.service", {}).get("enabled")  # not at a reboot either
    pending = on_host(tmp_path, f"{STATE_DIR}/pending")
    assert {p.name for p in pending.iterdir()} == {"kazoo-applications", "kazoo-ecallmgr"}
    start = steps(ctx)["kazoo-start-app1"].create
    assert start == "sudo -n /opt/kazoo-bootstrap/remote/kazoo-start.sh"
    started = host.run(f"{HIDE_UNITS}\n/opt/kazoo-bootstrap/remote/kazoo-start.sh")
    assert started.returncode == 0, started.stdout + started.stderr
    assert systemd(host)["jobs"][1:] == ["restart kazoo-applications.service", "restart kazoo-ecallmgr.service"]
    assert systemd(host)["units"]["kazoo-ecallmgr.service"]["enabled"]
    assert not list(pending.iterdir())
    # a single database node: nothing to wait for
    single = context(SINGLE, "kazoo1")
    assert "KAZOO_START_AFTER_CLUSTER=0" in files(single)["/etc/kazoo/kazoo-start.env"]
    assert not any(s.startswith("kazoo-start") for s in steps(single))


@needs_root
def test_a_push_gives_a_host_made_earlier_what_todays_files_need(tmp_path):
    """A second review: hosts made before HAProxy went to media hosts and before the one-epmd
    bootstrap would be broken by today's files (no haproxy unit; CouchDB with -start_epmd false and no
    epmd). A push installs HAProxy on a media host, moves epmd to epmd.socket (stopping the VM that
    held it) and restarts every Erlang service to register again; FreeSWITCH waits for an operator."""
    ctx = context(SINGLE, "kazoo1")  # every role: CouchDB, RabbitMQ, Kazoo and FreeSWITCH side by side
    host = push_host(tmp_path, ctx)
    state = json.loads((host.state / "systemd.json").read_text())
    state["units"]["epmd.socket"]["active"] = "inactive"  # the old bootstrap: CouchDB's VM ran epmd
    for unit in ("couchdb", "rabbitmq-server", "kazoo-applications", "kazoo-ecallmgr"):
        state["units"][f"{unit}.service"] = {"active": "active", "enabled": True, "restarts": 0}
    (host.state / "systemd.json").write_text(json.dumps(state))
    (host.state / "units").write_text(UNITS + "freeswitch\n")
    # apt as on that host: HAProxy not installed yet (dpkg-query says so; apt-get records)
    shims = tmp_path / "shims"
    shims.mkdir()
    (shims / "dpkg-query").write_text('#!/bin/bash\n[ "${*: -1}" = haproxy ] && exit 1\nexec /usr/bin/dpkg-query "$@"\n')
    (shims / "apt-get").write_text('#!/bin/bash\necho "apt-get $*" >> "$STUB_STATE/calls.log"\n')
    for shim in shims.iterdir():
        shim.chmod(0o755)
    bundle = bundle_file(tmp_path, ctx, "1")
    run = host.run(f"{HIDE_UNITS}\n{push_line(ctx, bundle)}",
                   env={**receive_env(ctx), "PATH": f"{shims}:{STUBS}:{REAL_PATH}"}, setup=serving_setup(tmp_path, ctx))
    assert run.returncode == 0, run.stdout + run.stderr
    assert any(c.startswith("apt-get") and c.endswith(" haproxy") for c in host.calls)
    assert "moving this host's epmd to epmd.socket" in run.stdout + run.stderr
    calls = host.calls[host.calls.index("systemctl stop couchdb"):]  # (the first call: push_host's set-up)
    assert "systemctl enable --now epmd.socket" in calls
    units = systemd(host)["units"]
    assert units["epmd.socket"]["active"] == "active"
    jobs = systemd(host)["jobs"]
    for unit in ("couchdb", "rabbitmq-server", "kazoo-applications", "kazoo-ecallmgr"):
        assert f"restart {unit}.service" in jobs, jobs
    assert "restart freeswitch.service" not in jobs  # never at a push: its calls stay up


@needs_root
def test_a_role_deferred_to_the_first_push_is_installed_and_started_by_it(tmp_path, monkeypatch):
    """An AWS host carrying every role has no room in its user-data for FreeSWITCH (core/bootstrap.py
    deferred_roles): bootstrap.sh skips install-media, and the first config push installs it and
    configures as a first boot does (FreeSWITCH restarted with its files); the next push neither
    installs it again nor restarts FreeSWITCH. install-media.sh itself is a stand-in here (the
    FreeSWITCH packages cannot be installed): it records that it ran."""
    import core.bootstrap as bootstrap

    ctx = context("aws-dual", "kazoo1")
    assert bootstrap.deferred_roles(ctx) == (Role.MEDIA,)
    host = push_host(tmp_path, ctx)
    (tmp_path / "host.env").write_text(render_template("host.env.j2", ctx, deferred="media"))
    real = bootstrap.cloud_init_file
    monkeypatch.setattr(bootstrap, "cloud_init_file", lambda rel: (
        "#!/bin/bash\nset -euo pipefail\necho 'install-media stand-in ran' >> /var/log/install-media.runs\n"
        if rel == "scripts/install-media.sh" else real(rel)))
    bundle = bundle_file(tmp_path, ctx, "1")
    run = host.run("\n".join([HIDE_UNITS, push_line(ctx, bundle), 'echo "push1=$?"',
                              "systemctl show -p NRestarts --value freeswitch.service || true",
                              push_line(ctx, bundle), 'echo "push2=$?"', "cat /var/log/install-media.runs"]),
                   env=receive_env(ctx))
    assert "push1=0" in run.stdout and "push2=0" in run.stdout, run.stdout + run.stderr
    assert run.stdout.count("install-media stand-in ran") == 1  # once, by the first push
    assert exists_on_host(tmp_path, f"{STATE_DIR}/done-install-media")
    assert systemd(host)["units"]["freeswitch.service"]["restarts"] == 1  # as at first boot, once


def test_only_aws_hosts_carrying_every_role_defer_freeswitch():
    from core.bootstrap import BOOTSTRAP_DIR, bundle_files, deferred_roles, render_user_data

    for stack, name, deferred in [("aws-dual", "kazoo1", (Role.MEDIA,)), ("aws-single", "kazoo1", (Role.MEDIA,)),
                                  ("aws-maximal", "media1", ()), ("hetzner-dual", "kazoo1", ())]:
        ctx = context(stack, name)
        assert deferred_roles(ctx) == deferred, stack
        user_data = render_user_data(ctx)
        assert ("install-media.sh" in user_data) is (not deferred), stack
        assert ("KAZOO_DEFERRED=media" in user_data or "KAZOO_DEFERRED='media'" in user_data) is bool(deferred), stack
        assert f"{BOOTSTRAP_DIR}/install-media.sh" in bundle_files(ctx), stack  # the push always carries it

