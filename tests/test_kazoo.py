"""Kazoo's nodes against the real openkazoo/kazoo-configs 4.4 tree (units, wrappers, configs) at the
pinned commit: the files we render sit where its units read them, name the nodes `sup` addresses,
and carry one cookie, the same as FreeSWITCH's mod_kazoo gets. Kazoo itself cannot be installed
here (its repository is unreachable): this is what can be checked without it.

Facts used (with their sources): relx 4.10's start script reads the node name from the `-name` line
and the cookie from `-setcookie` of $VMARGS_PATH (erlware/relx v4.10.0 priv/templates/extended_bin);
Kazoo's nodes then set the cookie from config.ini's [kazoo_apps] section (kazoo core/kazoo_apps/src/
kazoo_apps_init.erl); `sup` takes the cookie of the section named after the node it addresses
(kazoo core/sup/src/sup.erl with kazoo_config_init:read_cookie); mod_kazoo reads `cookie-file`.
"""

from __future__ import annotations

import configparser
import re

import pytest

import upstream
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
        assert names == [node]  # relx wants exactly one -name; the node is <name>@<fqdn>
        cookies = re.findall(r"^-setcookie (\S+)$", vm_args, re.M)
        assert cookies == [SECRETS["erlang_cookie"]]
        # the wrapper the unit runs exports KAZOO_NODE from its own name, for sup
        wrapper = (tree / "sbin" / unit).read_text()
        assert 'export KAZOO_NODE="${NAME}"' in wrapper
    # every other line of the tree's vm.args is kept (only the cookie line differs)
    for node in ("kazoo_apps", "ecallmgr"):
        upstream_lines = [l for l in (tree / f"etc/kazoo/{node}.vm.args").read_text().splitlines()
                          if l.strip() and not l.startswith("#") and not l.startswith("-setcookie")]
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
