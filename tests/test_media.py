"""The media host's FreeSWITCH, against the real kazoo-configs-freeswitch 4.3 tree (upstream.tree):
modules.conf.xml against what the openkazoo package builds, freeswitch-local.sh on copies of the tree
(AWS and Hetzner), the cookie file, the unit (systemd-analyze verify), and install-media.sh on a fake
host (private mount namespace, the package manager and the linker check stood in for).

Facts and their sources: notes/facts-freeswitch.md (cited by section below). No FreeSWITCH binary
exists on this machine: that the package holds these modules, that they link, and that FreeSWITCH
starts with this unit and answers ecallmgr are not proven here.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import upstream
from core.bootstrap import CLOUD_INIT_DIR, ROLE_FILES, HostContext, render_template, rendered_files, template_values
from core.plan import plan_hosts
from core.roles import Role
from core.settings import load_settings
from fakehost import STUBS, FakeHost, available, stage_files
from harness import STACKS, config_from_stack_file

SCRIPTS = CLOUD_INIT_DIR / "scripts"
COOKIE = "Kz0" + "e" * 45  # the test's erlang_cookie: 48 characters, like the generated one
PUBLIC_IP = "198.51.100.7"
CONF_DIR = "/etc/kazoo/freeswitch"

# ----- what the package builds --------------------------------------------------------------------
# The modules `make install` puts in /usr/lib/freeswitch/mod for the openkazoo `freeswitch`
# 1.10.9-4~bookworm package: signalwire/freeswitch v1.10.9 (a615e85a) build/modules.conf.in, edited by
# cloudpbx/openkazoo-kazoo4-builder scripts/build-freeswitch.sh @fadb8106 configure_modules():
#   sed 's,^(endpoints/mod_verto|applications/mod_signalwire|applications/mod_av|applications/mod_spandsp)$,#\1,'
#   then enables event_handlers/mod_kazoo codecs/mod_opus applications/mod_http_cache formats/mod_shout
#   say/mod_say_es say/mod_say_fr say/mod_say_de say/mod_say_pt.
# The 51 enabled lines (facts-freeswitch.md §2.2; re-derived by running configure_modules on
# modules.conf.in v1.10.9). Written out here, not taken from the template under test.
PACKAGE_MODULES = frozenset({
    # applications
    "mod_commands", "mod_conference", "mod_db", "mod_dptools", "mod_enum", "mod_esf", "mod_expr",
    "mod_fifo", "mod_fsv", "mod_hash", "mod_httapi", "mod_http_cache", "mod_sms", "mod_test",
    "mod_valet_parking", "mod_voicemail",
    # codecs (mod_amr, mod_g723_1, mod_g729, mod_h26x: passthrough builds)
    "mod_amr", "mod_b64", "mod_g723_1", "mod_g729", "mod_h26x", "mod_opus",
    # databases, dialplans
    "mod_pgsql", "mod_dialplan_asterisk", "mod_dialplan_xml",
    # endpoints
    "mod_loopback", "mod_rtc", "mod_skinny", "mod_sofia",
    # event handlers
    "mod_cdr_csv", "mod_cdr_sqlite", "mod_event_socket", "mod_kazoo",
    # formats
    "mod_local_stream", "mod_native_file", "mod_png", "mod_shout", "mod_sndfile", "mod_tone_stream",
    # languages, loggers
    "mod_lua", "mod_console", "mod_logfile", "mod_syslog",
    # say
    "mod_say_de", "mod_say_en", "mod_say_es", "mod_say_fr", "mod_say_pt",
    # xml interfaces
    "mod_xml_cdr", "mod_xml_rpc", "mod_xml_scgi",
})

# What the 4.3 tree loads and the package lacks, and why (facts-freeswitch.md §2.3/§2.4; m.c.in =
# fs v1.10.9 build/modules.conf.in, bfs = build-freeswitch.sh @fadb8106).
REMOVED = {
    "mod_av": "m.c.in:2 applications/mod_av, commented out by the bfs sed",
    "mod_spandsp": "m.c.in:49 applications/mod_spandsp, commented out by the bfs sed",
    "mod_siren": "m.c.in:80 #codecs/mod_siren, not enabled by bfs",
    "mod_ilbc": "m.c.in:74 #codecs/mod_ilbc, not enabled by bfs",
    "mod_flite": "m.c.in:60 #asr_tts/mod_flite, not enabled by bfs",
}


def test_package_module_list_is_the_documented_build():
    assert len(PACKAGE_MODULES) == 51
    assert {"mod_kazoo", "mod_sofia", "mod_opus", "mod_shout", "mod_http_cache"} <= PACKAGE_MODULES
    # disabled by the builder's sed, or never enabled
    assert not PACKAGE_MODULES & {*REMOVED, "mod_verto", "mod_signalwire"}


# ----- contexts ------------------------------------------------------------------------------------

def media_context(stack: str, name: str) -> HostContext:
    # Built as tests/test_bootstrap.py's contexts() does, from the stack file alone: a media host
    # gets only the Erlang cookie among the secrets.
    settings = load_settings(config_from_stack_file(STACKS / f"Pulumi.{stack}.yaml"))
    plan = plan_hosts(settings)
    host = next(h for h in plan.hosts if h.name == name)
    assert host.carries(Role.MEDIA)
    return HostContext(host, plan, settings, public_ip=PUBLIC_IP, secrets={"erlang_cookie": COOKIE},
                       archive_sha256={"freeswitch_configs": upstream.archive_sha256("freeswitch_configs")})


AWS = ("aws-maximal", "media1")
HETZNER = ("hetzner-maximal", "media1")
COMBINED = ("hetzner-single", "kazoo1")


def media_files(stack: str, name: str) -> dict[str, tuple[str, str]]:
    """The media role's rendered files of a host, {path: (content, mode)}, as rendered_files makes them."""
    ctx = media_context(stack, name)
    values = template_values(ctx)
    return {path: (render_template(template, ctx, path=path, **values), mode)
            for template, path, mode, _ in ROLE_FILES[Role.MEDIA]}


