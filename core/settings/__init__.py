"""The stack configuration (namespace `kazoo:`), parsed once into typed settings.

`load_settings` takes the raw key/value map Pulumi gives the program and returns `Settings`, or raises
`SettingsError` carrying one line that names the key and what is wrong. Split by concern:
`values` (what each kind of value is), `sources` (where software comes from), `layout` (roles,
network, cloud places), `model` (the whole configuration and its cross-key rules), `loading`.
"""

from core.settings.base import NAMESPACE, WORLD, Cloud, Component, Layout, ScaleDown, SettingsError
from core.settings.layout import COUCHDB_QUORUM, DEFAULT_COUNTS, DEFAULT_SIZES, HETZNER_NETWORK_ZONES
from core.settings.loading import SECRET_KEYS, load_settings, plain_text_secrets
from core.settings.model import Settings
from core.settings.sources import DEBIAN_ARCHIVE, Archive, PackageSource

__all__ = [
    "NAMESPACE", "WORLD", "Cloud", "Component", "Layout", "ScaleDown", "SettingsError", "COUCHDB_QUORUM", "DEFAULT_COUNTS",
    "DEFAULT_SIZES", "HETZNER_NETWORK_ZONES", "SECRET_KEYS", "load_settings", "plain_text_secrets", "Settings",
    "DEBIAN_ARCHIVE", "Archive", "PackageSource",
]
