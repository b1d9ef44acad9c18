"""Where each piece of software comes from (`sources.*`): apt repositories with pinned versions, and
configuration trees at pinned commits. Every default is overridable, so a team can point at its
own mirror or builds; a source given in part keeps the other defaults.

The defaults are the one Kazoo stack whose parts are published to fit together (shared/reference/
stack.md): the Kazoo 4.4 community packages for Debian 12 (cloudpbx/openkazoo-kazoo4-builder:
`erlang`, `kazoo`, `freeswitch` with mod_kazoo, `kamailio`), CouchDB 3 from Apache, RabbitMQ and
PostgreSQL from Debian, and the configuration trees those packages are meant for.
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, Field, field_validator, model_validator

from core.settings.base import Model
from core.settings.values import AptSuite, AptVersion, Sha256, Url

# The openkazoo Kazoo 4.4 repository, as the builder's own install check uses it
# (.github/workflows/verify-install.yml: `deb [signed-by=...openkazoo.asc] .../debian bookworm main`;
# docs/INSTALL.md omits `/debian`, the workflow and the published tree agree on it).
OPENKAZOO_REPO = "https://cloudpbx.github.io/openkazoo-kazoo4-builder/debian"
OPENKAZOO_KEY = "https://cloudpbx.github.io/openkazoo-kazoo4-builder/pubkey.asc"
# The host's own Debian archive (no extra repository): Kamailio on Debian 13 proxies, say.
DEBIAN_ARCHIVE = "debian"


class PackageSource(Model):
    """A signed apt repository (or `debian`: the host's own archive) and the version to pin to."""

    repo: str = Field(description="repository URL, or `debian` for the host's own Debian archive")
    key: Optional[Url] = Field(default=None, description="URL of the repository's signing key (armoured or binary)")
    version: AptVersion
    suite: AptSuite = "bookworm"

    @field_validator("key")
    @classmethod
    def _key_over_https(cls, value: Optional[str]) -> Optional[str]:
        # The key is what apt trusts: fetched over http, whoever is on the path signs the packages.
        if value is not None and not value.startswith("https://"):
            raise ValueError(f"{value} must be an https URL: apt trusts whatever key arrives")
        return value

    @model_validator(mode="after")
    def _repo(self) -> "PackageSource":
        if self.repo == DEBIAN_ARCHIVE:
            return self
        from core.settings.values import url

        url(self.repo)
        if self.key is None:
            raise ValueError(f"{self.repo} needs the URL of its signing key (key)")
        return self

    @property
    def from_debian(self) -> bool:
        return self.repo == DEBIAN_ARCHIVE


class Archive(Model):
    """A tarball of a pinned commit (one top folder, as GitHub's /archive/<commit>.tar.gz), checked
    against its sha256 before use."""

    url: Url
    sha256: Optional[Sha256] = None

    @model_validator(mode="after")
    def _checked(self) -> "Archive":
        # Without sha256 the program hashes what the URL serves (components/sources.py): over http,
        # whoever is on the path serves the program and the hosts the same altered tree.
        if self.sha256 is None and not self.url.startswith("https://"):
            raise ValueError(f"{self.url} is plain http: give its sha256, or an https URL")
        return self


def _openkazoo(version: str) -> PackageSource:
    return PackageSource(repo=OPENKAZOO_REPO, key=OPENKAZOO_KEY, version=version)


def _github(repo: str, commit: str) -> Archive:
    return Archive(url=f"https://github.com/{repo}/archive/{commit}.tar.gz")


# Versions listed by the repository's index (debian/dists/bookworm/main/binary-amd64/Packages, read
# 2026-11-27): the upstream version is pinned, the packaging revision may move (`-4~bookworm` today).
KAZOO_CONFIGS_COMMIT = "91818b018bde44f0a518779bf157260104aa6885"  # openkazoo/kazoo-configs 4.4
KAMAILIO_CONFIGS_COMMIT = "70448ef0d18c1bb96c82294c0c1cf0f646617956"  # openkazoo/kamailio-configs 6.0
FREESWITCH_CONFIGS_COMMIT = "ce2ec4b34df069a3a650f60b2bc935a4574e5124"  # 2600hz/kazoo-configs-freeswitch 4.3


class SourcesSettings(Model):
    couchdb: PackageSource = PackageSource(
        repo="https://apache.jfrog.io/artifactory/couchdb-deb/",
        key="https://couchdb.apache.org/repo/keys.asc",
        version="3.5.*",
    )
    erlang: PackageSource = _openkazoo("1:26.2.5*")  # OTP 26 in /usr/local/lib/erlang
    kazoo: PackageSource = _openkazoo("4.4.0~4.4.*")  # the 4.4 release in /opt/kazoo
    freeswitch: PackageSource = _openkazoo("1.10.9-*")  # 1.10.9 + mod_kazoo (openkazoo 4.4 branch)
    kamailio: PackageSource = _openkazoo("5.8.8-*")  # 5.8.8 with kazoo, db_postgres, tls, ...
    kazoo_configs: Archive = _github("openkazoo/kazoo-configs", KAZOO_CONFIGS_COMMIT)
    kamailio_configs: Archive = _github("openkazoo/kamailio-configs", KAMAILIO_CONFIGS_COMMIT)
    freeswitch_configs: Archive = _github("2600hz/kazoo-configs-freeswitch", FREESWITCH_CONFIGS_COMMIT)
    monster_ui: Optional[Archive] = Field(default=None, description="a built Monster UI tarball; unset: no Monster UI")

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
                base = default.model_dump(by_alias=True, exclude_none=True)
                if given.get("repo") == DEBIAN_ARCHIVE:
                    base.pop("key", None)  # the host's own archive needs no key of ours
                merged[key] = {**base, **given}
        return merged
