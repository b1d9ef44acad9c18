"""Names and TLS (issue 13) under mocks, for both clouds and every layout: a record per host with a
lasting public address and its reverse name, the SIP domain's SRV and NAPTR records (RFC 3263:
NAPTR -> SRV -> A), the API's load balancer with its targets, health checks and certificate, and
growth that only adds."""

from __future__ import annotations

import ipaddress

import pytest

from harness import bundle_text, run_stack_file
from tls_ca import ThrowawayCA

STACKS = [f"{c}-{l}" for c in ("hetzner", "aws") for l in ("single", "dual", "maximal")]
WORLD = {"apiCidrs": ["0.0.0.0/0"]}


def zone_of(stack: str) -> str:
    return f"{stack.split('-')[0]}.voip.example.com"  # holds <layout>.<cloud>.voip.example.com


def with_names(stack: str, **more):
    return run_stack_file(stack, {"dns": {"zone": zone_of(stack)}, **WORLD, **more})


def records(result) -> dict[tuple[str, str], list[str]]:
    """(name, type) -> values, for both clouds' record resources (names made absolute)."""
    found = {}
    for r in result.registrations:
        if r.type == "aws:route53/record:Record" and not r.name.startswith("dns-certificate"):
            values = r.inputs.get("records") or [a["name"] for a in r.inputs.get("aliases", [])]
            found[(r.inputs["name"], r.inputs["type"])] = values
        elif r.type == "hcloud:index/zoneRrset:ZoneRrset":
            zone, name = r.inputs["zone"], r.inputs["name"]
            fqdn = zone if name == "@" else f"{name}.{zone}"
            found[(fqdn, r.inputs["type"])] = [v["value"] for v in r.inputs["records"]]
    return found


@pytest.mark.parametrize("stack", STACKS)
def test_every_lasting_address_has_a_name_and_its_reverse(stack):
    result = with_names(stack)
    hosts = result.outputs["hosts"]
    found = records(result)
    reverse = {r.inputs.get("dnsPtr") or r.inputs.get("domainName"): r for r in result.registrations
               if r.type in ("hcloud:index/rdns:Rdns", "aws:ec2/eipDomainName:EipDomainName")}
    for name, host in hosts.items():
        if set(host["roles"]) in ({"database"}, {"broker"}):
            assert (host["fqdn"], "A") not in found  # no lasting public address: no name
            continue
        assert found[(host["fqdn"], "A")] == [host["publicIp"]], name
        assert host["fqdn"] in reverse, name  # the PTR names the host, after its A record exists
        assert any(d.endswith(f"dns-{name}-a") for d in reverse[host["fqdn"]].dependencies), name


def test_hetzner_looks_its_zone_up_and_refuses_a_secondary_one(monkeypatch):
    """Review 9: the zone went straight to the record sets, so one the Cloud API does not hold failed
    mid-`up`, after the servers. It is looked up first; a secondary zone takes no record sets."""
    import pulumi

    from tools.mock_engine import Mocks

    lookups = []
    real = Mocks.call

    def call(self, args):
        if args.token == "hcloud:index/getZone:getZone":
            lookups.append(args.args.get("name"))
            return {"id": 4711, "name": args.args.get("name"), "mode": "secondary", "ttl": 3600, "labels": {}}
        return real(self, args)

    monkeypatch.setattr(Mocks, "call", call)
    with pytest.raises(pulumi.RunError) as raised:
        with_names("hetzner-single")
    assert lookups == ["hetzner.voip.example.com"]  # once, for every record set
    message = str(raised.value)
    assert message.startswith("kazoo:dns.zone: hetzner.voip.example.com is a secondary zone") and "\n" not in message


@pytest.mark.parametrize("stack", STACKS)
def test_the_sip_domain_leads_to_every_proxy(stack):
    result = with_names(stack)
    domain = result.outputs["sipEndpoints"][0].removeprefix("sip:")
    proxies = sorted(h["fqdn"] for h in result.outputs["hosts"].values() if "proxy" in h["roles"])
    found = records(result)
    for service in ("_sip._udp", "_sip._tcp"):
        srv = sorted(found[(f"{service}.{domain}", "SRV")])
        assert srv == sorted(f"10 10 5060 {p}." for p in proxies)  # equal priority and weight
    if stack.startswith("aws"):
        naptr = found[(domain, "NAPTR")]
        assert naptr == [f'10 50 "s" "SIP+D2U" "" _sip._udp.{domain}.', f'20 50 "s" "SIP+D2T" "" _sip._tcp.{domain}.']
    else:  # review 3, A1: Hetzner's API refuses a NAPTR RRSet; SRV alone is RFC 3263's fallback
        assert (domain, "NAPTR") not in found
    assert (f"_sips._tcp.{domain}", "SRV") not in found  # no TLS, not offered


