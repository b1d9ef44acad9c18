"""Kazoo's nodes against the real openkazoo/kazoo-configs 4.4 tree (units, wrappers, configs) at the
pinned commit: the files we render sit where its units read them, name the nodes `sup` addresses,
and carry one cookie, the same as FreeSWITCH's mod_kazoo gets. Kazoo itself cannot be installed
here (its repository is unreachable): this is what can be checked without it.

Facts used (with their sources): relx 4.10's start script reads the node name from the `-name` line
of $VMARGS_PATH, and the cookie from its `-setcookie`, else from $HOME/.erlang.cookie (erlware/relx
v4.10.0 priv/templates/extended_bin); a -name without a host makes it run `erlexec -setcookie
"$COOKIE"` to learn one (relx_get_nodename); erlexec puts an args file's -setcookie on beam's argv
(reproduced by the review with Debian 12's OTP 25: `ps` shows `beam.smp ... -setcookie X`);
Kazoo's nodes then set the cookie from config.ini's [kazoo_apps] section (kazoo core/kazoo_apps/src/
kazoo_apps_init.erl); `sup` takes the cookie of the section named after the node it addresses
(kazoo core/sup/src/sup.erl with kazoo_config_init:read_cookie); mod_kazoo reads `cookie-file`.
"""

from __future__ import annotations

import configparser
import os
import re
import subprocess

import pytest

import upstream
from fakehost import FakeHost, available
from core.bootstrap import CLOUD_INIT_DIR, HostContext, rendered_files
from core.plan import plan_hosts
from core.roles import Role
from core.settings import load_settings
from harness import stack_config

SECRETS = {"erlang_cookie": "K" * 48, "couchdb_password": "p" * 32, "rabbitmq_password": "r" * 32,
           "couchdb_cookie": "c" * 48, "kamailio_db_password": "k" * 32}


@pytest.fixture(scope="module")
def tree():
    return upstream.tree("kazoo_configs")


def files(stack: str, role: Role) -> dict[str, str]:
    settings = load_settings(stack_config(stack))
    plan = plan_hosts(settings)
    host = plan.with_role(role)[0]
    return {p: c for p, (c, _) in rendered_files(HostContext(host, plan, settings, "198.51.100.7", SECRETS)).items()}


def host_fqdn(stack: str) -> str:
    settings = load_settings(stack_config(stack))
    return plan_hosts(settings).with_role(Role.APPLICATION)[0].fqdn


def unit_env(text: str) -> dict[str, str]:
    return dict(re.findall(r'^Environment="([A-Z_]+)=([^"]*)"', text, re.M))


@pytest.mark.parametrize("stack", ["aws-maximal", "hetzner-single"])
def test_the_trees_units_find_our_files_and_start_the_nodes_sup_addresses(tree, stack):
    ours = files(stack, Role.APPLICATION)
    for unit, node in (("kazoo-applications", "kazoo_apps"), ("kazoo-ecallmgr", "ecallmgr")):
        env = unit_env((tree / f"etc/systemd/system/{unit}.service").read_text())
        vm_args = ours[env["VMARGS_PATH"]]  # the unit's vm.args is one we render
        assert env["RELX_CONFIG_PATH"] in (f"/etc/kazoo/{node}.config",)  # installed from the tree
        assert (tree / "etc/kazoo" / f"{node}.config").exists()
        names = re.findall(r"^-name (\S+)$", vm_args, re.M)
        # relx wants exactly one -name; with its host, relx never runs the erlexec that learns one
        assert names == [f"{node}@{host_fqdn(stack)}"]
        # no cookie in what reaches beam's command line: relx and the VM read it from $HOME
        assert SECRETS["erlang_cookie"] not in vm_args and "-setcookie" not in vm_args
        assert ours["/opt/kazoo/.erlang.cookie"] == SECRETS["erlang_cookie"] + "\n"
        wrapper = (tree / "sbin" / unit).read_text()
        assert "export HOME=${KAZOO_ROOT:-/opt/kazoo}" in wrapper  # where both nodes find that file
        # the wrapper the unit runs exports KAZOO_NODE from its own name, for sup
        wrapper = (tree / "sbin" / unit).read_text()
        assert 'export KAZOO_NODE="${NAME}"' in wrapper
    # every other line of the tree's vm.args is kept (only the name and cookie lines differ)
    for node in ("kazoo_apps", "ecallmgr"):
        upstream_lines = [l for l in (tree / f"etc/kazoo/{node}.vm.args").read_text().splitlines()
                          if l.strip() and not l.startswith("#") and not l.startswith(("-setcookie", "-name"))]
        assert [l for l in upstream_lines if l not in ours[f"/etc/kazoo/{node}.vm.args"].splitlines()] == []


