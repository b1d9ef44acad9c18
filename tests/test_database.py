"""CouchDB on the database hosts: the rendered files, install-database.sh and couchdb-cluster.sh.

Spec: /work/notes/facts-couchdb.md. Upstream sources, as cited below: apache/couchdb at tag 3.5.2.post2
(ad30249f), apache/couchdb-pkg main @ 94815dd9 (the Debian packaging 3.5.x is built from).

HOW TO USE THE FAKE COUCHDB (tests/stubs/fake_couchdb.py) FROM ANOTHER TEST. Real curl talks to it
(the curl stand-in is gone); each node is a process serving one 127.0.0.x address inside the fake
host's network namespace, started by `FakeHost.run(..., setup=...)` and ended with the run:

    setup = f'''
    . /opt/kazoo-bootstrap/lib.sh && ensure_system_user couchdb /opt/couchdb
    echo '127.0.0.1 db1.x.example' >> /etc/hosts          # the node's -name host resolves to its address
    install -D -m 0640 -g couchdb {staged}/10-kazoo.ini /opt/couchdb/etc/local.d/10-kazoo.ini   # an admin
    install -D -m 0640 -g couchdb {staged}/kazoo.vm.args /opt/couchdb/etc/kazoo.vm.args         # -name
    install -D -m 0400 -o couchdb {staged}/erlang.cookie /opt/couchdb/.erlang.cookie          # the cookie
    {sys.executable} {STUBS}/fake_couchdb.py start --etc /opt/couchdb/etc --args-file /opt/couchdb/etc/kazoo.vm.args
    {sys.executable} {STUBS}/fake_couchdb.py seed --node couchdb@db1.x.example --dbs 25 --accounts 0123...
    '''
    run = host.run("/opt/kazoo-bootstrap/remote/kazoo-first-start.sh", setup=setup)

(`node_setup` below writes such lines from rendered files; `seed` may also run before `start`.)
Requests are logged to $STUB_STATE/couchdb/requests.jsonl (`requests()` below reads them). Point a
script at a node with COUCHDB_API=http://<fqdn>:5984 (HAProxy's 15984 is not there). Call the
stand-in with sys.executable: `python3` on PATH may be a slow pyenv shim.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from core.bootstrap import (
    CLOUD_INIT_DIR,
    RENDERED_DIR,
    ROLE_FILES,
    HostContext,
    bundle_files,
    render_template,
    render_user_data,
    rendered_files,
)
from core.user_data import decode_user_data, encode_user_data
from core.orchestration import plan_steps
from core.plan import plan_hosts
from core.roles import Role, secrets_for
from core.settings import load_settings
from fakehost import PROC_WATCH, STUBS, FakeHost, available, stage_files
from harness import stack_config

STACKS = [f"{c}-{l}" for c in ("hetzner", "aws") for l in ("single", "dual", "maximal")]
# Distinct, alphanumeric (as components/secrets.py generates them), none a substring of another.
SECRETS = {
    "erlang_cookie": "ErlangCookieQ7xv2Lm9Rt4Wz8Kp3Nd6Hs1Jf5Gb0Yc",
    "couchdb_cookie": "CouchCookieZ3kd8Fw2Qp7Lm4Xr9Tn1Vb6Hy0Js5Ge",
    "couchdb_password": "CouchPassA8sd7F6gH5jK4lZ3xC2vB1n",
    "rabbitmq_password": "RabbitPassQ1w2E3r4T5y6U7i8O9p0As",
    "kamailio_db_password": "KamailioPassM1n2B3v4C5x6Z7l8K9j0",
    "signalwire_token": "pat_test",
}
PASSWORD, COOKIE = SECRETS["couchdb_password"], SECRETS["couchdb_cookie"]
DB_FILES = [path for _, path, _, _ in ROLE_FILES[Role.DATABASE]]
LOCAL_INI = "/opt/couchdb/etc/local.d/10-kazoo.ini"
VM_ARGS = "/opt/couchdb/etc/kazoo.vm.args"
COOKIE_FILE = "/opt/couchdb/.erlang.cookie"
DROP_IN = "/etc/systemd/system/couchdb.service.d/kazoo.conf"
ENV_FILE = "/etc/default/couchdb"
RUNTIME_INI = "/opt/couchdb/etc/local.d/zz-runtime.ini"
SCRIPT = "/opt/kazoo-bootstrap/remote/couchdb-cluster.sh"

_spec = importlib.util.spec_from_file_location("fake_couchdb", STUBS / "fake_couchdb.py")
fake_couchdb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fake_couchdb)


def contexts(stack: str, overrides: dict | None = None, secrets: dict | None = None) -> list[HostContext]:
    """The database hosts of a stack, each with the secrets its roles receive (core.roles)."""
    settings = load_settings(stack_config(stack, overrides))
    plan = plan_hosts(settings)
    return [HostContext(h, plan, settings, public_ip="198.51.100.7", secrets=secrets_for(h.roles, secrets or SECRETS))
            for h in plan.with_role(Role.DATABASE)]


def files(ctx: HostContext) -> dict[str, str]:
    return {path: content for path, (content, _) in rendered_files(ctx).items()}


def all_db_hosts():
    return [pytest.param(ctx, id=f"{stack}-{ctx.host.name}") for stack in STACKS for ctx in contexts(stack)]


DB_HOSTS = all_db_hosts()


# ----- (1) the rendered files ----------------------------------------------------------------------

# Every non-comment line of the vm.args CouchDB ships, apache/couchdb 3.5.2.post2 rel/overlay/etc/vm.args
# ({{node_name}} = "-name couchdb@127.0.0.1", rel/reltool.config). facts-couchdb.md §5.
UPSTREAM_VM_ARGS = [
    "-name couchdb@127.0.0.1",
    "-kernel inet_dist_use_interface {127,0,0,1}",
    "-kernel error_logger silent",
    "-sasl sasl_error_logger false",
    "-kernel prevent_overlapping_partitions false",
    "+P 1048576",
    "+SDio 16",
    "+zdbbl 32768",
    "+Bd -noinput",
    "-ssl session_lifetime 300",
    "-os_mon start_cpu_sup false",
    "-os_mon start_memsup false",
    "-os_mon disk_space_check_interval 5",
    "-os_mon disk_almost_full_threshold 1.0",
]


def args_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


@pytest.mark.parametrize("ctx", DB_HOSTS)
def test_vm_args_keep_every_upstream_line(ctx):
    lines = args_lines(files(ctx)[VM_ARGS])
    # the two lines a cluster must change, changed (facts §5 "What a hand-written vm.args should keep")
    replaced = {
        "-name couchdb@127.0.0.1": f"-name couchdb@{ctx.host.fqdn}",
        "-kernel inet_dist_use_interface {127,0,0,1}": "-kernel inet_dist_use_interface {0,0,0,0}",
    }
    for line in UPSTREAM_VM_ARGS:
        assert replaced.get(line, line) in lines, line
    # no cookie: erlexec would copy it onto beam's command line (review B3); the VM reads
    # $HOME/.erlang.cookie instead, which is ours (0400, couchdb)
    assert not [line for line in lines if line.startswith("-setcookie")] and COOKIE not in files(ctx)[VM_ARGS]
    assert files(ctx)[COOKIE_FILE] == COOKIE + "\n"
    assert {p: m for p, (_, m) in rendered_files(ctx).items()}[COOKIE_FILE] == "0400"
    assert "Environment=HOME=/opt/couchdb" in files(ctx)[DROP_IN]
    assert "-kernel inet_dist_listen_min 11500" in lines and "-kernel inet_dist_listen_max 11999" in lines
    for flag in ("-name", "-kernel inet_dist_use_interface", "-kernel inet_dist_listen_min"):
        assert sum(line.startswith(flag + " ") for line in lines) == 1, flag
    # and the stand-in, which reads it as erlexec does, finds the same name
    words = fake_couchdb.parse_args_file(files(ctx)[VM_ARGS])
    assert words[words.index("-name") + 1] == f"couchdb@{ctx.host.fqdn}"


@pytest.mark.parametrize("ctx", DB_HOSTS)
def test_the_cookie_is_only_in_its_cookie_file(ctx):
    """Not in debconf, host.env, the ini, the args file or the unit: only $HOME/.erlang.cookie
    (user-data and pushed bundle)."""
    config = yaml.safe_load(decode_user_data(encode_user_data(render_user_data(ctx), ctx.settings.cloud.value)))
    holding = {f["path"] for f in config["write_files"] if COOKIE in f["content"]}
    assert holding == {RENDERED_DIR + COOKIE_FILE}
    bundle = {path for path, (content, _) in bundle_files(ctx).items() if COOKIE in content}
    assert bundle == {RENDERED_DIR + COOKIE_FILE}
    assert COOKIE not in json.dumps(config["runcmd"])


@pytest.mark.parametrize("ctx", DB_HOSTS)
def test_the_admin_is_a_pbkdf2_hash_of_the_password(ctx):
    ini = fake_couchdb.parse_ini(files(ctx)[LOCAL_INI])
    admins = [(k, v) for s, k, v in ini if s == "admins"]
    assert len(admins) == 1 and admins[0][0] == "kazoo"
    # couch_passwords.erl hash_admin_password("pbkdf2", _): -pbkdf2:<prf>-<hex key>,<salt>,<iterations>;
    # sha256 and 600000 are 3.5's defaults (default.ini [chttpd_auth] ;iterations = 600000)
    match = re.fullmatch(r"-pbkdf2:sha256-([0-9a-f]{64}),([0-9a-f]{32}),(600000)", admins[0][1])
    assert match, admins[0][1]
    key, salt, iterations = match.groups()
    assert hashlib.pbkdf2_hmac("sha256", PASSWORD.encode(), salt.encode(), int(iterations)).hex() == key
    assert hashlib.pbkdf2_hmac("sha256", b"not-the-password", salt.encode(), int(iterations)).hex() != key


@pytest.mark.parametrize("stack", STACKS)
def test_database_nodes_share_admin_uuid_and_secret(stack):
    """finish_cluster copies these from the coordinator (setup.erl sync_admins/uuid/auth_secret):
    identical values everywhere leave nothing to disagree on."""
    seen = set()
    for ctx in contexts(stack):
        ini = {(s, k): v for s, k, v in fake_couchdb.parse_ini(files(ctx)[LOCAL_INI])}
        seen.add((ini[("admins", "kazoo")], ini[("couchdb", "uuid")], ini[("chttpd_auth", "secret")]))
        assert re.fullmatch(r"[0-9a-f]{32}", ini[("couchdb", "uuid")])
        assert re.fullmatch(r"[0-9a-f]{64}", ini[("chttpd_auth", "secret")])
    assert len(seen) == 1


@pytest.mark.parametrize("ctx", DB_HOSTS)
def test_no_plaintext_password_on_disk(ctx):
    rendered = files(ctx)
    for path in DB_FILES:
        assert PASSWORD not in rendered[path], path
    if ctx.host.roles == (Role.DATABASE,):
        # a database-only host: nowhere in its user-data but host.env (the cluster script's login)
        assert [p for p, text in rendered.items() if PASSWORD in text] == []
        config = yaml.safe_load(render_user_data(ctx))
        assert {f["path"] for f in config["write_files"] if PASSWORD in f["content"]} == {"/etc/kazoo-bootstrap/host.env"}


@pytest.mark.parametrize("ctx", DB_HOSTS)
def test_ini_values_as_couchdb_reads_them(ctx):
    text = files(ctx)[LOCAL_INI]
    ini = {(s, k): v for s, k, v in fake_couchdb.parse_ini(text)}
    settings = ctx.settings
    assert ini[("couchdb", "database_dir")] == ini[("couchdb", "view_index_dir")] == "/srv/couchdb/data"
    # setup.erl is_cluster_enabled/0: a bind_address other than 127.0.0.1 and an admin
    assert ini[("chttpd", "bind_address")] == "0.0.0.0" and ini[("chttpd", "port")] == "5984"
    assert ini[("cluster", "n")] == str(settings.couchdb_n) and ini[("cluster", "q")] == str(settings.couchdb_q)
    # config.erl remove_comments: " ;" or "\t;" would cut a value short
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(";"):
            assert " ;" not in line and "\t;" not in line, line


@pytest.mark.parametrize("ctx", DB_HOSTS)
def test_epmd_unit_and_modes(ctx):
    rendered, modes = files(ctx), {p: m for p, (_, m) in rendered_files(ctx).items()}
    # epmd is the host's epmd.socket (lib.sh ensure_epmd), never one erlexec starts in couchdb.service:
    # the package's /etc/default/couchdb (ERL_EPMD_ADDRESS) is left alone, it no longer matters
    assert ENV_FILE not in rendered
    assert re.findall(r"^-start_epmd (\S+)$", rendered[VM_ARGS], re.M) == ["false"]
    unit = rendered[DROP_IN]
    assert "Wants=epmd.socket" in unit and "After=epmd.socket" in unit and "Requires=epmd" not in unit
    # bin/couchdb: ARGS_FILE="${COUCHDB_ARGS_FILE:-$ROOTDIR/etc/vm.args}" (rel/files/couchdb.in)
    assert re.search(r"^\[Service\]\nEnvironment=COUCHDB_ARGS_FILE=(\S+)$", unit, re.M).group(1) == VM_ARGS
    assert re.search(r"^\[Unit\]\n(?:#.*\n)*RequiresMountsFor=/srv/couchdb$", unit, re.M)
    assert modes[LOCAL_INI] == modes[VM_ARGS] == "0640"  # secrets: group couchdb only (configure.sh)


def test_install_script_preseeds_only_mode_none():
    text = (CLOUD_INIT_DIR / "scripts" / "install-database.sh").read_text()
    code = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    preseeds = [line for line in code if "debconf-set-selections" in line]
    assert preseeds == ["echo 'couchdb couchdb/mode select none' | debconf-set-selections"]
    assert not [line for line in code if re.search(r"COOKIE|couchdb/(cookie|adminpass|nodename|bindaddress)", line)]


# ----- fake hosts ----------------------------------------------------------------------------------

needs_root = pytest.mark.skipif(not available(), reason="needs root and unshare (as in .ci/run)")
PY = sys.executable  # not `python3` from PATH, which may be a slow shim
FAKE = f"{PY} {STUBS / 'fake_couchdb.py'}"

# The keys of apache/couchdb 3.5.2.post2 rel/overlay/etc/default.ini the stand-in reads, as the
# package installs it (/opt/couchdb/etc/default.ini); local.ini as shipped (rel/overlay/etc/local.ini).
DEFAULT_INI = """; apache/couchdb 3.5.2.post2 rel/overlay/etc/default.ini (excerpt)
[couchdb]
database_dir = ./data
view_index_dir = ./data
;single_node = false
[cluster]
;q=2
;n=3
[chttpd]
port = 5984
bind_address = 127.0.0.1
[chttpd_auth]
;secret =
[chttpd_auth_lockout]
;mode = enforce
;threshold = 5
"""
SHIPPED_LOCAL_INI = "[couchdb]\n[couch_peruser]\n[chttpd]\n[httpd]\n[ssl]\n[vhosts]\n[admins]\n"


@dataclass(eq=False)
class Node:
    ctx: HostContext
    address: str
    etc: str  # the node's /opt/couchdb/etc
    runtime: str = "couchdb:couchdb 0640"  # owner and mode of local.d/zz-runtime.ini, or "absent"

    @property
    def fqdn(self) -> str:
        return self.ctx.host.fqdn

    @property
    def home(self) -> str:
        """The node's /opt/couchdb: couchdb.service's HOME, where its .erlang.cookie is."""
        return self.etc.removesuffix("/etc")

    @property
    def args_file(self) -> str:
        # the drop-in's COUCHDB_ARGS_FILE, moved to this node's etc directory
        path = re.search(r"COUCHDB_ARGS_FILE=(\S+)", files(self.ctx)[DROP_IN]).group(1)
        return self.etc + path.removeprefix("/opt/couchdb/etc")


def node_setup(stage: Path, nodes: list[Node], install: bool | list[Node] = True, extra: str = "") -> str:
    """Shell lines for FakeHost.run(setup=...): the couchdb account, each node's name in /etc/hosts,
    the files of the nodes to `install` (all, or those listed) as configure.sh and install-database.sh
    leave them, `extra`, then every node started."""
    lines = ["set -euo pipefail", ". /opt/kazoo-bootstrap/lib.sh", "ensure_system_user couchdb /opt/couchdb"]
    for node in nodes:
        lines += [f"sed -i '/ {re.escape(node.fqdn)}$/d' /etc/hosts", f"echo '{node.address} {node.fqdn}' >> /etc/hosts"]
        if install is not True and node not in (install or []):
            continue
        rendered = files(node.ctx)
        staged = stage / node.fqdn
        staged.mkdir(parents=True, exist_ok=True)
        for name, text in (("default.ini", DEFAULT_INI), ("local.ini", SHIPPED_LOCAL_INI),
                           ("10-kazoo.ini", rendered[LOCAL_INI]), ("kazoo.vm.args", rendered[VM_ARGS]),
                           ("erlang.cookie", rendered[COOKIE_FILE])):
            (staged / name).write_text(text)
        etc = node.etc
        lines += [
            # the package's files, couchdb's after its postinst (apache/couchdb-pkg debian/couchdb.postinst)
            f"install -D -m 0644 -o couchdb -g couchdb {staged}/default.ini {etc}/default.ini",
            f"install -D -m 0644 -o couchdb -g couchdb {staged}/local.ini {etc}/local.ini",
            # the rendered ones as configure.sh installs them (owner_of: /opt/couchdb/etc/* root:couchdb)
            f"install -D -m 0640 -o root -g couchdb {staged}/10-kazoo.ini {etc}/local.d/10-kazoo.ini",
            f"install -D -m 0640 -o root -g couchdb {staged}/kazoo.vm.args {node.args_file}",
            f"install -D -m 0400 -o couchdb -g couchdb {staged}/erlang.cookie {node.home}/.erlang.cookie",
        ]
        if node.runtime != "absent":
            owner, mode = node.runtime.split()
            user, group = owner.split(":")
            lines.append(f"install -m {mode} -o {user} -g {group} /dev/null {etc}/local.d/zz-runtime.ini")
    lines.append(extra)
    lines += [f"{FAKE} start --etc {n.etc} --args-file {n.args_file} --home {n.home}" for n in nodes]
    return "\n".join(lines)


def requests(host: FakeHost) -> list[dict]:
    log = host.state / "couchdb" / "requests.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def posts(entries: list[dict]) -> list[tuple]:
    """The _cluster_setup actions posted to a node (not the receive_cookie that add_node sends on)."""
    return [(e.get("action"), e.get("host")) for e in entries
            if e["method"] == "POST" and e["path"] == "/_cluster_setup" and e.get("action") != "receive_cookie"]


class Cluster:
    """The database nodes of aws-maximal (grown to `count`) on one fake host: db<i> on 127.0.0.<i>,
    db1 (the coordinator, "this host") in /opt/couchdb, the others in /opt/fake-couchdb/<fqdn>."""

    def __init__(self, tmp: Path, count: int = 3, password: str = PASSWORD, stack: str = "aws-maximal"):
        self.tmp, self.stack = tmp, stack
        self.overrides = (lambda n: {"roles": {"database": {"count": n}}}) if stack.endswith("maximal") else (lambda n: {})
        self.ctxs = contexts(stack, self.overrides(count))
        self.nodes = [Node(ctx, f"127.0.0.{i}", "/opt/couchdb/etc" if i == 1 else f"/opt/fake-couchdb/{ctx.host.fqdn}/etc")
                      for i, ctx in enumerate(self.ctxs, 1)]
        self.host = FakeHost(tmp, {})
        # the coordinator's real host.env (the cluster script reads FQDN and COUCHDB_PASSWORD from it)
        env = render_template("host.env.j2", self.ctxs[0])
        assert f"\nCOUCHDB_PASSWORD={shlex.quote(PASSWORD)}\n" in env
        (tmp / "host.env").write_text(env.replace(PASSWORD, password))
        self.installed: set[str] = set()

    def command(self, count: int) -> str:
        """The orchestration's own command line for `count` database nodes (core/orchestration.py)."""
        settings = load_settings(stack_config(self.stack, self.overrides(count)))
        step = next(s for s in plan_steps(settings, plan_hosts(settings)) if s.name == "couchdb-cluster")
        assert step.host == self.ctxs[0].host
        return step.create

    def run(self, count: int, command: str | None = None, extra: str = "", env: dict | None = None):
        nodes = self.nodes[:count]
        install = [n for n in nodes if n.fqdn not in self.installed]
        setup = node_setup(self.tmp / "stage", nodes, install, extra)
        self.installed |= {n.fqdn for n in install}
        before = len(requests(self.host))
        run = self.host.run(command or self.command(count), setup=setup,
                            env={"RETRY_SECONDS": "0", "FAKE_COUCHDB_WAIT": "1", **(env or {})})
        return run, requests(self.host)[before:]

    def runtime_ini(self, i: int) -> str:
        return self.host.file(self.nodes[i - 1].etc + "/local.d/zz-runtime.ini")


