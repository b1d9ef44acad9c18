import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


import os  # noqa: E402

import pytest  # noqa: E402


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under .ci/run (KAZOO_STRICT=1) a test that would be skipped for a missing prerequisite (no
    root, a tool not installed, no upstream mirror) fails instead: CI must never pass by not testing."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("KAZOO_STRICT") and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under KAZOO_STRICT (a prerequisite is missing): {reason}"
