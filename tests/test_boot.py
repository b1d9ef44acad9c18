"""End to end: the rendered user-data booted for real, in Debian hosts (systemd-nspawn) on private
networks of network namespaces, with the plan's static private IPs. Checked from outside the hosts.

Two "clouds", booted together:
- the single layout (kazoo1, Debian 12);
- a maximal subset: broker1, app1, media1 (Debian 12) and proxy1 on Debian 13, whose own Kamailio 6.0
  (with its kazoo and postgres modules) runs the real openkazoo/kamailio-configs 6.0 tree, fetched by
  the host from a mirror namespace (an HTTP server this test runs, serving the pinned commit from
  the upstream bundle; the stack pins the sha256 of those bytes) with PostgreSQL beside it, and
  connects over AMQP to broker1's RabbitMQ. Phones in namespaces of their own send SIP to the
  proxy's public address (on its interface, as Hetzner does).
Each cloud has an `outsider` namespace: an address in the private range that is no host of the plan
and is not in sipCidrs. CouchDB, Kazoo and FreeSWITCH come from repositories this machine cannot
reach, so the stacks skip them with the user-facing switch `bootstrap.skip`, in the open; the Debian
packages the bootstrap installs are pre-baked in the images (the bootstrap installs only what is
missing, as with any pre-baked image), so the hosts need no Debian mirror.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import nspawn
import upstream
from tls_ca import ThrowawayCA
from core.bootstrap import CLOUD_INIT_DIR, HostContext, config_bundle, render_user_data
from core.kamailio import kamailio_plan
from core.plan import Plan, plan_hosts
from core.roles import Role
from core.settings import load_settings
from harness import stack_config

pytestmark = pytest.mark.skipif(nspawn.tools_available() is not None, reason=str(nspawn.tools_available()))

MIRROR_IP, MIRROR_PORT = "10.20.255.251", 8080
MAXIMAL_DOMAIN = "maximal.hetzner.voip.example.com"  # the SIP domain of the maximal example stack
METADATA_IP = "169.254.169.254"  # the clouds' metadata service, stood in for by the mirror namespace
PHONES = "10.20.250.0/24"  # the maximal stack's sipCidrs
PHONE_IPS = {"phone": "10.20.250.10", "phone2": "10.20.250.11"}
PUBLIC_RANGE = "198.51.100.0/24"
SKIP = {"bootstrap": {"skip": ["couchdb", "kazoo", "freeswitch", "kamailio"]}}
SECRETS = {"erlang_cookie": "e2eErlangCookie", "couchdb_cookie": "e2eCouchCookie", "couchdb_password": "e2eCouchPw",
           "rabbitmq_password": "e2eRabbitPw42", "kamailio_db_password": "e2eKamailioPw"}
OUTSIDER = "10.20.255.250"  # inside network.cidr, no host of the plan, not in sipCidrs
BOOT_TIMEOUT = 420
TOOLS = Path(__file__).parent
AMQP = str(TOOLS / "amqp_login.py")


def maximal_overrides(certificate: tuple[str, str]) -> dict:
    return {
        "bootstrap": {"skip": ["couchdb", "kazoo", "freeswitch"]},
        "roles": {"proxy": {"image": "debian-13"}},
        "sipCidrs": [PHONES],
        # pike's limit per source: 100 requests per 2 s (the default, 400, leaves room for FreeSWITCH's
        # fan-out; the flood below sends 1000 in 5 s)
        "sip": {"tls": True, "antifloodRequests": 100},
        "sipTlsCertificate": certificate[0],
        "sipTlsKey": certificate[1],
        "sources": {
            "kamailio": {"repo": "debian", "version": "6.0.*"},
            "kamailioConfigs": {"url": f"http://{MIRROR_IP}:{MIRROR_PORT}/kamailio-configs.tar.gz",
                                "sha256": upstream.archive_sha256("kamailio_configs")},
        },
    }


CLOUDS = {
    "single": ("hetzner-single", SKIP, ["kazoo1"]),
    "maximal": ("hetzner-maximal", None, ["broker1", "app1", "media1", "proxy1"]),
}
SUITES = {"debian-12": "bookworm", "debian-13": "trixie"}


class Cloud:
    def __init__(self, stack: str, overrides: dict, names: list[str], workdir: Path, prefix: str):
        self.settings = load_settings(stack_config(stack, overrides))
        self.plan: Plan = plan_hosts(self.settings)
        prefixlen = int(self.settings.network.cidr.split("/")[1])
        self.network = nspawn.PrivateNetwork(prefix, prefixlen)
        self.hosts: dict[str, nspawn.Host] = {}
        self.public_ips: dict[str, str] = {}
        self.host_keys: dict[str, str] = {}  # host -> public SSH host key it was given
        self.mirror: subprocess.Popen | None = None
        for name in names:
            host = self.plan.host(name)
            public = f"198.51.100.{10 + len(self.hosts)}" if host.stable_public_ip else None
            # the public IPv4 on the interface, as Hetzner gives it
            ns = self.network.attach(name, host.private_ip, public=public, routes=(f"{METADATA_IP}/32",))
            self.public_ips[name] = public
            key_file = workdir / f"{prefix}{name}-host-key"
            nspawn.run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", host.fqdn, "-f", str(key_file))
            host_key = (key_file.read_text(), key_file.with_suffix(".pub").read_text().strip())
            self.host_keys[name] = host_key[1]
            text = render_user_data(HostContext(host, self.plan, self.settings, public, SECRETS, host_key=host_key))
            role = host.roles[0] if len(host.roles) == 1 else None
            root = nspawn.debian_root(SUITES[self.settings.image_of(role)])
            booted = nspawn.Host(name, ns, root, workdir)
            booted.seed(gzip.compress(text.encode()), host.fqdn)  # gzip, as the clouds deliver it
            self.hosts[name] = booted
        self.outsider = self.network.attach("outsider", OUTSIDER, routes=(PUBLIC_RANGE,))
        self.phones = {p: self.network.attach(p, ip, routes=(PUBLIC_RANGE,)) for p, ip in PHONE_IPS.items()}

    def serve_mirror(self, workdir: Path) -> None:
        """The upstream archives the hosts fetch, over HTTP from a namespace on the cloud's network."""
        served = workdir / "mirror"
        served.mkdir(exist_ok=True)
        (served / "kamailio-configs.tar.gz").write_bytes(upstream.archive("kamailio_configs"))
        (served / "latest").mkdir(exist_ok=True)
        (served / "latest" / "user-data").write_text("stand-in user-data with a secret\n")
        ns = self.network.attach("mirror", MIRROR_IP, public=METADATA_IP)
        self.mirror = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "http.server", str(MIRROR_PORT), "--bind", "0.0.0.0",
             "--directory", str(served)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def ns(self, name: str) -> str:
        return self.hosts[name].ns if name in self.hosts else self.phones.get(name, self.outsider)

    def amqp(self, from_ns: str, to: str, user: str, password: str) -> str:
        ip = self.plan.host(to).private_ip
        out = nspawn.run("ip", "netns", "exec", from_ns, sys.executable, AMQP, ip, "5672", user,
                         check=False, timeout=30, env={**os.environ, "AMQP_PASSWORD": password})
        return out.stdout.strip() or out.stderr.strip()

    def sip(self, from_ns: str, to_ip: str, count: int = 1, seconds: float = 0, port: int = 5060) -> tuple[int, int]:
        """(sent, answered with 200) for `count` OPTIONS from a namespace."""
        out = nspawn.run("ip", "netns", "exec", from_ns, sys.executable, str(TOOLS / "sip_flood.py"), to_ip, str(port),
                         str(count), str(seconds), timeout=60)
        sent, answered = out.stdout.split()
        return int(sent), int(answered)

    def close(self) -> None:
        for host in self.hosts.values():
            host.stop()
        if self.mirror is not None:
            self.mirror.terminate()
            self.mirror.wait(timeout=10)
        self.network.close()


