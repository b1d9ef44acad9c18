"""Kamailio parses every proxy's rendered configuration on the REAL openkazoo/kamailio-configs tree at
the pinned commit (from the upstream mirror), with the nearest Kamailio >= 5.8 this machine can
install: Debian 13's 6.0.1 with its kazoo and postgres modules, in the Debian 13 root the boot test
uses (tests/nspawn.py). No hand-written include harness: kamailio.cfg, defs.cfg, default.cfg and every
role file are upstream's; only local.cfg is ours, as on a host.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import nspawn
import upstream
from tls_ca import ThrowawayCA
from core.bootstrap import HostContext, rendered_files
from core.kamailio import LISTENER_NAMES
from core.plan import plan_hosts
from core.roles import Role
from core.settings import load_settings
from harness import stack_config

STACKS = [f"{c}-{l}" for c in ("hetzner", "aws") for l in ("single", "dual", "maximal")]
SECRETS = {"rabbitmq_password": "rabbit0123456789abcdefghijklmnop", "kamailio_db_password": "kdb0123456789abcdefghij",
           "erlang_cookie": "E" * 48, "couchdb_cookie": "C" * 48, "couchdb_password": "couch0123456789abcdefghijklmnopq"}
PUBLIC_IP = "198.51.100.7"

pytestmark = pytest.mark.skipif(nspawn.tools_available() is not None, reason=str(nspawn.tools_available()))


@pytest.fixture(scope="module")
def trixie() -> Path:
    return nspawn.debian_root("trixie")


TREE_DIR = "/etc/kazoo/kamailio/"


def proxy_files(stack: str, overrides: dict | None = None, secrets: dict | None = None):
    """(host, {name in the tree: text}) of every proxy: what the program puts into the tree."""
    settings = load_settings(stack_config(stack, overrides))
    plan = plan_hosts(settings)
    for host in plan.with_role(Role.PROXY):
        files = rendered_files(HostContext(host, plan, settings, PUBLIC_IP, {**SECRETS, **(secrets or {})}))
        yield host, {path.removeprefix(TREE_DIR): text for path, (text, _) in files.items()
                     if path.startswith(TREE_DIR) and path.endswith(".cfg")}


def proxy_configs(stack: str, overrides: dict | None = None, secrets: dict | None = None):
    for host, files in proxy_files(stack, overrides, secrets):
        yield host, files["local.cfg"]


def kamailio_check(root: Path, local_cfg: str, tmp_path: Path, files: dict | None = None) -> subprocess.CompletedProcess:
    """`kamailio -c` of the real tree with `local_cfg` (and any other of the program's `files`),
    inside the Debian 13 root (bind-mounted copy)."""
    tree = tmp_path / "kamailio"
    shutil.copytree(upstream.tree("kamailio_configs") / "kamailio", tree)
    for name, text in {**(files or {}), "local.cfg": local_cfg}.items():
        (tree / name).write_text(text)
    (tree / "db").mkdir()
    script = (
        f"mount --bind {tree} {root}/mnt && "
        # -M 32: the tree does not parse in Kamailio's default 8 MB of private memory
        f"exec chroot {root} kamailio -c -M 32 -m 64 -f /mnt/kamailio.cfg"
    )
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("stack", STACKS)
def test_every_proxy_config_parses_on_the_real_tree(trixie, stack, tmp_path):
    for host, files in proxy_files(stack):
        assert set(files) == {"local.cfg", "custom-routes.cfg"}
        run = kamailio_check(trixie, files["local.cfg"], tmp_path / host.name, files=files)
        out = run.stdout + run.stderr
        assert run.returncode == 0, f"{stack}/{host.name}: {out[-3000:]}"
        listening = out[out.find("Listening on"):]
        for port in (5060, 7000):  # SIP and the SIP-ALG bypass port, UDP and TCP
            for proto in ("udp", "tcp"):
                if stack.startswith("hetzner"):
                    # phones on the public address, the other hosts on the private one
                    assert f"{proto}: {PUBLIC_IP}:{port}\n" in listening, listening
                    assert f"{proto}: {host.private_ip}:{port}\n" in listening, listening
                else:
                    assert f"{proto}: {host.private_ip}:{port} advertise {proto}:{PUBLIC_IP}:{port}" in listening
        for proto in ("udp", "tcp"):  # FreeSWITCH's side on both clouds: private, never advertised (review B1)
            assert f"{proto}: {host.private_ip}:5080\n" in listening, listening
        assert "ANTIFLOOD_ROLE" in files["local.cfg"]  # on by default: the proxy's "simple fraud and DDoS protection"


def test_tls_websockets_and_antiflood_roles_find_their_listeners(trixie, tmp_path):
    """tls-role.cfg listens on TLS_SIP/TLS_ALG_SIP, websockets-role.cfg on TCP_WS/TLS_WSS: names
    local.cfg must define (the last review found them undefined)."""
    certificate, key = ThrowawayCA(tmp_path / "ca").issue("maximal.aws.voip.example.com", 7)
    overrides = {"sip": {"tls": True, "websockets": True, "antiflood": True},
                 "sipTlsCertificate": certificate, "sipTlsKey": key}
    host, local_cfg = next(proxy_configs("aws-maximal", overrides, {"sip_tls_key": key}))
    assert "#!trydef ANTIFLOOD_ROLE" in local_cfg and "#!trydef TLS_ROLE" in local_cfg
    run = kamailio_check(trixie, local_cfg, tmp_path)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    for proto, port in (("tls", 5061), ("tls", 7001), ("tcp", 5064), ("tls", 5065)):
        assert f"{proto}: {host.private_ip}:{port} advertise {proto}:{PUBLIC_IP}:{port}" in out, out[-2000:]


def test_the_antiflood_limit_leaves_room_for_freeswitch():
    """default.cfg runs ANTIFLOOD_LIMIT before CLASSIFY_SOURCE, so FreeSWITCH's INVITEs to phones are
    counted too (review B2): the limit is the stack's, 400 per 2 s unless set, over the tree's 50."""
    tree = upstream.tree("kamailio_configs") / "kamailio"
    default = (tree / "default.cfg").read_text()
    assert default.index("route(ANTIFLOOD_LIMIT);") < default.index("route(CLASSIFY_SOURCE);")
    assert "#!trydef ANTIFLOOD_RATE_DENSITY 50" in (tree / "antiflood-role.cfg").read_text()
    _, local_cfg = next(proxy_configs("aws-maximal"))
    assert "#!define ANTIFLOOD_RATE_DENSITY 400" in local_cfg
    _, local_cfg = next(proxy_configs("aws-maximal", {"sip": {"antifloodRequests": 120}}))
    assert "#!define ANTIFLOOD_RATE_DENSITY 120" in local_cfg


def test_antiflood_can_be_switched_off():
    _, local_cfg = next(proxy_configs("aws-maximal", {"sip": {"antiflood": False}}))
    assert "ANTIFLOOD_ROLE" not in local_cfg


def test_every_listener_name_the_tree_uses_is_defined():
    """Every `listen=NAME` in the tree's role files names a listener local.cfg defines."""
    tree = upstream.tree("kamailio_configs") / "kamailio"
    used = {m for f in tree.glob("*.cfg") if f.name != "local.cfg"
            for m in re.findall(r"^listen=([A-Z_]+)\s*$", f.read_text(), re.M)}
    assert used and used <= set(LISTENER_NAMES), used - set(LISTENER_NAMES)


def test_the_check_fails_on_a_broken_config(trixie, tmp_path):
    """The check has teeth: an AMQP URL the kazoo module cannot parse, or a listener on a name no
    substdef defines, fails `kamailio -c`."""
    _, local_cfg = next(proxy_configs("aws-maximal"))
    broken_url = kamailio_check(trixie, local_cfg.replace("amqp://kazoo:", "amqp:/kazoo:", 1), tmp_path / "url")
    assert broken_url.returncode != 0
    broken_listener = kamailio_check(trixie, local_cfg + "listen=NO_SUCH_LISTENER\n", tmp_path / "listener")
    assert broken_listener.returncode != 0


def test_the_amqp_urls_carry_every_broker_under_the_trees_names():
    """defs-amqp.cfg reads MY_AMQP_URL, MY_AMQP_SECONDARY_URL, ... (not MY_AMQP_URL_2 or similar)."""
    tree_names = set(re.findall(r"#!ifndef (MY_AMQP_\w*URL)", (upstream.tree("kamailio_configs") /
                                                                 "kamailio/defs-amqp.cfg").read_text()))
    _, local_cfg = next(proxy_configs("aws-maximal"))
    ours = set(re.findall(r'#!substdef "!(MY_AMQP_\w*URL)!', local_cfg))
    assert ours == {"MY_AMQP_URL", "MY_AMQP_SECONDARY_URL"} and ours <= tree_names


def test_postgresql_has_room_for_what_a_real_kamailio_opened():
    """Measured on a real boot (tests/test_boot.py, Kamailio 6.0.1 with this tree and 8 + 8 workers
    on five UDP listeners, Hetzner's): 103 processes holding 93 PostgreSQL connections. Every proxy's
    max_connections leaves room for each process to open two (sqlops' cb and exec on first use)."""
    for stack in STACKS:
        settings = load_settings(stack_config(stack))
        plan = plan_hosts(settings)
        for host in plan.with_role(Role.PROXY):
            conf = rendered_files(HostContext(host, plan, settings, PUBLIC_IP, SECRETS))["/etc/kazoo/kamailio/postgresql.conf"][0]
            limit = int(re.search(r"max_connections = (\d+)", conf).group(1))
            measured_processes = 103 if stack.startswith("hetzner") else 103 - 2 * 8  # two UDP listeners fewer on AWS
            assert limit >= 2 * measured_processes, (stack, host.name, limit)


@pytest.mark.parametrize("stack", ["hetzner-maximal", "aws-maximal"])
def test_the_path_back_to_a_phone_is_the_private_address(stack):
    """registrar-role.cfg (tree line 414) publishes `"Proxy-Path" : "sip:MY_IP_ADDRESS:$var(port)"`
    in reg_success; ecallmgr bridges calls to a registered phone through it (ecallmgr_registrar.erl
    bridge_uri_path), from FreeSWITCH's private sofia socket. MY_IP_ADDRESS must be the private
    address on both clouds, while Hetzner's named listeners still bind the public one."""
    registrar = (upstream.tree("kamailio_configs") / "kamailio/registrar-role.cfg").read_text()
    assert '"Proxy-Path" : "sip:MY_IP_ADDRESS:$var(port)"' in registrar
    for host, local_cfg in proxy_configs(stack):
        assert re.findall(r'#!substdef "!MY_IP_ADDRESS!([^!]*)!g"', local_cfg) == [host.private_ip]
        udp_sip = re.findall(r'#!substdef "!UDP_SIP!([^!]*)!g"', local_cfg)
        expected = f"udp:{PUBLIC_IP}:5060" if stack.startswith("hetzner") else \
            f"udp:{host.private_ip}:5060 advertise {PUBLIC_IP}:5060"
        assert udp_sip == [expected]


@pytest.mark.parametrize("stack", ["hetzner-maximal", "aws-maximal"])
def test_freeswitch_is_reached_and_reaches_back_through_an_unadvertised_socket(trixie, stack, tmp_path):
    """Review B1. Through a socket that advertises the Elastic IP, FreeSWITCH's in-dialog requests
    would hairpin through AWS's internet gateway. On the real tree:
    - every transport's Proxy-Path port, which ecallmgr hands FreeSWITCH for calls to phones, is
      5080: registrar-role.cfg takes `$var(port) = KZ_<PROTO>_REGISTRAR_PORT`, and local.cfg's
      defines come before defs.cfg's `#!trydef KZ_TLS_REGISTRAR_PORT 7000` (kamailio.cfg includes
      local.cfg first);
    - the dispatcher's default socket, which every media destination gets (the tree's PostgreSQL
      insert names no socket), is set in custom-routes.cfg, which Kamailio reads after loading the
      module: a misspelt parameter there fails `kamailio -c` (the boot test sees the socket in force);
    - requests received on 5080 skip NAT correction (nat-traversal-role.cfg)."""
    tree = upstream.tree("kamailio_configs") / "kamailio"
    assert "insert into dispatcher (setid, destination) select" in (tree / "db_queries_postgres.cfg").read_text()
    assert 'if ($Rp == "5080")' in (tree / "nat-traversal-role.cfg").read_text()
    main = (tree / "kamailio.cfg").read_text()
    assert main.index('include_file "local.cfg"') < main.index('include_file "defs.cfg"')
    assert "#!trydef KZ_TLS_REGISTRAR_PORT 7000" in (tree / "defs.cfg").read_text()
    registrar = (tree / "registrar-role.cfg").read_text()
    host, files = next(proxy_files(stack))
    for proto in ("UDP", "TCP", "TLS", "WEBSOCKETS"):
        assert f"$var(port) = KZ_{proto}_REGISTRAR_PORT;" in registrar
        assert re.search(rf"^#!define KZ_{proto}_REGISTRAR_PORT 5080$", files["local.cfg"], re.M), proto
    routes = files["custom-routes.cfg"]
    assert f'modparam("dispatcher", "ds_default_socket", "udp:{host.private_ip}:5080")' in routes
    assert kamailio_check(trixie, files["local.cfg"], tmp_path / "good", files=files).returncode == 0
    misspelt = {**files, "custom-routes.cfg": routes.replace("ds_default_socket", "ds_default_sockte")}
    assert kamailio_check(trixie, files["local.cfg"], tmp_path / "misspelt", files=misspelt).returncode != 0


def test_kamailio_waits_for_the_private_address_it_binds():
    """Review C5: Kamailio binds the private IP, which Hetzner attaches late; a start before it is
    there fails to bind (the boot test starts this unit for real)."""
    settings = load_settings(stack_config("hetzner-maximal"))
    plan = plan_hosts(settings)
    host = plan.with_role(Role.PROXY)[0]
    unit = rendered_files(HostContext(host, plan, settings, PUBLIC_IP, SECRETS))["/etc/systemd/system/kamailio.service"][0]
    pre = re.findall(r"^ExecStartPre=(.*)$", unit, re.M)
    assert f'grep -qF "inet {host.private_ip}/"' in pre[0] and pre[1].startswith("/usr/sbin/kamailio -c")


# ----- the routing lab: which socket FreeSWITCH is reached from, on Kamailio 6.0.1 ------------------

LAB_FS, LAB_FS2, LAB_PHONE = "10.20.16.10", "10.20.16.11", "10.20.250.10"


def routing_lab(root: Path, tmp_path: Path, custom_routes: str, private_ip: str) -> list[dict]:
    """Kamailio 6.0.1 in a network namespace of its own, listening as an AWS proxy does (private
    5060 advertising the Elastic IP, private 5080 for FreeSWITCH), with the tree's own pieces that
    decide the socket: its rr settings (defs.cfg, default.cfg), its dispatcher settings, its
    DISPATCHER_PREFERRED_ROUTE, its branch route's hook (default.cfg MANAGE_BRANCH calls
    CUSTOM_BRANCH_HEADERS) and the program's custom-routes.cfg. The request route is the tree's
    path for an initial request from a phone, cut to those steps (no AMQP, no database)."""
    tree = upstream.tree("kamailio_configs") / "kamailio"
    defs, default = (tree / "defs.cfg").read_text(), (tree / "default.cfg").read_text()
    dispatcher = (tree / "dispatcher-role-6.0.cfg").read_text()
    rr_defines = [line for line in defs.splitlines() if re.match(r"#!trydef RR_(FULL_LR|DOUBLE_RR|FORCE_SOCKET) ", line)]
    rr_params = [line for line in default.splitlines() if line.startswith('modparam("rr"')]
    assert len(rr_defines) == len(rr_params) == 3
    flag = next(line for line in default.splitlines() if line.startswith("#!trydef FLAG_INTERNALLY_SOURCED "))
    keep = ("flags", "use_default", "force_dst", "setid_pvname", "attrs_pvname", "xavp_dst", "xavp_ctx")
    ds = [line for line in dispatcher.splitlines() if re.match(rf'modparam\("dispatcher", "({"|".join(keep)})"', line)]
    preferred = re.search(r"^route\[DISPATCHER_PREFERRED_ROUTE\]\n\{.*?^\}", dispatcher, re.M | re.S).group(0)
    branch = re.search(r"^branch_route\[MANAGE_BRANCH\] \{.*?^\}", default, re.M | re.S).group(0)
    assert 'route_if_exists("CUSTOM_BRANCH_HEADERS");' in branch
    branch = branch.replace("#!ifdef NAT_TRAVERSAL_ROLE\n    route(NAT_MANAGE);\n    #!endif\n", "")
    branch = branch.replace("    route(BRANCH_HEADERS);\n", "")  # auth headers: not about sockets
    assert branch.count("route(") == 0 and "route_if_exists" in branch, branch
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "dispatcher.list").write_text(f"1 sip:{LAB_FS}:11000\n1 sip:{LAB_FS2}:11000\n")
    (tmp_path / "custom-routes.cfg").write_text(custom_routes)
    (tmp_path / "lab.cfg").write_text("\n".join([
        "#!KAMAILIO", flag, *rr_defines,
        "debug=2", "log_stderror=yes", "children=1", "auto_aliases=no",
        f"listen=udp:{private_ip}:5060 advertise {PUBLIC_IP}:5060",
        f"listen=udp:{private_ip}:5080",
        *[f'loadmodule "{m}.so"' for m in ("tm", "sl", "rr", "pv", "xlog", "textops", "siputils", "dispatcher", "cfgutils", "tmx")],
        *rr_params, *ds,
        'modparam("dispatcher", "list_file", "/mnt/dispatcher.list")', 'modparam("dispatcher", "ds_ping_interval", 0)',
        "request_route {",
        "    if (has_totag()) { if (loose_route()) { t_relay(); exit; } sl_send_reply(\"404\", \"Not here\"); exit; }",
        "    if (is_method(\"ACK\")) { exit; }",
        "    record_route();",  # default.cfg PREPARE_INITIAL_REQUESTS
        '    ds_select_routes("1=0", "2");',  # dispatcher-role: DISPATCHER_FIND_ROUTES
        "    if ($hdr(X-Preferred) != $null) { $var(prefered_route) = $hdr(X-Preferred); route(DISPATCHER_PREFERRED_ROUTE); }",
        "    ds_set_dst();",
        '    t_on_branch("MANAGE_BRANCH");',  # default.cfg RELAY
        "    t_relay();", "    exit;", "}",
        preferred, branch, '#!import_file "/mnt/custom-routes.cfg"', ""]))
    addresses = " && ".join(f"ip addr add {ip}/32 dev lo" for ip in (private_ip, LAB_FS, LAB_FS2, LAB_PHONE))
    script = (
        f"ip link set lo up && {addresses} && mount --bind {tmp_path} {root}/mnt && "
        f"{{ chroot {root} kamailio -DD -E -f /mnt/lab.cfg > {tmp_path}/kamailio.log 2>&1 & }} && "
        # ready once both sockets are bound (up to 10 s)
        "for i in $(seq 100); do [ $(ss -lunH | grep -c ':50[68]0 ') -eq 2 ] && break; sleep 0.1; done && "
        f"{sys.executable} {Path(__file__).parent / 'sip' / 'route_lab.py'} {private_ip} {PUBLIC_IP} {LAB_FS} {LAB_FS2} {LAB_PHONE}; "
        "kill $! && wait $!"  # this Kamailio only: the boot test's hosts run theirs beside it
    )
    # a PID namespace of its own as well: nothing here can signal a process outside
    run = subprocess.run(["unshare", "--net", "--mount", "--pid", "--fork", "--propagation", "private", "sh", "-c", script],
                         capture_output=True, text=True, timeout=60)
    log = (tmp_path / "kamailio.log").read_text() if (tmp_path / "kamailio.log").exists() else ""
    reports = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert len(reports) == 2 and not any("error" in r for r in reports), run.stdout + run.stderr + log[-3000:]
    return reports