def tree43() -> Path:
    return upstream.tree("freeswitch_configs") / "freeswitch"


def loads(xml_text: str) -> list[str]:
    return [e.get("module") for e in ET.fromstring(xml_text).iter("load")]


# ----- modules.conf.xml ----------------------------------------------------------------------------

@pytest.mark.parametrize("stack,name", [AWS, HETZNER, COMBINED])
def test_rendered_modules_are_all_built_and_are_the_tree_minus_the_removals(stack, name):
    rendered = media_files(stack, name)[f"{CONF_DIR}/autoload_configs/modules.conf.xml"][0]
    ours = loads(rendered)
    theirs = loads((tree43() / "autoload_configs" / "modules.conf.xml").read_text())
    assert len(theirs) == 24 and set(REMOVED) <= set(theirs)  # facts §1.1: 24 loaded
    assert not set(ours) - PACKAGE_MODULES, "loads modules the package does not build"
    # same modules, same order (mod_logfile before mod_kazoo, ...), exactly the documented removals
    assert ours == [m for m in theirs if m not in REMOVED]
    assert "mod_sofia" not in ours  # ecallmgr loads it (kazoo 4.3 ecallmgr_fs_node.erl DEFAULT_FS_COMMANDS)
    # each removal says why, in a comment an operator sees on the host
    for module in REMOVED:
        assert re.search(rf"<!-- removed {module}: not built", rendered), module


# ----- the cookie and local.env ---------------------------------------------------------------------

def test_cookie_file_holds_exactly_the_secret_and_a_newline():
    files = media_files(*AWS)
    spec = {path: mode for t, path, mode, _ in ROLE_FILES[Role.MEDIA] if t == "freeswitch-cookie.j2"}
    (cookie_path, mode), = spec.items()
    content, rendered_mode = files[cookie_path]
    # read_cookie_from_file() cuts at the first newline; without one the buffer's tail is garbage
    # (kazoo_ei_config.c, facts §3.3); and it rejects any group or other permission
    assert content == COOKIE + "\n"
    assert mode == rendered_mode == "0600"
    assert len(COOKIE) <= 255  # MAXATOMLEN
    env = files[f"{CONF_DIR}/local.env"][0]
    assert re.search(rf"^COOKIE_FILE={re.escape(cookie_path)}$", env, re.M)
    for path, (text, _) in files.items():
        if path != cookie_path:
            assert COOKIE not in text, f"the cookie leaks into {path}"


