"""Least privilege (issue 11): a host receives only the secrets its roles use, in its user-data and in
the bundle the orchestration pushes, for every layout on both clouds.

The expected table is written here from what each role's software reads (not imported from the
code): CouchDB reads its cluster cookie (vm.args) and admin password; RabbitMQ its user's password;
Kazoo its Erlang cookie (shared with ecallmgr, sup and mod_kazoo), CouchDB's and RabbitMQ's
credentials; FreeSWITCH only the Erlang cookie (mod_kazoo); Kamailio the AMQP credentials and its
own PostgreSQL password.
"""

from __future__ import annotations


import pytest

from core.user_data import decode_user_data
from harness import bundle_text, run_stack_file

EXPECTED = {
    "database": {"couchdb-cookie", "couchdb-password"},
    "broker": {"rabbitmq-password"},
    "application": {"erlang-cookie", "couchdb-password", "rabbitmq-password"},
    "media": {"erlang-cookie"},
    "proxy": {"rabbitmq-password", "kamailio-db-password"},
}
STACKS = [f"{c}-{l}" for c in ("hetzner", "aws") for l in ("single", "dual", "maximal")]


@pytest.mark.parametrize("stack", STACKS)
def test_each_host_carries_only_the_secrets_of_its_roles(stack):
    result = run_stack_file(stack)
    secrets = {r.name: r.state["result"] for r in result.registrations
               if r.type == "random:index/randomPassword:RandomPassword" and r.name != "master-password"}
    assert set(secrets) == set().union(*EXPECTED.values())
    servers = {r.name: r for r in result.registrations if r.type.endswith(("index/server:Server", "ec2/instance:Instance"))}
    pushes = {r.name.removeprefix("config-"): r for r in result.registrations
              if r.type == "command:remote:Command" and r.name.startswith("config-")}
    for name, host in result.outputs["hosts"].items():
        allowed = set().union(*(EXPECTED[role] for role in host["roles"]))
        server = servers[name]
        user_data = decode_user_data(server.inputs.get("userData") or server.inputs["userDataBase64"])
        found = {key for key, value in secrets.items() if value in user_data}
        assert found == allowed, f"{stack}/{name}: has {sorted(found - allowed)}, lacks {sorted(allowed - found)}"
        # the pushed bundle holds rendered files, not host.env: never more than the user-data
        pushed = {key for key, value in secrets.items() if value in bundle_text(pushes[name].inputs["stdin"])}
        assert pushed <= allowed, f"{stack}/{name} bundle: {sorted(pushed - allowed)}"
        assert result.outputs["masterAccount"]["password"] not in user_data  # only the orchestration's stdin