# Every RRSet type Hetzner's Cloud DNS API takes (hetznercloud/hcloud-go hcloud/zone_rrset.go,
# ZoneRRSetType): the provider passes the type through, so another fails only at `pulumi up`.
HETZNER_RRSET_TYPES = {"A", "AAAA", "CAA", "CNAME", "DS", "HINFO", "HTTPS", "MX", "NS", "PTR", "RP", "SOA",
                       "SRV", "SVCB", "TLSA", "TXT"}


@pytest.mark.parametrize("stack", [s for s in STACKS if s.startswith("hetzner")])
def test_hetzner_gets_only_record_types_its_dns_takes(stack, tmp_path):
    certificate, key = ThrowawayCA(tmp_path).issue(f"{stack.split('-')[1]}.hetzner.voip.example.com", 5)
    result = with_names(stack, sip={"tls": True}, sipTlsCertificate=certificate, sipTlsKey=key)
    types = {r.inputs["type"] for r in result.registrations if r.type == "hcloud:index/zoneRrset:ZoneRrset"}
    assert "SRV" in types and types <= HETZNER_RRSET_TYPES, types


def test_tls_is_offered_first_when_on(tmp_path):
    certificate, key = ThrowawayCA(tmp_path).issue("maximal.aws.voip.example.com", 5)
    result = with_names("aws-maximal", sip={"tls": True}, sipTlsCertificate=certificate, sipTlsKey=key)
    found = records(result)
    domain = "maximal.aws.voip.example.com"
    assert found[(domain, "NAPTR")][0] == f'10 50 "s" "SIPS+D2T" "" _sips._tcp.{domain}.'
    assert sorted(found[(f"_sips._tcp.{domain}", "SRV")]) == [f"10 10 5061 proxy{i}.{domain}." for i in (1, 2)]


