"""tests/binary runs first: its build of dist/portico takes minutes, so it starts while the rest runs."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # xdist hands out tests in collection order, so the front of the list starts on a worker at once;
    # the rest keep their order.
    ours = [item for item in items if HERE in item.path.parents]
    if ours:
        items[:] = ours + [item for item in items if HERE not in item.path.parents]
