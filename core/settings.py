"""The stack configuration (namespace `kazoo:`), parsed once into typed settings.

`load_settings` takes the raw key/value map Pulumi gives the program and returns `Settings`, or raises
`SettingsError` carrying one line that names the key and what is wrong. Every default lives here.
"""

from __future__ import annotations

import ipaddress
import json
from enum import Enum
from typing import Any, Optional

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from core.roles import ALL_ROLES, Role

NAMESPACE = "kazoo"
WORLD = ("0.0.0.0/0", "::/0")

# Hetzner network zones and the locations in each: a private network lives in one zone.
HETZNER_NETWORK_ZONES = {
    "eu-central": ("fsn1", "nbg1", "hel1"),
    "us-east": ("ash",),
    "us-west": ("hil",),
    "ap-southeast": ("sin",),
}

# Sizes when a stack sets none. Dedicated or compute-optimised types for media: RTP hates CPU steal.
DEFAULT_SIZES = {
    "hetzner": {
        "combined": "cx43",
        Role.DATABASE: "cx33",
        Role.BROKER: "cx23",
        Role.APPLICATION: "cx33",
        Role.MEDIA: "ccx13",
        Role.PROXY: "cx23",
    },
    "aws": {
        "combined": "m6i.xlarge",
        Role.DATABASE: "m6i.large",
        Role.BROKER: "c6i.large",
        Role.APPLICATION: "m6i.large",
        Role.MEDIA: "c6i.large",
        Role.PROXY: "c6i.large",
    },
}
DEFAULT_COUNTS = {Role.DATABASE: 3, Role.BROKER: 2, Role.APPLICATION: 2, Role.MEDIA: 2, Role.PROXY: 2}
COUCHDB_QUORUM = 3


class SettingsError(ValueError):
    """Bad stack configuration; str() is one line naming the key."""


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True
    )


class Cloud(str, Enum):
    HETZNER = "hetzner"
    AWS = "aws"


class Layout(str, Enum):
    SINGLE = "single"
    DUAL = "dual"
    MAXIMAL = "maximal"


def _check_cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError as err:
        raise ValueError(f"{value!r} is not a CIDR ({err})") from None


CidrList = list[StrictStr]


class RoleSettings(_Model):
    count: StrictInt = Field(default=0, description="hosts of this role in the maximal layout")
    size: Optional[StrictStr] = Field(default=None, description="Hetzner server type or EC2 instance type")

    @field_validator("count")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"must be at least 1 (got {value})")
        return value


class DatabaseSettings(RoleSettings):
    volume_size: StrictInt = Field(default=50, description="GB of the CouchDB data volume")
    # CouchDB keeps quorum with 3 copies; fewer nodes in maximal must be acknowledged.
    allow_below_quorum: StrictBool = False
    # CouchDB's [cluster] n (copies of each document) and q (shards per database) for new databases.
    n: Optional[StrictInt] = Field(default=None, description="copies; default: min(3, database nodes)")
    q: Optional[StrictInt] = Field(default=None, description="shards; default: 1 on one node, else 2")

    @field_validator("n", "q")
    @classmethod
    def _at_least_one(cls, value: Optional[int]) -> Optional[int]:
        if value is not None and not 1 <= value <= 64:
            raise ValueError(f"must be between 1 and 64 (got {value})")
        return value

    @field_validator("volume_size")
    @classmethod
    def _volume(cls, value: int) -> int:
        if not 10 <= value <= 10240:
            raise ValueError(f"must be between 10 and 10240 GB (got {value})")
        return value


def _role_default(role: Role):
    return lambda: (DatabaseSettings if role is Role.DATABASE else RoleSettings)(
        count=DEFAULT_COUNTS[role]
    )


