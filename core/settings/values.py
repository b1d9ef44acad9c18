"""What each kind of stack value is, checked before it reaches a shell, a config file or a resource.

Stack values end up in root shells (`host.env` is sourced by every bootstrap script), in nftables,
HAProxy, Kamailio and Kazoo configuration, and in `sup` arguments. Each check below accepts only
what the value is (a DNS name, a URL, an apt version...), so nothing with shell or config syntax gets
through; the templates quote what they write all the same. A failing check raises ValueError with a
message that never repeats a secret.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from typing import Annotated, Optional

from pydantic import AfterValidator, StrictStr

# --- names -------------------------------------------------------------------------------------

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# Room for the longest host name the planner makes ("broker10." and the like) in a 253-byte FQDN.
MAX_DOMAIN_LENGTH = 240


def dns_name(value: str, what: str = "a lower-case DNS name like voip.example.com") -> str:
    """An ASCII, lower-case DNS name of two or more labels (RFC 1035 lengths)."""
    labels = value.split(".")
    ok = (
        value.isascii()
        and len(labels) >= 2
        and len(value) <= MAX_DOMAIN_LENGTH
        and all(_LABEL.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()
    )
    if not ok:
        raise ValueError(f"{_show(value)} is not {what} (ASCII, at most {MAX_DOMAIN_LENGTH} characters)")
    return value


def host_name(value: str, loopback: bool = False) -> str:
    """A host for a connection: a DNS name or an IP address (v6 without brackets, no %scope); a
    loopback address only where `loopback` (an SSH tunnel's local end)."""
    try:
        address = _address(value)
    except ValueError:
        return dns_name(value, "a host name or an IP address")
    kind = _unroutable(ipaddress.ip_network(address))
    if kind and not (loopback and address.is_loopback):
        raise ValueError(f"{_show(value)} is a {kind} address, not a host to reach")
    return value


_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def word(value: str) -> str:
    """Account and user names: they become `sup` arguments and JSON strings."""
    if not _WORD.fullmatch(value):
        raise ValueError(f"{_show(value)} must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return value


_SERVER_TYPE = re.compile(r"[a-z][a-z0-9]{1,15}|[a-z][a-z0-9-]{0,15}\.[a-z0-9]{1,15}")


def server_type(value: str) -> str:
    """A Hetzner server type (cx33, ccx13, cax21) or an EC2 instance type (m6i.large)."""
    if not _SERVER_TYPE.fullmatch(value):
        raise ValueError(f"{_show(value)} is not a server or instance type (like cx33 or m6i.large)")
    return value


_REGION = re.compile(r"[a-z]{2}(?:-gov|-iso[a-z]*)?-[a-z]+-[0-9]{1,2}")


def aws_region(value: str) -> str:
    if not _REGION.fullmatch(value):
        raise ValueError(f"{_show(value)} is not an AWS region (like eu-central-1)")
    return value


def aws_zone(value: str, region: str) -> str:
    """eu-central-1a, or a Local Zone like us-east-1-bos-1a, in `region`."""
    if not re.fullmatch(re.escape(region) + r"(?:-[a-z0-9]+-[0-9]+)?[a-z]", value):
        raise ValueError(f"zone {_show(value)} is not an availability zone of {region} (like {region}a)")
    return value


# --- addresses ----------------------------------------------------------------------------------


def _address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An IP address in plain ASCII, without an IPv6 %scope: Python keeps any text after the `%`
    (spaces, `$()`), which would reach nftables and break the whole ruleset."""
    if not re.fullmatch(r"[0-9A-Fa-f:.]+", value):
        raise ValueError(f"{_show(value)} is not an IP address")
    return ipaddress.ip_address(value)


# Ranges no traffic from outside comes from: a source list naming one is a mistake, and in carrier
# lists a hole (loopback or the IPv4-mapped space would make local processes or all of IPv4 trusted).
_UNROUTABLE = {
    "unspecified": ("0.0.0.0/8", "::/128"),
    "loopback": ("127.0.0.0/8", "::1/128"),
    "link-local": ("169.254.0.0/16", "fe80::/10"),
    "multicast or reserved": ("224.0.0.0/3", "ff00::/8"),
    "IPv4-mapped": ("::ffff:0:0/96",),
}


def _unroutable(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> Optional[str]:
    for kind, ranges in _UNROUTABLE.items():
        for text in ranges:
            other = ipaddress.ip_network(text)
            if other.version == net.version and net.subnet_of(other):
                return kind
    return None


def cidr(value: str) -> str:
    """A network in CIDR form with no host bits set, not in a range no outside traffic comes from;
    returned in canonical form."""
    address, slash, length = value.partition("/")
    try:
        _address(address)
        if slash and not re.fullmatch(r"[0-9]{1,3}", length):
            raise ValueError("the prefix length is not a number")
        net = ipaddress.ip_network(value, strict=True)
    except ValueError as err:
        raise ValueError(f"{_show(value)} is not a CIDR ({err})") from None
    kind = _unroutable(net)
    if kind:
        raise ValueError(f"{_show(value)} is a {kind} range: no traffic from outside comes from it")
    return str(net)


# Private ranges (RFC 1918, unique local RFC 4193): not the internet, so an admin list naming all of
# a company's internal networks is not "open to the world" (the policy pack counts the same way).
_PRIVATE = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")]


def covered(cidrs: list[str]) -> dict[int, int]:
    """How many public addresses the ranges hold together, per IP version (overlaps counted once,
    private ranges not counted)."""
    nets = [ipaddress.ip_network(c) for c in cidrs]
    counts = {}
    for version in (4, 6):
        merged = list(ipaddress.collapse_addresses([n for n in nets if n.version == version]))
        private = [p for p in _PRIVATE if p.version == version]
        counts[version] = sum(
            n.num_addresses - sum(min(n.num_addresses, p.num_addresses) for p in private if n.overlaps(p))
            for n in merged)
    return counts


# More than a /8 of IPv4 or a /32 of IPv6 (one ISP's allocation): as good as the whole internet.
# (0.0.0.0/1 + 128.0.0.0/2 + 192.0.0.0/3 is every unicast IPv4 address without being 0.0.0.0/0.)
PUBLIC_LIMIT = {4: 2 ** 24, 6: 2 ** 96}


def open_to_internet(cidrs: list[str]) -> bool:
    return any(count > PUBLIC_LIMIT[v] for v, count in covered(cidrs).items())


# --- software sources ---------------------------------------------------------------------------

# What may follow the host in a source URL: path characters only. No query (a `&` broke Monster UI),
# no fragment, no quote, space, `$`, backtick, `;`, `|`, `{}`, `()`, `<>`, backslash or `*`.
_URL = re.compile(r"(https?)://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::([0-9]{1,5}))?(/[A-Za-z0-9._~%+/-]*)?")


def url(value: str) -> str:
    """An http(s) URL of a repository, key or archive. http is allowed for an apt repository (apt
    checks its signatures) and for an archive given with its sha256; a key and an archive without
    sha256 need https (core/settings/sources.py)."""
    match = _URL.fullmatch(value)
    if not match or not value.isascii():
        raise ValueError(f"{_show(value)} is not an http(s) URL made of plain path characters (no query, quotes, spaces or shell syntax)")
    host, port = match.group(2), match.group(3)
    if not host.startswith("["):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if not all(_LABEL.fullmatch(label) for label in host.lower().split(".")):
                raise ValueError(f"{_show(value)} has no valid host name") from None
    if port is not None and not 1 <= int(port) <= 65535:
        raise ValueError(f"{_show(value)} has a port outside 1-65535")
    return value


# Debian version (policy 5.6.12: [epoch:]upstream[-revision]) with apt's `*` glob for pins.
_VERSION = re.compile(r"(?:[0-9]+:)?[A-Za-z0-9*][A-Za-z0-9.+~*-]*(?:-[A-Za-z0-9.+~*]+)?")


def apt_version(value: str) -> str:
    if len(value) > 100 or not _VERSION.fullmatch(value):
        raise ValueError(f"{_show(value)} is not a Debian version or apt pin pattern (like 3.5.* or 1:26.2.5*)")
    return value


def apt_suite(value: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9-]{1,40}", value):
        raise ValueError(f"{_show(value)} is not a Debian suite name (like bookworm)")
    return value


def sha256_hex(value: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError("must be 64 lower-case hex digits")
    return value


# --- keys ---------------------------------------------------------------------------------------

SSH_KEY_TYPES = (
    "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
)


def ssh_public_key(value: str) -> str:
    """One OpenSSH authorized_keys line: a known type, a base64 body whose first field names the
    same type (RFC 4253 §6.6), an optional printable comment."""
    if "\n" in value or "\r" in value or not value.isprintable():
        raise ValueError("an OpenSSH public key is one printable line")
    parts = value.split(" ", 2)
    if len(parts) < 2 or parts[0] not in SSH_KEY_TYPES:
        raise ValueError(f"{_show(value[:24])}... is not an OpenSSH public key (one of {', '.join(SSH_KEY_TYPES[:3])}, ...)")
    try:
        body = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"the {parts[0]} key's body is not base64") from None
    length = int.from_bytes(body[:4], "big") if len(body) >= 4 else -1
    if body[4:4 + length].decode("latin-1") != parts[0] or len(body) < 4 + length + 4:
        raise ValueError(f"the {parts[0]} key's body does not hold a {parts[0]} key")
    return value


_PRIVATE_KEY = re.compile(
    r"-----BEGIN ((?:OPENSSH|RSA|EC) )?PRIVATE KEY-----\n([A-Za-z0-9+/=\n]+)-----END \1?PRIVATE KEY-----\n?"
)


def ssh_private_key(value: str) -> str:
    """An OpenSSH or PEM private key, unencrypted (pulumi-command has no passphrase prompt)."""
    text = value.replace("\r\n", "\n").strip() + "\n"
    match = _PRIVATE_KEY.fullmatch(text)
    if not match:
        raise ValueError("not a PEM/OpenSSH private key")
    try:
        body = base64.b64decode(match.group(2).replace("\n", ""), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not a PEM/OpenSSH private key (its body is not base64)") from None
    if match.group(1) == "OPENSSH " and (not body.startswith(b"openssh-key-v1\0") or b"\0\0\0\x04none" not in body[:64]):
        raise ValueError("an OpenSSH private key that is encrypted or damaged (give an unencrypted key)")
    return value


_PEM = re.compile(r"-----BEGIN ([A-Z ]+)-----\n([A-Za-z0-9+/=\n]+)-----END \1-----\n?")


def pem_certificate(value: str) -> str:
    """One or more PEM certificates (a chain), nothing else."""
    text = value.replace("\r\n", "\n").strip() + "\n"
    blocks = list(_PEM.finditer(text))
    if not blocks or "".join(b.group(0) if b.group(0).endswith("\n") else b.group(0) + "\n" for b in blocks).strip() != text.strip():
        raise ValueError("not a PEM certificate chain")
    if any(b.group(1) != "CERTIFICATE" for b in blocks):
        raise ValueError("a PEM certificate chain holds CERTIFICATE blocks only")
    return value


def pem_private_key(value: str) -> str:
    text = value.replace("\r\n", "\n").strip() + "\n"
    match = _PEM.fullmatch(text)
    if not match or not match.group(1).endswith("PRIVATE KEY") or "ENCRYPTED" in match.group(1):
        raise ValueError("not an unencrypted PEM private key")
    return value


def _show(value: str) -> str:
    """A value as it may appear in an error line: quoted, printable, bounded."""
    text = value if len(value) <= 60 else value[:57] + "..."
    return repr(text) if text.isprintable() and text.isascii() else ascii(text)


# Annotated types for the models.
Cidr = Annotated[StrictStr, AfterValidator(cidr)]
DnsName = Annotated[StrictStr, AfterValidator(dns_name)]
Url = Annotated[StrictStr, AfterValidator(url)]
AptVersion = Annotated[StrictStr, AfterValidator(apt_version)]
AptSuite = Annotated[StrictStr, AfterValidator(apt_suite)]
Sha256 = Annotated[StrictStr, AfterValidator(sha256_hex)]
Word = Annotated[StrictStr, AfterValidator(word)]
ServerType = Annotated[StrictStr, AfterValidator(server_type)]
SshPublicKey = Annotated[StrictStr, AfterValidator(ssh_public_key)]
OptionalStr = Optional[StrictStr]
