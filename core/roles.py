"""The five kinds of Kazoo server, described once."""

from enum import Enum


class Role(str, Enum):
    DATABASE = "database"  # CouchDB 3, clustered
    BROKER = "broker"  # RabbitMQ, independent brokers (Kazoo does not cluster them)
    APPLICATION = "application"  # Kazoo apps with crossbar, and ecallmgr
    MEDIA = "media"  # FreeSWITCH with mod_kazoo
    PROXY = "proxy"  # Kamailio: registrar and SIP proxy

    def __str__(self) -> str:
        return self.value


ALL_ROLES: tuple[Role, ...] = tuple(Role)

# Host names in the maximal layout: <prefix><n>, e.g. db1, media2.
NAME_PREFIX = {
    Role.DATABASE: "db",
    Role.BROKER: "broker",
    Role.APPLICATION: "app",
    Role.MEDIA: "media",
    Role.PROXY: "proxy",
}
# Hosts of single and dual carry every role: kazoo1, kazoo2.
COMBINED_PREFIX = "kazoo"

# Roles whose public IPv4 must survive the server: carriers whitelist SIP peers by IP,
# and the API/UI address ends up in DNS and bookmarks.
STABLE_PUBLIC_IP_ROLES = frozenset({Role.PROXY, Role.MEDIA, Role.APPLICATION})
