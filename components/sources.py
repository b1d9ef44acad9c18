"""PinnedArchives: the sha256 every host checks an archive against before using it.

Where the stack pins `sources.<archive>.sha256`, that is it. Where it does not, `pulumi up` downloads
the archive once, on the machine running it, and keeps its hash in the stack's state: every host,
created now or in a year, checks the same bytes, and the `archiveSha256` output shows the value to
pin in the stack file. (The defaults cannot ship with a hash: it can only be taken from the archive.)
"""

from __future__ import annotations

import shlex
from typing import Optional

import pulumi
from pulumi_command import local

from core.settings import Settings

# Portable (no sha256sum on macOS): the Python that every Pulumi Python user has.
HASH_COMMAND = (
    "python3 -c 'import hashlib, sys, urllib.request; "
    "print(hashlib.sha256(urllib.request.urlopen(sys.argv[1], timeout=120).read()).hexdigest())'"
)


class PinnedArchives(pulumi.ComponentResource):
    def __init__(self, name: str, settings: Settings, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("kazoo:sources:PinnedArchives", name, None, opts)
        self.sha256: dict[str, pulumi.Output[str]] = {}
        for key, archive in settings.archives_in_use().items():
            if archive.sha256:
                self.sha256[key] = pulumi.Output.from_input(archive.sha256)
                continue
            fetched = local.Command(
                f"{key.replace('_', '-')}-sha256",
                create=f"{HASH_COMMAND} {shlex.quote(archive.url)}",
                triggers=[archive.url],  # a new URL (another commit) is hashed anew
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.sha256[key] = fetched.stdout.apply(_checked)
        self.register_outputs({"sha256": self.sha256})

    def resolved(self) -> pulumi.Output[dict]:
        return pulumi.Output.all(**self.sha256) if self.sha256 else pulumi.Output.from_input({})


def _checked(stdout: str) -> str:
    value = (stdout or "").strip()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ValueError(f"archive hash is not a sha256: {value[:80]!r}")
    return value
