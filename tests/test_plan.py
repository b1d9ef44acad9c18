"""The layout planner on its own: plain functions, no Pulumi."""

import ipaddress

import pytest

from core.plan import PlanError, plan_hosts
from core.roles import ALL_ROLES
from core.settings import load_settings
from harness import stack_config


def settings_of(stack: str, **changes):
    return load_settings(stack_config(stack, changes))


def by_name(plan):
    return {h.name: h for h in plan.hosts}


@pytest.mark.parametrize("cloud", ["hetzner", "aws"])
def test_single_is_one_host_with_every_role(cloud):
    plan = plan_hosts(settings_of(f"{cloud}-single"))
    assert [h.name for h in plan.hosts] == ["kazoo1"]
    assert set(plan.hosts[0].roles) == set(ALL_ROLES)
    assert plan.hosts[0].fqdn == f"kazoo1.single.{cloud}.voip.example.com"


@pytest.mark.parametrize("cloud", ["hetzner", "aws"])
def test_single_host_is_the_first_host_of_dual(cloud):
    single = plan_hosts(settings_of(f"{cloud}-dual", layout="single"))
    dual = plan_hosts(settings_of(f"{cloud}-dual"))
    assert [h.name for h in dual.hosts] == ["kazoo1", "kazoo2"]
    assert single.hosts[0] == dual.hosts[0]  # same name, zone, IP, size, group: nothing to replace
    assert dual.hosts[0].zone != dual.hosts[1].zone  # the two halves sit in different zones


@pytest.mark.parametrize("cloud", ["hetzner", "aws"])
def test_maximal_counts_and_names(cloud):
    plan = plan_hosts(settings_of(f"{cloud}-maximal"))
    names = [h.name for h in plan.hosts]
    assert names == ["db1", "db2", "db3", "broker1", "broker2", "app1", "app2", "media1", "media2", "proxy1", "proxy2"]
    assert all(len(h.roles) == 1 for h in plan.hosts)
    # each role spread over the zones: no single zone holds every host of a role
    for role in ALL_ROLES:
        assert len({h.zone for h in plan.with_role(role)}) > 1


@pytest.mark.parametrize("cloud", ["hetzner", "aws"])
def test_raising_a_count_only_appends(cloud):
    before = by_name(plan_hosts(settings_of(f"{cloud}-maximal")))
    after = by_name(plan_hosts(settings_of(f"{cloud}-maximal", roles={"media": {"count": 7}})))
    assert {k: v for k, v in after.items() if k in before} == before
    assert sorted(set(after) - set(before)) == ["media3", "media4", "media5", "media6", "media7"]


@pytest.mark.parametrize("stack", ["hetzner-maximal", "aws-maximal", "aws-dual", "hetzner-dual"])
def test_private_ips_unique_and_inside_their_subnet(stack):
    plan = plan_hosts(settings_of(stack, roles={"media": {"count": 30}}))
    ips = [h.private_ip for h in plan.hosts]
    assert len(set(ips)) == len(ips)
    network = ipaddress.ip_network(plan.network_cidr)
    for host in plan.hosts:
        address = ipaddress.ip_address(host.private_ip)
        subnet = ipaddress.ip_network(plan.subnets[host.zone])
        assert address in subnet and subnet.subnet_of(network)
        # clear of the first addresses, which clouds keep (AWS: 4) or hand out (Hetzner: gateway)
        assert int(address) - int(subnet.network_address) >= 10


def test_aws_subnets_are_disjoint_per_zone():
    plan = plan_hosts(settings_of("aws-maximal"))
    nets = [ipaddress.ip_network(c) for c in plan.subnets.values()]
    assert len(nets) == 3
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1 :])


def test_spread_groups_respect_cloud_limits():
    hetzner = plan_hosts(settings_of("hetzner-maximal", roles={"media": {"count": 45}}))
    groups = {}
    for h in hetzner.hosts:
        groups.setdefault(h.spread_group, []).append(h)
    assert max(len(g) for g in groups.values()) <= 10
    aws = plan_hosts(settings_of("aws-maximal", roles={"media": {"count": 45}}))
    counts = {}
    for h in aws.hosts:
        counts[h.spread_group] = counts.get(h.spread_group, 0) + 1
    assert max(counts.values()) <= 7


def test_stable_public_ips_only_where_carriers_or_users_point():
    plan = plan_hosts(settings_of("aws-maximal"))
    stable = {h.name for h in plan.hosts if h.stable_public_ip}
    assert stable == {"app1", "app2", "media1", "media2", "proxy1", "proxy2"}
    assert all(h.stable_public_ip for h in plan_hosts(settings_of("aws-dual")).hosts)


def test_database_hosts_get_a_data_volume():
    plan = plan_hosts(settings_of("aws-maximal"))
    assert {h.name for h in plan.hosts if h.data_volume_gb} == {"db1", "db2", "db3"}
    assert plan.host("db1").data_volume_gb == 100


def test_hetzner_network_limit():
    with pytest.raises(PlanError, match="^kazoo:roles: 110 hosts exceed"):
        plan_hosts(settings_of("hetzner-maximal", roles={"media": {"count": 101}}))
