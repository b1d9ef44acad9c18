"""The Kazoo policy pack: `pulumi preview --policy-pack policy`. Constructing PolicyPack starts the
policy server, so the policies themselves live in kazoo_policies.py, where tests import them."""

import sys
from pathlib import Path

# The policies read the port lists of the firewall matrix in core/ (the repository root).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import EnforcementLevel, PolicyPack  # noqa: E402

from kazoo_policies import ALL_POLICIES  # noqa: E402

PolicyPack(name="kazoo", enforcement_level=EnforcementLevel.MANDATORY, policies=ALL_POLICIES)
