"""The whole stack configuration as one typed object, with the rules that span several keys."""

from __future__ import annotations

import ipaddress
from typing import Optional

from pydantic import Field, SecretStr, StrictBool, StrictInt, StrictStr, field_validator, model_validator

from core.roles import Role
from core.settings.base import NAMESPACE, Cloud, Component, Layout, Model, ScaleDown, SettingsError
from core.settings.layout import (
    COUCHDB_QUORUM,
    DEFAULT_SIZES,
    HETZNER_EU_ONLY,
    HETZNER_SIZES_OUTSIDE_EU,
    AwsSettings,
    HetznerSettings,
    NetworkSettings,
    RolesSettings,
    image_name,
)
from core.settings.sources import Archive, SourcesSettings
from core.settings.values import (
    Cidr, DnsName, SshPublicKey, Word, dns_name, host_name, open_to_internet, pem_certificate, pem_private_key,
    ssh_private_key,
)

# ssh.bastionCidr names one machine (or the NAT in front of it): at most this wide.
BASTION_WIDEST = {4: 24, 6: 56}


class SipSettings(Model):
    tls: StrictBool = False  # Kamailio 5061/tcp (and 7001)
    websockets: StrictBool = False  # Kamailio 5064/tcp (WS) and 5065/tcp (WSS)
    # kamailio-configs' antiflood role (pike rate limit per source, failed-auth lockout): the
    # "simple fraud and DDoS protection" a Kazoo proxy is there for.
    antiflood: StrictBool = True
    # pike's limit, in requests per 2 s from one source (upstream: 50). The tree checks it before it
    # knows a source is FreeSWITCH (default.cfg runs ANTIFLOOD_LIMIT before CLASSIFY_SOURCE), so a
    # media server's INVITEs to registered phones (ring groups, concurrent calls) count too.
    antiflood_requests: StrictInt = Field(default=400, ge=10, le=100000)


class DnsSettings(Model):
    """Names in the cloud's own DNS: `zone` is the zone that holds `domain` (a Route53 hosted zone or
    a Hetzner DNS zone, already there). Unset: no records, and the API is plain HTTP on the hosts."""

    zone: Optional[DnsName] = None


class BootstrapSettings(Model):
    skip: list[Component] = Field(default_factory=list)


class SshSettings(Model):
    """How `pulumi up` reaches the hosts for the post-boot steps (user ops, key from sshPrivateKey
    or generated)."""

    bastion: Optional[StrictStr] = Field(
        default=None, description="host, host:port or [v6]:port to jump through; hosts are then reached on their private IP"
    )
    bastion_user: Word = "ops"
    bastion_host_key: Optional[SshPublicKey] = Field(
        default=None, description="the bastion's SSH host key (an OpenSSH public key line), pinned like the hosts'"
    )
    bastion_cidr: Optional[Cidr] = Field(
        default=None, description="where the bastion's SSH to the hosts comes from; default: the bastion's IP"
    )
    dial_error_limit: StrictInt = Field(default=40, description="SSH dial attempts (15 s each) per step")

    @field_validator("bastion")
    @classmethod
    def _bastion(cls, value: Optional[str]) -> Optional[str]:
        if value is not None:
            parse_bastion(value)
        return value

    @field_validator("bastion_cidr")
    @classmethod
    def _bastion_narrow(cls, value: Optional[str]) -> Optional[str]:
        # Every host accepts SSH from it: a wide range is SSH open to the internet.
        if value is not None:
            net = ipaddress.ip_network(value)
            if net.prefixlen < BASTION_WIDEST[net.version]:
                raise ValueError(f"{value} is wider than /{BASTION_WIDEST[net.version]}: every host would accept SSH "
                                 "from all of it; name the bastion's address (or its NAT's)")
        return value

    @field_validator("dial_error_limit")
    @classmethod
    def _bounded(cls, value: int) -> int:
        if not 1 <= value <= 240:
            raise ValueError(f"must be between 1 and 240 (got {value}); unbounded dials hang `pulumi up`")
        return value

    @model_validator(mode="after")
    def _bastion_source(self) -> "SshSettings":
        if self.bastion and self.bastion_cidr is None:
            host = self.bastion_address[0]
            if not _is_ip(host) or ipaddress.ip_address(host).is_loopback:
                what = "a name" if not _is_ip(host) else "a tunnel's local end"
                raise SettingsError(
                    f"{NAMESPACE}:ssh.bastionCidr: needed when ssh.bastion is {what} ({host}): "
                    "the address the hosts see the bastion's SSH come from, for their firewalls"
                )
        return self

    @property
    def bastion_address(self) -> Optional[tuple[str, int]]:
        return parse_bastion(self.bastion) if self.bastion else None

    @property
    def bastion_source(self) -> Optional[str]:
        """The CIDR the hosts accept the bastion's SSH from (None without a bastion)."""
        if not self.bastion:
            return None
        if self.bastion_cidr:
            return self.bastion_cidr
        address = ipaddress.ip_address(self.bastion_address[0])
        return f"{address}/{address.max_prefixlen}"


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


