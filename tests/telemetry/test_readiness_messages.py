"""What the readiness check says before the start has finished, once it has, and while stopping."""

from __future__ import annotations

from appliance.telemetry.health import Readiness, StorageProbe


async def _ping() -> None:
    return None


def test_the_config_check_says_what_it_waits_for() -> None:
    readiness = Readiness(StorageProbe(_ping), wall=lambda: 1000.0)
    starting = readiness.config_check()
    assert not starting.ok and "signing keys" in starting.error
    readiness.config_loaded()
    assert readiness.config_check().ok
    readiness.stopping()
    stopping = readiness.config_check()
    assert not stopping.ok and stopping.error == "shutting down"
