"""Pulumi components: the network and one component per kind of Kazoo server."""