def test_local_env_per_cloud():
    aws = media_files(*AWS)[f"{CONF_DIR}/local.env"][0]
    hetzner = media_files(*HETZNER)[f"{CONF_DIR}/local.env"][0]
    assert "PUBLIC_IP_ON_INTERFACE=no" in aws.splitlines()
    assert "PUBLIC_IP_ON_INTERFACE=yes" in hetzner.splitlines()
    for env, ctx in ((aws, media_context(*AWS)), (hetzner, media_context(*HETZNER))):
        assert f"PRIVATE_IP={ctx.host.private_ip}" in env.splitlines()
        assert f"PUBLIC_IP={PUBLIC_IP}" in env.splitlines()


# ----- freeswitch-local.sh on the real tree ------------------------------------------------------------

def install_tree(tmp: Path, stack: str, name: str) -> Path:
    """The 4.3 tree with this host's rendered files in it, as install-media.sh + configure.sh leave it."""
    root = tmp / "freeswitch"
    shutil.copytree(tree43(), root)
    for path, (content, mode) in media_files(stack, name).items():
        if path.startswith(CONF_DIR + "/"):
            target = root / path[len(CONF_DIR) + 1:]
            target.write_text(content)
            target.chmod(int(mode, 8))
    return root


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode)
            for p in sorted(root.rglob("*")) if p.is_file()}


def argv_logging_path(tmp: Path) -> tuple[str, Path]:
    """A PATH of shims, one per program on this machine's PATH: each appends its argv to a log, then
    runs the real program. Every program the script starts by name goes through them."""
    shims, log = tmp / "shims", tmp / "argv.log"
    shims.mkdir()
    real_path = os.environ["PATH"]
    logger = tmp / "log-argv"
    logger.write_text(
        "#!/bin/bash\n"
        f"printf '%s\\0' \"${{0##*/}}\" \"$@\" >> '{log}'; printf '\\n' >> '{log}'\n"
        f"PATH='{real_path}' exec \"${{0##*/}}\" \"$@\"\n"
    )
    logger.chmod(0o755)
    for directory in real_path.split(":"):
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            if not (shims / entry.name).exists() and os.access(entry.path, os.X_OK) and not entry.is_dir():
                (shims / entry.name).symlink_to(logger)
    return str(shims), log


def run_local(root: Path, path: str) -> subprocess.CompletedProcess:
    return subprocess.run(["/bin/bash", str(SCRIPTS / "freeswitch-local.sh"), str(root)],
                          capture_output=True, text=True, env={"PATH": path, "LANG": "C.UTF-8"})


def settings_of(root: Path, relative: str, fold: bool = False) -> dict[str, list[str]]:
    params: dict[str, list[str]] = {}
    for settings in ET.parse(root / relative).getroot().iter("settings"):
        for p in settings.findall("param"):
            name = p.get("name").lower() if fold else p.get("name")
            params.setdefault(name, []).append(p.get("value"))
    return params


@pytest.mark.parametrize("stack,name,rtp_ip", [(*AWS, "private"), (*HETZNER, "public")])
def test_freeswitch_local_on_the_real_tree(tmp_path, stack, name, rtp_ip):
    ctx = media_context(stack, name)
    private = ctx.host.private_ip
    root = install_tree(tmp_path, stack, name)
    before = snapshot(root)
    path, argv_log = argv_logging_path(tmp_path)

    first = run_local(root, path)
    assert first.returncode == 10, first.stderr  # 10: changed a file
    after = snapshot(root)
    changed = {f for f in after if after[f] != before.get(f)}
    assert changed == {"autoload_configs/kazoo.conf.xml", "sip_profiles/sipinterface_1.xml", "freeswitch.xml"}
    for f in changed:  # mode kept
        assert after[f][1] == before[f][1]

    # every XML of the tree parses
    for xml_file in root.rglob("*.xml"):
        ET.parse(xml_file)

    # mod_kazoo: cookie-file, no cookie value anywhere; listen-ip private; the rest as upstream
    kazoo = settings_of(root, "autoload_configs/kazoo.conf.xml")
    assert kazoo["cookie-file"] == [f"{CONF_DIR}/kazoo-cookie"]
    assert "cookie" not in kazoo
    assert kazoo["listen-ip"] == [private]
    assert kazoo["listen-port"] == ["8031"] and kazoo["nodename"] == ["freeswitch"] and kazoo["shortname"] == ["false"]
    for f in root.rglob("*"):
        if f.is_file() and f.name != "kazoo-cookie":
            text = f.read_bytes()
            assert COOKIE.encode() not in text and b"change_me" not in text, f
    assert not re.search(r'name\s*=\s*["\']cookie["\']', (root / "autoload_configs/kazoo.conf.xml").read_text())

    # the SIP profile (facts §4.5): SIP private both ways; RTP per cloud; local-network-acl none
    profile = settings_of(root, "sip_profiles/sipinterface_1.xml", fold=True)
    expected_rtp = private if rtp_ip == "private" else PUBLIC_IP
    assert profile["sip-ip"] == [private] and profile["ext-sip-ip"] == [private]
    assert profile["rtp-ip"] == [expected_rtp] and profile["ext-rtp-ip"] == [PUBLIC_IP]
    assert profile["local-network-acl"] == ["none"]
    assert profile["sip-port"] == ["11000"]  # untouched

    # codecs: only those the package offers, in upstream's order; FreeSWITCH's preprocessor reads
    # X-PRE-PROCESS lines as text, so check the raw lines too
    main = (root / "freeswitch.xml").read_text()
    assert re.findall(r'data="codecs=([^"]*)"', main) == ["OPUS,PCMU,PCMA,Speex"]

    # a second run changes no byte and says so
    second = run_local(root, path)
    assert second.returncode == 0, second.stderr
    assert snapshot(root) == after

    # the cookie never was on a command line: every program the script started is in the log
    log = argv_log.read_bytes()
    assert b"python3\0-\0" + str(root).encode() + b"\0" + private.encode() in log  # the shims saw the work
    assert COOKIE.encode() not in log


