"""KazooSecrets: every credential the hosts share, generated once and kept in state as secrets."""

from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_random as random
import pulumi_tls as tls

from core.roles import SECRET_LENGTHS
from core.settings import Settings


class KazooSecrets(pulumi.ComponentResource):
    """Host secrets, plus what the orchestration needs: an SSH key (the stack's, or one generated here
    whose public half cloud-init installs) and the master account's password (given or generated)."""

    def __init__(self, name: str, settings: Settings, host_names: list[str],
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("kazoo:secrets:KazooSecrets", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.values: dict[str, pulumi.Output[str]] = {
            key: random.RandomPassword(key.replace("_", "-"), length=length, special=False, opts=child).result
            for key, length in SECRET_LENGTHS.items()
        }

        if settings.sip_tls_key is not None:  # the SIP domain's certificate key, given by the stack
            self.values["sip_tls_key"] = pulumi.Output.secret(settings.sip_tls_key.get_secret_value())
        # Each host's SSH host key, made here so that cloud-init installs it and `pulumi up` pins it:
        # the orchestration never trusts whatever key answers on first contact. The keys are made
        # whether or not `orchestrate` is on: switching it off and on again must find the keys the
        # running hosts were given (review 3, B3); only what hosts are handed depends on it.
        self.host_keys: dict[str, tls.PrivateKey] = {
            name: tls.PrivateKey(f"{name}-ssh-host-key", algorithm="ED25519", opts=child) for name in host_names
        }
        self.operator_public_key: Optional[pulumi.Output[str]] = None
        if settings.ssh_private_key is not None:
            # its public half is expected among sshPublicKeys
            self.operator_private_key: pulumi.Output[str] = pulumi.Output.secret(
                settings.ssh_private_key.get_secret_value())
        else:
            key = tls.PrivateKey("orchestration-ssh", algorithm="ED25519", opts=child)
            if settings.orchestrate:  # installed for the orchestration only
                self.operator_public_key = key.public_key_openssh.apply(str.strip)
            self.operator_private_key = key.private_key_openssh
        if settings.master_password is not None:
            self.master_password: pulumi.Output[str] = pulumi.Output.secret(
                settings.master_password.get_secret_value())
        else:
            self.master_password = random.RandomPassword("master-password", length=24, special=False,
                                                         opts=child).result
        self.register_outputs({})

    def host_key(self, name: str) -> pulumi.Output[tuple[str, str]]:
        """(private, public) host key of a host."""
        key = self.host_keys[name]
        return pulumi.Output.all(key.private_key_openssh, key.public_key_openssh).apply(
            lambda k: (k[0], k[1].strip())
        )

    def resolved(self) -> pulumi.Output[dict]:
        """All host secrets at once, for rendering (the result stays secret)."""
        return pulumi.Output.all(**self.values)
