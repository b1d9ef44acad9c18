"""KazooSecrets: every credential the hosts share, generated once and kept in state as secrets."""

from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_random as random

# name -> length. Alphanumeric only: these land in INI, Erlang args, AMQP URIs and shell env files.
SECRETS = {
    "erlang_cookie": 48,  # Kazoo apps, ecallmgr and FreeSWITCH mod_kazoo
    "couchdb_cookie": 48,  # the CouchDB cluster's Erlang cookie
    "couchdb_password": 32,  # CouchDB admin "kazoo"
    "rabbitmq_password": 32,  # RabbitMQ user "kazoo" on every broker
}


class KazooSecrets(pulumi.ComponentResource):
    def __init__(self, name: str, signalwire_token: Optional[str], opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("kazoo:secrets:KazooSecrets", name, None, opts)
        self.values: dict[str, pulumi.Output[str]] = {
            key: random.RandomPassword(
                key.replace("_", "-"), length=length, special=False, opts=pulumi.ResourceOptions(parent=self)
            ).result
            for key, length in SECRETS.items()
        }
        self.values["signalwire_token"] = pulumi.Output.secret(signalwire_token or "")
        self.register_outputs({})

    def resolved(self) -> pulumi.Output[dict]:
        """All values at once, for rendering (the result stays secret)."""
        return pulumi.Output.all(**self.values)