@pytest.fixture(scope="module")
def clouds(tmp_path_factory):
    started = time.monotonic()
    for suite in SUITES.values():
        nspawn.debian_root(suite)
    built = time.monotonic()
    workdir = tmp_path_factory.mktemp("boot")
    tag = f"kz{os.getpid() % 100000}"
    made: dict[str, Cloud] = {}
    ca = ThrowawayCA(workdir / "ca")
    first = ca.issue(MAXIMAL_DOMAIN, 1001)
    SECRETS["sip_tls_key"] = first[1]
    try:
        made["single"] = Cloud(*CLOUDS["single"][:2], CLOUDS["single"][2], workdir, f"{tag}s-")
        # A stand-in for the openkazoo `erlang` package's /usr/local/bin/erl (OTP 26, which Debian's
        # RabbitMQ 3.10 does not run on) on the host that carries every role: RabbitMQ must not use it.
        fake_erl = made["single"].hosts["kazoo1"].upper / "usr/local/bin/erl"
        fake_erl.parent.mkdir(parents=True, exist_ok=True)
        fake_erl.write_text("#!/bin/sh\necho 'stand-in for OTP 26: RabbitMQ 3.10 cannot run here' >&2\nexit 1\n")
        fake_erl.chmod(0o755)
        made["maximal"] = Cloud(CLOUDS["maximal"][0], maximal_overrides(first), CLOUDS["maximal"][2], workdir, f"{tag}m-")
        made["maximal"].ca = ca
        made["maximal"].ca_first = first
        made["maximal"].serve_mirror(workdir)
        for cloud in made.values():  # every host boots at once, as on a cloud
            for host in cloud.hosts.values():
                host.boot()
        results = {}
        for key, cloud in made.items():
            for name, host in cloud.hosts.items():
                results[(key, name)] = host.wait_for_cloud_init(BOOT_TIMEOUT)
        print(f"\ne2e: images {built - started:.0f} s, boot of {sum(len(c.hosts) for c in made.values())} hosts "
              f"{time.monotonic() - built:.0f} s")
        yield made, results
    finally:
        for cloud in made.values():
            cloud.close()
        # nothing may outlive the test: no namespace of this run, no container process
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert tag not in left, left
        assert all(h.process is None or h.process.poll() is not None for c in made.values() for h in c.hosts.values())


