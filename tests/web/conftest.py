"""Fixtures of the web tests: a harness factory over a real app (see web_harness)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from grants_support import close_upstreams
from web_harness import BASE_CONFIG, Harness, HarnessFactory, make_config

from appliance.clock import FrozenClock
from appliance.config.schema import Config, StorageConfig
from appliance.connectors.registry import Registry, default_registry
from appliance.keys.manager import KeyManager
from appliance.oidc.deps import Deps, build_snapshot
from appliance.store.open import open_storage
from appliance.web.app import create_app


@pytest.fixture
async def make_harness() -> AsyncIterator[HarnessFactory]:
    opened: list[Harness] = []

    async def factory(text: str | None = None, *, skip_approval: bool = True,
                      registry: Registry | None = None, config: Config | None = None) -> Harness:
        if config is None:
            config = make_config(text if text is not None else BASE_CONFIG.replace(
                "{skip}", "true" if skip_approval else "false"))
        storage = await open_storage(StorageConfig(type="memory"))
        clock = FrozenClock()
        keys = KeyManager(storage, clock, algorithm=config.signer.algorithm,
                          rotation_period=config.signer.keys_rotation_period,
                          id_token_lifetime=config.expiry.id_tokens)
        await keys.rotate_if_due()
        await keys.refresh()
        snapshot = await build_snapshot(config, registry or default_registry(), storage=storage)
        deps = Deps(storage=storage, keys=keys, clock=clock, snapshot=snapshot)
        app = create_app(deps)
        await app.startup()
        harness = Harness(app, app.test_client(), deps, clock, storage, config)
        opened.append(harness)
        return harness

    yield factory
    for harness in opened:
        await harness.app.shutdown()
        await harness.storage.close()
    await close_upstreams()


@pytest.fixture
async def web(make_harness: HarnessFactory) -> Harness:
    """The default harness: approval screen skipped."""
    return await make_harness()
