"""Database round trips of the hot grants, counted (not timed): a code exchange and a refresh take two hops
to the database (read, then write in one transaction), introspection and userinfo one, whatever the number
of devices a user has; and the per-device bookkeeping that made a code exchange read every earlier token
still evicts and prunes as before."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from perf_support import Stack, make_stack, scope
from test_fastpath_api import FORM, REDIRECT, USER_ID, body, config, form, new_code, request

from appliance.oidc.refreshstore import MAX_TOKENS_PER_CLIENT, create_refresh_token
from appliance.store.models import Claims, Password, offline_session_key
from appliance.store.sqlite import SQLiteDatabase
from appliance.store.steps import Steps
from appliance.web.fastpath import FastPath

BASIC = ("Authorization", "Basic " + base64.b64encode(b"app:app-secret").decode())


class Statements:
    """Every statement the SQLite store runs (`sql`), and the hops to its thread they took (`hops`: one per
    `fetch`, one per `run` however many statements it holds)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sql: list[str] = []
        self.hops = 0
        fetch, run = SQLiteDatabase.fetch, SQLiteDatabase.run

        async def counted_fetch(db: SQLiteDatabase, sql: str, *args: Any) -> Any:
            self.hops += 1
            self.sql.append(sql)
            return await fetch(db, sql, *args)

        async def counted_run(db: SQLiteDatabase, steps: Steps[Any], *, write: bool) -> Any:
            self.hops += 1
            return await run(db, self._noted(steps), write=write)

        monkeypatch.setattr(SQLiteDatabase, "fetch", counted_fetch)
        monkeypatch.setattr(SQLiteDatabase, "run", counted_run)

    def _noted(self, steps: Steps[Any]) -> Steps[Any]:
        try:
            statement = next(steps)
            while True:
                self.sql.append(statement[0])
                statement = steps.send((yield statement))
        except StopIteration as done:
            return done.value

    def clear(self) -> None:
        self.sql.clear()
        self.hops = 0


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    made = await make_stack(config())
    yield made
    await made.close()


async def exchange(stack: Stack, fast: FastPath, counted: Statements | None = None) -> dict[str, Any]:
    code = await new_code(stack)
    if counted is not None:
        counted.clear()
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
        per_exchange.append((counted.hops, len(counted.sql)))
    # One hop: the code read (and checked) and spent, the offline session read (and made, the first
    # time), the refresh token stored and the devices past the limit evicted, in one transaction of one
    # statement each: however many devices the user has, nothing is read or written per device.
    assert {hops for hops, _ in per_exchange} == {1}, per_exchange
    assert per_exchange[0][1] == 6 and {n for _, n in per_exchange[1:]} == {5}, per_exchange
    stored = await stack.storage.refresh_tokens.list()
    assert len(stored) == MAX_TOKENS_PER_CLIENT
    assert await stack.storage.offline_sessions.get(offline_session_key(USER_ID, "local"))

    tokens = await exchange(stack, fast)
    counted.clear()
    answer = await request(fast, scope("POST", "/dex/token", [("Content-Type", FORM), BASIC]), body(form(
        grant_type="refresh_token", refresh_token=tokens["refresh_token"])))
    assert answer.status == 200
    # One hop reads the token, its grant's revocation and its offline session, re-checks the user in the
    # password database (a static one here: no statement) and writes the token back (the session only
    # when the upstream state changed), in one transaction.
    assert (counted.hops, len(counted.sql)) == (1, 4), counted.sql
    refreshed = json.loads(answer.body)
    counted.clear()
    answer = await request(fast, scope("GET", "/dex/userinfo", [("Authorization", "Bearer " + refreshed[
        "access_token"])]), body(b""))
    # The jti and the grant are looked up in one statement.
    assert answer.status == 200 and (counted.hops, len(counted.sql)) == (1, 1), counted.sql
    for token in (refreshed["access_token"], refreshed["refresh_token"]):
        counted.clear()
        answer = await request(fast, scope("POST", "/dex/token/introspect", [("Content-Type", FORM), BASIC]),
                               body(form(token=token)))
        assert answer.status == 200 and json.loads(answer.body)["active"] is True
        assert counted.hops == 1, counted.sql


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
    assert stored == {*ids[1:], other_id}
    assert await stack.storage.offline_sessions.get(offline_session_key(USER_ID, "local"))


