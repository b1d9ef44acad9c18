"""The offline plan: what a stack would deploy, with no Pulumi CLI, no credentials and no cloud.

    .venv/bin/python -m tools.plan stacks/examples/Pulumi.aws-maximal.yaml [--out DIR] [--no-user-data]

Runs the real program under the SDK's mocks, then prints, in a stable order: the hosts (roles, zone,
private IP, FQDN, size), the firewall matrix, the resources `pulumi up` would register, the
orchestration steps, and each host's rendered user-data. Secrets and public IPs (unknown until the
cloud assigns them) are shown as <placeholders>. With --out, writes plan.txt and the layout diagram
(layout.dot, layout.svg, layout.png; Graphviz's `dot`) there. The same input gives the same bytes,
so `diff -r` of two plans is a review of a change.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.roles import SECRET_LENGTHS  # noqa: E402
from core.bootstrap import HostContext, render_user_data  # noqa: E402
from core.diagram import layout_dot  # noqa: E402
from core.firewall import firewall_matrix  # noqa: E402
from core.orchestration import plan_steps  # noqa: E402
from core.plan import Plan, plan_hosts  # noqa: E402
from core.settings import Settings, SettingsError, load_settings  # noqa: E402
from core.plan import PlanError  # noqa: E402
from tools.mock_engine import Result, run_program  # noqa: E402

# Secret keys a stack holds encrypted (`secure:`) or not at all: the plan stands in placeholders.
SECRET_KEYS = ("sshPrivateKey", "masterPassword")
# Shaped like an unencrypted OpenSSH key (the settings check that much); it opens nothing.
PLACEHOLDER_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAA8c3NoUHJpdmF0ZUtleSBwbGFjZWhvbGRlcj4=\n-----END OPENSSH PRIVATE KEY-----\n"


def read_stack_file(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """(plain config, placeholder secrets) of a stack file, as `pulumi up` would see them."""
    config = dict((yaml.safe_load(path.read_text()) or {}).get("config") or {})
    secrets = {}
    for key in list(config):
        if isinstance(config[key], dict) and "secure" in config[key]:
            del config[key]
            secrets[key] = PLACEHOLDER_KEY if key.endswith(":sshPrivateKey") else f"<{key.split(':')[1]}>"
    return config, secrets


def _table(rows: list[list[str]], header: list[str]) -> list[str]:
    # Widths in steps of 8, so that one longer value rarely re-pads (and re-diffs) the whole table.
    widths = [-(-max(len(str(r[i])) for r in [header, *rows]) // 8) * 8 for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*header).rstrip(), fmt.format(*("-" * w for w in widths)).rstrip()] + [
        fmt.format(*map(str, r)).rstrip() for r in rows
    ]


def plan_text(stack: str, settings: Settings, plan: Plan, result: Result, user_data: bool = True) -> str:
    out = [f"# Offline plan of stack {stack}: {settings.layout.value} layout on {settings.cloud.value}",
           f"# zones {', '.join(settings.zones)}; network {plan.network_cidr}; domain {settings.domain}", ""]

    out.append(f"## Hosts ({len(plan.hosts)})")
    out += _table(
        [[h.name, " ".join(r.value for r in h.roles), h.zone, h.private_ip, h.fqdn, h.size,
          "stable" if h.stable_public_ip else "ephemeral"] for h in plan.hosts],
        ["host", "roles", "zone", "private IP", "FQDN", "size", "public IPv4"],
    )

    rules = firewall_matrix(settings)
    out += ["", f"## Firewall matrix ({len(rules)} rules; anything else is dropped)"]
    out += _table(
        [[r.role.value, r.protocol, r.port_text,
          f"{r.source.name} ({', '.join(r.source.cidrs) or 'none'})" if r.public else f"{r.source.value} hosts",
          r.purpose] for r in rules],
        ["role", "proto", "ports", "from", "purpose"],
    )

    # registration order depends on when outputs resolve: sort, so that two plans of one stack agree
    custom = sorted((r for r in result.registrations if r.custom), key=lambda r: r.urn)
    by_urn = {r.urn: r for r in result.registrations}
    out += ["", f"## Resources ({len(custom)})"]
    rows = []
    for r in custom:
        parent = by_urn.get(r.parent)
        flags = [f for f, on in (("protect", r.protect), ("delete-before-replace", r.delete_before_replace)) if on]
        if r.ignore_changes:
            flags.append("ignore:" + ",".join(r.ignore_changes))
        rows.append([r.type, r.name, parent.name if parent else "", " ".join(flags)])
    out += _table(rows, ["type", "name", "parent", "options"])

    if settings.orchestrate:
        steps = plan_steps(settings, plan)
        out += ["", f"## Orchestration steps over SSH ({len(steps)})"]
        out += _table([[s.name, s.host.name, " ".join(s.needs) or "(its server)"] for s in steps],
                      ["step", "runs on", "needs"])

    if user_data:
        secrets = {k: f"<{k}>" for k in SECRET_LENGTHS}
        for host in plan.hosts:
            ip = f"<public IP of {host.name}>" if host.stable_public_ip else None
            key = ("<orchestration public key>",) if settings.orchestrate and not settings.ssh_private_key else ()
            host_key = (f"<SSH host key of {host.name}>", "<its public half>") if settings.orchestrate else None
            pins = {k: a.sha256 or "<sha256 of the archive, taken at the first pulumi up>"
                    for k, a in settings.archives_in_use().items()}
            text = render_user_data(HostContext(host, plan, settings, ip, secrets, key, host_key, pins))
            out += ["", f"## User data of {host.name} ({len(text.encode())} bytes before gzip)", text.rstrip()]
    return "\n".join(out) + "\n"


def write_diagram(dot: str, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "layout.dot").write_text(dot)
    written = [out / "layout.dot"]
    binary = shutil.which("dot")
    if binary is None:
        print("graphviz `dot` not found: wrote layout.dot only", file=sys.stderr)
        return written
    for fmt in ("svg", "png"):
        target = out / f"layout.{fmt}"
        subprocess.run([binary, f"-T{fmt}", "-o", str(target), str(out / "layout.dot")], check=True)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.plan", description=__doc__.split("\n\n")[0])
    parser.add_argument("stack_file", type=Path, help="a stack file: stacks/Pulumi.<stack>.yaml or stacks/examples/Pulumi.<example>.yaml")
    parser.add_argument("--out", type=Path, help="directory for plan.txt and the layout diagram")
    parser.add_argument("--no-user-data", action="store_true", help="leave the rendered user-data out")
    args = parser.parse_args(argv)

    stack = args.stack_file.name.removeprefix("Pulumi.").removesuffix(".yaml")
    config, secrets = read_stack_file(args.stack_file)
    try:
        settings = load_settings({**config, **secrets})
        plan = plan_hosts(settings)
    except (SettingsError, PlanError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    result = run_program(config, stack=stack, secrets=secrets)
    text = plan_text(stack, settings, plan, result, user_data=not args.no_user_data)
    title = f"Kazoo {settings.layout.value} layout ({stack})"
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "plan.txt").write_text(text)
        for path in write_diagram(layout_dot(settings, plan, title), args.out):
            print(f"wrote {path}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