def test_freeswitch_local_is_not_fooled_by_layout(tmp_path):
    """Attribute order, quotes, whitespace and line breaks inside tags, comments that look like params,
    upper-case sofia names, the cookie as the last param, params missing: found by the parser."""
    root = install_tree(tmp_path, *AWS)
    private = media_context(*AWS).host.private_ip
    (root / "autoload_configs" / "kazoo.conf.xml").write_text(
        "<?xml version='1.0' encoding='UTF-8'?>\n"
        "<configuration description='x' name='kazoo.conf'>\n"
        "  <!-- <param name=\"cookie\" value=\"in-a-comment\"/> -->\n"
        "  <settings>\n"
        "    <param value='8031' name='listen-port'/>\n"
        "    <param\n      value = 'ClueCon'\n      name = 'cookie' />\n"
        "  </settings>\n"
        "</configuration>\n"
    )
    profile = root / "sip_profiles" / "sipinterface_1.xml"
    text = profile.read_text()
    text = text.replace('<param name="sip-ip" value="$${local_ip_v4}"/>', "<param value='auto' name=\"SIP-IP\" />")
    text = text.replace('<param name="ext-rtp-ip" value="auto"/>', "")
    text = text.replace('<param name="local-network-acl" value="localnet.auto"/>',
                        '<!-- <param name="local-network-acl" value="x"/> -->')
    profile.write_text(text)
    path = os.environ["PATH"]
    assert run_local(root, path).returncode == 10
    kazoo = settings_of(root, "autoload_configs/kazoo.conf.xml")
    assert kazoo == {"listen-port": ["8031"], "cookie-file": [f"{CONF_DIR}/kazoo-cookie"], "listen-ip": [private]}
    assert "ClueCon" not in (root / "autoload_configs" / "kazoo.conf.xml").read_text()
    assert "in-a-comment" in (root / "autoload_configs" / "kazoo.conf.xml").read_text()  # comments left alone
    sip = settings_of(root, "sip_profiles/sipinterface_1.xml", fold=True)
    assert sip["sip-ip"] == [private] and sip["ext-rtp-ip"] == [PUBLIC_IP] and sip["local-network-acl"] == ["none"]
    assert run_local(root, path).returncode == 0


