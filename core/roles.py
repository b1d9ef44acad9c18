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

# The shared secrets the program generates: name -> length. Alphanumeric only: they land in INI,
# Erlang args, AMQP URIs and shell env files.
SECRET_LENGTHS = {
    "erlang_cookie": 48,  # Kazoo apps, ecallmgr and FreeSWITCH mod_kazoo
    "couchdb_cookie": 48,  # the CouchDB cluster's Erlang cookie
    "couchdb_password": 32,  # CouchDB admin "kazoo"
    "rabbitmq_password": 32,  # RabbitMQ user "kazoo" on every broker
    "kamailio_db_password": 32,  # role "kamailio" of the PostgreSQL beside each Kamailio
}

# The shared secrets each role's software reads, and nothing more: a host carries the union over its
# roles, so a compromised SIP proxy holds no CouchDB password and no Erlang cookie.
ROLE_SECRETS: dict[Role, frozenset[str]] = {
    # the cluster's Erlang cookie (vm.args) and the admin password (pre-hashed in the ini; plain in
    # host.env for the cluster setup and readiness checks)
    Role.DATABASE: frozenset({"couchdb_cookie", "couchdb_password"}),
    Role.BROKER: frozenset({"rabbitmq_password"}),  # its own user
    # Kazoo's cookie (shared with ecallmgr, sup and mod_kazoo), CouchDB and AMQP credentials
    Role.APPLICATION: frozenset({"erlang_cookie", "couchdb_password", "rabbitmq_password"}),
    Role.MEDIA: frozenset({"erlang_cookie"}),  # mod_kazoo talks Erlang to ecallmgr, nothing else
    # the kazoo module's AMQP URLs and the password of its own PostgreSQL
    # (and, with sip.tls, the private key of the SIP domain's certificate)
    Role.PROXY: frozenset({"rabbitmq_password", "kamailio_db_password", "sip_tls_key"}),
}


def secrets_for(roles: tuple[Role, ...], secrets: dict[str, str]) -> dict[str, str]:
    """The subset of `secrets` that hosts carrying `roles` may receive."""
    allowed = frozenset().union(*(ROLE_SECRETS[r] for r in roles))
    return {k: v for k, v in secrets.items() if k in allowed}