@pytest.mark.parametrize("stack", ["hetzner-maximal", "aws-maximal", "aws-single"])
def test_the_api_is_https_behind_the_load_balancer(stack):
    result = with_names(stack, sources={"monsterUi": {"url": "https://m.example.com/m.tgz", "sha256": "a" * 64}})
    domain = result.outputs["sipEndpoints"][0].removeprefix("sip:")
    apps = {n for n, h in result.outputs["hosts"].items() if "application" in h["roles"]}
    assert result.outputs["apiUrls"] == [f"https://api.{domain}/v2"]
    found = records(result)
    assert (f"api.{domain}", "A") in found and (f"ui.{domain}", "A") in found
    servers = {r.urn: r.name for r in result.registrations if r.type.endswith(("server:Server", "instance:Instance"))}
    if stack.startswith("hetzner"):
        [lb] = [r for r in result.registrations if r.type == "hcloud:index/loadBalancer:LoadBalancer"]
        assert found[(f"api.{domain}", "A")] == [lb.state["ipv4"]]
        [cert] = [r for r in result.registrations if r.type == "hcloud:index/managedCertificate:ManagedCertificate"]
        assert sorted(cert.inputs["domainNames"]) == [f"api.{domain}", f"ui.{domain}"]
        # review 3, A2: new names replace it create-first: the new one needs a name of its own
        without_ui = with_names(stack)
        [old] = [r for r in without_ui.registrations if r.type == "hcloud:index/managedCertificate:ManagedCertificate"]
        assert old.inputs["domainNames"] == [f"api.{domain}"] and old.inputs["name"] != cert.inputs["name"]
        assert not cert.delete_before_replace  # the 443 service still uses the old one
        targets = [r for r in result.registrations if r.type == "hcloud:index/loadBalancerTarget:LoadBalancerTarget"]
        assert {servers[next(d for d in t.dependencies if d in servers)] for t in targets} == apps
        assert all(t.inputs["usePrivateIp"] for t in targets)
        services = {r.inputs["listenPort"]: r.inputs for r in result.registrations
                    if r.type == "hcloud:index/loadBalancerService:LoadBalancerService"}
        assert services[443]["destinationPort"] == 8000 and services[443]["protocol"] == "https"
        assert services[443]["healthCheck"]["port"] == 8000 and "4??" in services[443]["healthCheck"]["http"]["statusCodes"]
        assert services[8443]["destinationPort"] == 80
        assert result.outputs["uiUrls"] == [f"https://ui.{domain}:8443/"]
    else:
        cert_records = [r for r in result.registrations if r.name.startswith("dns-certificate")]
        assert len(cert_records) == 2  # one validation record per name, in Route53
        [validation] = [r for r in result.registrations if r.type == "aws:acm/certificateValidation:CertificateValidation"]
        assert len(validation.inputs["validationRecordFqdns"]) == 2
        groups = {r.name: r for r in result.registrations if r.type == "aws:lb/targetGroup:TargetGroup"}
        assert groups["web-api"].inputs["port"] == 8000 and groups["web-api"].inputs["healthCheck"]["matcher"] == "200-499"
        attached = [r for r in result.registrations if r.type == "aws:lb/targetGroupAttachment:TargetGroupAttachment"]
        assert {a.name.split("-")[-1] for a in attached if a.name.startswith("web-api-")} == apps
        [https] = [r for r in result.registrations if r.name == "web-https"]
        assert https.inputs["port"] == 443 and https.inputs["protocol"] == "HTTPS"
        ingress = [r for r in result.registrations if r.type.endswith("SecurityGroupIngressRule")]
        crossbar = [r for r in ingress if r.inputs.get("fromPort") == 8000]
        assert crossbar and all(r.inputs.get("cidrIpv4", "").startswith("10.20.") for r in crossbar)  # from the LB only
        assert result.outputs["uiUrls"] == [f"https://ui.{domain}/"]


def test_plain_http_stays_private_with_tls():
    result = with_names("hetzner-maximal")
    nft = [r for r in result.registrations if r.type == "hcloud:index/firewall:Firewall" and r.name == "application-firewall"]
    assert not [rule for rule in nft[0].inputs.get("rules", []) if rule.get("port") == "8000"]


@pytest.mark.parametrize("cloud", ["hetzner", "aws"])
def test_a_third_proxy_adds_records_and_replaces_none(cloud):
    before = with_names(f"{cloud}-maximal")
    after = with_names(f"{cloud}-maximal", roles={"proxy": {"count": 3}})
    old = {r.urn: r for r in before.registrations}
    added = [r for r in after.registrations if r.urn not in old]
    assert any(r.name == "dns-proxy3-a" for r in added) and any(r.name == "proxy3-rdns" for r in added)
    assert not [u for u in old if u not in {r.urn for r in after.registrations}]  # nothing removed
    srv = records(after)[(f"_sip._udp.maximal.{cloud}.voip.example.com", "SRV")]
    assert len(srv) == 3  # the SRV set is updated in place (same resource), not replaced
    assert any(r.name == "dns-sip-udp-srv" for r in before.registrations)


def test_without_a_zone_there_are_no_names_and_the_api_is_as_before():
    result = run_stack_file("aws-maximal")
    assert not [r for r in result.registrations if "route53" in r.type or r.type.endswith("loadBalancer:LoadBalancer")]
    assert all(u.startswith("http://") and u.endswith(":8000/v2") for u in result.outputs["apiUrls"])


def test_hetzner_keeps_a_restricted_api_off_its_unfilterable_load_balancer():
    """Hetzner's load balancers take every source: an API kept to apiCidrs stays plain HTTP on the
    hosts, behind their firewalls; the names are published all the same."""
    result = run_stack_file("hetzner-maximal", {"dns": {"zone": "hetzner.voip.example.com"}})
    assert not [r for r in result.registrations if r.type == "hcloud:index/loadBalancer:LoadBalancer"]
    assert records(result)  # host names and the SIP domain
    assert all(u.startswith("http://") for u in result.outputs["apiUrls"])