def membership(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


# ----- (2) install-database.sh on a fake host ------------------------------------------------------

# What the couchdb package does to the files this test looks at, from apache/couchdb-pkg main @ 94815dd9:
# debian/couchdb.config (run again by the postinst) copies a -setcookie found in vm.args into debconf;
# debian/couchdb.postinst configure writes the debconf cookie into vm.args in every mode, adds a
# loopback inet_dist_use_interface when missing, and hands /opt/couchdb/etc/* and local.d/* to couchdb.
# Every run of the bootstrap installs it again (dpkg-query says it is not installed): an upgrade each time.
APT_GET = r"""#!/bin/bash
echo "apt-get $*" >> "$STUB_STATE/calls.log"
[[ " $* " == *" install "* && " $* " == *" couchdb "* ]] || exit 0
[[ " $* " == *" -o Dpkg::Options::=--force-confold "* ]] || { echo "stand-in: a conffile prompt without --force-confold" >&2; exit 1; }
db_get() { local out; out=$(echo "GET $1" | debconf-communicate couchdb); [ "${out%% *}" = 0 ] && printf '%s' "${out#0}" | sed 's/^ //'; return 0; }
# debian/couchdb.config: the readback
if [ -e /opt/couchdb/etc/vm.args ]; then
  cookie="$(grep '^-setcookie' /opt/couchdb/etc/vm.args | cut -d ' ' -f 2 | sed -e 's/^[[:blank:]]*//' -e 's/[[:blank:]]*$//' | sed -e 's/^\x27*//' -e 's/\x27*$//')"
  if [ -n "$cookie" ]; then echo "couchdb couchdb/cookie string $cookie" | debconf-set-selections; fi
fi
mode=$(db_get couchdb/mode)
[ "$mode" = none ] || { echo "stand-in: couchdb/mode '$mode' would prompt (or loop) under the noninteractive frontend" >&2; exit 1; }
# unpack: vm.args and local.ini are conffiles (kept), default.ini is not
install -d /opt/couchdb/etc/default.d /opt/couchdb/etc/local.d /opt/couchdb/bin /var/log/couchdb
cat > /opt/couchdb/etc/default.ini <<'EOF'
__DEFAULT_INI__
EOF
[ -e /opt/couchdb/etc/local.ini ] || printf '__LOCAL_INI__' > /opt/couchdb/etc/local.ini
[ -e /opt/couchdb/etc/vm.args ] || printf '%s\n' '-name couchdb@127.0.0.1' '# -setcookie' '-kernel inet_dist_use_interface {127,0,0,1}' '+Bd -noinput' > /opt/couchdb/etc/vm.args
[ -e /etc/default/couchdb ] || echo 'ERL_EPMD_ADDRESS=127.0.0.1' > /etc/default/couchdb
# debian/couchdb.postinst configure
if ! getent passwd couchdb > /dev/null; then
  adduser --system --quiet --home /opt/couchdb --no-create-home --disabled-login --disabled-password --shell /bin/bash --group --gecos "CouchDB Administrator" couchdb
fi
cookie=$(db_get couchdb/cookie)
escaped_cookie=$(printf '%s' "$cookie" | sed 's:\\:\\\\:g')
sed -i "/^[# ]*-setcookie/c\-setcookie '${escaped_cookie}'" /opt/couchdb/etc/vm.args
if ! grep -q '^-setcookie' /opt/couchdb/etc/vm.args; then printf -- '-setcookie %s\n' "'${cookie}'" >> /opt/couchdb/etc/vm.args; fi
if ! grep -q '^-kernel inet_dist_use_interface' /opt/couchdb/etc/vm.args; then echo "-kernel inet_dist_use_interface '{127,0,0,1}'" >> /opt/couchdb/etc/vm.args; fi
for i in "/opt/couchdb/etc
  /opt/couchdb/etc/*
  /opt/couchdb/etc/default.d/*
  /opt/couchdb/etc/local.d/*
  /var/log/couchdb"
do
  chown couchdb:couchdb $i >/dev/null 2>&1 || true
done
find /opt/couchdb/etc -name '*.ini' -o -name vm.args -exec chmod 0640 {} \;
chmod 0750 /var/log/couchdb
echo "apt-get: couchdb installed (mode $mode)" >> "$STUB_STATE/calls.log"
""".replace("__DEFAULT_INI__", DEFAULT_INI.strip()).replace("__LOCAL_INI__", SHIPPED_LOCAL_INI.replace("\n", "\\n"))
# The data volume: data-volume.sh runs for real on loop devices in tests/test_data_volume.py; here a
# stand-in leaves /srv/couchdb as a mounted volume would (an empty directory).
DATA_VOLUME = "#!/bin/bash\nmkdir -p /srv/couchdb\necho \"data-volume.sh $*\" >> \"$STUB_STATE/calls.log\"\n"
DISK_SHIMS: dict[str, str] = {}


def shim_dir(tmp: Path) -> Path:
    shims = tmp / "shims"
    shims.mkdir(exist_ok=True)
    for name, text in {**DISK_SHIMS, "apt-get": APT_GET}.items():
        (shims / name).write_text(text)
        (shims / name).chmod(0o755)
    return shims


def install_host(tmp: Path, ctx: HostContext) -> tuple[FakeHost, str, dict]:
    """A fake database host as cloud-init leaves it: host.env and the rendered files in place."""
    host = FakeHost(tmp, {})
    (tmp / "host.env").write_text(render_template("host.env.j2", ctx))
    staged = stage_files(rendered_files(ctx), tmp / "files")
    (tmp / "srv").mkdir()
    # /srv and /run are not overlaid: a directory of the test's and a tmpfs stand in for them
    (tmp / "data-volume.sh").write_text(DATA_VOLUME)
    setup = f"""set -e
install -m 0755 {CLOUD_INIT_DIR}/scripts/install-database.sh /opt/kazoo-bootstrap/
install -m 0755 {tmp}/data-volume.sh /opt/kazoo-bootstrap/
mkdir -p /etc/kazoo-bootstrap/files
cp -a --no-preserve=ownership {staged}/. /etc/kazoo-bootstrap/files/
mount --bind {tmp}/srv /srv
mount -t tmpfs tmpfs /run"""
    env = {"PATH": f"{shim_dir(tmp)}:{STUBS}:/usr/sbin:/usr/bin:/sbin:/bin", "RETRY_SECONDS": "0"}
    return host, setup, env


STAT = ("/opt/couchdb/etc/local.d/10-kazoo.ini /opt/couchdb/etc/kazoo.vm.args /opt/couchdb/etc/local.d/zz-runtime.ini "
        "/srv/couchdb/data /etc/default/couchdb /etc/systemd/system/couchdb.service.d/kazoo.conf")


def stat_lines(stdout: str) -> dict[str, str]:
    return {line.split()[-1]: " ".join(line.split()[1:-1]) for line in stdout.splitlines() if line.startswith("STAT ")}


@needs_root
def test_install_database_keeps_the_cookie_out_of_debconf_and_leaves_a_writable_last_file(tmp_path):
    ctx = contexts("aws-maximal", {"sources": {"couchdb": {"repo": "debian"}}})[0]
    host, setup, env = install_host(tmp_path, ctx)
    show = f"for f in {STAT}; do stat -c 'STAT %U:%G %a %n' $f; done"
    # as bootstrap.sh runs it: the install, then (its last step) configure.sh
    first = host.run(f"/opt/kazoo-bootstrap/install-database.sh && /opt/kazoo-bootstrap/configure.sh files && {show}",
                     setup=setup, env=env)
    assert first.returncode == 0, first.stderr
    assert "apt-get: couchdb installed (mode none)" in host.calls
    assert [c for c in host.calls if "install" in c and "couchdb" in c and c.startswith("apt-get -o")]
    owners = stat_lines(first.stdout)
    assert owners["/opt/couchdb/etc/local.d/10-kazoo.ini"] == "root:couchdb 640"
    assert owners["/opt/couchdb/etc/kazoo.vm.args"] == "root:couchdb 640"
    assert owners["/opt/couchdb/etc/local.d/zz-runtime.ini"] == "couchdb:couchdb 640"
    assert owners["/srv/couchdb/data"] == "couchdb:couchdb 750"
    # the package's own /etc/default/couchdb, untouched: with -start_epmd false its address is unused
    assert host.file("/etc/default/couchdb") == "ERL_EPMD_ADDRESS=127.0.0.1\n"
    # the host's epmd is up before the package's postinst starts CouchDB
    calls = host.calls
    assert calls.index("systemctl enable --now epmd.socket") < calls.index("apt-get: couchdb installed (mode none)")
    # the package's own vm.args: the empty debconf cookie, which nothing reads (COUCHDB_ARGS_FILE)
    assert "-setcookie ''" in host.file("/opt/couchdb/etc/vm.args")

    # CouchDB writes to the last file of its chain, as couchdb; a second run (an upgrade, for the
    # package stand-in) keeps what it wrote, and changes no owner
    written = "\n[couchdb]\nuuid = written-by-couchdb\n"
    again = host.run(f"runuser -u couchdb -- sh -c 'printf \"{written}\" >> {RUNTIME_INI}' && "
                     f"/opt/kazoo-bootstrap/install-database.sh && /opt/kazoo-bootstrap/configure.sh files && {show}",
                     setup=setup, env=env)
    assert again.returncode == 0, again.stderr
    assert "created" not in again.stderr
    # (the package's postinst handed the rendered files to couchdb:couchdb; configure.sh gave them back)
    assert host.file(RUNTIME_INI).endswith(written)
    assert stat_lines(again.stdout) == owners

    # debconf: mode none, no cookie, no password, in the world-readable config.dat or anywhere else
    config_dat = host.file("/var/cache/debconf/config.dat")
    assert re.search(r"Name: couchdb/mode\nTemplate: couchdb/mode\nValue: none\n", config_dat)
    assert "couchdb/cookie" not in config_dat
    holding_cookie, holding_password = set(), set()
    for top in ("etc", "opt", "var"):
        for path in (tmp_path / "ovl" / top / "u").rglob("*"):
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                name = "/" + top + "/" + str(path.relative_to(tmp_path / "ovl" / top / "u"))
                if COOKIE.encode() in data:
                    holding_cookie.add(name)
                if PASSWORD.encode() in data:
                    holding_password.add(name)
    assert holding_cookie == {COOKIE_FILE, "/etc/kazoo-bootstrap/files" + COOKIE_FILE}
    assert holding_password == {"/etc/kazoo-bootstrap/host.env"}


@needs_root
def test_what_install_database_leaves_boots_and_clusters(tmp_path):
    """Three database hosts, each installed by install-database.sh (one fake host, each node's
    /opt/couchdb, /etc/kazoo-bootstrap and /srv bound over the real paths in turn), then booted by
    the stand-in from exactly what was installed and clustered by couchdb-cluster.sh."""
    ctxs = contexts("aws-maximal", {"sources": {"couchdb": {"repo": "debian"}}})
    host = FakeHost(tmp_path, {})
    (tmp_path / "host.env").write_text(render_template("host.env.j2", ctxs[0]))
    (tmp_path / "data-volume.sh").write_text(DATA_VOLUME)
    lines = ["set -e", "mount -t tmpfs tmpfs /run",
             f"install -m 0755 {CLOUD_INIT_DIR}/scripts/install-database.sh /opt/kazoo-bootstrap/",
             f"install -m 0755 {tmp_path}/data-volume.sh /opt/kazoo-bootstrap/"]
    hosts = []
    for i, ctx in enumerate(ctxs, 1):
        node = tmp_path / "node" / ctx.host.name
        staged = node / "etc" / "files"
        for path, (content, mode) in rendered_files(ctx).items():
            target = staged / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            target.chmod(int(mode, 8))
        (node / "etc" / "host.env").write_text(render_template("host.env.j2", ctx))
        (node / "srv").mkdir()
        root = f"/opt/nodes/{ctx.host.name}"
        lines += [
            f"mkdir -p {root}/couchdb /opt/couchdb",
            f"mount --bind {node}/etc /etc/kazoo-bootstrap",
            f"mount --bind {node}/srv /srv",
            f"mount --bind {root}/couchdb /opt/couchdb",
            "/opt/kazoo-bootstrap/install-database.sh",
            "/opt/kazoo-bootstrap/configure.sh files",
            "umount /opt/couchdb /srv /etc/kazoo-bootstrap",
        ]
        hosts.append(f"127.0.0.{i} {ctx.host.fqdn}")
    lines.append(f"printf '%s\\n' {' '.join(map(shlex.quote, hosts))} > /etc/hosts")  # after configure.sh's
    args_file = re.search(r"COUCHDB_ARGS_FILE=(\S+)", files(ctxs[0])[DROP_IN]).group(1)
    starts = [f"{FAKE} start --etc /opt/nodes/{c.host.name}/couchdb/etc --home /opt/nodes/{c.host.name}/couchdb "
              f"--args-file /opt/nodes/{c.host.name}/couchdb{args_file.removeprefix('/opt/couchdb')}" for c in ctxs]
    setup = "\n".join(lines + ["mount --bind /opt/nodes/db1/couchdb /opt/couchdb"] + starts)
    env = {"PATH": f"{shim_dir(tmp_path)}:{STUBS}:/usr/sbin:/usr/bin:/sbin:/bin", "RETRY_SECONDS": "0", "FAKE_COUCHDB_WAIT": "1"}
    command = next(s for s in plan_steps(ctxs[0].settings, ctxs[0].plan) if s.name == "couchdb-cluster").create
    run = host.run(command, setup=setup, env=env)
    assert run.returncode == 0, run.stderr
    fqdns = [f"couchdb@{c.host.fqdn}" for c in ctxs]
    assert membership(run.stdout) == {"all_nodes": fqdns, "cluster_nodes": fqdns}
    for ctx in ctxs[1:]:  # finish_cluster's syncs landed in the file install-database.sh made
        runtime = host.file(f"/opt/nodes/{ctx.host.name}/couchdb/etc/local.d/zz-runtime.ini")
        assert "[admins]\nkazoo = -pbkdf2:sha256-" in runtime and PASSWORD not in runtime


# ----- (3) couchdb-cluster.sh on a fake host, against three (then four) fake nodes ------------------

@needs_root
def test_cluster_forms_then_changes_nothing_then_grows(tmp_path):
    cluster = Cluster(tmp_path, count=4)
    fqdns = [n.fqdn for n in cluster.nodes]
    run, seen = cluster.run(3)
    assert run.returncode == 0, run.stderr
    # every node is "cluster enabled" from boot (bind_address + admin in 10-kazoo.ini): no enable_cluster
    assert posts(seen) == [("add_node", fqdns[1]), ("add_node", fqdns[2]), ("finish_cluster", None)]
    assert [e["status"] for e in seen if e["method"] == "POST" and e["node"].endswith(fqdns[0])] == [201, 201, 201]
    members = [f"couchdb@{f}" for f in fqdns[:3]]
    assert membership(run.stdout) == {"all_nodes": members, "cluster_nodes": members}
    # the syncs landed in the other nodes' runtime files: the same hash as rendered, no plaintext
    rendered = {(s, k): v for s, k, v in fake_couchdb.parse_ini(files(cluster.ctxs[0])[LOCAL_INI])}
    for i in (2, 3):
        synced = {(s, k): v for s, k, v in fake_couchdb.parse_ini(cluster.runtime_ini(i))}
        assert synced == {key: rendered[key] for key in (("admins", "kazoo"), ("couchdb", "uuid"), ("chttpd_auth", "secret"))}
    assert PASSWORD not in cluster.runtime_ini(2)

    again, seen = cluster.run(3)
    assert again.returncode == 0, again.stderr
    assert posts(seen) == [] and "cluster already finished" in again.stderr
    assert not [e for e in seen if e["method"] != "GET"]

    grown, seen = cluster.run(4)
    assert grown.returncode == 0, grown.stderr
    # the new node joins; finish_cluster runs again to copy admin, uuid and secret to it, then says
    # the cluster was finished (400, which is fine)
    assert posts(seen) == [("add_node", fqdns[3]), ("finish_cluster", None)]
    assert [e["status"] for e in seen if e.get("action") == "finish_cluster"] == [400]
    members = [f"couchdb@{f}" for f in fqdns]
    assert membership(grown.stdout) == {"all_nodes": members, "cluster_nodes": members}
    assert "[admins]\nkazoo = -pbkdf2:sha256-" in cluster.runtime_ini(4)


@needs_root
def test_a_single_node_finishes_once(tmp_path):
    """n = 1 (hetzner-single): _cluster_setup reports single_node_* states (setup_httpd.erl), and
    finish_cluster creates the system databases all the same."""
    cluster = Cluster(tmp_path, count=1, stack="hetzner-single")
    run, seen = cluster.run(1)
    assert run.returncode == 0, run.stderr
    assert "single_node_disabled" in run.stderr and posts(seen) == [("finish_cluster", None)]
    assert membership(run.stdout)["cluster_nodes"] == [f"couchdb@{cluster.nodes[0].fqdn}"]
    again, seen = cluster.run(1)
    assert again.returncode == 0, again.stderr
    assert "single_node_enabled" in again.stderr and posts(seen) == []


@needs_root
def test_a_node_that_never_answers_stops_the_run(tmp_path):
    cluster = Cluster(tmp_path)
    db3 = cluster.nodes[2].fqdn  # named, resolvable, not started
    run, seen = cluster.run(2, command=cluster.command(3), extra=f"echo '127.0.0.3 {db3}' >> /etc/hosts")
    assert run.returncode != 0
    assert f"CouchDB on {cluster.nodes[2].fqdn} does not answer on port 5984" in run.stderr
    assert posts(seen) == [("add_node", cluster.nodes[1].fqdn)]


@needs_root
def test_a_wrong_password_fails_at_once_and_clearly(tmp_path):
    cluster = Cluster(tmp_path, password="NotTheClusterPassword0000000000x")
    run, seen = cluster.run(3)
    assert run.returncode != 0
    assert "refused the admin credentials (401" in run.stderr and "COUCHDB_PASSWORD" in run.stderr
    logins = [e for e in seen if e.get("user")]
    assert [e["status"] for e in logins] == [401]  # one try: no step towards the lockout (5)
    assert "NotTheClusterPassword" not in run.stdout + run.stderr


@needs_root
def test_a_locked_out_client_is_told_so(tmp_path):
    cluster = Cluster(tmp_path)
    wrong = "for i in 1 2 3 4 5; do curl -s -o /dev/null -u kazoo:wrong http://127.0.0.1:5984/_all_dbs; done; "
    run, seen = cluster.run(3, command=wrong + cluster.command(3))
    assert run.returncode != 0
    assert "refused the admin (403" in run.stderr and "locked" in run.stderr
    assert [e["status"] for e in seen if e.get("user")] == [401] * 5 + [403]


@needs_root
@pytest.mark.parametrize("runtime", ["root:couchdb 0640", "absent"])
def test_a_node_that_cannot_write_its_last_ini_file_fails_the_run(tmp_path, runtime):
    """The defect of the last review: CouchDB writes finish_cluster's syncs to the last file of each
    node's chain. Root-owned (as configure.sh installs rendered files), or missing so that the
    rendered 10-kazoo.ini is last, it cannot: 500, and the script must fail, not report a cluster."""
    cluster = Cluster(tmp_path)
    cluster.nodes[1].runtime = runtime
    run, seen = cluster.run(3)
    assert run.returncode != 0
    assert "finish_cluster: 500" in run.stderr and "unable to sync admin passwords" in run.stderr
    assert "zz-runtime.ini" in run.stderr
    assert [e["status"] for e in seen if e.get("action") == "finish_cluster"] == [500]
    last = cluster.nodes[1].etc + ("/local.d/zz-runtime.ini" if runtime != "absent" else "/local.d/10-kazoo.ini")
    assert "[couchdb]\nuuid" not in cluster.host.file(last).split("[admins]")[-1]


@needs_root
def test_a_node_that_refuses_add_node_is_not_taken_for_a_member(tmp_path):
    """add_node answers 201 when the other node refused the login (setup.erl add_node_int returns
    the reply, setup_httpd's `_ -> ok`): the script checks /_membership and stops."""
    other = {**SECRETS, "couchdb_password": "AnotherPassword0000000000000000x"}
    cluster = Cluster(tmp_path)
    cluster.nodes[2] = Node(contexts("aws-maximal", secrets=other)[2], "127.0.0.3", cluster.nodes[2].etc)
    run, seen = cluster.run(3)
    assert run.returncode != 0
    assert f"couchdb@{cluster.nodes[2].fqdn} did not join: add_node answered 201" in run.stderr
    assert [(e["node"].split("@")[1][:3], e["status"]) for e in seen if e["method"] == "POST"] == [
        ("db2", 201), ("db1", 201), ("db3", 401), ("db1", 201)]
    assert posts(seen) == [("add_node", cluster.nodes[1].fqdn), ("add_node", cluster.nodes[2].fqdn)]  # no finish


@needs_root
def test_a_node_that_connects_late_is_waited_for(tmp_path):
    """finish_cluster answers 500 "waiting for nodes to connect" while a node is still starting
    (setup.erl wait_connected/0); the script tries again (up to 5 times) instead of failing."""
    cluster = Cluster(tmp_path)
    late = f"couchdb@{cluster.nodes[2].fqdn}"
    run, seen = cluster.run(3, env={"FAKE_COUCHDB_LATE": f"{late}:2.5"})
    assert run.returncode == 0, run.stderr
    assert "finish_cluster: not every node is connected yet (1/5)" in run.stderr
    finishes = [e["status"] for e in seen if e.get("action") == "finish_cluster"]
    assert finishes[0] == 500 and finishes[-1] == 201, finishes
    members = [f"couchdb@{n.fqdn}" for n in cluster.nodes[:3]]
    assert membership(run.stdout) == {"all_nodes": members, "cluster_nodes": members}


def test_a_node_with_another_cookie_is_caught(tmp_path):
    """add_node hands the coordinator's cookie to the node in memory only (setup.erl receive_cookie):
    the cluster forms, and falls apart at the node's next start. The next run says so."""
    other = {**SECRETS, "couchdb_cookie": "AnotherCookieY5tg7Uj8Ik9Ol0Pq1Aw2Se3Dr4Ft6"}
    cluster = Cluster(tmp_path)
    cluster.nodes[2] = Node(contexts("aws-maximal", secrets=other)[2], "127.0.0.3", cluster.nodes[2].etc)
    first, _ = cluster.run(3)
    assert first.returncode == 0, first.stderr
    restarted, _ = cluster.run(3)
    assert restarted.returncode != 0
    assert f"couchdb@{cluster.nodes[2].fqdn} is a member but not connected" in restarted.stderr


# ----- (4) no secret on a command line while the script runs ---------------------------------------

# the curl shim records each curl's argv exactly; PROC_WATCH (tests/fakehost.py) every process's
CURL_SHIM = """#!/bin/bash
{ printf '%s\\0' "$@"; printf '\\n'; } >> "$STUB_STATE/curl-argv"
exec {curl} "$@"
"""


@needs_root
def test_no_secret_on_any_command_line(tmp_path):
    curl = shutil.which("curl")
    shims = tmp_path / "argv-shims"
    shims.mkdir()
    (shims / "curl").write_text(CURL_SHIM.replace("{curl}", curl))
    (shims / "curl").chmod(0o755)
    (tmp_path / "watch.py").write_text(PROC_WATCH)
    cluster = Cluster(tmp_path)
    watch = f"{PY} {tmp_path}/watch.py {tmp_path}/state/argv.log & sleep 0.2"
    run, _ = cluster.run(3, extra=watch, env={"PATH": f"{shims}:{STUBS}:/usr/sbin:/usr/bin:/sbin:/bin"})
    assert run.returncode == 0, run.stderr
    curls = (tmp_path / "state" / "curl-argv").read_text().splitlines()
    sampled = (tmp_path / "state" / "argv.log").read_text()
    assert len(curls) >= 10 and any("-K" in c for c in curls)
    assert "couchdb-cluster.sh" in sampled and "fake_couchdb.py serve" in sampled  # it did look
    admin_hash = fake_couchdb.parse_ini(files(cluster.ctxs[0])[LOCAL_INI])
    secrets = [PASSWORD, COOKIE] + [v for s, k, v in admin_hash if (s, k) in (("admins", "kazoo"), ("chttpd_auth", "secret"))]
    for secret in secrets:
        assert secret not in "\n".join(curls), "a secret in curl's argv"
        assert secret not in sampled, "a secret in some process's argv"


# ----- the stand-in itself: CouchDB's answers, failures included -----------------------------------

@needs_root
def test_the_fake_couchdb_answers_as_couchdb_does(tmp_path):
    cluster = Cluster(tmp_path)
    db1, db2 = cluster.nodes[0].fqdn, cluster.nodes[1].fqdn
    api = "http://127.0.0.1:5984"
    creds = f"-u kazoo:{PASSWORD}"
    probe = "\n".join([
        f"c() {{ echo \"== $1\"; shift; curl -s -w ' %{{http_code}}\\n' \"$@\"; }}",
        f"c anonymous {api}/_all_dbs",
        f"c wrong -u kazoo:nope {api}/_membership",
        f"c unknown-user -u bob:{PASSWORD} {api}/_membership",
        f"c up {api}/_up",
        f"c no-ctype {creds} -X POST -d '{{\"action\":\"finish_cluster\"}}' {api}/_cluster_setup",
        f"c enable {creds} -H 'Content-Type: application/json' -d '{{\"action\":\"enable_cluster\",\"node_count\":3}}' {api}/_cluster_setup",
        f"c not-json {creds} -H 'Content-Type: application/json' -d '[1]' {api}/_cluster_setup",
        f"c add {creds} -H 'Content-Type: application/json' -d '{{\"action\":\"add_node\",\"host\":\"{db2}\",\"port\":5984,\"username\":\"kazoo\",\"password\":\"{PASSWORD}\"}}' {api}/_cluster_setup",
        f"c add-again {creds} -H 'Content-Type: application/json' -d '{{\"action\":\"add_node\",\"host\":\"{db2}\",\"port\":5984,\"username\":\"kazoo\",\"password\":\"{PASSWORD}\"}}' {api}/_cluster_setup",
        f"c add-refused {creds} -H 'Content-Type: application/json' -d '{{\"action\":\"add_node\",\"host\":\"{cluster.nodes[2].fqdn}\",\"port\":5984,\"username\":\"kazoo\",\"password\":\"wrong\"}}' {api}/_cluster_setup",
        f"c add-nobody {creds} -H 'Content-Type: application/json' -d '{{\"action\":\"add_node\",\"host\":\"127.0.0.9\",\"port\":5984,\"username\":\"kazoo\",\"password\":\"x\"}}' {api}/_cluster_setup",
        f"c membership {creds} {api}/_membership",
        f"c missing-db {creds} {api}/accounts/_all_docs",
        f"c all-dbs {creds} {api}/_all_dbs",
        f"c accounts {creds} {api}/accounts/_all_docs",
        f"c config {creds} {api}/_node/_local/_config/cluster/n",
    ])
    seed = f"{FAKE} seed --node couchdb@{db1} --dbs 21 --accounts 0123456789abcdef0123456789abcdef"
    run, _ = cluster.run(3, command=probe.replace(f"c all-dbs", f"{seed}\nc all-dbs"))
    assert run.returncode == 0, run.stderr
    answers = {name: (int(status), json.loads(body)) for name, body, status in re.findall(r"== (\S+)\n(.*)\n (\d+)", run.stdout)}

    def answer(name):
        return answers[name]

    # couch_httpd_auth / chttpd_auth_request.erl / chttpd.erl error_info
    assert answer("anonymous") == (401, {"error": "unauthorized", "reason": "You are not a server admin."})
    assert answer("wrong") == (401, {"error": "unauthorized", "reason": "Name or password is incorrect."})
    assert answer("unknown-user")[0] == 401
    assert answer("up") == (200, {"status": "ok", "seeds": {}})
    # couch_httpd:validate_ctype/2 -> {bad_ctype, ...} -> 415; setup_httpd get_body
    assert answer("no-ctype") == (415, {"error": "bad_content_type", "reason": "Content-Type must be application/json"})
    assert answer("enable") == (400, {"error": "bad_request", "reason": "Cluster is already enabled"})
    assert answer("not-json")[0] == 400
    # setup.erl add_node: 201, then the conflict on the node's doc; a refusal by the other node is 201 too
    assert answer("add") == (201, {"ok": True})
    assert answer("add-again") == (409, {"error": "conflict", "reason": "Document update conflict."})
    assert answer("add-refused") == (201, {"ok": True})
    assert answer("add-nobody") == (400, {"error": "bad_request", "reason": "Add node failed. Invalid Host and/or Port."})
    assert answer("membership")[1]["cluster_nodes"] == sorted([f"couchdb@{db1}", f"couchdb@{db2}"])
    assert answer("missing-db") == (404, {"error": "not_found", "reason": "Database does not exist."})
    status, dbs = answer("all-dbs")
    assert status == 200 and len(dbs) == 22 and "accounts" in dbs
    status, docs = answer("accounts")
    assert status == 200 and [r["id"] for r in docs["rows"]] == ["0123456789abcdef0123456789abcdef", "_design/accounts"]
    assert answer("config") == (200, "3")


@needs_root
@pytest.mark.parametrize("case,reason", [
    ("unreadable", "{error,eacces} reading /opt/fake-couchdb"),  # config.erl read_ini_file: a crash at boot
    ("no-admin", "No Admin Account Found, aborting startup."),  # couch_sup.erl assert_admins/0
    ("cookie-readable", "must be accessible by owner only"),  # OTP auth (Debian 12's OTP 25, run)
])
def test_the_fake_couchdb_refuses_to_boot_as_couchdb_does(tmp_path, case, reason):
    cluster = Cluster(tmp_path)
    node = cluster.nodes[1]
    if case == "unreadable":
        node.runtime = "root:root 0640"
    start = f"{FAKE} start --etc {node.etc} --args-file {node.args_file} --home {node.home}"
    setup = node_setup(tmp_path / "stage", [node], True).replace("\n" + start, "")
    if case == "no-admin":
        setup += f"\nsed -i '/^\\[admins\\]/,$d' {node.etc}/local.d/10-kazoo.ini"
    if case == "cookie-readable":
        setup += f"\nchmod 0440 {node.home}/.erlang.cookie"
    run = cluster.host.run(start, setup=setup)
    assert run.returncode != 0 and reason in run.stderr, run.stderr