async def test_a_device_in_use_is_kept_and_the_least_recently_used_one_goes(stack: Stack) -> None:
    claims = Claims(user_id=USER_ID, email="ada@example.com")

    async def new() -> str:
        raw = await create_refresh_token(stack.deps, client_id="app", connector_id="local", claims=claims,
                                         scopes=("openid",), nonce="", connector_data=None)
        stack.clock.advance(timedelta(seconds=1))
        return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))[2:28].decode()

    ids = [await new() for _ in range(MAX_TOKENS_PER_CLIENT)]
    # The oldest device is used now (a write of the token, as a refresh does): the second oldest is
    # then the least recently used, and goes when one more device logs in.
    now = stack.clock.now()
    await stack.storage.refresh_tokens.update(ids[0], lambda token: dataclasses.replace(token, last_used=now))
    stack.clock.advance(timedelta(seconds=1))
    newest = await new()
    stored = {token.id for token in await stack.storage.refresh_tokens.list()}
    assert stored == {ids[0], *ids[2:], newest}


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
        assert counted.sql and not any(
            sql.startswith("SELECT") and "FROM refresh_tokens" in sql for sql in counted.sql)
        assert {token.id for token in await made_stack.storage.refresh_tokens.list()} == {fresh}
        assert old != fresh
        assert await made_stack.storage.offline_sessions.get(offline_session_key(USER_ID, "local"))
    finally:
        await made_stack.close()


async def test_a_refresh_of_a_stored_user_reads_the_user_in_the_same_trip(
        stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    fast = FastPath(stack.app, stack.deps, token_endpoint=stack.tokens)
    password = Password(email="bo@example.com", hash="$2b$10$" + "x" * 53, username="bo", user_id="u-bo")
    await stack.storage.passwords.create(password)
    claims = Claims(user_id="u-bo", email="bo@example.com", username="bo")
    raw = await create_refresh_token(stack.deps, client_id="app", connector_id="local", claims=claims,
                                     scopes=("openid", "email", "offline_access"), nonce="",
                                     connector_data=None)
    counted = Statements(monkeypatch)
    answer = await request(fast, scope("POST", "/dex/token", [("Content-Type", FORM), BASIC]), body(form(
        grant_type="refresh_token", refresh_token=raw)))
    assert answer.status == 200, answer.body
    assert counted.hops == 1 and any("FROM passwords" in sql for sql in counted.sql), counted.sql
    # The user deleted since: refused, in one trip, and the token is not advanced.
    await stack.storage.passwords.delete("bo@example.com")
    rotated = json.loads(answer.body)["refresh_token"]
    before = await stack.storage.refresh_tokens.list()
    counted.clear()
    answer = await request(fast, scope("POST", "/dex/token", [("Content-Type", FORM), BASIC]), body(form(
        grant_type="refresh_token", refresh_token=rotated)))
    assert answer.status == 400 and json.loads(answer.body)["error"] == "invalid_grant"
    assert counted.hops == 1
    assert await stack.storage.refresh_tokens.list() == before


async def test_a_new_device_is_never_the_one_evicted_when_uses_tie(stack: Stack) -> None:
    # The clock stands still: every token has the same last use, so the order among them is by id,
    # which is random; the token just made must survive all the same, and the limit hold.
    claims = Claims(user_id=USER_ID, email="ada@example.com")
    for _ in range(MAX_TOKENS_PER_CLIENT + 12):
        raw = await create_refresh_token(stack.deps, client_id="app", connector_id="local", claims=claims,
                                         scopes=("openid",), nonce="", connector_data=None)
        made = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))[2:28].decode()
        stored = {token.id for token in await stack.storage.refresh_tokens.list()}
        assert made in stored and len(stored) <= MAX_TOKENS_PER_CLIENT
    assert len(stored) == MAX_TOKENS_PER_CLIENT