HOSTS = [(key, name) for key, (_, _, names) in CLOUDS.items() for name in names]


@pytest.mark.parametrize("key,name", HOSTS)
def test_cloud_init_finished_without_error(clouds, key, name):
    made, results = clouds
    host = made[key].hosts[name]
    assert results[(key, name)]["v1"]["errors"] == [], host.diagnostics()
    fqdn = made[key].plan.host(name).fqdn
    log = host.file("/var/log/kazoo-bootstrap.log") or ""
    assert f"bootstrap of {fqdn} finished" in log, host.diagnostics()
    status = host.exec("cloud-init", "status", "--long")
    assert "status: done" in status.stdout, status.stdout + status.stderr


def test_each_host_has_a_cgroup_of_its_own(clouds):
    """The harness, not the program: hosts sharing a cgroup remove each other's unit cgroups, and a
    unit then fails to start ("Failed at step CGROUP"): cloud-init once reported done on broker1
    without running the bootstrap (cloud-config.service never ran runcmd)."""
    made, _ = clouds
    hosts = [host for cloud in made.values() for host in cloud.hosts.values()]
    cgroups = {Path(f"/proc/{host.init_pid()}/cgroup").read_text() for host in hosts}
    assert len(cgroups) == len(hosts), cgroups
    for host in hosts:
        journal = host.exec("journalctl", "-b", "--no-pager", "-q", "-o", "cat").stdout
        assert "Failed at step CGROUP" not in journal, host.name


@pytest.mark.parametrize("key,name", HOSTS)
def test_identity_is_as_planned(clouds, key, name):
    made, _ = clouds
    cloud, host = made[key], made[key].hosts[name]
    planned = cloud.plan.host(name)
    assert host.exec("hostname", "-f").stdout.strip() == planned.fqdn
    assert host.exec("hostname").stdout.strip() in (planned.name, planned.fqdn)
    # /etc/hosts: every host of the plan by private IP (peers resolve without DNS), read back as the
    # resolver reads it, not compared with the template that wrote it
    entries = [line.split() for line in host.exec("cat", "/etc/hosts").stdout.splitlines()
               if line.strip() and not line.startswith("#")]
    assert ["127.0.0.1", "localhost"] in entries
    assert sorted(e for e in entries if e[0].startswith("10.")) == sorted(
        [h.private_ip, h.fqdn, h.name] for h in cloud.plan.hosts)
    for peer in cloud.plan.hosts:
        resolved = host.exec("getent", "hosts", peer.fqdn).stdout.split()
        assert resolved[:2] == [peer.private_ip, peer.fqdn], peer.name
    assert host.exec("date", "+%Z").stdout.strip() == "UTC"
    # the bootstrap reads the planned private IP on eth0, set up from outside
    assert f"inet {planned.private_ip}/" in host.exec("ip", "-4", "-o", "addr", "show", "eth0").stdout


@pytest.mark.parametrize("key,broker,client", [("single", "kazoo1", "kazoo1"), ("maximal", "broker1", "app1")])
def test_rabbitmq_accepts_the_generated_credentials_from_an_application_host(clouds, key, broker, client):
    made, _ = clouds
    cloud = made[key]
    ns = cloud.ns(client)
    assert cloud.amqp(ns, broker, "kazoo", SECRETS["rabbitmq_password"]) == "ok"
    assert cloud.amqp(ns, broker, "kazoo", "wrong-password") == "refused"
    assert cloud.amqp(ns, broker, "guest", "guest") == "refused"