def test_freeswitch_local_edge_cases(tmp_path):
    """Both cookie and cookie-file, a repeated rtp-ip (sofia takes several), a gateway's param of the
    same name (not the profile's), an empty <settings/>, codecs with @ options and spaces."""
    root = tmp_path / "fs"
    (root / "autoload_configs").mkdir(parents=True)
    (root / "sip_profiles").mkdir()
    (root / "local.env").write_text(
        f"PRIVATE_IP=10.0.0.5\nPUBLIC_IP={PUBLIC_IP}\nPUBLIC_IP_ON_INTERFACE=yes\nCOOKIE_FILE={CONF_DIR}/kazoo-cookie\n")
    (root / "autoload_configs" / "kazoo.conf.xml").write_text(
        '<configuration name="kazoo.conf"><settings><param name="cookie-file" value="/old"/>'
        '<param name="cookie" value="s3cret"/></settings></configuration>\n')
    (root / "sip_profiles" / "a.xml").write_text(
        '<include>\n  <profile name="a">\n    <settings>\n      <param name="rtp-ip" value="1.1.1.1"/>\n'
        '      <param name="rtp-ip" value="2.2.2.2"/>\n    </settings>\n    <gateways><gateway name="g">'
        '<param name="sip-ip" value="keep"/></gateway></gateways>\n  </profile>\n'
        '  <profile name="b"><settings/></profile>\n</include>\n')
    (root / "freeswitch.xml").write_text(
        '<document><X-PRE-PROCESS cmd="set" data="codecs=G722,PCMA@20i, opus@48000h@20i,GSM"/></document>\n')
    assert run_local(root, os.environ["PATH"]).returncode == 10
    assert "s3cret" not in (root / "autoload_configs" / "kazoo.conf.xml").read_text()
    assert settings_of(root, "autoload_configs/kazoo.conf.xml") == {
        "cookie-file": [f"{CONF_DIR}/kazoo-cookie"] * 2, "listen-ip": ["10.0.0.5"]}
    profiles = ET.parse(root / "sip_profiles" / "a.xml").getroot()
    for name in ("a", "b"):
        params = {}
        for p in profiles.find(f"profile[@name='{name}']/settings").findall("param"):
            params.setdefault(p.get("name"), []).append(p.get("value"))
        assert params["rtp-ip"] == [PUBLIC_IP] * (2 if name == "a" else 1)
        assert params["sip-ip"] == ["10.0.0.5"] and params["local-network-acl"] == ["none"]
    assert profiles.find(".//gateway/param").get("value") == "keep"
    assert 'data="codecs=PCMA@20i,opus@48000h@20i"' in (root / "freeswitch.xml").read_text()
    assert run_local(root, os.environ["PATH"]).returncode == 0


def test_freeswitch_local_refuses_bad_values_and_changes_nothing(tmp_path):
    root = install_tree(tmp_path, *AWS)
    env = root / "local.env"
    env.write_text(env.read_text().replace(f"PUBLIC_IP={PUBLIC_IP}", "PUBLIC_IP='<public_ip>'"))
    before = snapshot(root)
    run = run_local(root, os.environ["PATH"])
    assert run.returncode not in (0, 10) and "PUBLIC_IP" in run.stderr
    assert snapshot(root) == before


def test_freeswitch_local_needs_no_secret():
    text = (SCRIPTS / "freeswitch-local.sh").read_text()
    assert "host.env" not in text and "ERLANG_COOKIE" not in text
    assert not re.search(r"\bsed\b", text)  # XML is edited through a parser, not sed


# ----- the unit -----------------------------------------------------------------------------------------

def unit_text(stack="aws-maximal", name="media1") -> str:
    return media_files(stack, name)["/etc/systemd/system/freeswitch.service"][0]


def unit_values(text: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(f"{key}=")]


def test_unit_runs_the_tree_where_it_is_installed():
    text = unit_text()
    (exec_start,) = unit_values(text, "ExecStart")
    argv = exec_start.split()
    assert argv[0] == "/usr/bin/freeswitch" and {"-nc", "-nf", "-nonat"} <= set(argv)
    flags = dict(zip(argv[1::], argv[2::]))
    conf = flags["-conf"]
    # where install-media.sh puts the tree, where the rendered files go, what configure.sh hands
    # freeswitch-local.sh
    assert re.search(rf"^TREE={re.escape(conf)}$", (SCRIPTS / "install-media.sh").read_text(), re.M)
    assert {str(Path(p).parent) for _, p, _, _ in ROLE_FILES[Role.MEDIA] if p.startswith("/etc/kazoo/")} \
        == {conf, f"{conf}/autoload_configs"}
    assert f'freeswitch-local.sh" {conf}' in (SCRIPTS / "configure.sh").read_text()
    assert flags["-run"] == "/run/freeswitch" and unit_values(text, "RuntimeDirectory") == ["freeswitch"]
    assert unit_values(text, "Type") == ["simple"]
    assert unit_values(text, "User") == ["freeswitch"] and unit_values(text, "Group") == ["freeswitch"]
    assert unit_values(text, "Restart") == ["on-failure"]
    assert "epmd.socket" in unit_values(text, "After") and "epmd.socket" in unit_values(text, "Wants")
    assert not any("epmd" in v for v in unit_values(text, "Requires"))  # see the unit's comment
    for limit in ("LimitNOFILE=100000", "LimitCORE=infinity", "LimitRTPRIO=infinity", "UMask=0007"):
        assert limit in text.splitlines()


