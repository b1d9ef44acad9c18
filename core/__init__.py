"""The pure core: stack settings, the layout planner, the firewall matrix and the bootstrap renderer.

Nothing in this package imports Pulumi, so it is tested as plain functions and shared by the program,
the offline plan and the policy pack.
"""
