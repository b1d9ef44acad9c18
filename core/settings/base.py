"""What every part of the settings shares: the namespace, the error type, the base model, the enums."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

NAMESPACE = "kazoo"
WORLD = ("0.0.0.0/0", "::/0")


class SettingsError(ValueError):
    """Bad stack configuration; str() is one line naming the key (never a secret's value)."""


class Model(BaseModel):
    """Stack keys are camelCase only (a snake_case spelling of a secret key would miss its secret
    handling: an unknown key instead), unknown keys are errors, parsed settings never change."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=False, frozen=True)


class Cloud(str, Enum):
    HETZNER = "hetzner"
    AWS = "aws"


class Layout(str, Enum):
    SINGLE = "single"
    DUAL = "dual"
    MAXIMAL = "maximal"


class Component(str, Enum):
    """Software a host can be told not to install (bootstrap.skip), e.g. where its repository is
    unreachable or it is managed some other way."""

    COUCHDB = "couchdb"
    RABBITMQ = "rabbitmq"
    KAZOO = "kazoo"
    FREESWITCH = "freeswitch"
    KAMAILIO = "kamailio"


class ScaleDown(str, Enum):
    """What happens to the data volume and the public IP of a host a lower count removes."""

    PROTECT = "protect"  # nothing is removed: the update stops until you unprotect them on purpose
    KEEP = "keep"  # dropped from the stack, left in the cloud account (retainOnDelete)
    RELEASE = "release"  # deleted with the host: the address and the data are gone
