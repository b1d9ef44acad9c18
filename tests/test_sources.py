"""The archive hash `pulumi up` takes when a stack pins none: the command line itself, run for real."""

from __future__ import annotations

import hashlib
import shlex
import subprocess

import pytest

from components.sources import HASH_COMMAND, _checked


def test_hash_command_prints_the_archive_sha256(tmp_path):
    archive = tmp_path / "configs.tar.gz"
    archive.write_bytes(b"\x1f\x8b kazoo-configs stand-in " * 100)
    run = subprocess.run(["sh", "-c", f"{HASH_COMMAND} {shlex.quote(archive.as_uri())}"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert _checked(run.stdout) == hashlib.sha256(archive.read_bytes()).hexdigest()


def test_hash_command_fails_when_the_archive_cannot_be_fetched(tmp_path):
    run = subprocess.run(["sh", "-c", f"{HASH_COMMAND} {shlex.quote((tmp_path / 'missing').as_uri())}"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0


def test_anything_but_a_sha256_is_refused():
    with pytest.raises(ValueError):
        _checked("<html>rate limited</html>")