class RolesSettings(_Model):
    database: DatabaseSettings = Field(default_factory=_role_default(Role.DATABASE))
    broker: RoleSettings = Field(default_factory=_role_default(Role.BROKER))
    application: RoleSettings = Field(default_factory=_role_default(Role.APPLICATION))
    media: RoleSettings = Field(default_factory=_role_default(Role.MEDIA))
    proxy: RoleSettings = Field(default_factory=_role_default(Role.PROXY))

    @model_validator(mode="before")
    @classmethod
    def _fill_counts(cls, data: Any) -> Any:
        # A role given with only a size keeps its default count.
        if isinstance(data, dict):
            data = dict(data)
            for role in ALL_ROLES:
                entry = data.get(role.value)
                if isinstance(entry, dict) and "count" not in entry:
                    data[role.value] = {**entry, "count": DEFAULT_COUNTS[role]}
        return data

    def of(self, role: Role) -> RoleSettings:
        return getattr(self, role.value)


class NetworkSettings(_Model):
    cidr: StrictStr = "10.20.0.0/16"

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        net = ipaddress.ip_network(_check_cidr(value))
        if net.version != 4 or not net.is_private:
            raise ValueError(f"{value} must be a private IPv4 range (RFC 1918)")
        if not 8 <= net.prefixlen <= 20:
            raise ValueError(f"{value} must be between /8 and /20 to hold the host plan")
        return value


class HetznerSettings(_Model):
    locations: list[StrictStr] = Field(default_factory=lambda: ["fsn1"], min_length=1)

    @field_validator("locations")
    @classmethod
    def _one_network_zone(cls, value: list[str]) -> list[str]:
        zones = set()
        for location in value:
            zone = next((z for z, locs in HETZNER_NETWORK_ZONES.items() if location in locs), None)
            if zone is None:
                known = ", ".join(loc for locs in HETZNER_NETWORK_ZONES.values() for loc in locs)
                raise ValueError(f"unknown location {location!r} (one of {known})")
            zones.add(zone)
        if len(zones) > 1:
            raise ValueError("all locations must share one network zone (e.g. fsn1, nbg1, hel1)")
        if len(set(value)) != len(value):
            raise ValueError("a location is listed twice")
        return value

    @property
    def network_zone(self) -> str:
        return next(z for z, locs in HETZNER_NETWORK_ZONES.items() if self.locations[0] in locs)


class AwsSettings(_Model):
    region: StrictStr = "eu-central-1"
    zones: Optional[list[StrictStr]] = Field(
        default=None, description="availability zones; default: <region>a, <region>b, <region>c"
    )

    @model_validator(mode="after")
    def _zones_in_region(self) -> "AwsSettings":
        for zone in self.zones or []:
            if not (zone.startswith(self.region) and len(zone) > len(self.region)):
                raise ValueError(f"zone {zone!r} is not in region {self.region}")
        return self

    @property
    def zone_names(self) -> list[str]:
        return self.zones or [f"{self.region}{s}" for s in "abc"]


class SipSettings(_Model):
    tls: StrictBool = False  # Kamailio 5061/tcp (and 7001)
    websockets: StrictBool = False  # Kamailio 5064/tcp (WS) and 5065/tcp (WSS)


class PackageSource(_Model):
    """An apt repository (signed) and the version pattern to pin its package to."""

    repo: StrictStr
    key: StrictStr  # URL of the repository's signing key
    version: StrictStr  # apt version pattern, e.g. "1.10.*"
    suite: StrictStr = "bookworm"


class Archive(_Model):
    """A tarball of a pinned commit, checked against its sha256 before use."""

    url: StrictStr
    sha256: Optional[StrictStr] = None

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and (len(value) != 64 or any(c not in "0123456789abcdef" for c in value)):
            raise ValueError("must be 64 lower-case hex digits")
        return value


def _github_archive(repo: str, commit: str) -> Archive:
    return Archive(url=f"https://github.com/2600hz/{repo}/archive/{commit}.tar.gz")


