"""The layout as a Graphviz diagram, in the spirit of Kazoo's own architecture figures: servers grouped
by role, and an edge for each kind of traffic between roles (AMQP, HTTP to CouchDB, SIP, RTP, Erlang).

The edges are not drawn by hand: they are the peer rows of the firewall matrix, so the picture shows
exactly what the firewalls allow. Plain text out (DOT), stable for the same input.
"""

from __future__ import annotations

from core.firewall import ERLANG_DIST_PORTS, EPHEMERAL_PORTS, RTP_PORTS, Cidrs, Rule, firewall_matrix, overlaps
from core.plan import Plan
from core.roles import ALL_ROLES, Role
from core.settings import Layout, Settings

TITLES = {
    Role.PROXY: "Kamailio (proxy)",
    Role.MEDIA: "FreeSWITCH (media)",
    Role.APPLICATION: "Kazoo apps, crossbar, ecallmgr (application)",
    Role.BROKER: "RabbitMQ (broker)",
    Role.DATABASE: "CouchDB (database)",
}
FILL = {
    Role.PROXY: "#e8f0fe",
    Role.MEDIA: "#fde8e8",
    Role.APPLICATION: "#e8f6ea",
    Role.BROKER: "#fff4e0",
    Role.DATABASE: "#f0e8fa",
}
# Kind of traffic -> edge colour. The kinds Kazoo's figures draw, plus the operators' way in.
KINDS = {
    "SIP": "#1a7f37",
    "RTP": "#cf222e",
    "AMQP": "#bc4c00",
    "HTTP to CouchDB": "#0969da",
    "HTTP": "#0969da",
    "Erlang": "#8250df",
    "cluster": "#8250df",
}
EXTERNAL = {
    "sipCidrs": "Phones and carriers\\n(sipCidrs)",
    "carrierCidrs": "Carriers\\n(carrierCidrs)",
    "apiCidrs": "API and UI users\\n(apiCidrs)",
}


def kind_of(rule: Rule) -> str:
    low, high = rule.ports
    if rule.ports == RTP_PORTS:
        return "RTP"
    if low in (5060, 5061, 5064, 5065, 5080, 7000, 7001, 11000):
        return "SIP"
    if low == 5672:
        return "AMQP"
    if low in (5984, 5986):
        return "HTTP to CouchDB"
    if low in (4369, 8031) or overlaps(rule.ports, ERLANG_DIST_PORTS) or rule.ports == EPHEMERAL_PORTS:
        return "Erlang"
    if low in (22, 15672):
        return "admin"  # SSH and the RabbitMQ UI: every role has them, the figure leaves them out
    return "HTTP"  # crossbar, Monster UI, the media and fax proxies


# Left to right as a call flows: callers, Kamailio, FreeSWITCH, the apps, then the bus and the data.
# An edge against this order does not pull the layout (constraint=false).
ORDER = ["sipCidrs", "carrierCidrs", "apiCidrs", "proxy", "media", "application", "broker", "database"]


def _node(role: Role, host: str) -> str:
    return f'"{role.value}:{host}"'


def layout_dot(settings: Settings, plan: Plan, title: str) -> str:
    combined = settings.layout is not Layout.MAXIMAL
    lines = [
        "digraph kazoo {",
        f'  graph [rankdir=LR, compound=true, nodesep=0.3, ranksep=1.4, fontname="Helvetica", '
        f'fontsize=16, labelloc=t, label="{title}"];',
        '  node [shape=box, style="rounded,filled", fillcolor=white, fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=9, arrowsize=0.7];',
    ]
    for role in ALL_ROLES:
        hosts = plan.with_role(role)
        lines.append(f"  subgraph cluster_{role.value} {{")
        lines.append(f'    label="{TITLES[role]}"; style="rounded,filled"; fillcolor="{FILL[role]}"; color="#8c959f";')
        for host in hosts:
            label = f"{host.name}\\n{host.private_ip}" + ("" if combined else f"\\n{host.zone}")
            lines.append(f'    {_node(role, host.name)} [label="{label}"];')
        lines.append("  }")
    if combined:
        names = ", ".join(h.name for h in plan.hosts)
        lines.append(f'  note [shape=note, fillcolor="#f6f8fa", label="{names}:\\neach host carries every role"];')

    rules = [r for r in firewall_matrix(settings) if kind_of(r) != "admin"]
    used_external = sorted({r.source.name for r in rules if isinstance(r.source, Cidrs) and r.source.cidrs})
    for name in used_external:
        lines.append(f'  "{name}" [shape=ellipse, fillcolor="#f6f8fa", label="{EXTERNAL.get(name, name)}"];')

    edges: dict[tuple[str, str, str], set[str]] = {}
    for rule in rules:
        source = rule.source.name if isinstance(rule.source, Cidrs) else rule.source.value
        # within a role (the CouchDB cluster) one edge says it all: its nodes talk HTTP and Erlang
        kind = "cluster" if source == rule.role.value else kind_of(rule)
        edges.setdefault((source, rule.role.value, kind), set()).add(f"{rule.port_text}/{rule.protocol}")
    for (source, target, kind), ports in sorted(edges.items()):
        target_role = Role(target)
        head = _node(target_role, plan.with_role(target_role)[0].name)
        attrs = [f'lhead=cluster_{target}', f'color="{KINDS[kind]}"', f'fontcolor="{KINDS[kind]}"',
                 f'label="{kind} {_ports_label(ports)}"']
        if ORDER.index(source) > ORDER.index(target):
            attrs.append("constraint=false")
        if source in EXTERNAL:
            tail = f'"{source}"'
        elif source == target:
            # within one role (the CouchDB cluster): an edge between two of its nodes
            hosts = plan.with_role(target_role)
            tail = _node(target_role, hosts[-1].name)
            attrs = [a for a in attrs[1:] if a != "constraint=false"] + ["constraint=false"]
        else:
            source_role = Role(source)
            tail = _node(source_role, plan.with_role(source_role)[-1].name)
            attrs.insert(0, f"ltail=cluster_{source}")
        lines.append(f"  {tail} -> {head} [{', '.join(attrs)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _ports_label(ports: set[str]) -> str:
    """'5060/tcp, 5060/udp' -> '5060 tcp+udp': short edge labels."""
    by_port: dict[str, list[str]] = {}
    for item in sorted(ports):
        port, proto = item.split("/")
        by_port.setdefault(port, []).append(proto)
    return ", ".join(f"{port} {'+'.join(protos)}" for port, protos in by_port.items())
