"""Test helpers around the mock engine (tools/mock_engine.py): example stack files with the secrets
a user would have set, edited the way a user edits them."""

from __future__ import annotations

import base64
import gzip
import io
import tarfile
from typing import Any, Optional

from tools.mock_engine import (  # noqa: F401  (re-exported for the tests)
    MAIN,
    ROOT,
    STACKS,
    RecordingMonitor,
    Registration,
    Result,
    config_from_stack_file,
)
from tools.mock_engine import run_program as _run_program

# Secrets a stack file cannot carry in clear text; tests set them as `pulumi config set --secret` would.
TEST_SECRETS: dict[str, str] = {}


def deep_merge(base: Any, change: Any) -> Any:
    """Stack-file edits as a user makes them: nested objects merge, anything else replaces."""
    if isinstance(base, dict) and isinstance(change, dict):
        return {**base, **{k: deep_merge(base.get(k), v) for k, v in change.items()}}
    return change


def stack_config(name: str, overrides: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """A stack file's config with the secrets a user would have set, and some keys changed."""
    config = {**config_from_stack_file(STACKS / f"Pulumi.{name}.yaml"), **TEST_SECRETS}
    for key, value in (overrides or {}).items():
        config[f"kazoo:{key}"] = deep_merge(config.get(f"kazoo:{key}"), value)
    return config


def run_program(config: dict[str, Any], stack: str = "test", secrets: Optional[dict[str, str]] = None,
                preview: bool = False) -> Result:
    return _run_program(config, stack=stack, secrets=TEST_SECRETS if secrets is None else secrets, preview=preview)


def run_stack_file(name: str, overrides: Optional[dict[str, Any]] = None, **kwargs) -> Result:
    config = {k: v for k, v in stack_config(name, overrides).items() if k not in TEST_SECRETS}
    return run_program(config, stack=name, **kwargs)


def bundle_text(encoded: str) -> str:
    """Every file of a configuration bundle (the config step's stdin: base64 of a tar.gz), joined."""
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(base64.b64decode(encoded)))) as tar:
        return "\n".join(tar.extractfile(m).read().decode() for m in tar.getmembers() if m.isfile())
