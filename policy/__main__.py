"""The Kazoo policy pack: `pulumi preview --policy-pack policy`. Constructing PolicyPack starts the
policy server, so the policies themselves live in kazoo_policies.py, where tests import them."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The policies, beside this file, and the firewall matrix in core/ (the repository root) they read,
# importable however the CLI starts this file.
sys.path[:0] = [str(HERE), str(HERE.parent)]

from pulumi_policy import EnforcementLevel, PolicyPack  # noqa: E402

from kazoo_policies import ALL_POLICIES  # noqa: E402

PolicyPack(name="kazoo", enforcement_level=EnforcementLevel.MANDATORY, policies=ALL_POLICIES)