def test_one_cookie_for_both_nodes_sup_and_mod_kazoo(tree):
    app = files("aws-maximal", Role.APPLICATION)
    ini = configparser.ConfigParser(interpolation=None, strict=False)
    ini.read_string(app["/etc/kazoo/config.ini"])
    assert ini["kazoo_apps"]["cookie"] == ini["ecallmgr"]["cookie"] == SECRETS["erlang_cookie"]
    # config.ini has every section the tree's has, with our values
    theirs = configparser.ConfigParser(interpolation=None, strict=False)
    theirs.read_string((tree / "etc/kazoo/config.ini").read_text())
    assert set(theirs.sections()) <= set(ini.sections())
    media = files("aws-maximal", Role.MEDIA)
    assert media["/etc/kazoo/freeswitch/kazoo-cookie"] == SECRETS["erlang_cookie"] + "\n"


def test_sup_is_pointed_at_the_node_that_runs_each_function():
    """ecallmgr_maintenance runs on ecallmgr@<fqdn> (its own node); the others on kazoo_apps."""
    ecallmgr = (CLOUD_INIT_DIR / "remote" / "ecallmgr.sh").read_text()
    assert "kz_sup -n ecallmgr ecallmgr_maintenance" in ecallmgr
    for script in ("kazoo-first-start.sh", "master-account.sh"):
        text = (CLOUD_INIT_DIR / "remote" / script).read_text()
        for call in re.findall(r"kz_sup(?:_checked)? ([^\n]*)", text):
            assert not call.startswith(("-n", "-c")), call  # kazoo_apps; never a cookie on the line


@pytest.mark.skipif(not (os.path.exists("/usr/bin/erl") and os.path.exists("/usr/bin/erlc")),
                    reason="needs Debian's erlang-base (.ci/run installs it)")