def test_unit_waits_for_this_host_private_ip():
    for stack, name in (AWS, HETZNER):
        ip = media_context(stack, name).host.private_ip
        assert any(f'"inet {ip}/"' in v for v in unit_values(unit_text(stack, name), "ExecStartPre"))


def shell_of(exec_line: str) -> str:
    """The script of an `ExecStartPre=/bin/sh -c '...'` line, as systemd hands it to sh."""
    match = re.fullmatch(r"/bin/sh -c '(.*)'", exec_line)
    assert match, exec_line
    return match.group(1).replace("$$", "$").replace("%%", "%")


def test_unit_refuses_a_cookie_file_mod_kazoo_would_ignore(tmp_path):
    (check,) = [shell_of(v) for v in unit_values(unit_text(), "ExecStartPre") if "kazoo-cookie" in v]
    cookie = tmp_path / "kazoo-cookie"
    script = check.replace(f"{CONF_DIR}/kazoo-cookie", str(cookie))
    assert script != check

    def starts(content: str | None, mode: int = 0o600) -> bool:
        if cookie.exists():
            cookie.unlink()
        if content is not None:
            cookie.write_text(content)
            cookie.chmod(mode)
        # the check runs as the service user; here that is us, the file's owner
        return subprocess.run(["/bin/sh", "-c", script], capture_output=True).returncode == 0

    assert starts(COOKIE + "\n", 0o600) and starts(COOKIE + "\n", 0o400)
    assert not starts(COOKIE + "\n", 0o640)  # "must only be accessible by owner only" (kazoo_ei_config.c)
    assert not starts(COOKIE + "\n", 0o604)
    assert not starts("", 0o600)
    assert not starts(None)


# Debian bookworm erlang-base 1:25.2.3+dfsg-1+deb12u4, /lib/systemd/system/epmd.{socket,service},
# verbatim (for a self-contained verify root).
EPMD_SOCKET = """[Unit]
Description=Erlang Port Mapper Daemon Activation Socket

[Socket]
ListenStream=4369
BindIPv6Only=both
Accept=false

[Install]
WantedBy=sockets.target
"""
EPMD_SERVICE = """[Unit]
Description=Erlang Port Mapper Daemon
After=network.target
Requires=epmd.socket

[Service]
ExecStart=/usr/bin/epmd -systemd
Type=simple
StandardOutput=journal
StandardError=journal
User=epmd
Group=epmd

[Install]
Also=epmd.socket
WantedBy=multi-user.target
"""


@pytest.mark.parametrize("stack,name", [AWS, COMBINED])
def test_unit_passes_systemd_analyze_verify(tmp_path, stack, name):
    analyze = shutil.which("systemd-analyze")
    if analyze is None or not Path("/lib/systemd/system/sysinit.target").exists():
        pytest.fail("systemd-analyze and systemd's units are needed: run .ci/run, which installs them")
    # A throwaway root: systemd's own units, epmd's, the unit under test, and stand-ins for the
    # programs it runs (verify checks they exist and are executable; FreeSWITCH is not installed here).
    root = tmp_path / "root"
    shutil.copytree("/lib/systemd/system", root / "lib/systemd/system", symlinks=True)
    (root / "lib/systemd/system/epmd.socket").write_text(EPMD_SOCKET)
    (root / "lib/systemd/system/epmd.service").write_text(EPMD_SERVICE)
    unit = root / "etc/systemd/system/freeswitch.service"
    unit.parent.mkdir(parents=True)
    unit.write_text(unit_text(stack, name))
    for program in ("bin/sh", "bin/kill", "usr/bin/freeswitch", "usr/bin/epmd"):
        (root / program).parent.mkdir(parents=True, exist_ok=True)
        (root / program).write_text("#!/bin/true\n")
        (root / program).chmod(0o755)
    run = subprocess.run([analyze, "verify", f"--root={root}", "/etc/systemd/system/freeswitch.service"],
                         capture_output=True, text=True)
    # verify exits 0 on lines it ignores: any output is a failure
    assert run.returncode == 0 and not (run.stdout + run.stderr).strip(), run.stdout + run.stderr


