"""The real upstream configuration trees, at the commits the program pins, from a local mirror.

The hosts download GitHub's `/archive/<commit>.tar.gz`; tests take the same trees from git bundles
of the upstream repositories (`KAZOO_TEST_MIRROR`, which `.ci/run` points at the shared mirror; see
its README). `git archive` with the prefix `<repo>-<commit>/` has GitHub's layout (one top folder),
not GitHub's bytes, so a test that serves an archive pins the sha256 of the bytes it serves.
No test reaches GitHub: without the mirror these tests fail (in CI) rather than skip.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
from functools import lru_cache
from pathlib import Path

from core.settings.sources import FREESWITCH_CONFIGS_COMMIT, KAMAILIO_CONFIGS_COMMIT, KAZOO_CONFIGS_COMMIT

ROOT = Path(__file__).resolve().parent.parent
MIRROR = Path(os.environ.get("KAZOO_TEST_MIRROR", ROOT.parent / "shared" / "mirror"))
CACHE = Path(os.environ.get("KAZOO_TEST_CACHE", "/var/cache/kazoo-tests"))

# sources key -> (bundle, GitHub repository name, pinned commit)
TREES = {
    "kazoo_configs": ("openkazoo+kazoo-configs.bundle", "kazoo-configs", KAZOO_CONFIGS_COMMIT),
    "kamailio_configs": ("openkazoo+kamailio-configs.bundle", "kamailio-configs", KAMAILIO_CONFIGS_COMMIT),
    "freeswitch_configs": ("2600hz+kazoo-configs-freeswitch.bundle", "kazoo-configs-freeswitch", FREESWITCH_CONFIGS_COMMIT),
}


def mirror_missing() -> str | None:
    """None when every bundle is there, else what is missing (the tests fail with this)."""
    for bundle, _, _ in TREES.values():
        if not (MIRROR / bundle).is_file():
            return f"{MIRROR / bundle} is missing: set KAZOO_TEST_MIRROR to the upstream mirror (.ci/run does)"
    return None


def _git_dir(key: str) -> Path:
    bundle, name, _ = TREES[key]
    git_dir = CACHE / f"{name}.git"
    if not (git_dir / ".complete").exists():
        missing = mirror_missing()
        if missing:
            raise FileNotFoundError(missing)
        CACHE.mkdir(parents=True, exist_ok=True)
        with open(CACHE / f".{name}.lock", "w") as lock:  # test processes may run side by side
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (git_dir / ".complete").exists():
                shutil.rmtree(git_dir, ignore_errors=True)
                subprocess.run(["git", "clone", "-q", "--mirror", str(MIRROR / bundle), str(git_dir)], check=True)
                (git_dir / ".complete").touch()
    return git_dir


@lru_cache(maxsize=None)
def archive(key: str, commit: str | None = None) -> bytes:
    """The tree of sources.<key> at its pinned commit as GitHub lays it out: a tar.gz whose one top
    folder is `<repo>-<commit>/`."""
    _, name, pinned = TREES[key]
    commit = commit or pinned
    out = subprocess.run(
        ["git", f"--git-dir={_git_dir(key)}", "archive", "--format=tar.gz", f"--prefix={name}-{commit}/", commit],
        check=True, capture_output=True,
    )
    return out.stdout


def archive_sha256(key: str) -> str:
    return hashlib.sha256(archive(key)).hexdigest()


@lru_cache(maxsize=None)
def tree(key: str) -> Path:
    """The pinned tree, unpacked once (top folder stripped), read-only by convention."""
    _, name, commit = TREES[key]
    target = CACHE / "trees" / f"{name}-{commit}"
    if not (target / ".complete").exists():
        (CACHE / "trees").mkdir(parents=True, exist_ok=True)
        with open(CACHE / "trees" / f".{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (target / ".complete").exists():
                shutil.rmtree(target, ignore_errors=True)
                target.mkdir(parents=True)
                with tarfile.open(fileobj=io.BytesIO(archive(key)), mode="r:gz") as tar:
                    for member in tar.getmembers():
                        member.name = member.name.split("/", 1)[1] if "/" in member.name else ""
                        if member.name:
                            tar.extract(member, target, filter="data")
                (target / ".complete").touch()
    return target