def parse_bastion(value: str) -> tuple[str, int]:
    """`host`, `host:port`, `[v6]` or `[v6]:port` -> (host, port)."""
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError(f"{value!r} is not host[:port] (an IPv6 address goes in brackets: [2001:db8::1]:22)")
        port_text = rest[1:] if rest else "22"
        if ":" not in host:
            raise ValueError(f"{value!r}: brackets hold an IPv6 address")
        try:
            host_name(host, loopback=True)  # no %scope, nothing unroutable but a tunnel's local end
        except ValueError as err:
            raise ValueError(f"{value!r}: brackets hold an IPv6 address ({err})") from None
    else:
        host, _, port_text = value.partition(":")
        if value.count(":") > 1:
            raise ValueError(f"{value!r}: write an IPv6 bastion in brackets, like [2001:db8::1]:22")
        port_text = port_text if ":" in value else "22"
        host_name(host, loopback=True)
    if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"{value!r} has a port that is not a number from 1 to 65535")
    return host, int(port_text)


class MasterAccountSettings(Model):
    """The Kazoo master (reseller) account created once by the orchestration."""

    name: Word = "master"
    realm: Optional[StrictStr] = Field(default=None, description="SIP realm; default: master.<domain>")
    user: Word = "admin"

    @field_validator("realm")
    @classmethod
    def _realm(cls, value: Optional[str]) -> Optional[str]:
        return None if value is None else dns_name(value, "a lower-case DNS name (Kazoo realms are SIP domains)")


