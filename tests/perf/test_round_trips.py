"""Database round trips of the hot grants, counted (not timed): a code exchange and a refresh stay within a
fixed number of statements however many devices a user has, and the per-device bookkeeping that made a
code exchange read every earlier token still evicts and prunes as before."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from perf_support import Stack, make_stack, scope
from test_fastpath_api import FORM, REDIRECT, USER_ID, body, config, form, new_code, request

from appliance.oidc.refreshstore import MAX_TOKENS_PER_CLIENT, create_refresh_token
from appliance.store.models import Claims, offline_session_key
from appliance.store.sqlite import SQLiteDatabase
from appliance.web.fastpath import FastPath

BASIC = ("Authorization", "Basic " + base64.b64encode(b"app:app-secret").decode())


class Statements:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sql: list[str] = []
        original = SQLiteDatabase.fetch

        async def fetch(db: SQLiteDatabase, sql: str, *args: Any) -> Any:
            self.sql.append(sql)
            return await original(db, sql, *args)

        monkeypatch.setattr(SQLiteDatabase, "fetch", fetch)


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    made = await make_stack(config())
    yield made
    await made.close()


async def exchange(stack: Stack, fast: FastPath, counted: Statements | None = None) -> dict[str, Any]:
    code = await new_code(stack)
    if counted is not None:
        counted.sql.clear()
    answer = await request(fast, scope("POST", "/dex/token", [("Content-Type", FORM), BASIC]), body(form(
        grant_type="authorization_code", code=code, redirect_uri=REDIRECT)))
    assert answer.status == 200, answer.body
    tokens: dict[str, Any] = json.loads(answer.body)
    return tokens


async def test_a_code_exchange_costs_the_same_with_many_devices(stack: Stack,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    fast = FastPath(stack.app, stack.deps, token_endpoint=stack.tokens)
    counted = Statements(monkeypatch)
    per_exchange = []
    for _ in range(MAX_TOKENS_PER_CLIENT + 4):
        await exchange(stack, fast, counted)
        per_exchange.append(len(counted.sql))
    # The first makes the offline session; later ones update it (and, past the limit, evict one token).
    # Reading every earlier token to see whether it still exists took one statement per device.
    assert per_exchange[0] <= 5 and max(per_exchange[1:]) <= 8, per_exchange
    session = await stack.storage.offline_sessions.get(offline_session_key(USER_ID, "local"))
    assert len(session.refresh) == MAX_TOKENS_PER_CLIENT
    assert len(await stack.storage.refresh_tokens.list()) == MAX_TOKENS_PER_CLIENT

    tokens = await exchange(stack, fast)
    counted.sql.clear()
    answer = await request(fast, scope("POST", "/dex/token", [("Content-Type", FORM), BASIC]), body(form(
        grant_type="refresh_token", refresh_token=tokens["refresh_token"])))
    assert answer.status == 200
    assert len(counted.sql) <= 7, counted.sql
    counted.sql.clear()
    answer = await request(fast, scope("GET", "/dex/userinfo", [("Authorization", "Bearer " + json.loads(
        answer.body)["access_token"])]), body(b""))
    assert answer.status == 200 and len(counted.sql) <= 2, counted.sql


async def test_the_least_recently_used_device_is_evicted(stack: Stack) -> None:
    claims = Claims(user_id=USER_ID, email="ada@example.com")
    made = []
    for i in range(MAX_TOKENS_PER_CLIENT + 1):
        made.append(await create_refresh_token(
            stack.deps, client_id="app", connector_id="local", claims=claims, scopes=("openid",), nonce="",
            connector_data=None))
        if i == 0:  # another client's token of the same user is never evicted by this client's
            other = await create_refresh_token(
                stack.deps, client_id="cli", connector_id="local", claims=claims, scopes=("openid",),
                nonce="", connector_data=None)
        stack.clock.advance(timedelta(seconds=1))
    stored = {token.id for token in await stack.storage.refresh_tokens.list()}
    ids = [base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))[2:28].decode() for raw in made]
    other_id = base64.urlsafe_b64decode(other + "=" * (-len(other) % 4))[2:28].decode()
    assert ids[0] not in stored and set(ids[1:]) <= stored and other_id in stored
    session = await stack.storage.offline_sessions.get(offline_session_key(USER_ID, "local"))
    assert set(session.refresh) == {*ids[1:], other_id}


async def test_tokens_collected_as_expired_leave_the_session_without_being_read(
        monkeypatch: pytest.MonkeyPatch) -> None:
    expiry = "expiry:\n  refreshTokens:\n    validIfNotUsedFor: 1h\n"
    made_stack = await make_stack(config().replace("enablePasswordDB: true",
                                                   expiry + "enablePasswordDB: true"))
    try:
        claims = Claims(user_id=USER_ID, email="ada@example.com")

        async def new() -> str:
            raw = await create_refresh_token(
                made_stack.deps, client_id="app", connector_id="local", claims=claims, scopes=("openid",),
                nonce="", connector_data=None)
            return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))[2:28].decode()

        old = await new()
        made_stack.clock.advance(timedelta(hours=2))
        result = await made_stack.storage.garbage_collect(made_stack.clock.now())
        assert result.refresh_tokens == 1
        counted = Statements(monkeypatch)
        fresh = await new()
        assert not any(sql.startswith("SELECT data FROM refresh_tokens") for sql in counted.sql)
        session = await made_stack.storage.offline_sessions.get(offline_session_key(USER_ID, "local"))
        assert set(session.refresh) == {fresh} and old != fresh
    finally:
        await made_stack.close()