def test_the_broker_install_runs_again_without_harm(clouds):
    """Install scripts are safe to re-run: the second time RabbitMQ's user exists (change_password)."""
    made, _ = clouds
    cloud = made["maximal"]
    again = cloud.hosts["broker1"].exec("/opt/kazoo-bootstrap/install-broker.sh", timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert cloud.amqp(cloud.ns("app1"), "broker1", "kazoo", SECRETS["rabbitmq_password"]) == "ok"


# media hosts too: FreeSWITCH fetches and stores CouchDB-held media at 127.0.0.1:15984 (review A1)
@pytest.mark.parametrize("key,name", [("single", "kazoo1"), ("maximal", "app1"), ("maximal", "media1")])
def test_haproxy_listens_where_planned(clouds, key, name):
    made, _ = clouds
    host = made[key].hosts[name]
    listening = nspawn.run("ip", "netns", "exec", host.ns, "ss", "-ltnpH").stdout
    for port in ("15984", "15986"):
        assert f"127.0.0.1:{port} " in listening and "haproxy" in listening, listening
    assert host.exec("systemctl", "is-active", "haproxy").stdout.strip() == "active"


@pytest.mark.parametrize("key,name", [("single", "kazoo1"), ("maximal", "broker1")])
def test_one_epmd_per_host_held_by_systemd(clouds, key, name):
    """Review A4: epmd is erlang-base's epmd.socket, up before any Erlang program (lib.sh ensure_epmd),
    so 4369 belongs to systemd, not to a VM's unit; RabbitMQ registered with it and survives a
    restart of RabbitMQ (which takes no epmd with it)."""
    made, _ = clouds
    host = made[key].hosts[name]
    assert host.exec("systemctl", "is-active", "epmd.socket").stdout.strip() == "active"
    owners = nspawn.run("ip", "netns", "exec", host.ns, "ss", "-ltnpH", "sport = :4369").stdout
    assert owners and all('"systemd"' in line or '"epmd"' in line for line in owners.splitlines()), owners
    assert "name rabbit at port" in host.exec("epmd", "-names").stdout
    assert host.exec("systemctl", "restart", "rabbitmq-server", timeout=180).returncode == 0
    assert host.exec("systemctl", "is-active", "epmd.socket").stdout.strip() == "active"
    assert "name rabbit at port" in host.exec("epmd", "-names").stdout


@pytest.mark.parametrize("key,broker,peer", [("single", "kazoo1", "kazoo1"), ("maximal", "broker1", "app1")])
def test_host_firewall_lets_peers_in_and_keeps_others_out(clouds, key, broker, peer):
    made, _ = clouds
    cloud = made[key]
    listening = nspawn.run("ip", "netns", "exec", cloud.ns(broker), "ss", "-ltnH").stdout
    assert ":5672 " in listening and ":22 " in listening  # both listen: only nftables decides
    assert cloud.amqp(cloud.ns(peer), broker, "kazoo", SECRETS["rabbitmq_password"]) == "ok"
    assert cloud.amqp(cloud.outsider, broker, "kazoo", SECRETS["rabbitmq_password"]) == "timeout"
    if key == "maximal":  # a peer without a reason to speak AMQP (FreeSWITCH has no mod_amqp) is kept out
        assert cloud.amqp(cloud.ns("media1"), broker, "kazoo", SECRETS["rabbitmq_password"]) == "timeout"
    ip = cloud.plan.host(broker).private_ip
    ssh = nspawn.run("ip", "netns", "exec", cloud.outsider, "timeout", "5", "bash", "-c",
                     f"exec 3<>/dev/tcp/{ip}/22", check=False)
    assert ssh.returncode != 0  # SSH only from adminCidrs
    ruleset = nspawn.run("ip", "netns", "exec", cloud.ns(broker), "nft", "list", "ruleset").stdout
    assert "policy drop;" in ruleset and "amqp from application hosts" in ruleset


def test_the_orchestration_scripts_work_on_a_booted_host(clouds):
    """What `pulumi up` runs over SSH, run as the operator on kazoo1: wait for the bootstrap, push the
    configuration of the grown (dual) layout twice, report readiness."""
    made, _ = clouds
    cloud, host = made["single"], made["single"].hosts["kazoo1"]
    remote = CLOUD_INIT_DIR / "remote"

    def as_ops(script: str, *args: str, stdin: str = "") -> "subprocess.CompletedProcess":
        pid = str(host.init_pid())
        return subprocess.run(["nsenter", "-t", pid, "-m", "-u", "-i", "-n", "-p", "--", "runuser", "-u", "ops",
                               "--", "bash", "-c", script, "step", *args],
                              input=stdin, capture_output=True, text=True, timeout=180)

    sampler = CmdlineSampler(SECRETS.values())
    sampler.start()
    waited = as_ops((remote / "wait-for-bootstrap.sh").read_text())
    assert waited.returncode == 0 and "bootstrap finished on kazoo1.single" in waited.stdout, waited.stderr

    grown_settings = load_settings(stack_config("hetzner-single", {**SKIP, "layout": "dual"}))
    grown = plan_hosts(grown_settings)
    bundle = config_bundle(HostContext(grown.host("kazoo1"), grown, grown_settings, cloud.public_ips["kazoo1"], SECRETS))
    receive = (remote / "receive-config.sh").read_text()
    # A reload that fails (real systemd: a drop-in whose ExecReload fails) fails the push and leaves
    # HAProxy pending; the next push, with nothing new in it, retries it (issue 12).
    dropin = "/etc/systemd/system/haproxy.service.d/zz-e2e-fail.conf"
    assert host.exec("sh", "-c", f"mkdir -p {dropin.rsplit('/', 1)[0]} && printf '[Service]\\nExecReload=\\nExecReload=/bin/false\\n' > {dropin} "
                     "&& systemctl daemon-reload").returncode == 0
    failed = as_ops(receive, stdin=bundle)
    assert failed.returncode != 0 and "did not start with the new configuration: haproxy" in failed.stdout + failed.stderr
    assert "updated /etc/hosts" in failed.stdout and "updated /etc/haproxy/haproxy.cfg" in failed.stdout
    assert host.exec("test", "-e", "/var/lib/kazoo-bootstrap/pending/haproxy").returncode == 0
    assert host.exec("sh", "-c", f"rm {dropin} && systemctl daemon-reload").returncode == 0
    first = as_ops(receive, stdin=bundle)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "updated" not in first.stdout  # the files were put in place by the failed push
    for line in ("reload-or-restart haproxy", "configuration applied"):
        assert line in first.stdout, first.stdout
    assert "rabbitmq" not in failed.stdout + first.stdout  # its files did not change: not restarted
    assert host.exec("test", "-e", "/var/lib/kazoo-bootstrap/pending/haproxy").returncode != 0
    second = as_ops(receive, stdin=bundle)
    assert second.returncode == 0 and "updated" not in second.stdout and "restart" not in second.stdout
    assert grown.host("kazoo2").fqdn in host.exec("cat", "/etc/hosts").stdout
    assert grown.host("kazoo2").private_ip in host.exec("cat", "/etc/haproxy/haproxy.cfg").stdout
    assert cloud.amqp(cloud.ns("kazoo1"), "kazoo1", "kazoo", SECRETS["rabbitmq_password"]) == "ok"

    ready = as_ops("sudo -n /opt/kazoo-bootstrap/remote/readiness.sh database broker application media proxy")
    assert ready.returncode == 0, ready.stderr
    lines = set(ready.stdout.splitlines())
    assert {"nftables: ok", "rabbitmq: ok", "haproxy: ok"} <= lines
    assert {"couchdb: DOWN", "kamailio: DOWN", "freeswitch: DOWN", "crossbar: DOWN"} <= lines  # skipped here
    # the RabbitMQ user was ensured again (install-broker.sh, password on stdin) while sampled too
    again = host.exec("/opt/kazoo-bootstrap/install-broker.sh", timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    seen, leaks = sampler.stop()
    assert seen > 20 and leaks == [], leaks  # no secret on any command line while the scripts ran


class CmdlineSampler(threading.Thread):
    """Reads every process's /proc/<pid>/cmdline (the containers' processes are visible from here)
    every few milliseconds, and keeps the command lines holding one of `secrets`."""

    def __init__(self, secrets):
        super().__init__(daemon=True)
        self.secrets = [s.encode() for s in secrets]
        self.running, self.seen, self.leaks = True, set(), []

    def run(self):
        while self.running:
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                try:
                    line = Path(entry.path, "cmdline").read_bytes()
                except OSError:
                    continue
                self.seen.add(line)
                if any(s in line for s in self.secrets):
                    self.leaks.append(line.replace(b"\0", b" ").decode(errors="replace"))
            time.sleep(0.005)

    def stop(self):
        self.running = False
        self.join(timeout=5)
        return len(self.seen), self.leaks


@pytest.mark.parametrize("key,name", HOSTS)
def test_sshd_answers_with_the_host_key_pulumi_pins(clouds, key, name):
    made, _ = clouds
    cloud = made[key]
    ip = cloud.plan.host(name).private_ip
    # from the host's own namespace: SSH is open to adminCidrs only, and to loopback
    scan = nspawn.run("ip", "netns", "exec", cloud.ns(name), "ssh-keyscan", "-T", "10", "-t", "rsa,ecdsa,ed25519", ip,
                      check=False, timeout=30)
    offered = {tuple(line.split()[1:3]) for line in scan.stdout.splitlines() if not line.startswith("#")}
    # only the pinned key: a client cannot negotiate another host key type and fail the pin
    assert offered == {tuple(cloud.host_keys[name].split()[:2])}, scan.stdout + scan.stderr


def test_kamailio_is_skipped_where_the_stack_says_so(clouds):
    """The single stack skips Kamailio (Debian 12's 5.6 is too old for the 6.0 tree): said in the log."""
    made, _ = clouds
    host = made["single"].hosts["kazoo1"]
    log = host.file("/var/log/kazoo-bootstrap.log") or ""
    assert "kamailio skipped (bootstrap.skip)" in log
    assert host.exec("test", "-d", "/etc/kazoo/kamailio").returncode != 0


# ----- the proxy: real Kamailio 6.0, the real openkazoo tree, real PostgreSQL and RabbitMQ ---------

def proxy(clouds):
    made, _ = clouds
    cloud = made["maximal"]
    return cloud, cloud.hosts["proxy1"], cloud.plan.host("proxy1")


def test_the_proxy_runs_the_pinned_tree_with_this_hosts_local_cfg(clouds):
    cloud, host, planned = proxy(clouds)
    assert host.exec("systemctl", "is-active", "kamailio").stdout.strip() == "active", \
        host.exec("journalctl", "-u", "kamailio", "--no-pager", "-n", "60").stdout
    # the tree fetched from the mirror at the pinned commit, checked against the pinned sha256
    ours = host.exec("cat", "/etc/kazoo/kamailio/kamailio.cfg").stdout
    assert ours == (upstream.tree("kamailio_configs") / "kamailio/kamailio.cfg").read_text()
    assert host.exec("cat", "/etc/kazoo/kamailio/local.cfg").stdout.startswith("#####")
    stat = host.exec("stat", "-c", "%a %U:%G", "/etc/kazoo/kamailio/local.cfg").stdout.split()
    assert stat == ["640", "root:kamailio"]  # it holds the AMQP and database passwords
    # listening where local.cfg says: the public address for phones, the private one for FreeSWITCH
    listening = nspawn.run("ip", "netns", "exec", host.ns, "ss", "-lunH").stdout
    for address in (cloud.public_ips["proxy1"], planned.private_ip):
        for port in ("5060", "7000"):
            assert f"{address}:{port} " in listening, listening


def test_postgresql_holds_the_schema_and_has_room_for_every_kamailio_process(clouds):
    cloud, host, planned = proxy(clouds)
    psql = ("runuser", "-u", "postgres", "--", "psql", "-qAt")
    tables = host.exec(*psql, "-d", "kamailio", "-c", "SELECT count(*) FROM pg_tables WHERE tableowner = 'kamailio'")
    assert int(tables.stdout.strip() or 0) > 30, tables.stdout + tables.stderr
    limit = int(host.exec(*psql, "-c", "SHOW max_connections").stdout.strip())
    expected = kamailio_plan(cloud.settings, planned, cloud.public_ips["proxy1"]).postgres_max_connections
    assert limit == expected > 100
    used = int(host.exec(*psql, "-c", "SELECT count(*) FROM pg_stat_activity WHERE usename = 'kamailio'").stdout)
    processes = len(host.exec("pgrep", "-u", "kamailio", "kamailio").stdout.split())
    print(f"\nkamailio: {processes} processes, {used} PostgreSQL connections, max_connections {limit}")
    assert 0 < used < limit and processes > 40
    journal = host.exec("journalctl", "--no-pager", "-b").stdout
    assert "remaining connection slots are reserved" not in journal
    # Kamailio's database is for Kamailio on this host: PostgreSQL listens on loopback only
    listening = {line.split()[3] for line in host.exec("ss", "-Hltn", "sport = :5432").stdout.splitlines()}
    assert listening and listening <= {"127.0.0.1:5432", "[::1]:5432"}, listening


def test_the_proxy_is_connected_to_the_broker(clouds):
    cloud, _, planned = proxy(clouds)
    broker = cloud.hosts["broker1"]
    seen = broker.exec("rabbitmqctl", "-q", "list_connections", "peer_host", "user", timeout=60).stdout
    assert any(line.split()[:2] == [planned.private_ip, "kazoo"] for line in seen.splitlines()), seen


def test_a_phone_inside_sip_cidrs_gets_200_from_sipp(clouds):
    cloud, _, _ = proxy(clouds)
    scenario = str(TOOLS / "sip" / "options.xml")
    run = nspawn.run("ip", "netns", "exec", cloud.ns("phone"), "sipp", "-sf", scenario, "-m", "1", "-timeout", "15",
                     "-timeout_error", "-p", "5090", "-nostdin", f"{cloud.public_ips['proxy1']}:5060",
                     check=False, timeout=60)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]


def test_a_source_outside_sip_cidrs_gets_nothing(clouds):
    cloud, _, _ = proxy(clouds)
    address = cloud.public_ips["proxy1"]
    assert cloud.sip(cloud.ns("phone2"), address) == (1, 1)
    assert cloud.sip(cloud.outsider, address) == (1, 0)  # the host firewall drops it


def test_freeswitch_has_a_socket_of_its_own_that_only_media_hosts_reach(clouds):
    """Review B1: Kamailio faces FreeSWITCH on private:5080, never advertised; the dispatcher sends
    to and probes media servers from it (its module says so when it starts); only media hosts get
    through the host firewall to it."""
    cloud, host, planned = proxy(clouds)
    listening = nspawn.run("ip", "netns", "exec", host.ns, "ss", "-lnH").stdout
    for proto in ("udp", "tcp"):
        assert any(line.startswith(proto) and f" {planned.private_ip}:5080 " in line for line in listening.splitlines()), listening
    journal = host.exec("journalctl", "-u", "kamailio", "--no-pager", "-b").stdout
    assert f"default dispatcher socket set to <udp:{planned.private_ip}:5080>" in journal, journal[-3000:]
    assert cloud.sip(cloud.ns("media1"), planned.private_ip, port=5080) == (1, 1)
    assert cloud.sip(cloud.ns("phone"), planned.private_ip, port=5080) == (1, 0)  # inside sipCidrs, not a media host
    assert cloud.sip(cloud.outsider, planned.private_ip, port=5080) == (1, 0)


def test_a_flood_from_one_source_is_cut_off_while_another_still_gets_through(clouds):
    """kamailio-configs' antiflood role: pike allows sip.antifloodRequests (100 here) per 2 s per
    source (local.cfg's ANTIFLOOD_RATE_DENSITY, over antiflood-role.cfg's #!trydef of 50) and drops
    the source's requests while it floods; other sources go on."""
    cloud, host, _ = proxy(clouds)
    address = cloud.public_ips["proxy1"]
    flood = subprocess.Popen(["ip", "netns", "exec", cloud.ns("phone"), sys.executable, str(TOOLS / "sip_flood.py"),
                              address, "5060", "1000", "5"], stdout=subprocess.PIPE, text=True)
    time.sleep(2.5)  # well into the flood
    assert cloud.sip(cloud.ns("phone2"), address) == (1, 1)  # another source is not affected
    sent, answered = map(int, flood.communicate(timeout=60)[0].split())
    print(f"\nflood: {sent} OPTIONS in 5 s from one source, {answered} answered")
    assert sent == 1000 and answered < 300, answered  # without antiflood every one is answered
    journal = host.exec("journalctl", "--no-pager", "-b").stdout
    assert "due to rate of requests" in journal


def test_sip_over_tls_answers_and_a_renewed_certificate_is_reloaded_in_place(clouds, tmp_path):
    """Kamailio's TLS listener (tls-role.cfg) boots with a throwaway self-signed pair (the SIP domain's
    certificate is not in the user-data: no room on AWS); the orchestration's push brings the stack's
    certificate and reloads it in place (tls.reload over the jsonrpcs FIFO), as it does a renewal:
    no restart, and a TLS connection opened before a renewal still gets answers."""
    cloud, host, planned = proxy(clouds)
    address, ca = cloud.public_ips["proxy1"], str(cloud.ca.cert)
    tls = [sys.executable, str(TOOLS / "sip_tls.py"), address, "5061", ca, MAXIMAL_DOMAIN]
    certs = "/etc/kazoo/kamailio/certs"
    placeholder = host.exec("openssl", "x509", "-in", f"{certs}/cert.pem", "-noout", "-issuer")
    assert placeholder.returncode == 0 and "proxy1" in placeholder.stdout, placeholder.stdout + placeholder.stderr
    assert host.exec("stat", "-c", "%a %U:%G", f"{certs}/key.pem").stdout.strip() == "640 root:kamailio"
    main_pid = host.exec("systemctl", "show", "-p", "MainPID", "--value", "kamailio").stdout.strip()

    def push(certificate):
        settings = load_settings(stack_config("hetzner-maximal", {**maximal_overrides(certificate)}))
        plan = plan_hosts(settings)
        bundle = config_bundle(HostContext(plan.host("proxy1"), plan, settings, address,
                                           {**SECRETS, "sip_tls_key": certificate[1]}))
        pid = str(host.init_pid())
        done = subprocess.run(["nsenter", "-t", pid, "-m", "-u", "-i", "-n", "-p", "--", "runuser", "-u", "ops", "--",
                               "bash", "-c", (CLOUD_INIT_DIR / "remote" / "receive-config.sh").read_text()],
                              input=bundle, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"updated {certs}/cert.pem" in done.stdout
        assert "TLS certificate of kamailio in force" in done.stdout and "restart kamailio" not in done.stdout
        assert host.exec("systemctl", "show", "-p", "MainPID", "--value", "kamailio").stdout.strip() == main_pid

    push(cloud.ca_first)  # the orchestration's first push: the stack's certificate replaces the placeholder
    serial, status = nspawn.run("ip", "netns", "exec", cloud.ns("phone2"), *tls, timeout=60).stdout.split(" ", 1)
    assert serial == "1001" and status.strip() == "SIP/2.0 200 Rawr!!"

    renewed = tmp_path / "renewed"
    kept = subprocess.Popen(["ip", "netns", "exec", cloud.ns("phone2"), *tls, str(renewed)],
                            stdout=subprocess.PIPE, text=True)
    first_line = kept.stdout.readline().split()
    assert first_line[0] == "1001"
    push(cloud.ca.issue(MAXIMAL_DOMAIN, 1002))  # a renewal

    renewed.touch()
    second = kept.communicate(timeout=60)[0].strip()
    assert second == "SIP/2.0 200 Rawr!!"  # the connection opened before the renewal is still served
    serial, status = nspawn.run("ip", "netns", "exec", cloud.ns("phone2"), *tls, timeout=60).stdout.split(" ", 1)
    assert serial == "1002" and status.strip() == "SIP/2.0 200 Rawr!!"  # new connections get the new one


def test_a_configuration_kamailio_rejects_leaves_the_running_proxy_alone(clouds):
    """configure.sh asks the real Kamailio 6.0.1 (`kamailio -c`, the unit's own check) before it
    restarts a running proxy: a local.cfg the tree cannot use fails the run and the old process goes
    on answering, its PostgreSQL's pending restart held too (the unit Requires= it: restarting
    PostgreSQL restarts Kamailio, as the end shows on this systemd); once the file is right again,
    the next run restarts both."""
    cloud, host, planned = proxy(clouds)
    rendered = "/etc/kazoo-bootstrap/files/etc/kazoo/kamailio/local.cfg"

    def main_pid(unit: str = "kamailio") -> str:
        return host.exec("systemctl", "show", "-p", "MainPID", "--value", unit).stdout.strip()

    # Debian's postgresql.service is a oneshot; the server runs in the cluster's postgresql@<ver>-main
    cluster = host.exec("systemctl", "list-units", "--plain", "--no-legend", "postgresql@*").stdout.split()[0]

    def postgres_pid() -> str:
        return main_pid(cluster)

    before, database = main_pid(), postgres_pid()
    assert database not in ("", "0"), cluster
    assert host.exec("sh", "-c", f"echo 'loadmodule \"no_such_module.so\"' >> {rendered}").returncode == 0
    assert host.exec("touch", "/var/lib/kazoo-bootstrap/pending/postgresql").returncode == 0
    bad = host.exec("/opt/kazoo-bootstrap/configure.sh", timeout=180)
    assert bad.returncode != 0 and "kamailio -c rejects the new configuration" in bad.stdout + bad.stderr, bad.stderr[-2000:]
    assert main_pid() == before and host.exec("systemctl", "is-active", "kamailio").stdout.strip() == "active"
    assert postgres_pid() == database  # held with it
    assert host.exec("test", "-e", "/var/lib/kazoo-bootstrap/pending/postgresql").returncode == 0
    assert cloud.sip(cloud.ns("media1"), planned.private_ip, port=5080) == (1, 1)  # still answering
    assert host.exec("sed", "-i", "$d", rendered).returncode == 0  # the line goes again
    good = host.exec("/opt/kazoo-bootstrap/configure.sh", timeout=180)
    assert good.returncode == 0, good.stderr[-2000:]
    restarted = main_pid()
    assert restarted != before and postgres_pid() != database
    assert host.exec("systemctl", "is-active", "kamailio").stdout.strip() == "active"
    assert cloud.sip(cloud.ns("media1"), planned.private_ip, port=5080) == (1, 1)
    # why PostgreSQL's restart waits with Kamailio's: it takes Kamailio along (systemd.unit(5) Requires=)
    assert host.exec("systemctl", "restart", "postgresql", timeout=120).returncode == 0
    # systemctl waits for PostgreSQL's job; Kamailio's (its unit's check first) may still be running
    waited = host.exec("sh", "-c", "for i in $(seq 60); do [ \"$(systemctl is-active kamailio)\" = active ] && "
                       "exit 0; sleep 1; done; systemctl status kamailio --no-pager; exit 1", timeout=90)
    assert waited.returncode == 0, waited.stdout[-2000:]
    assert main_pid() not in (restarted, "0")


def test_only_root_reaches_the_metadata_service(clouds):
    """User-data holds this host's secrets and the metadata service hands it to anyone who asks: after
    the bootstrap, the host firewall lets only root through (nftables output, meta skuid)."""
    cloud, host, _ = proxy(clouds)
    url = f"http://{METADATA_IP}:{MIRROR_PORT}/latest/user-data"
    as_root = host.exec("curl", "-fsS", "--max-time", "5", url)
    assert as_root.returncode == 0 and "stand-in user-data" in as_root.stdout, as_root.stderr
    as_kamailio = host.exec("runuser", "-u", "kamailio", "--", "curl", "-fsS", "--max-time", "5", url)
    assert as_kamailio.returncode != 0 and "stand-in" not in as_kamailio.stdout


def test_an_unprivileged_account_reads_no_secret_file(clouds):
    """Files holding secrets are readable by their service's account only: `nobody` reads none."""
    made, _ = clouds
    for key, name in (("maximal", "proxy1"), ("maximal", "broker1"), ("single", "kazoo1")):
        host = made[key].hosts[name]
        for value in SECRETS.values():
            found = host.exec("runuser", "-u", "nobody", "--", "grep", "-rlsF", value, "/etc", "/opt", "/var/lib/cloud",
                              "/var/lib/kazoo-bootstrap", "/var/cache/debconf", "/run", timeout=120)
            assert found.stdout.strip() == "", f"{name}: {found.stdout}"


def test_everything_is_stopped_and_removed_afterwards(tmp_path):
    """The same machinery, torn down: no namespace and no container process is left."""
    tag = f"kzt{os.getpid() % 100000}-"
    network = nspawn.PrivateNetwork(tag, 24)
    network.attach("a", "10.99.0.2")
    network.close()
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert tag not in left