class Settings(Model):
    cloud: Cloud
    layout: Layout = Layout.SINGLE
    domain: DnsName
    admin_cidrs: list[Cidr] = Field(min_length=1)
    sip_cidrs: list[Cidr] = Field(default_factory=lambda: ["0.0.0.0/0", "::/0"], min_length=1)
    carrier_cidrs: list[Cidr] = Field(default_factory=list)
    api_cidrs: Optional[list[Cidr]] = Field(
        default=None, description="who may reach crossbar and Monster UI; default: adminCidrs"
    )
    ssh_public_keys: list[SshPublicKey] = Field(min_length=1)
    image: StrictStr = "debian-12"
    combined_size: Optional[StrictStr] = Field(
        default=None, description="size of each host carrying every role (single, dual)"
    )
    roles: RolesSettings = Field(default_factory=RolesSettings)
    network: NetworkSettings = Field(default_factory=NetworkSettings)
    hetzner: HetznerSettings = Field(default_factory=HetznerSettings)
    aws: AwsSettings = Field(default_factory=AwsSettings)
    sip: SipSettings = Field(default_factory=SipSettings)
    sources: SourcesSettings = Field(default_factory=SourcesSettings)
    dns: DnsSettings = Field(default_factory=DnsSettings)
    bootstrap: BootstrapSettings = Field(default_factory=BootstrapSettings)
    scale_down: ScaleDown = Field(
        default=ScaleDown.PROTECT,
        description="a removed host's data volume and public IP: protect (stop), keep (leave in the account), release",
    )
    orchestrate: StrictBool = Field(
        default=True, description="run the post-boot steps over SSH from `pulumi up` (false: by hand)"
    )
    ssh: SshSettings = Field(default_factory=SshSettings)
    ssh_private_key: Optional[SecretStr] = Field(
        default=None, description="OpenSSH private key for the orchestration (secret); default: generated"
    )
    master_account: MasterAccountSettings = Field(default_factory=MasterAccountSettings)
    master_password: Optional[SecretStr] = Field(
        default=None, description="password of the master account's user (secret); default: generated"
    )
    sip_tls_certificate: Optional[SecretStr] = Field(
        default=None, description="PEM certificate chain of the SIP domain for Kamailio's TLS (with sip.tls)"
    )
    sip_tls_key: Optional[SecretStr] = Field(
        default=None, description="its PEM private key (secret)"
    )

    @field_validator("sip_tls_certificate")
    @classmethod
    def _certificate(cls, value: Optional[SecretStr]) -> Optional[SecretStr]:
        if value is not None:
            pem_certificate(value.get_secret_value())
        return value

    @field_validator("sip_tls_key")
    @classmethod
    def _tls_key(cls, value: Optional[SecretStr]) -> Optional[SecretStr]:
        if value is not None:
            pem_private_key(value.get_secret_value())
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        return image_name(value)

    @field_validator("combined_size")
    @classmethod
    def _combined_size(cls, value: Optional[str]) -> Optional[str]:
        from core.settings.values import server_type

        return None if value is None else server_type(value)

    @field_validator("admin_cidrs", "sip_cidrs", "carrier_cidrs", "api_cidrs")
    @classmethod
    def _no_duplicates(cls, value: Optional[list[str]]) -> Optional[list[str]]:
        # Resource names are made from each CIDR: a duplicate would be one URN twice.
        if value is not None and len(set(value)) != len(value):
            twice = next(c for c in value if value.count(c) > 1)
            raise ValueError(f"{twice} is listed twice")
        return value

    @field_validator("admin_cidrs")
    @classmethod
    def _admin_not_world(cls, value: list[str]) -> list[str]:
        if open_to_internet(value):
            raise ValueError(f"{', '.join(value)} open SSH and admin UIs to the whole internet (together more "
                             "than a /8 of IPv4 or a /32 of IPv6): name your admins' networks")
        return value

    @field_validator("carrier_cidrs")
    @classmethod
    def _carriers_narrow(cls, value: list[str]) -> list[str]:
        # A carrier is trusted by FreeSWITCH without authentication: a wide range is toll fraud.
        for item in value:
            net = ipaddress.ip_network(item)
            widest = 16 if net.version == 4 else 32
            if net.prefixlen < widest:
                raise ValueError(f"{item} is wider than /{widest}: every address in it could place calls as a carrier")
        return value

    @field_validator("ssh_private_key")
    @classmethod
    def _private_key(cls, value: Optional[SecretStr]) -> Optional[SecretStr]:
        if value is not None:
            ssh_private_key(value.get_secret_value())
        return value

    @field_validator("master_password")
    @classmethod
    def _password(cls, value: Optional[SecretStr]) -> Optional[SecretStr]:
        if value is not None:
            text = value.get_secret_value()
            if not 12 <= len(text) <= 128 or not text.isprintable() or not text.isascii():
                raise ValueError("must be 12 to 128 printable ASCII characters")
        return value

    @model_validator(mode="after")
    def _layout_rules(self) -> "Settings":
        db = self.roles.database
        if self.layout is Layout.MAXIMAL and db.count < COUCHDB_QUORUM and not db.allow_below_quorum:
            raise SettingsError(
                f"{NAMESPACE}:roles.database.count: {db.count} CouchDB nodes lose quorum in maximal; "
                f"use at least {COUCHDB_QUORUM} or set roles.database.allowBelowQuorum: true"
            )
        if db.n is not None and db.n > self.database_count:
            raise SettingsError(
                f"{NAMESPACE}:roles.database.n: {db.n} copies need {db.n} database nodes "
                f"(the {self.layout.value} layout has {self.database_count})"
            )
        if self.cloud is Cloud.HETZNER and self.hetzner.network_zone != "eu-central":
            for key, size in [("combinedSize", self.combined_size)] + [
                    (f"roles.{r.value}.size", self.roles.of(r).size) for r in Role]:
                if size and size.startswith(HETZNER_EU_ONLY) and not size.startswith("ccx"):
                    raise SettingsError(
                        f"{NAMESPACE}:{key}: {size} is sold in Hetzner's EU locations only, not in "
                        f"{', '.join(self.hetzner.locations)} (use ccx* or cpx* there)"
                    )
        if self.cloud is Cloud.AWS:
            # The CouchDB volume is found by the NVMe name Nitro instances give EBS volumes (systemd's
            # 60-persistent-storage.rules: nvme-Amazon_Elastic_Block_Store_vol...); Xen types show it as
            # /dev/xvdf with no such link, and the bootstrap would wait for it in vain.
            keys = [("combinedSize", self.combined_size)] if self.layout is not Layout.MAXIMAL else \
                [("roles.database.size", self.roles.database.size)]
            for key, size in keys:
                if size and size.split(".")[0] in AWS_XEN_FAMILIES and size != "i3.metal":
                    raise SettingsError(
                        f"{NAMESPACE}:{key}: {size} is a Xen instance type: database hosts need a Nitro type "
                        "(m6i, c6i, r6i, t3, ...), whose EBS volumes appear as NVMe devices"
                    )
        for image_key, image in self.images_in_use():
            if self.cloud is Cloud.HETZNER and image.startswith("ami-"):
                raise SettingsError(f"{NAMESPACE}:{image_key}: {image} is an AWS AMI, not a Hetzner image")
        for role in Role:
            if role is not Role.PROXY and self.roles.of(role).image is not None:
                raise SettingsError(
                    f"{NAMESPACE}:roles.{role.value}.image: only proxies may run another image "
                    "(the Kazoo 4.4 packages are built for Debian 12)"
                )
        if self.dns.zone and not (self.domain == self.dns.zone or self.domain.endswith("." + self.dns.zone)):
            raise SettingsError(f"{NAMESPACE}:dns.zone: {self.dns.zone} does not hold the domain {self.domain}")
        for carrier in self.carrier_cidrs:
            if ipaddress.ip_network(carrier).overlaps(ipaddress.ip_network(self.network.cidr)):
                raise SettingsError(
                    f"{NAMESPACE}:carrierCidrs: {carrier} overlaps the stack's private network {self.network.cidr}: "
                    "its hosts would be trusted carriers"
                )
        if open_to_internet(self.effective_api_cidrs) and not self.tls_api:
            raise SettingsError(
                f"{NAMESPACE}:apiCidrs: an API open to the whole internet (more than a /8 of IPv4 or a /32 of "
                "IPv6) must be HTTPS: set dns.zone (the "
                "zone holding the domain), which puts crossbar behind the cloud's load balancer with a certificate"
            )
        if self.sip.tls and (self.sip_tls_certificate is None or self.sip_tls_key is None):
            raise SettingsError(
                f"{NAMESPACE}:sipTlsCertificate: sip.tls needs the SIP domain's certificate and key: "
                "pulumi config set --secret kazoo:sipTlsCertificate/-Key < file.pem"
            )
        if not self.orchestrate and self.cloud is Cloud.AWS and self.layout is not Layout.MAXIMAL:
            # An AWS host carrying every role takes its FreeSWITCH role and the SIP certificate from
            # the first config push (core/bootstrap.py deferred_roles). Without the push all of it is
            # user-data: over AWS's 16 KB since Kamailio's FreeSWITCH socket (custom-routes.cfg), and
            # within some 80 bytes of it before. Refused here, always, rather than by the size check.
            raise SettingsError(
                f"{NAMESPACE}:orchestrate: false needs layout maximal on AWS: a host carrying every role does not "
                "fit AWS's 16 KB of user-data without the first config push (turn orchestrate on, or use maximal; "
                "README: Upgrading an existing stack)"
            )
        if self.image == "debian-13":
            raise SettingsError(
                f"{NAMESPACE}:image: debian-13 cannot carry Kazoo, FreeSWITCH or CouchDB (their packages are "
                "built for Debian 12); use debian-12, and roles.proxy.image: debian-13 for proxies if you like"
            )
        if self.proxy_image == "debian-13" and self.layout is Layout.MAXIMAL and not self.sources.kamailio.from_debian:
            raise SettingsError(
                f"{NAMESPACE}:sources.kamailio.repo: Debian 13 proxies take Kamailio from Debian 13 itself "
                "(the openkazoo repository is for bookworm): set sources.kamailio: {repo: debian, version: '6.0.*'}"
            )
        return self

    # Resolved views used by the rest of the program.
    @property
    def tls_api(self) -> bool:
        """Crossbar (and Monster UI) behind the cloud's load balancer with a managed certificate: with
        dns.zone on AWS (its load balancer takes apiCidrs), and on Hetzner when the API is open to the
        world anyway (Hetzner's load balancers cannot filter by source: an API kept to apiCidrs stays
        plain HTTP on the hosts, behind their firewalls)."""
        if self.dns.zone is None:
            return False
        return self.cloud is Cloud.AWS or open_to_internet(self.effective_api_cidrs)
    @property
    def effective_api_cidrs(self) -> list[str]:
        return self.api_cidrs if self.api_cidrs is not None else self.admin_cidrs

    @property
    def proxy_image(self) -> str:
        """The image proxies run: their own in maximal when set, else the stack's."""
        own = self.roles.proxy.image if self.layout is Layout.MAXIMAL else None
        return own or self.image

    def image_of(self, role: Optional[Role]) -> str:
        """Image of a host of `role`, or of a combined host when role is None."""
        return self.proxy_image if role is Role.PROXY else self.image

    def images_in_use(self) -> list[tuple[str, str]]:
        found = [("image", self.image)]
        if self.roles.proxy.image:
            found.append(("roles.proxy.image", self.roles.proxy.image))
        return found

    def installs(self, component: Component) -> bool:
        return component not in self.bootstrap.skip

    def archives_in_use(self) -> dict[str, Archive]:
        """The archives some host fetches, by sources key (kazoo_configs, kamailio_configs, ...)."""
        archives = {}
        if self.installs(Component.KAZOO):
            archives["kazoo_configs"] = self.sources.kazoo_configs
        if self.installs(Component.KAMAILIO):
            archives["kamailio_configs"] = self.sources.kamailio_configs
        if self.installs(Component.FREESWITCH):
            archives["freeswitch_configs"] = self.sources.freeswitch_configs
        if self.sources.monster_ui is not None:
            archives["monster_ui"] = self.sources.monster_ui
        return archives

    @property
    def database_count(self) -> int:
        return {Layout.SINGLE: 1, Layout.DUAL: 2}.get(self.layout, self.roles.database.count)

    @property
    def couchdb_n(self) -> int:
        return self.roles.database.n or min(COUCHDB_QUORUM, self.database_count)

    @property
    def couchdb_q(self) -> int:
        return self.roles.database.q or (1 if self.database_count == 1 else 2)

    @property
    def master_realm(self) -> str:
        return self.master_account.realm or f"master.{self.domain}"

    def size_of(self, role: Optional[Role]) -> str:
        """Size of a host of `role`, or of a combined host when role is None."""
        defaults = DEFAULT_SIZES[self.cloud.value]
        if self.cloud is Cloud.HETZNER and self.hetzner.network_zone != "eu-central":
            defaults = HETZNER_SIZES_OUTSIDE_EU
        if role is None:
            return self.combined_size or defaults["combined"]
        return self.roles.of(role).size or defaults[role]

    @property
    def zones(self) -> list[str]:
        return self.hetzner.locations if self.cloud is Cloud.HETZNER else self.aws.zone_names


# Instance families on the Xen hypervisor: those not in AWS's "Instances built on the AWS Nitro
# System" (docs.aws.amazon.com/AWSEC2/latest/UserGuide/instance-types.html#ec2-nitro-instances; as
# cloudposse's DenyNonNitroInstances policy lists it), i3.metal excepted.
AWS_XEN_FAMILIES = {"t1", "t2", "m1", "m2", "m3", "m4", "c1", "c3", "c4", "r3", "r4", "i2", "i3", "d2", "x1",
                    "x1e", "h1", "g2", "g3", "g3s", "p2", "p3", "f1", "cc2", "cr1", "hs1"}
