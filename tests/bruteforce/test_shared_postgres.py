"""Two `portico serve` processes on one PostgreSQL database agree on failures and lockouts: counted
across both, locked on both, cleared through either."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from adminutil import Server, start_server
from bf_support import PASSWORD, email, fail_until_locked, password_grant, server_config
from pgutil import PostgresUnavailable, create_test_database, drop_test_database, postgres_unavailable

pytestmark = [pytest.mark.timeout(180), pytest.mark.postgres]


@pytest.fixture(scope="module")
def database() -> Iterator[dict[str, Any]]:
    try:
        config = asyncio.run(create_test_database())
    except PostgresUnavailable as exc:
        postgres_unavailable(str(exc))
    yield config
    asyncio.run(drop_test_database(config["database"]))


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory, database: dict[str, Any]) -> Iterator[list[Server]]:
    storage = {"type": "postgres", "config": database}
    started: list[Server] = []
    try:
        for name in ("a", "b"):
            started.append(start_server(tmp_path_factory.mktemp(f"replica-{name}"),
                                        lambda port: server_config(port, storage=storage)))
        yield started
    finally:
        for server in started:
            server.stop()


def test_a_lockout_made_on_one_replica_holds_on_the_other(replicas: list[Server]) -> None:
    a, b = replicas
    fail_until_locked(a.issuer, email("jane"))
    assert password_grant(b.issuer, email("jane"), PASSWORD).status_code == 401
    listed = {r["id"]: r for r in b.admin().get("/v1/lockouts")}
    assert listed["account:local:jane@example.com"]["locked"]
    b.admin().post("/v1/lockouts/clear", {"user": email("jane")})
    assert password_grant(a.issuer, email("jane"), PASSWORD).status_code == 200


def test_failures_on_both_replicas_add_up(replicas: list[Server]) -> None:
    a, b = replicas
    assert password_grant(a.issuer, email("bob"), "wrong").status_code == 401
    assert password_grant(b.issuer, email("bob"), "wrong").status_code == 401
    counted = {r["id"]: r for r in a.admin().get("/v1/lockouts", all="1")}["account:local:bob@example.com"]
    assert counted["failures"] == 2 and not counted["locked"]
    assert password_grant(a.issuer, email("bob"), "wrong").status_code == 401  # the third, on either
    assert password_grant(b.issuer, email("bob"), PASSWORD).status_code == 401
    assert password_grant(a.issuer, email("bob"), PASSWORD).status_code == 401
    events = [e for e in b.admin().get("/v1/audit", q="lockouts.start")
              if e["target"] == "account:local:bob@example.com"]
    assert len(events) == 1  # one lockout, written once, by the replica that saw the third failure
