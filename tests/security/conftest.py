"""Fixtures of the security tests: the helper folders on the path, and in-process harnesses."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

# The security tests reuse the web harness (tests/web) and the e2e helpers (tests/e2e).
_TESTS = Path(__file__).resolve().parent.parent
for _folder in (_TESTS / "web", _TESTS / "e2e", Path(__file__).resolve().parent):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

from security_support import close_harness, open_harness, security_config  # noqa: E402
from web_harness import Harness  # noqa: E402


@pytest.fixture
async def make_sec() -> AsyncIterator[Callable[..., Awaitable[Harness]]]:
    opened: list[Harness] = []

    async def factory(config: dict[str, Any] | None = None, **kw: Any) -> Harness:
        harness = await open_harness(config or security_config(**kw))
        opened.append(harness)
        return harness

    yield factory
    for harness in opened:
        await close_harness(harness)


@pytest.fixture
async def sec(make_sec: Callable[..., Awaitable[Harness]]) -> Harness:
    """The security config, approval screen skipped."""
    return await make_sec()
