"""Orchestration: the post-boot steps of core.orchestration, run over SSH by pulumi-command.

Each Step becomes one `remote.Command` on the host it names. Its command lines are plain text in the
preview diff; what is secret (the configuration bundle, the master password) travels on stdin. A
command is deleted with the server it runs on, so a destroy never dials a host that is going away.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
from pulumi_command import remote

from components.clouds import ServerRefs
from core.bootstrap import ADMIN_USER
from core.orchestration import PUBLIC_IP, Stdin, Step
from core.settings import Settings

PER_DIAL_TIMEOUT = 15  # seconds; times ssh.dialErrorLimit bounds how long a step waits for a host
# Property paths into the connection (Pulumi's ignoreChanges path syntax; into a secret object since
# pulumi/pulumi#14565): the dial tuning only, never the host, user, keys or bastion.
IGNORED_CONNECTION_INPUTS = [
    "connection.dialErrorLimit",
    "connection.perDialTimeout",
    "connection.proxy.dialErrorLimit",
    "connection.proxy.perDialTimeout",
]


@dataclass
class OrchestrationArgs:
    settings: Settings
    steps: list[Step]
    servers: dict[str, ServerRefs]  # host name -> its server
    private_key: pulumi.Output[str]
    host_keys: dict[str, pulumi.Output[str]]  # host name -> its pinned public SSH host key
    bundles: dict[str, pulumi.Output[str]]  # host name -> configuration bundle (secret)
    digests: dict[str, pulumi.Output[str]]  # host name -> fingerprint of that bundle (not secret)
    master_password: pulumi.Output[str]


class Orchestration(pulumi.ComponentResource):
    def __init__(self, name: str, args: OrchestrationArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("kazoo:orchestration:Orchestration", name, None, opts)
        self.commands: dict[str, remote.Command] = {}
        readiness: dict[str, pulumi.Output[str]] = {}
        for step in args.steps:
            refs = args.servers[step.host.name]
            depends_on: list[pulumi.Resource] = [self.commands[n] for n in step.needs]
            # A replaced server is a new, unconfigured host: every step that runs on it, and every
            # step about it (cluster membership, registrations), runs again.
            replaced_by = [args.servers[name].server for name in (step.host.name, *step.involves)]
            if step.after_server:
                depends_on += refs.ready
            create: pulumi.Input[str] = step.create
            if PUBLIC_IP in step.create:
                create = refs.public_ip.apply(lambda ip, text=step.create: text.replace(PUBLIC_IP, ip))
            command = remote.Command(
                step.name,
                connection=self._connection(args, refs, args.host_keys[step.host.name]),
                create=create,
                delete=step.delete,
                stdin=self._stdin(args, step),
                triggers=[args.digests[step.host.name]] if step.digest_trigger else None,
                # the remote scripts log to /var/log/kazoo-bootstrap.log; keep outputs small
                logging=remote.Logging.STDOUT_AND_STDERR,
                # no PULUMI_COMMAND_STDOUT for the next run (sshd would be asked to accept it: a warning)
                add_previous_output_in_env=False,
                opts=pulumi.ResourceOptions(
                    parent=self,
                    depends_on=depends_on,
                    deleted_with=refs.server,
                    replace_with=list(dict.fromkeys(replaced_by)),
                    # A step with an undo (remove-media, remove-acl) undoes the old before the new runs:
                    # both name the same thing, so create-first would remove what was just added.
                    delete_before_replace=step.delete is not None,
                    # How patiently to dial is not part of what a step does: a new dial limit re-runs
                    # nothing. Where to dial is: a host's new address (a replaced database host, an
                    # AWS stop/start) must reach the state, or the engine keeps dialling the old one
                    # (ignored inputs keep their old values, also on a replacement).
                    ignore_changes=IGNORED_CONNECTION_INPUTS,
                ),
            )
            self.commands[step.name] = command
            if step.readiness:
                readiness[step.host.name] = command.stdout
        self.readiness = readiness
        self.register_outputs({"readiness": readiness})

    @staticmethod
    def _stdin(args: OrchestrationArgs, step: Step) -> Optional[pulumi.Output[str]]:
        if step.stdin is Stdin.BUNDLE:
            return pulumi.Output.secret(args.bundles[step.host.name])
        if step.stdin is Stdin.MASTER_PASSWORD:
            return pulumi.Output.secret(args.master_password.apply(lambda p: p + "\n"))
        return None

    @staticmethod
    def _connection(args: OrchestrationArgs, refs: ServerRefs, host_key: pulumi.Output[str]) -> remote.ConnectionArgs:
        ssh = args.settings.ssh
        proxy = None
        if ssh.bastion_address:
            host, port = ssh.bastion_address
            proxy = remote.ProxyConnectionArgs(
                host=host,
                port=port,
                user=ssh.bastion_user,
                private_key=args.private_key,
                host_key=ssh.bastion_host_key,  # pinned like the hosts' (ssh.bastionHostKey)
                dial_error_limit=ssh.dial_error_limit,
                per_dial_timeout=PER_DIAL_TIMEOUT,
            )
        return remote.ConnectionArgs(
            # Through a bastion the hosts are reached on their planned private IPs.
            host=refs.private_ip if proxy else refs.public_ip,
            user=ADMIN_USER,  # created by cloud-init on every host, with sudo
            private_key=args.private_key,
            host_key=host_key,  # installed by cloud-init: a host answering with another key is refused
            dial_error_limit=ssh.dial_error_limit,
            per_dial_timeout=PER_DIAL_TIMEOUT,
            proxy=proxy,
        )