class SourcesSettings(_Model):
    """Where each piece of software comes from; point these at a mirror of your own if you have one."""

    couchdb: PackageSource = PackageSource(
        repo="https://apache.jfrog.io/artifactory/couchdb-deb/",
        key="https://couchdb.apache.org/repo/keys.asc",
        version="3.5.*",
    )
    freeswitch: PackageSource = PackageSource(
        repo="https://freeswitch.signalwire.com/repo/deb/debian-release/",
        key="https://freeswitch.signalwire.com/repo/deb/debian-release/signalwire-freeswitch-repo.gpg",
        version="1.10.*",
    )
    kazoo: PackageSource = PackageSource(
        repo="https://cloudpbx.github.io/openkazoo-kazoo5-builder/debian",
        key="https://cloudpbx.github.io/openkazoo-kazoo5-builder/pubkey.asc",
        version="5.4.0~master.20260516*",
    )
    kamailio_configs: Archive = _github_archive(
        "kazoo-configs-kamailio", "ab1ffd33798646888d882b9e38c47c772194b116"
    )
    freeswitch_configs: Archive = _github_archive(
        "kazoo-configs-freeswitch", "a3ff81d348c3f9cdc008efa983ebdf6348fbbb9b"
    )
    monster_ui: Optional[Archive] = Field(
        default=None, description="a built Monster UI tarball; unset: no Monster UI"
    )

    @model_validator(mode="before")
    @classmethod
    def _over_defaults(cls, data: Any) -> Any:
        # A source given in part (say only the sha256 of the default archive) keeps the rest.
        if not isinstance(data, dict):
            return data
        merged = dict(data)
        for name, field in cls.model_fields.items():
            key = field.alias or name
            given, default = merged.get(key), field.default
            if isinstance(given, dict) and isinstance(default, BaseModel):
                merged[key] = {**default.model_dump(by_alias=True, exclude_none=True), **given}
        return merged


class Component(str, Enum):
    """Software a host can be told not to install (bootstrap.skip), e.g. where its repository is
    unreachable or it is managed some other way."""

    COUCHDB = "couchdb"
    RABBITMQ = "rabbitmq"
    KAZOO = "kazoo"
    FREESWITCH = "freeswitch"
    KAMAILIO = "kamailio"


class BootstrapSettings(_Model):
    skip: list[Component] = Field(default_factory=list)


class SshSettings(_Model):
    """How `pulumi up` reaches the hosts for the post-boot steps (user kazoo, key from sshPrivateKey
    or generated)."""

    bastion: Optional[StrictStr] = Field(
        default=None, description="host or host:port to jump through; hosts are then reached on their private IP"
    )
    bastion_user: StrictStr = "ops"
    dial_error_limit: StrictInt = Field(default=40, description="SSH dial attempts (15 s each) per step")

    @field_validator("dial_error_limit")
    @classmethod
    def _bounded(cls, value: int) -> int:
        if not 1 <= value <= 240:
            raise ValueError(f"must be between 1 and 240 (got {value}); unbounded dials hang `pulumi up`")
        return value


class MasterAccountSettings(_Model):
    """The Kazoo master (reseller) account created once by the orchestration."""

    name: StrictStr = "master"
    realm: Optional[StrictStr] = Field(default=None, description="SIP realm; default: master.<domain>")
    user: StrictStr = "admin"

    @field_validator("name", "user")
    @classmethod
    def _word(cls, value: str) -> str:
        if not value or not all(c.isalnum() or c in "._-" for c in value):
            raise ValueError(f"{value!r} must be letters, digits, '.', '_' or '-'")
        return value


