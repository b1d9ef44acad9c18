"""The rendered bootstrap, checked by the real tools: cloud-init's schema, shellcheck, haproxy -c,
nft -c, a real RabbitMQ on loopback; and a wiring table: each host names exactly the peers it needs."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.bootstrap import CLOUD_INIT_DIR, HostContext, rendered_files
from core.user_data import USER_DATA_LIMITS, decode_user_data
from core.plan import plan_hosts
from core.roles import Role
from core.settings import load_settings
from harness import run_stack_file, stack_config

STACKS = [f"{c}-{l}" for c in ("hetzner", "aws") for l in ("single", "dual", "maximal")]
SECRETS = {
    "erlang_cookie": "E" * 48,
    "couchdb_cookie": "C" * 48,
    "couchdb_password": "couchpass0123456789abcdefghijklm",
    "rabbitmq_password": "rabbitpass0123456789abcdefghijkl",
    "kamailio_db_password": "kamailiopass0123456789abcdefghij",
}


def need(tool: str) -> str:
    path = shutil.which(tool) or next((p for p in (f"/usr/sbin/{tool}", f"/sbin/{tool}") if os.path.exists(p)), None)
    if path is None:
        pytest.fail(f"{tool} is not installed: run .ci/run, which installs the test tools")
    return path


def contexts(stack: str):
    settings = load_settings(stack_config(stack))
    plan = plan_hosts(settings)
    return [HostContext(h, plan, settings, public_ip="198.51.100.7", secrets=SECRETS) for h in plan.hosts]


def files_of(stack: str, name: str) -> dict[str, str]:
    ctx = next(c for c in contexts(stack) if c.host.name == name)
    return {path: content for path, (content, _) in rendered_files(ctx).items()}


# ----- user-data as the program hands it to the clouds ------------------------------------------

@pytest.fixture(scope="module")
def user_data(tmp_path_factory):
    """{(stack, host): (decoded text, encoded form)} taken from the program's own registrations."""
    found = {}
    for stack in STACKS:
        result = run_stack_file(stack)
        for r in result.registrations:
            if r.type == "hcloud:index/server:Server":
                found[(stack, r.name)] = r.inputs["userData"]
            elif r.type == "aws:ec2/instance:Instance":
                found[(stack, r.name)] = r.inputs["userDataBase64"]
    return {key: (decode_user_data(encoded), encoded) for key, encoded in found.items()}


def test_every_host_user_data_passes_cloud_init_schema(user_data, tmp_path):
    cloud_init = need("cloud-init")
    assert len(user_data) == 28
    for (stack, host), (text, _) in user_data.items():
        path = tmp_path / f"{stack}-{host}.yaml"
        path.write_text(text)
        run = subprocess.run([cloud_init, "schema", "-c", str(path)], capture_output=True, text=True)
        assert run.returncode == 0, f"{stack}/{host}: {run.stdout}{run.stderr}"
        assert "runcmd" in text and "/opt/kazoo-bootstrap/bootstrap.sh" in text


def test_user_data_within_cloud_limits(user_data, capsys):
    largest = {}
    for (stack, host), (_, encoded) in user_data.items():
        cloud = stack.split("-")[0]
        # AWS counts the raw (gzipped) bytes before its own base64; Hetzner counts the string.
        size = len(base64.b64decode(encoded)) if cloud == "aws" else len(encoded)
        assert size <= USER_DATA_LIMITS[cloud], (stack, host, size)
        largest[cloud] = max(largest.get(cloud, (0, "")), (size, f"{stack}/{host}"))
    with capsys.disabled():
        print(f"\nlargest user-data: {largest}")


def test_user_data_carries_only_its_roles(user_data):
    text, _ = user_data[("aws-maximal", "proxy1")]
    assert "install-proxy.sh" in text and "install-database.sh" not in text
    assert "path: /etc/kazoo-bootstrap/files/etc/kazoo/kamailio/local.cfg" in text
    for other in ("/opt/couchdb/", "/etc/rabbitmq/", "/etc/haproxy/", "/etc/kazoo/core/"):
        assert f"path: /etc/kazoo-bootstrap/files{other}" not in text


# ----- scripts and configuration files, by their own tools -------------------------------------

