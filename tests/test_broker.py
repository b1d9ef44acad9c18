"""install-broker.sh on a fake host, against a rabbitmqctl stand-in (tests/stubs/rabbitmqctl, RabbitMQ
3.10's behaviour): the user is made or given the password from stdin, never on a command line; guest
goes; a second run changes the password of the existing user. (A real RabbitMQ 3.10 runs the same
script in the boot test.)"""

from __future__ import annotations

import json

import pytest

from core.bootstrap import CLOUD_INIT_DIR, HostContext, render_template, rendered_files
from core.plan import plan_hosts
from core.settings import load_settings
from fakehost import FakeHost, available, stage_files
from harness import stack_config

PASSWORD = "rabbitPw0123456789abcdefghijklmn"
pytestmark = pytest.mark.skipif(not available(), reason="needs root and unshare (as in .ci/run)")


def broker(tmp_path):
    settings = load_settings(stack_config("aws-maximal", {"bootstrap": {"skip": ["couchdb", "kazoo", "freeswitch"]}}))
    plan = plan_hosts(settings)
    ctx = HostContext(plan.host("broker1"), plan, settings, None, {"rabbitmq_password": PASSWORD})
    host = FakeHost(tmp_path, {})
    (tmp_path / "host.env").write_text(render_template("host.env.j2", ctx))
    staged = stage_files(rendered_files(ctx), tmp_path / "files")
    (host.state / "units").write_text("rabbitmq-server\n")
    setup = (f"mkdir -p /etc/kazoo-bootstrap/files && cp -a {staged}/. /etc/kazoo-bootstrap/files/ && "
             f"install -m 0755 {CLOUD_INIT_DIR}/scripts/install-broker.sh /opt/kazoo-bootstrap/")
    return host, setup


def test_the_user_gets_its_password_on_stdin_and_guest_goes(tmp_path):
    host, setup = broker(tmp_path)
    first = host.run(f"{setup} && /opt/kazoo-bootstrap/install-broker.sh")
    assert first.returncode == 0, first.stdout + first.stderr
    users = json.loads((host.state / "rabbitmq.json").read_text())["users"]
    assert set(users) == {"kazoo"} and users["kazoo"]["password"] == PASSWORD
    assert users["kazoo"]["permissions"] == {"/": [".*", ".*", ".*"]}
    assert PASSWORD not in "\n".join(host.calls)  # never on rabbitmqctl's command line
    again = host.run(f"{setup} && /opt/kazoo-bootstrap/install-broker.sh")
    assert again.returncode == 0, again.stderr
    assert "rabbitmqctl -q change_password kazoo" in host.calls  # the existing user keeps its name
    assert PASSWORD not in "\n".join(host.calls)


def test_rabbitmq_can_read_its_configuration_when_the_package_first_starts_it(tmp_path):
    """On a fresh image the package's postinst starts RabbitMQ (Debian 12 rabbitmq-server 3.10.8-1.1+deb12u1:
    `invoke-rc.d rabbitmq-server ... || exit 1`) after chowning only /etc/rabbitmq and enabled_plugins.
    A root:root 0640 rabbitmq.conf then stops the node (eacces, failed_to_parse_configuration_file,
    reproduced by the review), and the install fails. Here the host has no rabbitmq account yet, and
    the stand-in for apt records who may read the file at the moment the package would start."""
    host, setup = broker(tmp_path)
    fresh = "sed -i '/^rabbitmq:/d' /etc/passwd /etc/group /etc/shadow /etc/gshadow"
    standin = ('apt_install() { echo "apt_install $* conf=$(stat -c %U:%G:%a /etc/rabbitmq/rabbitmq.conf 2>&1)" '
               '>> "$STUB_STATE/calls.log"; }')
    run = host.run(f"{setup} && {fresh} && printf '%s\\n' '{standin}' >> /opt/kazoo-bootstrap/lib.sh && "
                   "/opt/kazoo-bootstrap/install-broker.sh")
    assert run.returncode == 0, run.stdout + run.stderr
    install = next(c for c in host.calls if c.startswith("apt_install rabbitmq-server"))
    assert install.endswith("conf=root:rabbitmq:640"), install
