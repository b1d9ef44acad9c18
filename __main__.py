"""Kazoo on Hetzner Cloud or AWS. The flow is one way: stack config -> settings -> plan -> resources."""

import pulumi

from components.stack import build, load

settings, plan = load()
build(settings, plan, pulumi.get_stack())