def test_scripts_pass_shellcheck():
    shellcheck = need("shellcheck")
    scripts = sorted((CLOUD_INIT_DIR / "scripts").glob("*.sh"))
    assert len(scripts) >= 9
    for script in scripts:
        assert script.read_text().startswith("#!/bin/bash\n")
        assert "set -euo pipefail" in script.read_text(), script.name
    run = subprocess.run([shellcheck, "-x", "-P", "SCRIPTDIR", *map(str, scripts)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout


@pytest.mark.parametrize("stack,host", [("aws-maximal", "app1"), ("hetzner-single", "kazoo1")])
def test_haproxy_config_is_valid(stack, host, tmp_path):
    haproxy = need("haproxy")
    path = tmp_path / "haproxy.cfg"
    path.write_text(files_of(stack, host)["/etc/haproxy/haproxy.cfg"])
    run = subprocess.run([haproxy, "-c", "-f", str(path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    # HAProxy is for this host's own Kazoo and FreeSWITCH: loopback only (no CouchDB-with-the-
    # admin-password port on the network, were nftables ever off)
    binds = re.findall(r"^\s*bind\s+(\S+)", path.read_text(), re.M)
    assert binds and all(b.startswith("127.0.0.1:") for b in binds), binds


@pytest.mark.parametrize("stack", STACKS)
def test_nftables_rulesets_are_valid(stack, tmp_path):
    nft = need("nft")
    for ctx in contexts(stack):
        path = tmp_path / f"{ctx.host.name}.nft"
        path.write_text(rendered_files(ctx)["/etc/nftables.conf"][0])
        run = subprocess.run([nft, "-c", "-f", str(path)], capture_output=True, text=True)
        assert run.returncode == 0, f"{ctx.host.name}: {run.stderr}"


def test_nftables_default_drop_and_public_ports():
    ruleset = files_of("aws-maximal", "media1")["/etc/nftables.conf"]
    assert "policy drop;" in ruleset
    for hook in ("input", "forward"):  # nothing routed through a host either
        assert re.search(rf"type filter hook {hook} priority \S+; policy drop;", ruleset), hook
    # DHCP answers only: from a server's port 67 (the cloud's DHCP keeps the address leased)
    assert [l.split(" comment")[0].strip() for l in ruleset.splitlines() if "dport 68" in l] == ["udp sport 67 udp dport 68 accept"]
    assert re.search(r"ip saddr \{ 0\.0\.0\.0/0 \} udp dport 16384-32768 accept", ruleset)
    assert re.search(r"ip saddr \{ 203\.0\.113\.0/24 \} tcp dport 22 accept", ruleset)
    assert "dport 5984" not in ruleset  # a media host runs no CouchDB


# ----- wiring: each host names exactly the peers it needs ---------------------------------------

def ips(stack: str, role: Role) -> set[str]:
    return {c.host.private_ip for c in contexts(stack) if c.host.carries(role)}


def fqdns(stack: str, role: Role) -> set[str]:
    return {c.host.fqdn for c in contexts(stack) if c.host.carries(role)}


def nft_sources(ruleset: str, port: str) -> set[str]:
    line = next(l for l in ruleset.splitlines() if f"dport {port} accept" in l and "from" in l and "hosts" in l)
    return set(re.search(r"saddr \{ (.*?) \}", line).group(1).split(", "))


MAXIMAL = "aws-maximal"


@pytest.mark.parametrize("host", ["app1", "app2"])
def test_application_names_every_database_broker_and_media(host):
    files = files_of(MAXIMAL, host)
    haproxy = files["/etc/haproxy/haproxy.cfg"]
    # both frontends (15984 data, 15986 node-local admin) reach every node on 5984: CouchDB 3 has no 5986
    servers = re.findall(r"server db\d+ ([\d.]+):(\d+) check", haproxy)
    assert sorted(servers) == sorted([(ip, "5984") for ip in ips(MAXIMAL, Role.DATABASE)] * 2)
    config = files["/etc/kazoo/config.ini"]
    assert set(re.findall(r"amqp_uri = \"amqp://kazoo:[^@]+@([^:]+):5672\"", config)) == fqdns(MAXIMAL, Role.BROKER)
    assert config.count(f'cookie = {SECRETS["erlang_cookie"]}') == 2  # [kazoo_apps] and [ecallmgr]
    assert nft_sources(files["/etc/nftables.conf"], "24517-24518") == ips(MAXIMAL, Role.MEDIA)


@pytest.mark.parametrize("host", ["media1", "media2"])
def test_media_names_every_database_and_application(host):
    files = files_of(MAXIMAL, host)
    # FreeSWITCH fetches and stores CouchDB-held media at the 127.0.0.1:15984 URLs Kazoo gives it
    # (kazoo kz_couch_attachments.erl attachment_url, use_bigcouch_direct): every DB node behind it
    servers = re.findall(r"server db\d+ ([\d.]+):(\d+) check", files["/etc/haproxy/haproxy.cfg"])
    assert sorted(servers) == sorted([(ip, "5984") for ip in ips(MAXIMAL, Role.DATABASE)] * 2)
    db_rules = files_of(MAXIMAL, "db1")["/etc/nftables.conf"]
    media_ip = next(h.private_ip for h in plan_hosts(load_settings(stack_config(MAXIMAL))).hosts if h.name == host)
    assert any(media_ip in line for line in db_rules.splitlines() if "dport 5984 accept" in line)
    assert nft_sources(files["/etc/nftables.conf"], "8031") == ips(MAXIMAL, Role.APPLICATION)
    assert nft_sources(files["/etc/nftables.conf"], "11000") == ips(MAXIMAL, Role.PROXY)


@pytest.mark.parametrize("host", ["proxy1", "proxy2"])
def test_proxy_names_every_broker(host):
    local = files_of(MAXIMAL, host)["/etc/kazoo/kamailio/local.cfg"]
    urls = re.findall(r'#!substdef "!MY_AMQP_(\w*?)URL!amqp://kazoo:[^@]+@([^:]+):5672!g"', local)
    assert [u[0] for u in urls] == ["", "SECONDARY_"]  # defs-amqp.cfg's names
    assert {u[1] for u in urls} == fqdns(MAXIMAL, Role.BROKER)


@pytest.mark.parametrize("host", ["db1", "db2", "db3"])
def test_database_names_every_database(host):
    files = files_of(MAXIMAL, host)
    assert nft_sources(files["/etc/nftables.conf"], "4369") == ips(MAXIMAL, Role.DATABASE)
    assert nft_sources(files["/etc/nftables.conf"], "11500-11999") == ips(MAXIMAL, Role.DATABASE)
    vm_args = files["/opt/couchdb/etc/kazoo.vm.args"]
    assert f"-name couchdb@{host}." in vm_args and SECRETS["couchdb_cookie"] not in vm_args
    assert files["/opt/couchdb/.erlang.cookie"] == SECRETS["couchdb_cookie"] + "\n"  # one cookie for the cluster
    assert "n = 3" in files["/opt/couchdb/etc/local.d/10-kazoo.ini"]


def test_database_nodes_share_one_uuid():
    uuids = {re.search(r"uuid = (\w+)", files_of(MAXIMAL, h)["/opt/couchdb/etc/local.d/10-kazoo.ini"]).group(1)
             for h in ("db1", "db2", "db3")}
    assert len(uuids) == 1


def test_single_host_keeps_couchdb_copies_at_one():
    assert "n = 1" in files_of("hetzner-single", "kazoo1")["/opt/couchdb/etc/local.d/10-kazoo.ini"]


# ----- RabbitMQ itself accepts the rendered config and credentials -------------------------------

def test_rabbitmq_accepts_rendered_config_and_credentials(tmp_path):
    need("rabbitmq-server")
    files = files_of(MAXIMAL, "broker1")
    (tmp_path / "rabbitmq.conf").write_text(files["/etc/rabbitmq/rabbitmq.conf"])
    (tmp_path / "enabled_plugins").write_text(files["/etc/rabbitmq/enabled_plugins"])
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "RABBITMQ_CONFIG_FILE": str(tmp_path / "rabbitmq.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(tmp_path / "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": str(tmp_path / "mnesia"),
        "RABBITMQ_LOG_BASE": str(tmp_path / "log"),
        "RABBITMQ_NODENAME": "kazootest@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "ERL_CRASH_DUMP": str(tmp_path / "erl_crash.dump"),  # never into the repository
    }
    # Debian's /usr/sbin wrappers switch to the rabbitmq user and reset the environment: use the real ones.
    bin_dir = Path("/usr/lib/rabbitmq/bin")
    ctl = [str(bin_dir / "rabbitmqctl"), "-n", "kazootest@localhost"]
    # (in tmp_path: a VM that dies writes its erl_crash.dump into its working directory)
    server = subprocess.Popen([str(bin_dir / "rabbitmq-server")], env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while True:
            ready = subprocess.run([*ctl, "await_startup", "--timeout", "30"], env=env, capture_output=True, text=True)
            if ready.returncode == 0 or time.monotonic() > deadline or server.poll() is not None:
                break
            time.sleep(1)
        assert ready.returncode == 0, ready.stderr
        good = subprocess.run([*ctl, "authenticate_user", "kazoo", SECRETS["rabbitmq_password"]], env=env, capture_output=True, text=True)
        assert good.returncode == 0, good.stdout + good.stderr
        bad = subprocess.run([*ctl, "authenticate_user", "guest", "guest"], env=env, capture_output=True, text=True)
        assert bad.returncode != 0  # never guest
        plugins = subprocess.run([*ctl, "status"], env=env, capture_output=True, text=True).stdout
        assert "rabbitmq_consistent_hash_exchange" in plugins and "rabbitmq_management" in plugins
        # what it listens on is what the firewall matrix opens to the broker, and nothing else
        diagnostics = [str(bin_dir / "rabbitmq-diagnostics"), "-n", "kazootest@localhost", "listeners"]
        listed = subprocess.run(diagnostics, env=env, capture_output=True, text=True).stdout
        ports = {int(p) for p in re.findall(r"port: (\d+), protocol: (?:amqp|http)", listed)}
        from core.firewall import firewall_matrix, rules_for
        opened = {r.ports[0] for r in rules_for(firewall_matrix(load_settings(stack_config(MAXIMAL))), Role.BROKER)}
        assert ports == {5672, 15672} and ports <= opened, (listed, opened)
    finally:
        subprocess.run([*ctl, "stop"], env=env, capture_output=True, timeout=60)
        server.wait(timeout=30)
        subprocess.run(["epmd", "-kill"], env=env, capture_output=True)


def test_monster_ui_gets_its_nginx_site_when_configured():
    settings = load_settings(stack_config(MAXIMAL, {"sources": {"monsterUi": {"url": "https://mirror.example.com/m.tgz"}}}))
    plan = plan_hosts(settings)
    files = rendered_files(HostContext(plan.host("app1"), plan, settings, public_ip="198.51.100.7", secrets=SECRETS))
    assert "root /var/www/monster-ui;" in files["/etc/nginx/sites-enabled/monster-ui.conf"][0]
    assert "/etc/nginx/sites-enabled/monster-ui.conf" not in files_of(MAXIMAL, "app1")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")
def test_only_root_reaches_the_metadata_service_through_the_rendered_ruleset(tmp_path):
    """The ruleset of a host, in force in a network namespace of its own where a stand-in metadata
    service listens on 169.254.169.254: root gets an answer, another account is refused."""
    ruleset = tmp_path / "nftables.conf"
    ruleset.write_text(files_of("hetzner-maximal", "proxy1")["/etc/nftables.conf"])
    (tmp_path / "user-data").write_text("stand-in")
    script = f"""set -e
ip link set lo up
ip addr add 169.254.169.254/32 dev lo
nft -f {ruleset}
{sys.executable} -m http.server 80 --bind 169.254.169.254 --directory {tmp_path} >/dev/null 2>&1 &
for i in $(seq 50); do curl -fsS -o /dev/null http://169.254.169.254/user-data 2>/dev/null && break; sleep 0.1; done
echo "root: $(curl -fsS --max-time 3 http://169.254.169.254/user-data || echo refused)"
echo "nobody: $(runuser -u nobody -- curl -fsS --max-time 3 http://169.254.169.254/user-data 2>/dev/null || echo refused)"
kill %1
"""
    run = subprocess.run(["unshare", "--net", "--mount", "bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert "root: stand-in" in run.stdout and "nobody: refused" in run.stdout, run.stdout + run.stderr


def test_no_file_in_user_data_with_a_secret_is_readable_by_others(user_data):
    """host.env (0600) and every rendered file holding a secret (0640 or 0600): never world-readable,
    whatever cloud-init's default mode would be."""
    import yaml

    for (stack, host), (text, _) in user_data.items():
        files = {f["path"]: f for f in yaml.safe_load(text.split("\n", 1)[1])["write_files"]}
        assert files["/etc/kazoo-bootstrap/host.env"]["permissions"] == "0600", (stack, host)
        for path, entry in files.items():
            # the mock engine's generated secrets: <name><hex>, e.g. rabbitmqpassword1a2b... (tools/mock_engine.py)
            if re.search(r"(erlangcookie|couchdbcookie|couchdbpassword|rabbitmqpassword|kamailiodbpassword)[0-9a-f]{4}",
                         entry["content"]):
                assert int(entry["permissions"], 8) & 0o004 == 0, (stack, host, path)


def test_user_data_over_a_limit_with_gzip_is_packed_tighter_or_refused(monkeypatch):
    """encode_user_data: gzip -9 when it fits; zopfli's deflate (the same gzip format cloud-init
    reads) when only that fits; a clear error when nothing does."""
    import gzip as gz
    from core import user_data as b
    text = (CLOUD_INIT_DIR / "scripts" / "configure.sh").read_text() + (CLOUD_INIT_DIR / "scripts" / "lib.sh").read_text()
    plain = len(gz.compress(text.encode(), compresslevel=9, mtime=0))
    assert len(base64.b64decode(b.encode_user_data(text, "aws"))) == plain
    monkeypatch.setitem(b.USER_DATA_LIMITS, "aws", plain - 1)
    tight = b.encode_user_data(text, "aws")
    assert len(base64.b64decode(tight)) < plain and decode_user_data(tight) == text
    monkeypatch.setitem(b.USER_DATA_LIMITS, "aws", plain // 2)
    with pytest.raises(ValueError, match="exceeds aws's limit"):
        b.encode_user_data(text, "aws")
