"""Runs the real Pulumi program under the Python SDK's mocks and records every registration.

No Pulumi CLI, no provider plugin and no cloud is involved: the program's own __main__.py runs as it
would under `pulumi up`, against a mock engine that hands out ids and addresses. Used by the tests
(tests/harness.py), the offline plan (tools/plan.py) and the benchmark.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import zlib
import json
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pulumi
import yaml
from google.protobuf import json_format
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockMonitor

ROOT = Path(__file__).resolve().parent.parent
MAIN = ROOT / "__main__.py"
STACKS = ROOT / "stacks" / "examples"  # the example stack files (not stacks: outside stackConfigDir)
SECRET_SIG = rpc._special_sig_key  # "4dabf18193072939515e22adb298388d"
SECRET_VALUE = rpc._special_secret_sig


def _has_secret(node: Any) -> bool:
    if isinstance(node, dict):
        if node.get(SECRET_SIG) == SECRET_VALUE:
            return True
        return any(_has_secret(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_secret(v) for v in node)
    return False


def _unwrap(node: Any) -> Any:
    """Secret values arrive wrapped in the RPC form; tests read them as plain values."""
    if isinstance(node, dict):
        if node.get(SECRET_SIG) == SECRET_VALUE:
            return _unwrap(node.get("value"))
        return {k: _unwrap(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_unwrap(v) for v in node]
    return node


@dataclass
class Registration:
    type: str
    name: str
    urn: str
    parent: str
    inputs: dict
    secret_inputs: set[str]
    dependencies: list[str]
    protect: bool
    ignore_changes: list[str]
    delete_before_replace: bool
    deleted_with: str
    replace_on_changes: list[str]
    custom: bool
    retain_on_delete: bool = False
    replace_with: list[str] = field(default_factory=list)  # URNs whose replacement replaces this
    id: str = ""
    state: dict = field(default_factory=dict)


class Mocks(pulumi.runtime.Mocks):
    """Plausible ids and addresses, derived from each resource's type and name so that two runs of
    the program (before and after a config change) agree on everything they share."""

    def __init__(self):
        self.regions: dict[str, str] = {}  # AWS provider id -> its region

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        n = zlib.crc32(f"{args.typ}::{args.name}".encode())
        ip = f"{n % 223 + 1}.{n >> 8 & 255}.{n >> 16 & 255}.{n >> 24 % 254 + 1}"
        state = dict(args.inputs)
        typ = args.typ
        if typ == "pulumi:providers:aws":
            rid = f"aws-provider-{n:08x}"
            self.regions[rid] = args.inputs.get("region")
        elif typ.startswith("hcloud:"):
            rid = str(n % 10**8)
            if typ == "hcloud:index/primaryIp:PrimaryIp":
                state["ipAddress"] = ip
            if typ == "hcloud:index/server:Server":
                state["ipv4Address"] = ip
            if typ == "hcloud:index/loadBalancer:LoadBalancer":
                state["ipv4"] = ip
            if typ == "hcloud:index/volume:Volume":
                state["linuxDevice"] = f"/dev/disk/by-id/scsi-0HC_Volume_{rid}"
        elif typ == "aws:ec2/eip:Eip":
            rid = f"eipalloc-{n:08x}"
            state.update(publicIp=ip, allocationId=rid)
        elif typ == "aws:acm/certificate:Certificate":
            rid = f"arn:aws:acm:mock:{n:08x}"
            domains = [args.inputs.get("domainName"), *args.inputs.get("subjectAlternativeNames", [])]
            state.update(arn=rid, domainValidationOptions=[
                {"domainName": d, "resourceRecordName": f"_{n:08x}.{d}.", "resourceRecordType": "CNAME",
                 "resourceRecordValue": f"_{n:08x}.acm-validations.aws."} for d in domains])
        elif typ == "aws:acm/certificateValidation:CertificateValidation":
            rid = f"{args.name}-{n:08x}"
            state["certificateArn"] = args.inputs.get("certificateArn")
        elif typ == "aws:lb/loadBalancer:LoadBalancer":
            rid = f"arn:aws:elasticloadbalancing:mock:{n:08x}"
            state.update(arn=rid, dnsName=f"{args.name}-{n:08x}.elb.amazonaws.com", zoneId="Z215JYRZR1TBD5")
        elif typ in ("aws:lb/targetGroup:TargetGroup", "aws:lb/listener:Listener"):
            rid = f"arn:aws:elasticloadbalancing:mock:{args.name}-{n:08x}"
            state["arn"] = rid
        elif typ == "aws:route53/record:Record":
            rid = f"{args.name}-{n:08x}"
            state["fqdn"] = str(args.inputs.get("name", "")).rstrip(".")
        elif typ == "aws:ebs/volume:Volume":
            rid = f"vol-{n:017x}"
        elif typ == "aws:ec2/instance:Instance":
            rid = f"i-{n:017x}"
            state["publicIp"] = ip
        elif typ == "random:index/randomPassword:RandomPassword":
            rid = "none"
            length = int(args.inputs.get("length", 32))
            state["result"] = (f"{args.name.replace('-', '')}{n:x}" * 8)[:length]
        elif typ == "aws:ec2/placementGroup:PlacementGroup":
            rid = args.name
        elif typ == "tls:index/privateKey:PrivateKey":
            rid = args.name
            # the size and randomness of real ED25519 keys, so user-data sizes measured here hold
            noise = base64.b64encode(b"".join(hashlib.sha256(f"{args.name}{i}".encode()).digest() for i in range(10)))
            body = noise[:300].decode()
            state.update(
                publicKeyOpenssh=f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{noise[300:343].decode()}\n",
                privateKeyOpenssh="-----BEGIN OPENSSH PRIVATE KEY-----\n"
                + "\n".join(body[i:i + 70] for i in range(0, len(body), 70))
                + "\n-----END OPENSSH PRIVATE KEY-----\n",
            )
        elif typ == "command:local:Command":
            # archive hashes (components/sources.py): a stable stand-in for what the download gives
            rid = f"{args.name}-{n:08x}"
            state["stdout"] = hashlib.sha256(str(args.inputs.get("create")).encode()).hexdigest() + "\n"
        elif typ == "command:remote:Command":
            rid = f"{args.name}-{n:08x}"
            state["stdout"] = f"ran {args.name}"
        else:
            rid = f"{args.name}-{n:08x}"
        return rid, state

    def call(self, args: pulumi.runtime.MockCallArgs):
        if args.token.startswith("aws:"):
            # the default provider has no region unless aws:region or AWS_REGION is set, and then
            # fails the lookup ("unable to find a configured AWS Region", pulumi/pulumi-aws#2084):
            # every AWS lookup goes through the stack's explicit provider, which names its region
            region = self.regions.get(args.provider.rsplit("::", 1)[-1]) if args.provider else None
            if region is None:
                raise Exception(f"{args.token}: invoked on the default AWS provider, which has no region")
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            # as AWS answers for ap-northeast-1: zone letters are not always a, b, c
            letters = "acd" if region == "ap-northeast-1" else "abc"
            return {"names": [f"{region}{x}" for x in letters], "zoneIds": [], "id": region}
        if args.token == "hcloud:index/getZone:getZone":
            # a primary zone of the token's project, as the Cloud API answers (docs.hetzner.cloud: zones)
            return {"id": 4711, "name": args.args.get("name"), "mode": "primary", "ttl": 3600, "labels": {}}
        if args.token == "aws:route53/getZone:getZone":
            return {"zoneId": "Z0MOCKZONE", "name": args.args.get("name"), "id": "Z0MOCKZONE"}
        if args.token == "aws:ec2/getAmi:getAmi":
            # Debian's newest image of the release the name filter asks for (debian-12-amd64-*)
            wanted = next(f["values"][0] for f in args.args.get("filters", []) if f.get("name") == "name")
            release = wanted.split("-")[1]
            ami = f"ami-0debian{release}mock"
            return {"id": ami, "imageId": ami, "name": f"debian-{release}-amd64-mock"}
        return {}


class RecordingMonitor(MockMonitor):
    def __init__(self, mocks: Mocks):
        super().__init__(mocks)
        self.registrations: list[Registration] = []

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        raw = json_format.MessageToDict(request.object) if request.object else {}
        inputs = _unwrap(rpc.deserialize_properties(request.object)) if request.object else {}
        self.registrations.append(
            Registration(
                type=request.type,
                name=request.name,
                urn=response.urn,
                parent=request.parent,
                inputs=dict(inputs),
                secret_inputs={k for k, v in raw.items() if _has_secret(v)},
                dependencies=list(request.dependencies),
                protect=bool(request.protect),
                ignore_changes=list(request.ignoreChanges),
                delete_before_replace=bool(request.deleteBeforeReplace),
                deleted_with=request.deletedWith,
                replace_on_changes=list(request.replaceOnChanges),
                custom=bool(request.custom),
                retain_on_delete=bool(request.retainOnDelete),
                replace_with=list(request.replace_with),
                id=response.id,
                state=self.resources.get(response.urn).state if response.urn in self.resources else {},
            )
        )
        return response


@dataclass
class Result:
    registrations: list[Registration]
    outputs: dict[str, Any]

    def of_type(self, suffix: str) -> list[Registration]:
        """Registrations whose type token ends with suffix, e.g. 'Server' or 'vpc/securityGroupIngressRule'."""
        return [r for r in self.registrations if r.type.split(":")[-1] == suffix or r.type.endswith(suffix)]

    def named(self, name: str, type_suffix: str = "") -> Registration:
        matches = [r for r in self.registrations if r.name == name and r.type.endswith(type_suffix)]
        assert len(matches) == 1, f"{len(matches)} resources named {name}"
        return matches[0]

    @property
    def urns(self) -> set[str]:
        return {r.urn for r in self.registrations}


def config_from_stack_file(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    return dict(data.get("config") or {})


def _as_config_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def run_program(
    config: dict[str, Any],
    stack: str = "test",
    secrets: Optional[dict[str, str]] = None,
    preview: bool = False,
) -> Result:
    """Run __main__.py under mocks with the given `kazoo:`-prefixed config. Raises what the program raises."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    mocks = Mocks()
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="kazoo", stack=stack, preview=preview, monitor=monitor)
    secrets = secrets or {}
    values = {k: _as_config_value(v) for k, v in {**config, **secrets}.items()}
    pulumi.runtime.set_all_config(values, secret_keys=list(secrets))

    exports: dict[str, Any] = {}
    resolved: dict[str, Any] = {}
    real_export = pulumi.export

    def record_export(name: str, value: Any) -> None:
        exports[name] = value
        real_export(name, value)

    @pulumi.runtime.test
    def program():
        runpy.run_path(str(MAIN), run_name="__main__")
        # The test wrapper awaits what this returns: the stack outputs, fully resolved.
        return pulumi.Output.from_input(exports).apply(resolved.update)

    pulumi.export = record_export
    try:
        program()
    finally:
        pulumi.export = real_export
        pulumi.runtime.settings.reset_options()
        pulumi.runtime.set_all_config({}, secret_keys=[])
        asyncio.set_event_loop(None)
        loop.close()
    return Result(monitor.registrations, resolved)