class Settings(_Model):
    cloud: Cloud
    layout: Layout = Layout.SINGLE
    domain: StrictStr
    admin_cidrs: CidrList = Field(min_length=1)
    sip_cidrs: CidrList = Field(default_factory=lambda: list(WORLD))
    carrier_cidrs: CidrList = Field(default_factory=list)
    api_cidrs: Optional[CidrList] = Field(
        default=None, description="who may reach crossbar and Monster UI; default: adminCidrs"
    )
    ssh_public_keys: list[StrictStr] = Field(min_length=1)
    image: StrictStr = "debian-12"
    combined_size: Optional[StrictStr] = Field(
        default=None, description="size of each host carrying every role (single, dual)"
    )
    roles: RolesSettings = Field(default_factory=RolesSettings)
    network: NetworkSettings = Field(default_factory=NetworkSettings)
    hetzner: HetznerSettings = Field(default_factory=HetznerSettings)
    aws: AwsSettings = Field(default_factory=AwsSettings)
    sip: SipSettings = Field(default_factory=SipSettings)
    sources: SourcesSettings = Field(default_factory=SourcesSettings)
    bootstrap: BootstrapSettings = Field(default_factory=BootstrapSettings)
    signalwire_token: Optional[SecretStr] = Field(
        default=None, description="SignalWire personal access token for the FreeSWITCH packages (secret)"
    )
    orchestrate: StrictBool = Field(
        default=True, description="run the post-boot steps over SSH from `pulumi up` (false: by hand)"
    )
    ssh: SshSettings = Field(default_factory=SshSettings)
    ssh_private_key: Optional[SecretStr] = Field(
        default=None, description="OpenSSH private key for the orchestration (secret); default: generated"
    )
    master_account: MasterAccountSettings = Field(default_factory=MasterAccountSettings)
    master_password: Optional[SecretStr] = Field(
        default=None, description="password of the master account's user (secret); default: generated"
    )

    @field_validator("admin_cidrs", "sip_cidrs", "carrier_cidrs", "api_cidrs")
    @classmethod
    def _cidrs(cls, value: Optional[list[str]]) -> Optional[list[str]]:
        return None if value is None else [_check_cidr(v) for v in value]

    @field_validator("admin_cidrs")
    @classmethod
    def _admin_not_world(cls, value: list[str]) -> list[str]:
        for cidr in value:
            if ipaddress.ip_network(cidr).prefixlen == 0:
                raise ValueError(f"{cidr} opens SSH and admin UIs to the whole internet")
        return value

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        labels = value.split(".")
        ok = len(labels) >= 2 and all(
            0 < len(label) <= 63
            and label[0].isalnum()
            and label[-1].isalnum()
            and all(c.isalnum() or c == "-" for c in label)
            for label in labels
        )
        if not ok or value != value.lower():
            raise ValueError(f"{value!r} is not a lower-case DNS domain like voip.example.com")
        return value

    @field_validator("ssh_public_keys")
    @classmethod
    def _keys(cls, value: list[str]) -> list[str]:
        for key in value:
            if not key.startswith(("ssh-ed25519 ", "ssh-rsa ", "ecdsa-sha2-", "sk-")):
                raise ValueError(f"{key[:20]!r}... is not an OpenSSH public key")
        return value

    @model_validator(mode="after")
    def _layout_rules(self) -> "Settings":
        db = self.roles.database
        if self.layout is Layout.MAXIMAL and db.count < COUCHDB_QUORUM and not db.allow_below_quorum:
            raise SettingsError(
                f"{NAMESPACE}:roles.database.count: {db.count} CouchDB nodes lose quorum in maximal; "
                f"use at least {COUCHDB_QUORUM} or set roles.database.allowBelowQuorum: true"
            )
        installs_freeswitch = Component.FREESWITCH not in self.bootstrap.skip
        if installs_freeswitch and self.signalwire_token is None:
            raise SettingsError(
                f"{NAMESPACE}:signalwireToken: media hosts need a SignalWire token for the FreeSWITCH "
                "packages: pulumi config set --secret kazoo:signalwireToken <PAT>"
            )
        if db.n is not None and db.n > self.database_count:
            raise SettingsError(
                f"{NAMESPACE}:roles.database.n: {db.n} copies need {db.n} database nodes "
                f"(the {self.layout.value} layout has {self.database_count})"
            )
        if self.ssh_private_key is not None and "PRIVATE KEY" not in self.ssh_private_key.get_secret_value():
            raise SettingsError(f"{NAMESPACE}:sshPrivateKey: not a PEM/OpenSSH private key")
        if self.cloud is Cloud.HETZNER and self.image.startswith("ami-"):
            raise SettingsError(f"{NAMESPACE}:image: {self.image} is an AWS AMI, not a Hetzner image")
        return self

    # Resolved views used by the rest of the program.
    @property
    def effective_api_cidrs(self) -> list[str]:
        return self.api_cidrs if self.api_cidrs is not None else self.admin_cidrs

    def archives_in_use(self) -> dict[str, "Archive"]:
        """The archives some host fetches, by sources key (kamailio_configs, freeswitch_configs, monster_ui)."""
        skip = set(self.bootstrap.skip)
        archives = {}
        if Component.KAMAILIO not in skip:
            archives["kamailio_configs"] = self.sources.kamailio_configs
        if Component.FREESWITCH not in skip:
            archives["freeswitch_configs"] = self.sources.freeswitch_configs
        if self.sources.monster_ui is not None:
            archives["monster_ui"] = self.sources.monster_ui
        return archives

    @property
    def database_count(self) -> int:
        return {Layout.SINGLE: 1, Layout.DUAL: 2}.get(self.layout, self.roles.database.count)

    @property
    def couchdb_n(self) -> int:
        return self.roles.database.n or min(COUCHDB_QUORUM, self.database_count)

    @property
    def couchdb_q(self) -> int:
        return self.roles.database.q or (1 if self.database_count == 1 else 2)

    @property
    def master_realm(self) -> str:
        return self.master_account.realm or f"master.{self.domain}"

    def size_of(self, role: Optional[Role]) -> str:
        """Size of a host of `role`, or of a combined host when role is None."""
        if role is None:
            return self.combined_size or DEFAULT_SIZES[self.cloud.value]["combined"]
        return self.roles.of(role).size or DEFAULT_SIZES[self.cloud.value][role]

    @property
    def zones(self) -> list[str]:
        return self.hetzner.locations if self.cloud is Cloud.HETZNER else self.aws.zone_names


