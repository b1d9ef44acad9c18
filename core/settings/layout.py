"""Where the hosts go: roles (counts, sizes, images), the private network and each cloud's places."""

from __future__ import annotations

import ipaddress
from typing import Any, Optional

from pydantic import Field, StrictBool, StrictInt, StrictStr, field_validator, model_validator

from core.roles import ALL_ROLES, Role
from core.settings.base import Model
from core.settings.values import ServerType, aws_region, aws_zone, cidr

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
# Hetzner sells its shared cost-optimised (cx*) and Arm (cax*) types in the EU locations only
# (fsn1, nbg1, hel1: Hetzner's server type pages; the API's /datacenters lists what each location
# sells and has the last word). Elsewhere the defaults are dedicated-vCPU types, sold everywhere.
HETZNER_EU_ONLY = ("cx", "cax")
HETZNER_SIZES_OUTSIDE_EU = {
    "combined": "ccx33",
    Role.DATABASE: "ccx23",
    Role.BROKER: "ccx13",
    Role.APPLICATION: "ccx23",
    Role.MEDIA: "ccx13",
    Role.PROXY: "ccx13",
}
DEFAULT_COUNTS = {Role.DATABASE: 3, Role.BROKER: 2, Role.APPLICATION: 2, Role.MEDIA: 2, Role.PROXY: 2}
COUCHDB_QUORUM = 3
# The images the bootstrap is written for. Kazoo 4.4's packages are built for Debian 12 only; a
# proxy may run Debian 13, whose own Kamailio (6.0) is new enough for the openkazoo 6.0 tree.
DEBIAN_IMAGES = ("debian-12", "debian-13")


def image_name(value: str) -> str:
    if value in DEBIAN_IMAGES or (value.startswith("ami-") and len(value) in (12, 21) and value[4:].isascii() and value[4:].isalnum()):
        return value
    raise ValueError(f"{value!r} is not an image the bootstrap supports ({', '.join(DEBIAN_IMAGES)}, or ami-... on AWS)")


class RoleSettings(Model):
    count: StrictInt = Field(default=0, description="hosts of this role in the maximal layout")
    size: Optional[ServerType] = Field(default=None, description="Hetzner server type or EC2 instance type")
    image: Optional[StrictStr] = Field(default=None, description="image of this role's hosts (proxies only)")

    @field_validator("count")
    @classmethod
    def _positive(cls, value: int) -> int:
        if not 1 <= value <= 1000:  # a bound against typos; the network plan and the clouds set the real ones
            raise ValueError(f"must be between 1 and 1000 (got {value})")
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, value: Optional[str]) -> Optional[str]:
        return None if value is None else image_name(value)


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
    return lambda: (DatabaseSettings if role is Role.DATABASE else RoleSettings)(count=DEFAULT_COUNTS[role])


class RolesSettings(Model):
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


class NetworkSettings(Model):
    cidr: StrictStr = "10.20.0.0/16"

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        net = ipaddress.ip_network(cidr(value))
        if net.version != 4 or not net.is_private or net.is_loopback or net.is_link_local:
            raise ValueError(f"{value} must be a private IPv4 range (RFC 1918), not loopback or link-local")
        if not any(net.subnet_of(ipaddress.ip_network(r)) for r in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")):
            raise ValueError(f"{value} must lie in an RFC 1918 range (10/8, 172.16/12, 192.168/16)")
        if not 8 <= net.prefixlen <= 20:
            raise ValueError(f"{value} must be between /8 and /20 to hold the host plan")
        return value


class HetznerSettings(Model):
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
            raise ValueError("a location is listed twice (two hosts would be planned on one address)")
        return value

    @property
    def network_zone(self) -> str:
        return next(z for z, locs in HETZNER_NETWORK_ZONES.items() if self.locations[0] in locs)


class AwsSettings(Model):
    region: StrictStr = "eu-central-1"
    zones: Optional[list[StrictStr]] = Field(
        default=None, min_length=1, description="availability zones; default: <region>a, <region>b, <region>c"
    )

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        return aws_region(value)

    @model_validator(mode="after")
    def _zones_in_region(self) -> "AwsSettings":
        zones = self.zones or []
        for zone in zones:
            aws_zone(zone, self.region)
        if len(set(zones)) != len(zones):
            raise ValueError("a zone is listed twice (two hosts would be planned on one address)")
        return self

    @property
    def zone_names(self) -> list[str]:
        return self.zones or [f"{self.region}{s}" for s in "abc"]