def test_every_call_from_a_phone_reaches_freeswitch_from_its_socket_and_hangs_up_both_ways(trixie, tmp_path):
    """Review 6, D1: on the tree's two paths to a media server (the dispatcher's choice, and
    DISPATCHER_PREFERRED_ROUTE, which runs after FreeSWITCH's 407 and writes a destination without
    the dispatcher's socket), the INVITE leaves from private:5080 with two Record-Routes (the phone's
    side advertises the Elastic IP, FreeSWITCH's is private), FreeSWITCH's BYE comes back to the
    private address and reaches the phone, and the phone's BYE reaches FreeSWITCH from 5080. With
    the default socket alone (the first version of the fix), the preferred path leaves from the
    advertising socket with one Record-Route: FreeSWITCH's BYE would go to the Elastic IP."""
    host, files = next(proxy_files("aws-maximal"))
    private = host.private_ip
    reports = routing_lab(trixie, tmp_path / "fixed", files["custom-routes.cfg"], private)
    assert reports[1]["media"] == LAB_FS2  # the preferred one (the dispatcher hashes the Call-ID: either)
    for report in reports:
        assert report["invite_from"] == [private, 5080], report
        assert report["record_route"] == [f"<sip:{private}:5080;r2=on;lr=on;ftag=ph1>",  # the phone's From tag
                                          f"<sip:{PUBLIC_IP};r2=on;lr=on;ftag=ph1>"], report
        assert report["fs_bye_to"] == [private, 5080], report  # never the Elastic IP
        assert report["fs_bye_reached_phone_from"] == [private, 5060], report
        assert report["phone_bye_reached_fs_from"] == [private, 5080], report
    socket_only = files["custom-routes.cfg"].split("route[CUSTOM_BRANCH_HEADERS]")[0]
    dispatcher_path, preferred_path = routing_lab(trixie, tmp_path / "socket-only", socket_only, private)
    assert dispatcher_path["invite_from"] == [private, 5080]
    assert preferred_path["invite_from"] == [private, 5060] and preferred_path["record_route"] == [f"<sip:{PUBLIC_IP};lr=on;ftag=ph1>"]
