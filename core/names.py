"""The names a stack publishes in its cloud's DNS (with `dns.zone`), planned as plain data.

- an A record per host with a stable public address: `<host>.<domain>`, and the matching reverse
  name (carriers that check reverse DNS accept the SIP peer);
- the SIP domain (`domain` itself): SRV records for `_sip._udp`, `_sip._tcp` and, with TLS,
  `_sips._tcp`, one target per proxy, equal priority and weight; NAPTR records saying which
  transports the domain offers, TLS first (RFC 3263 §4.1, RFC 2782 for SRV). Hetzner's DNS has no
  NAPTR type (hcloud-go hcloud/zone_rrset.go lists every RRSet type its API takes): there clients
  find the proxies from the SRV records alone, as RFC 3263 §4.1 allows when no NAPTR exists;
- `api.<domain>` (and `ui.<domain>` with Monster UI): the cloud's load balancer, which terminates
  HTTPS with a managed certificate for these names.
Targets are absolute names (a trailing dot), as both clouds' DNS take them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from core.plan import Host, Plan
from core.roles import Role
from core.settings import Cloud, Settings

TTL = 300
SIP_PORTS = {"udp": 5060, "tcp": 5060}
SIPS_PORT = 5061


@dataclass(frozen=True)
class RecordSet:
    name: str  # fully qualified, no trailing dot
    type: str  # "SRV" | "NAPTR"
    values: tuple[str, ...]
    key: str  # stable, for the resource name: "sip-udp-srv"


@dataclass(frozen=True)
class Names:
    hosts: tuple[tuple[str, Host], ...]  # (fqdn, host) for every A (and PTR) record
    sip: tuple[RecordSet, ...]
    api: Optional[str]  # the API's name (None without an application host)
    ui: Optional[str]  # Monster UI's name (None without it)
    zone: str


def plan_names(settings: Settings, plan: Plan) -> Optional[Names]:
    """The records of the stack, or None without `dns.zone`."""
    if not settings.dns.zone:
        return None
    domain = settings.domain
    proxies = plan.with_role(Role.PROXY)
    sip: list[RecordSet] = []
    if proxies:
        transports = [("udp", "_sip._udp", 5060, "SIP+D2U"), ("tcp", "_sip._tcp", 5060, "SIP+D2T")]
        if settings.sip.tls:
            transports.insert(0, ("tls", "_sips._tcp", SIPS_PORT, "SIPS+D2T"))
        naptr = []
        for order, (key, service, port, flag) in enumerate(transports, start=1):
            sip.append(RecordSet(
                f"{service}.{domain}", "SRV",
                tuple(f"10 10 {port} {p.fqdn}." for p in proxies),
                f"sip-{key}-srv",
            ))
            naptr.append(f'{order * 10} 50 "s" "{flag}" "" {service}.{domain}.')
        if settings.cloud is not Cloud.HETZNER:
            sip.append(RecordSet(domain, "NAPTR", tuple(naptr), "sip-naptr"))
    has_api = bool(plan.with_role(Role.APPLICATION))
    return Names(
        hosts=tuple((h.fqdn, h) for h in plan.hosts if h.stable_public_ip),
        sip=tuple(sip),
        api=f"api.{domain}" if has_api else None,
        ui=f"ui.{domain}" if has_api and settings.sources.monster_ui is not None else None,
        zone=settings.dns.zone,
    )


def relative(name: str, zone: str) -> str:
    """`name` relative to `zone` ("@" for the apex), as Hetzner's RRsets name records."""
    return "@" if name == zone else name.removesuffix("." + zone)