# ----- install-media.sh -----------------------------------------------------------------------------

def test_install_media_passes_shellcheck_and_names_no_signalwire_token():
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.fail("shellcheck is not installed: run .ci/run, which installs the test tools")
    for script in ("install-media.sh", "freeswitch-local.sh"):
        text = (SCRIPTS / script).read_text()
        assert text.startswith("#!/bin/bash\n") and "set -euo pipefail" in text
        # SignalWire's repository needed a personal access token (freeswitch.signalwire.com, the
        # old SIGNALWIRE_TOKEN); citations of the signalwire/freeswitch sources are fine
        assert not re.search(r"token|signalwire\.com|signalwire_", text, re.I), script
        run = subprocess.run([shellcheck, "-x", script], capture_output=True, text=True, cwd=SCRIPTS)
        assert run.returncode == 0, run.stdout
    for template in ("freeswitch.service.j2", "freeswitch-local.env.j2", "freeswitch-modules.conf.xml.j2"):
        assert not re.search(r"token|signalwire\.com|signalwire_", (CLOUD_INIT_DIR / "templates" / template).read_text(), re.I)


# Stand-ins for what needs the network or a real package: appended to lib.sh on the fake host, they
# record their arguments. The rest of lib.sh is the real one (ensure_system_user, fetch_archive with
# its sha256 check, ...), and curl serves the real pinned archive.
LIB_STANDINS = """
apt_install() { echo "apt_install $*" >> "$STUB_STATE/calls.log"; }
use_source() { echo "use_source $*" >> "$STUB_STATE/calls.log"; }
check_linked() { echo "check_linked $*" >> "$STUB_STATE/calls.log"; }
"""
CURL = """#!/bin/bash
out='' url=''
while [ $# -gt 0 ]; do case $1 in -o) out=$2; shift 2 ;; -*) shift ;; *) url=$1; shift ;; esac; done
echo "curl $url" >> "$STUB_STATE/calls.log"
cp "$ARCHIVE" "$out"
"""