@pytest.mark.parametrize("node", ["kazoo_apps", "ecallmgr"])
def test_a_vm_started_from_the_rendered_vm_args_has_the_cookie_but_not_on_its_command_line(tmp_path, node):
    """The rendered vm.args started by a real erlexec, as relx's `foreground` does (erlexec ...
    -args_file $VMARGS_PATH), with HOME holding the rendered .erlang.cookie (0400, as configure.sh
    installs it): the node has its full name and the stack's cookie, and neither beam's argv nor
    anything else on its command line carries the cookie (review B3). Debian 12's OTP 25 stands in
    for the package's OTP 26; `kazoo_apps_app`, which the args file starts, is a stand-in module that
    reports and halts."""
    ours = files("aws-maximal", Role.APPLICATION)
    fqdn = host_fqdn("aws-maximal")
    home = tmp_path / "home"
    home.mkdir()
    cookie = home / ".erlang.cookie"
    cookie.write_text(ours["/opt/kazoo/.erlang.cookie"])
    cookie.chmod(0o400)
    args = tmp_path / "vm.args"
    args.write_text(ours[f"/etc/kazoo/{node}.vm.args"])
    (tmp_path / "kazoo_apps_app.erl").write_text(
        "-module(kazoo_apps_app).\n-export([start/0]).\n"
        "start() ->\n"
        "    {ok, Argv} = file:read_file(\"/proc/\" ++ os:getpid() ++ \"/cmdline\"),\n"
        "    io:format(\"NODE ~s~nCOOKIE ~s~nARGV ~s~n\", [node(), erlang:get_cookie(), Argv]),\n"
        "    halt(0).\n")
    subprocess.run(["erlc", "-o", str(tmp_path), str(tmp_path / "kazoo_apps_app.erl")], check=True)
    # a network of its own: the VM's epmd and distribution stay inside it
    script = (f"ip link set lo up && echo '127.0.0.1 {fqdn}' > {tmp_path}/hosts && "
              f"mount --bind {tmp_path}/hosts /etc/hosts && "
              f"HOME={home} exec erl -noshell -pa {tmp_path} -args_file {args}")
    run = subprocess.run(["unshare", "--net", "--mount", "--propagation", "private", "sh", "-c", script],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    out = dict(line.split(" ", 1) for line in run.stdout.splitlines() if " " in line)
    assert out["NODE"] == f"{node}@{fqdn}"
    assert out["COOKIE"] == SECRETS["erlang_cookie"]
    assert SECRETS["erlang_cookie"] not in out["ARGV"] and "-setcookie" not in out["ARGV"]
    assert "-name" in out["ARGV"]  # the argv read is beam's own, args file expanded


@pytest.mark.skipif(not available(), reason="needs root and unshare (as in .ci/run)")
def test_ecallmgr_view_follows_the_installed_release(tmp_path):
    """Review B5: the view ecallmgr boots from is checked before every start (its drop-in's
    ExecStartPre, as root), so an upgraded release (a new kazoo_ecallmgr.boot) is what ecallmgr boots
    next. Everything it writes is root's: the view, and its fingerprint in the root-only state
    directory (a second review found a kazoo-owned view root let kazoo plant a symlink root wrote
    through)."""
    ours = files("aws-maximal", Role.APPLICATION)
    dropin = ours["/etc/systemd/system/kazoo-ecallmgr.service.d/kazoo.conf"]
    assert "ExecStartPre=+/opt/kazoo-bootstrap/ecallmgr-view.sh --start" in dropin and "Restart=on-failure" in dropin
    host = FakeHost(tmp_path, {"KAZOO_SKIP": ""})
    release = "/opt/kazoo/releases/0.0.0"
    setup = (f"install -m 0755 {CLOUD_INIT_DIR}/scripts/ecallmgr-view.sh /opt/kazoo-bootstrap/ && "
             ". /opt/kazoo-bootstrap/lib.sh && ensure_system_user kazoo /opt/kazoo && "
             f"mkdir -p {release} /opt/kazoo/bin /opt/kazoo/lib/kazoo_apps-4.4.0 /etc/kazoo && "
             "printf '#!/bin/sh\\nREL_VSN=\"0.0.0\"\\n' > /opt/kazoo/bin/kazoo && echo '26 0.0.0' > /opt/kazoo/releases/start_erl.data && "
             f"echo apps > {release}/kazoo.boot && echo v1 > {release}/kazoo_ecallmgr.boot && echo rel > {release}/kazoo.rel && ")
    show = ("cat /opt/kazoo-ecallmgr/releases/0.0.0/kazoo.boot /etc/kazoo/ecallmgr.env && "
            "stat -c '%U %n' /opt/kazoo-ecallmgr /opt/kazoo-ecallmgr/bin/kazoo && "
            "readlink /opt/kazoo-ecallmgr/releases/0.0.0/kazoo.rel /opt/kazoo-ecallmgr/releases/start_erl.data")
    run = host.run(setup + "/opt/kazoo-bootstrap/ecallmgr-view.sh && " + show + " && "
                   # an upgrade: a new boot file; the next start's check rebuilds the view
                   f"echo v2 > {release}/kazoo_ecallmgr.boot && /opt/kazoo-bootstrap/ecallmgr-view.sh && echo '== after' && "
                   + show + " && echo '== bumped' && "
                   # a package that bumps the release version (relx writes it into bin/kazoo)
                   "mkdir /opt/kazoo/releases/4.4.1 && echo v3 > /opt/kazoo/releases/4.4.1/kazoo_ecallmgr.boot && "
                   "sed -i 's/^REL_VSN=.*/REL_VSN=\"4.4.1\"/' /opt/kazoo/bin/kazoo && /opt/kazoo-bootstrap/ecallmgr-view.sh && "
                   "cat /opt/kazoo-ecallmgr/releases/4.4.1/kazoo.boot && grep -c 4.4.1 /opt/kazoo-ecallmgr/bin/kazoo && "
                   "test ! -e /opt/kazoo-ecallmgr/releases/0.0.0 && echo 'old view gone' && "
                   "rm /opt/kazoo/releases/4.4.1/kazoo_ecallmgr.boot && /opt/kazoo-bootstrap/ecallmgr-view.sh && "
                   "test ! -e /etc/kazoo/ecallmgr.env && echo 'env gone' && "
                   # before a start, the same release fails it, saying why (ecallmgr would die on 24517)
                   "if /opt/kazoo-bootstrap/ecallmgr-view.sh --start; then echo 'started anyway'; fi")
    assert run.returncode == 0, run.stdout + run.stderr
    before, after = run.stdout.split("== after")
    after, bumped = after.split("== bumped")
    assert before.splitlines()[:2] == ["v1", "KAZOO_BIN=/opt/kazoo-ecallmgr/bin/kazoo"]
    assert "root /opt/kazoo-ecallmgr\n" in before and "root /opt/kazoo-ecallmgr/bin/kazoo" in before
    assert f"{release}/kazoo.rel" in before and "/opt/kazoo/releases/start_erl.data" in before
    assert after.splitlines()[1] == "v2"
    # review2 N4: the view follows the version the start script boots, not a hard-coded 0.0.0
    assert bumped.split()[:3] == ["v3", "1", "old"]
    assert "env gone" in bumped and "no kazoo_ecallmgr.boot" not in run.stderr  # (its words name the path)
    assert "WARNING: the kazoo package has no /opt/kazoo/releases/4.4.1/kazoo_ecallmgr.boot" in run.stderr
    assert "started anyway" not in bumped
    assert "ERROR: the kazoo package has no /opt/kazoo/releases/4.4.1/kazoo_ecallmgr.boot" in run.stderr