def _decode(value: Any) -> Any:
    """Pulumi hands config values over as strings; objects, lists, numbers and booleans as JSON."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _format_error(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(part) for part in first["loc"])
    key = f"{NAMESPACE}:{loc}" if loc else NAMESPACE
    kind = first["type"]
    if kind == "extra_forbidden":
        message = "unknown key"
    elif kind == "missing":
        message = "is required"
    elif kind == "enum":
        expected = first.get("ctx", {}).get("expected", "")
        message = f"{first['input']!r} is not one of {expected}"
    elif kind.startswith("string_type"):
        message = f"must be a string (got {first['input']!r})"
    else:
        message = first["msg"].removeprefix("Value error, ")
    more = len(err.errors()) - 1
    return f"{key}: {message}" + (f" (and {more} more problem{'s' * (more > 1)})" if more else "")


def load_settings(raw: dict[str, Any]) -> Settings:
    """Parse `{"kazoo:layout": "single", ...}` (other namespaces are ignored) into Settings."""
    data = {}
    for key, value in raw.items():
        namespace, _, name = key.partition(":")
        if namespace == NAMESPACE:
            data[name] = _decode(value)
    try:
        return Settings.model_validate(data)
    except SettingsError:
        raise
    except ValidationError as err:
        # A SettingsError raised inside a validator arrives wrapped: keep its own line.
        first = err.errors()[0]
        cause = first.get("ctx", {}).get("error")
        if isinstance(cause, SettingsError):
            raise SettingsError(str(cause)) from None
        raise SettingsError(_format_error(err)) from None
