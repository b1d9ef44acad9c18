"""The cloud seam: the only modules that know a provider's classes.

`seam_for(settings)` returns the seam of the stack's cloud; components ask it for networks,
firewalls, public IPs, servers and volumes, so each role is written once for both clouds.
"""

from core.settings import Cloud, Settings
from components.clouds.base import CloudSeam, NetworkRefs, ServerRefs


def seam_for(settings: Settings, stack: str) -> CloudSeam:
    if settings.cloud is Cloud.HETZNER:
        from components.clouds.hetzner import HetznerSeam

        return HetznerSeam(settings, stack)
    from components.clouds.aws import AwsSeam

    return AwsSeam(settings, stack)


__all__ = ["CloudSeam", "NetworkRefs", "ServerRefs", "seam_for"]
