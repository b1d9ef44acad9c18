"""Render a maximal AWS stack with 4, 40 and 400 media servers under mocks.

Reports the program's wall time and the dependency depth of the servers (the longest chain of
resources a server waits for). The depth must not grow with the count: no server waits for another.
Run: .venv/bin/python benchmarks/render_maximal.py
"""

from __future__ import annotations

import sys
import time
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from harness import run_stack_file  # noqa: E402

SERVER_TYPES = ("aws:ec2/instance:Instance", "hcloud:index/server:Server")


def server_depth(result) -> int:
    by_urn = {r.urn: r for r in result.registrations}

    @lru_cache(maxsize=None)
    def depth(urn: str) -> int:
        deps = [d for d in by_urn[urn].dependencies if d in by_urn]
        return 1 + max((depth(d) for d in deps), default=0)

    return max(depth(r.urn) for r in result.registrations if r.type in SERVER_TYPES)


def main(counts=(4, 40, 400)) -> int:
    print(f"{'media':>6} {'servers':>8} {'resources':>10} {'seconds':>8} {'depth':>6}")
    depths = []
    for count in counts:
        # a network large enough for 400 media hosts over 3 zones
        overrides = {"roles": {"media": {"count": count}}, "network": {"cidr": "10.0.0.0/12"}}
        start = time.perf_counter()
        result = run_stack_file("aws-maximal", overrides)
        seconds = time.perf_counter() - start
        servers = sum(r.type in SERVER_TYPES for r in result.registrations)
        depths.append(server_depth(result))
        print(f"{count:>6} {servers:>8} {len(result.registrations):>10} {seconds:>8.2f} {depths[-1]:>6}")
    if len(set(depths)) != 1:
        print("FAIL: server dependency depth grows with the count")
        return 1
    print("server dependency depth is constant: all servers are created in parallel")
    return 0


if __name__ == "__main__":
    sys.exit(main())
