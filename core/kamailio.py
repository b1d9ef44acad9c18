"""How a proxy's Kamailio listens and how big its PostgreSQL must be, for the local.cfg template.

openkazoo/kamailio-configs 6.0 binds listeners by name (`listen=UDP_SIP` in local.cfg; `TLS_SIP`,
`TLS_ALG_SIP` in tls-role.cfg; `TCP_WS`, `TLS_WSS` in websockets-role.cfg), each a substdef of
`proto:MY_IP_ADDRESS:port`. Per cloud:
- Hetzner puts the public IPv4 on the interface: the named listeners bind it (phones, carriers),
  and the private address gets its own UDP/TCP 5060 and 7000 listeners for FreeSWITCH (MY_IP_ADDRESS,
  which the registrar hands ecallmgr as the path back to a phone, stays the private address);
- AWS maps the Elastic IP 1:1 onto the private address: every listener binds the private address
  and advertises the Elastic IP.
On both, FreeSWITCH faces a listener of its own on the private address, port 5080, never advertised
(review B1). Through an advertising socket, FreeSWITCH's in-dialog requests (BYE, re-INVITE) would
go to the proxy's Elastic IP, hairpin through the internet gateway and arrive from the media host's
Elastic IP, outside the security groups' peer rules and the dispatcher sets, where the NAT role
aliases FreeSWITCH's Contact to that public address. With its own socket:
- the dispatcher sends to FreeSWITCH, and probes it, from 5080 (ds_default_socket: the socket of
  every destination without one, kamailio src/modules/dispatcher/dispatch.c pack_dest and the
  OPTIONS pings), and so does every other initial request from outside, where the tree's routes
  lose the dispatcher's socket (custom-routes.cfg, review 6 D1); the registrar hands ecallmgr
  `Proxy-Path: sip:MY_IP_ADDRESS:5080` for every transport (KZ_*_REGISTRAR_PORT,
  registrar-role.cfg), so FreeSWITCH calls phones through it too;
- a request that comes in on one socket and leaves on the other gets two Record-Route headers, one
  per side (rr's double RR: src/core/msg_translator.c COND_IF_DIFF_REALMS compares address, port and
  protocol), so FreeSWITCH's in-dialog requests come back to private:5080 and loose_route sends them
  on from the socket of the phone's side (src/modules/rr/loose.c);
- nat-traversal-role.cfg leaves requests received on 5080 alone (`$Rp == "5080"`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from core.plan import Host
from core.settings import Cloud, Settings

# name -> (protocol, port), as the tree's local.cfg defines them.
LISTENER_NAMES = {
    "UDP_SIP": ("udp", 5060),
    "TCP_SIP": ("tcp", 5060),
    "TLS_SIP": ("tls", 5061),
    "UDP_ALG_SIP": ("udp", 7000),
    "TCP_ALG_SIP": ("tcp", 7000),
    "TLS_ALG_SIP": ("tls", 7001),
    "TCP_WS": ("tcp", 5064),
    "UDP_WS_SIP": ("udp", 5064),
    "TLS_WSS": ("tls", 5065),
    "UDP_WSS_SIP": ("udp", 5065),
}
FREESWITCH_FACING_PORT = 5080  # the tree's own choice: nat-traversal-role.cfg skips it
# Workers: CHILDREN per UDP listener, TCP_CHILDREN for all TCP/TLS/WS connections. The tree's
# defaults (25 and 25) suit a dedicated 8-core proxy; these suit the 2-4 cores of the default sizes.
CHILDREN = 8
TCP_CHILDREN = 8
# Processes besides the SIP workers: main, timers, ctl, the 127.0.0.1:5090 listener's
# socket_workers=5 (default.cfg), the kazoo module's AMQP consumers (MY_AMQP_CONSUMER_PROCESSES 4,
# MY_AMQP_CONSUMER_WORKERS 16 in defs-amqp.cfg), presence and dispatcher timers, rtimers.
# Measured with Debian 13's Kamailio 6.0.1 and this tree (8 + 8 workers, five UDP listeners):
# 103 processes holding 93 PostgreSQL connections once started (8 x 5 + 8 + 55).
OTHER_PROCESSES = 55
# Connections per process, with room: sqlops opens its two (`cb`, `exec` in default.cfg) on first
# use, beside the one usrloc, presence, permissions, dispatcher and htable share.
CONNECTIONS_PER_PROCESS = 2
POSTGRES_RESERVED = 10  # superuser_reserved_connections (3) and the bootstrap's own psql, with room


@dataclass(frozen=True)
class KamailioPlan:
    # MY_IP_ADDRESS: always the private address. Besides the listener names, the tree uses it in
    # registrar-role.cfg's `Proxy-Path: sip:MY_IP_ADDRESS:port`, which ecallmgr hands FreeSWITCH as
    # the path to a registered phone: FreeSWITCH, on the private network, must reach it there.
    address: str
    listener_address: str  # what the named listeners (UDP_SIP, TLS_SIP, ...) bind
    internal_address: Optional[str]  # a second set of listeners on the private network (Hetzner)
    advertised: Optional[str]  # the public address the listeners advertise (AWS)
    children: int = CHILDREN
    tcp_children: int = TCP_CHILDREN

    listener_names = LISTENER_NAMES

    freeswitch_port = FREESWITCH_FACING_PORT

    def advertise(self, port: int) -> str:
        return f" advertise {self.advertised}:{port}" if self.advertised else ""

    @property
    def udp_listeners(self) -> int:
        """UDP sockets Kamailio opens: 5060 and 7000 on each address (WS/WSS UDP names are unused),
        and FreeSWITCH's 5080."""
        return (4 if self.internal_address else 2) + 1

    @property
    def processes(self) -> int:
        return self.children * self.udp_listeners + self.tcp_children + OTHER_PROCESSES

    @property
    def postgres_max_connections(self) -> int:
        return max(100, self.processes * CONNECTIONS_PER_PROCESS + POSTGRES_RESERVED)


def kamailio_plan(settings: Settings, host: Host, public_ip: Optional[str]) -> KamailioPlan:
    if settings.cloud is Cloud.HETZNER and public_ip:
        return KamailioPlan(address=host.private_ip, listener_address=public_ip, internal_address=host.private_ip,
                            advertised=None)
    return KamailioPlan(address=host.private_ip, listener_address=host.private_ip, internal_address=None,
                        advertised=public_ip)