@pytest.mark.skipif(not available(), reason="needs root and unshare (as in .ci/run)")
def test_install_media_on_a_fake_host(tmp_path):
    ctx = media_context(*AWS)
    host = FakeHost(tmp_path, {})
    (tmp_path / "host.env").write_text(render_template("host.env.j2", ctx))
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    (stubs / "curl").write_text(CURL)
    (stubs / "curl").chmod(0o755)
    archive = tmp_path / "archive.tar.gz"
    archive.write_bytes(upstream.archive("freeswitch_configs"))
    (tmp_path / "lib-standins.sh").write_text(LIB_STANDINS)
    rendered = stage_files(rendered_files(ctx), tmp_path / "rendered")
    usr = tmp_path / "ovl" / "usr-share"
    prepare = (
        f"set -e; mkdir -p {usr}/u {usr}/w; "
        f"mount -t overlay overlay -o lowerdir=/usr/share,upperdir={usr}/u,workdir={usr}/w /usr/share; "
        f"install -m 0755 {SCRIPTS}/install-media.sh /opt/kazoo-bootstrap/; "
        f"cat {tmp_path}/lib-standins.sh >> /opt/kazoo-bootstrap/lib.sh; "
        f"mkdir -p /etc/kazoo-bootstrap/files && cp -a {rendered}/. /etc/kazoo-bootstrap/files/; "
    )
    env = {"PATH": f"{stubs}:{STUBS}:{os.environ['PATH']}", "ARCHIVE": str(archive)}  # curl first, systemctl stand-in
    upper = tmp_path / "ovl" / "etc" / "u"
    tree = upper / CONF_DIR.lstrip("/").split("/", 1)[1]  # upper dir of /etc -> kazoo/freeswitch

    def run(extra: str = "") -> list[str]:
        before = len(host.calls)
        result = host.run(prepare + extra + "/opt/kazoo-bootstrap/install-media.sh", env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        return host.calls[before:]

    # first boot: nothing of FreeSWITCH's yet, the rendered files only in /etc/kazoo-bootstrap/files
    calls = run()
    assert "apt_install erlang-base" in calls
    libraries = next(c for c in calls if c.startswith("apt_install libssl3"))
    for lib in ("libspeex1", "libtiff6", "libodbc2", "libopus0", "libsndfile1", "libshout3", "libmpg123-0", "libpq5"):
        assert f" {lib}" in libraries
    assert "libsofia-sip-ua0" not in libraries and "libspandsp2" not in libraries  # bundled by the package
    assert calls.index("use_source freeswitch freeswitch*") < calls.index("apt_install freeswitch")
    assert "systemctl enable --now epmd.socket" in calls
    assert [c for c in calls if c.startswith("curl ")] == [f"curl {ctx.settings.sources.freeswitch_configs.url}"]
    # every module the rendered modules.conf.xml loads, mod_sofia, and the binary are checked
    (linked,) = [c.split()[1:] for c in calls if c.startswith("check_linked ")]
    modules = loads((rendered / CONF_DIR.lstrip("/") / "autoload_configs" / "modules.conf.xml").read_text())
    assert sorted(linked) == sorted(["/usr/bin/freeswitch", "/usr/lib/freeswitch/mod/mod_sofia.so",
                                     *(f"/usr/lib/freeswitch/mod/{m}.so" for m in modules)])
    # the 4.3 tree is the configuration directory, byte for byte
    assert snapshot_bytes(tree) == snapshot_bytes(tree43())
    # the account and the directories the unit names
    passwd = (upper / "passwd").read_text()
    uid = int(re.search(r"^freeswitch:x:(\d+):", passwd, re.M).group(1))
    assert re.search(r"^freeswitch:x:\d+:\d+:[^:]*:/var/lib/kazoo-freeswitch:/usr/sbin/nologin$", passwd, re.M)
    (exec_start,) = unit_values(unit_text(), "ExecStart")
    flags = dict(zip(exec_start.split()[1::], exec_start.split()[2::]))
    for flag in ("-db", "-cache", "-storage", "-temp", "-log"):
        d = tmp_path / "ovl" / flags[flag].split("/")[1] / "u" / flags[flag].split("/", 2)[2]
        assert d.is_dir() and d.stat().st_uid == uid and stat.S_IMODE(d.stat().st_mode) == 0o750, flag
    assert (usr / "u" / flags["-sounds"].split("/", 3)[3]).is_dir()
    # mod_kazoo's fallback ($HOME/.erlang.cookie) is the same cookie file
    home = unit_values(unit_text(), "Environment")[0].split("=", 1)[1]
    assert home == "/var/lib/kazoo-freeswitch"
    assert os.readlink(tmp_path / "ovl/var/u" / home.split("/", 2)[2] / ".erlang.cookie") == f"{CONF_DIR}/kazoo-cookie"

    # configure.sh then installs the rendered files into the tree; a re-run fetches nothing and
    # touches nothing
    configure = (f"install -m 0600 {rendered}{CONF_DIR}/kazoo-cookie {CONF_DIR}/kazoo-cookie; "
                 f"install -m 0644 {rendered}{CONF_DIR}/local.env {CONF_DIR}/local.env; "
                 f"install -m 0644 {rendered}{CONF_DIR}/autoload_configs/modules.conf.xml {CONF_DIR}/autoload_configs/; "
                 f"echo edited-by-freeswitch-local >> {CONF_DIR}/autoload_configs/kazoo.conf.xml; ")
    run(configure)
    installed = snapshot_bytes(tree)
    calls = run()
    assert not [c for c in calls if c.startswith("curl ")]
    assert snapshot_bytes(tree) == installed

    # a new pin replaces the tree and keeps the rendered files configure.sh put there
    calls = run("echo 0000 > /var/lib/kazoo-bootstrap/freeswitch-configs.sha256; ")
    assert [c for c in calls if c.startswith("curl ")]
    replaced = snapshot_bytes(tree)
    for rel in ("kazoo-cookie", "local.env", "autoload_configs/modules.conf.xml"):
        assert replaced[rel] == installed[rel], rel
    assert stat.S_IMODE((tree / "kazoo-cookie").stat().st_mode) == 0o600
    assert replaced["autoload_configs/kazoo.conf.xml"] == snapshot_bytes(tree43())["autoload_configs/kazoo.conf.xml"]


def snapshot_bytes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}