@pytest.mark.parametrize("stack, more, want", [
    # every zone holding an application host, so that each target gets traffic
    ("aws-maximal", {"roles": {"application": {"count": 3}}}, {"eu-central-1a", "eu-central-1b", "eu-central-1c"}),
    # one application zone: the plan's next zone is the ALB's second
    ("aws-dual", {"aws": {"region": "eu-central-1", "zones": ["eu-central-1c", "eu-central-1a"]}}, {"eu-central-1c", "eu-central-1a"}),
    # a plan in one zone: another zone of the region, looked up
    ("aws-single", {"aws": {"region": "eu-central-1", "zones": ["eu-central-1c"]}}, {"eu-central-1c", "eu-central-1a"}),
])
def test_the_load_balancer_is_in_every_application_zone(stack, more, want):
    """Review 3, B2: the ALB's subnets were the region's first two zones whatever the hosts' zones:
    an API in eu-central-1c alone answered 503 (ELB: targets in a zone the balancer is not enabled in
    get no traffic)."""
    result = with_names(stack, **more)
    apps = {h["zone"] for h in result.outputs["hosts"].values() if "application" in h["roles"]}
    subnets = [r for r in result.registrations if r.type == "aws:ec2/subnet:Subnet" and r.name.startswith("web-lb-")]
    zones = {s.inputs["availabilityZone"] for s in subnets}
    assert zones == want and apps <= zones and len(subnets) == len(zones) >= 2
    host_subnets = {r.inputs["cidrBlock"] for r in result.registrations
                    if r.type == "aws:ec2/subnet:Subnet" and not r.name.startswith("web-lb-")}
    cidrs = [ipaddress.ip_network(s.inputs["cidrBlock"]) for s in subnets]
    assert not any(a.overlaps(b) for i, a in enumerate(cidrs) for b in cidrs[i + 1:])
    assert not any(c.overlaps(ipaddress.ip_network(h)) for c in cidrs for h in host_subnets)


def test_growing_the_application_tier_adds_a_balancer_subnet_and_moves_none():
    before = with_names("aws-maximal")
    after = with_names("aws-maximal", roles={"application": {"count": 3}})
    lb = lambda r: {s.name: s.inputs for s in r.registrations if s.type == "aws:ec2/subnet:Subnet" and s.name.startswith("web-lb-")}
    assert set(lb(after)) - set(lb(before)) == {"web-lb-subnet-eu-central-1c"}
    for name, inputs in lb(before).items():
        assert lb(after)[name] == inputs, name


@pytest.mark.parametrize("stack, orchestrate", [("aws-dual", True), ("aws-maximal", False), ("hetzner-dual", False)])
def test_the_sip_certificate_travels_where_it_fits(stack, orchestrate, tmp_path):
    """Review 5, B1: a chain and its key (~3 KB nobody can compress) took an AWS host carrying every
    role over its 16 KB of user-data, and `pulumi up` failed midway. With the orchestration on they
    travel in its push only (the proxy boots with a throwaway pair: the boot test); without it, in
    the user-data, as nothing else would bring them."""
    from core.user_data import decode_user_data

    cloud, layout = stack.split("-")
    certificate, key = ThrowawayCA(tmp_path).issue(f"{layout}.{cloud}.voip.example.com", 5)
    result = run_stack_file(stack, {"dns": {"zone": zone_of(stack)}, **WORLD, "sip": {"tls": True},
                                    "sipTlsCertificate": certificate, "sipTlsKey": key, "orchestrate": orchestrate})
    body = key.strip().splitlines()[1]
    proxies = {n for n, h in result.outputs["hosts"].items() if "proxy" in h["roles"]}
    servers = [r for r in result.registrations if r.type in ("aws:ec2/instance:Instance", "hcloud:index/server:Server")]
    for server in servers:
        user_data = decode_user_data(server.inputs.get("userDataBase64") or server.inputs["userData"])  # it fits
        carried = not orchestrate and server.name in proxies
        assert (body in user_data) is carried, server.name
        assert ("/etc/kazoo/kamailio/certs/cert.pem" in user_data) is carried, server.name
    if orchestrate:
        pushes = [r for r in result.registrations if r.type == "command:remote:Command" and r.name.startswith("config-")]
        assert pushes and all(body in bundle_text(p.inputs["stdin"]) for p in pushes)

