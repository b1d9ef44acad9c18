"""The offline plan command (tools/plan.py): deterministic, complete, secret-free, and a layout diagram
drawn from the firewall matrix."""

from __future__ import annotations

import difflib
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from core.diagram import layout_dot
from core.firewall import firewall_matrix
from core.plan import plan_hosts
from core.settings import load_settings
from harness import ROOT, STACKS, stack_config
from tools.plan import main, read_stack_file

DOCS = ROOT / "docs" / "diagrams"


def plan_of(stack_file: Path, out: Path, *extra: str) -> str:
    assert main([str(stack_file), "--out", str(out), *extra]) == 0
    return (out / "plan.txt").read_text()


@pytest.fixture(scope="module")
def maximal(tmp_path_factory):
    out = tmp_path_factory.mktemp("plan")
    return out, plan_of(STACKS / "Pulumi.aws-maximal.yaml", out)


def test_plan_is_deterministic(maximal, tmp_path):
    out, text = maximal
    again = plan_of(STACKS / "Pulumi.aws-maximal.yaml", tmp_path)
    assert again == text
    for name in ("layout.dot", "layout.svg"):
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes()


def test_plan_lists_hosts_matrix_resources_steps_and_user_data(maximal):
    _, text = maximal
    settings = load_settings(stack_config("aws-maximal"))
    plan = plan_hosts(settings)
    for host in plan.hosts:
        assert re.search(rf"^{host.name}\s+{host.roles[0].value}\s+{host.zone}\s+{re.escape(host.private_ip)}\s+{re.escape(host.fqdn)}", text, re.M)
        assert f"## User data of {host.name} (" in text
    matrix = text.split("## Firewall matrix")[1].split("\n\n")[0].splitlines()
    assert len(matrix) - 3 == len(firewall_matrix(settings))  # title, header, rule line
    assert re.search(r"^aws:ebs/volume:Volume\s+db1-couchdb\s+database\s+protect", text, re.M)
    assert re.search(r"^register-media2\s+app1\s+kazoo-first-start wait-media2$", text, re.M)


def test_plan_holds_no_secret(maximal):
    _, text = maximal
    assert "<couchdb_password>" in text and "<public IP of media1>" in text
    # the mock engine's generated passwords never reach the plan
    assert not re.search(r"(erlangcookie|couchdbpassword|rabbitmqpassword)[0-9a-f]{4}", text)


def test_encrypted_stack_values_become_placeholders(tmp_path):
    source = (STACKS / "Pulumi.hetzner-single.yaml").read_text()
    stack = tmp_path / "Pulumi.team.yaml"
    stack.write_text(source + "  kazoo:masterPassword:\n    secure: v1:abc:def\n"
                            "  kazoo:sshPrivateKey:\n    secure: v1:ghi:jkl\n")
    config, secrets = read_stack_file(stack)
    assert "kazoo:masterPassword" not in config and secrets["kazoo:masterPassword"] == "<masterPassword>"
    assert "kazoo:sshPrivateKey" not in config and "BEGIN OPENSSH PRIVATE KEY" in secrets["kazoo:sshPrivateKey"]
    text = plan_of(stack, tmp_path / "out")
    assert "v1:abc:def" not in text and "v1:ghi:jkl" not in text  # ciphertext is never read
    assert "<couchdb_password>" in text


def test_bad_stack_file_is_one_line(tmp_path, capsys):
    stack = tmp_path / "Pulumi.bad.yaml"
    stack.write_text("config:\n  kazoo:cloud: gcp\n")
    assert main([str(stack)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: kazoo:cloud:") and err.count("\n") == 1


def test_a_plan_diff_reads_as_the_change(tmp_path):
    base = plan_of(STACKS / "Pulumi.aws-maximal.yaml", tmp_path / "a", "--no-user-data")
    grown_file = tmp_path / "Pulumi.aws-maximal.yaml"
    grown_file.write_text((STACKS / "Pulumi.aws-maximal.yaml").read_text().replace(
        "    media:\n      count: 2", "    media:\n      count: 3"))
    grown = plan_of(grown_file, tmp_path / "b", "--no-user-data")
    changed = [l for l in difflib.unified_diff(base.splitlines(), grown.splitlines(), lineterm="", n=0)
               if l[:1] in "+-" and not l.startswith(("+++", "---"))]
    headers = ("## Hosts (", "## Resources (", "## Orchestration steps over SSH (")
    for line in changed:
        counted = line[1:].startswith(headers) or set(line[1:]) <= {"-", " "}
        # every other line is a new host's, or the one step that lists every registration
        assert counted or "media3" in line or "media-eu-central-1c" in line or line[1:].startswith("readiness-app1 "), line
    removed = [l for l in changed if l.startswith("-") and not l[1:].startswith(headers)]
    assert all(l.startswith("-readiness-app1 ") or set(l[1:]) <= {"-", " "} for l in removed), removed
    assert any(l.startswith("+media3 ") for l in changed)
    assert len(changed) < 30


def test_diagram_draws_every_host_and_the_kinds_of_traffic(maximal):
    out, _ = maximal
    dot = (out / "layout.dot").read_text()
    settings = load_settings(stack_config("aws-maximal"))
    for host in plan_hosts(settings).hosts:
        assert f'"{host.roles[0].value}:{host.name}" [label="{host.name}\\n{host.private_ip}' in dot
    for kind in ("AMQP", "HTTP to CouchDB", "SIP", "RTP", "Erlang", "cluster"):
        assert re.search(rf'label="{kind} ', dot), kind
    # proxy and media hosts talk AMQP to the brokers; nothing talks AMQP to the database
    assert re.search(r'"proxy:proxy\d"\s*->\s*"broker:broker1" \[ltail=cluster_proxy, lhead=cluster_broker.*AMQP', dot)
    assert not re.search(r'-> "database:db1" \[[^\]]*AMQP', dot)
    if shutil.which("dot"):
        svg = ET.parse(out / "layout.svg").getroot()
        assert svg.tag.endswith("svg")
        assert (out / "layout.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("layout", ["single", "dual", "maximal"])
def test_readme_diagrams_are_current(layout):
    settings = load_settings(stack_config(f"aws-{layout}"))
    dot = layout_dot(settings, plan_hosts(settings), f"Kazoo {layout} layout (aws-{layout})")
    assert (DOCS / f"{layout}.dot").read_text() == dot, "regenerate docs/diagrams (README: Offline plan)"
    assert (DOCS / f"{layout}.svg").exists()
    assert f"docs/diagrams/{layout}.svg" in (ROOT / "README.md").read_text()
