"""Conformance: create/get/list/update/delete and exact round trips for every kind, on every backend."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from appliance.errors import AlreadyExists, NotFound
from appliance.store import models as m
from appliance.store.base import Storage

from .samples import KIND_IDS, KINDS, Kind, keys, password

each_kind = pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)


def _datetimes(obj: Any) -> list[datetime]:
    """Every datetime inside a stored object, nested ones included."""
    found: list[datetime] = []
    if isinstance(obj, datetime):
        found.append(obj)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            found += _datetimes(getattr(obj, f.name))
    elif isinstance(obj, dict):
        for value in obj.values():
            found += _datetimes(value)
    elif isinstance(obj, tuple | list):
        for value in obj:
            found += _datetimes(value)
    return found


@each_kind
async def test_create_then_get_returns_an_equal_object(storage: Storage, kind: Kind) -> None:
    coll = kind.collection(storage)
    obj = kind.make(1)
    await coll.create(obj)
    got = await coll.get(kind.key(obj))
    assert got == obj
    for field in dataclasses.fields(obj):
        assert type(getattr(got, field.name)) is type(getattr(obj, field.name)), field.name
    stamps = _datetimes(got)
    assert all(d.tzinfo is not None and d.utcoffset() is not None for d in stamps)
    assert stamps == _datetimes(obj)


@each_kind
async def test_minimal_object_round_trips(storage: Storage, kind: Kind) -> None:
    full = kind.make(2)
    required = {
        f.name: getattr(full, f.name)
        for f in dataclasses.fields(full)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    obj = type(full)(**required)
    await kind.collection(storage).create(obj)
    assert await kind.collection(storage).get(kind.key(obj)) == obj


@each_kind
async def test_create_twice_raises_already_exists(storage: Storage, kind: Kind) -> None:
    coll = kind.collection(storage)
    await coll.create(kind.make(1))
    with pytest.raises(AlreadyExists):
        await coll.create(kind.change(kind.make(1)))
    assert await coll.get(kind.key(kind.make(1))) == kind.make(1)


@each_kind
async def test_get_missing_raises_not_found(storage: Storage, kind: Kind) -> None:
    with pytest.raises(NotFound):
        await kind.collection(storage).get(kind.key(kind.make(9)))


@each_kind
async def test_list_returns_every_object(storage: Storage, kind: Kind) -> None:
    coll = kind.collection(storage)
    assert await coll.list() == []
    objs = [kind.make(n) for n in (3, 1, 2)]
    for obj in objs:
        await coll.create(obj)
    listed = await coll.list()
    assert sorted(listed, key=kind.key) == sorted(objs, key=kind.key)


@each_kind
async def test_update_applies_the_updater_and_stores_it(storage: Storage, kind: Kind) -> None:
    coll = kind.collection(storage)
    obj = kind.make(1)
    await coll.create(obj)
    await coll.create(kind.make(2))
    seen: list[Any] = []

    def updater(old: Any) -> Any:
        seen.append(old)
        return kind.change(old)

    new = await coll.update(kind.key(obj), updater)
    assert seen == [obj]
    assert new == kind.change(obj) != obj
    assert await coll.get(kind.key(obj)) == new
    # The neighbour is untouched.
    assert await coll.get(kind.key(kind.make(2))) == kind.make(2)


@each_kind
async def test_update_missing_raises_not_found(storage: Storage, kind: Kind) -> None:
    with pytest.raises(NotFound):
        await kind.collection(storage).update(kind.key(kind.make(1)), kind.change)


@each_kind
async def test_updater_error_propagates_and_changes_nothing(storage: Storage, kind: Kind) -> None:
    coll = kind.collection(storage)
    obj = kind.make(1)
    await coll.create(obj)

    class Refused(Exception):
        pass

    def updater(old: Any) -> Any:
        raise Refused

    with pytest.raises(Refused):
        await coll.update(kind.key(obj), updater)
    assert await coll.get(kind.key(obj)) == obj


@each_kind
async def test_update_must_keep_the_key(storage: Storage, kind: Kind) -> None:
    coll = kind.collection(storage)
    await coll.create(kind.make(1))
    with pytest.raises(ValueError, match="key"):
        await coll.update(kind.key(kind.make(1)), lambda _: kind.make(2))
    assert await coll.get(kind.key(kind.make(1))) == kind.make(1)
    with pytest.raises(NotFound):
        await coll.get(kind.key(kind.make(2)))


@each_kind
async def test_delete_removes_only_that_object(storage: Storage, kind: Kind) -> None:
    coll = kind.collection(storage)
    await coll.create(kind.make(1))
    await coll.create(kind.make(2))
    await coll.delete(kind.key(kind.make(1)))
    with pytest.raises(NotFound):
        await coll.get(kind.key(kind.make(1)))
    with pytest.raises(NotFound):
        await coll.delete(kind.key(kind.make(1)))
    assert await coll.list() == [kind.make(2)]
    # The key is free again.
    await coll.create(kind.make(1))
    assert await coll.get(kind.key(kind.make(1))) == kind.make(1)


# ---------------------------------------------------------------- kind-specific behaviour


async def test_password_keys_ignore_case(storage: Storage) -> None:
    pw = password(1)  # email "User1@Example.COM"
    await storage.passwords.create(pw)
    assert await storage.passwords.get("user1@example.com") == pw
    assert await storage.passwords.get("USER1@EXAMPLE.COM") == pw
    with pytest.raises(AlreadyExists):
        await storage.passwords.create(dataclasses.replace(pw, email="user1@example.com"))
    new = await storage.passwords.update("uSeR1@example.com", lambda p: dataclasses.replace(p, name="N"))
    assert new.name == "N"
    await storage.passwords.delete("USER1@example.com")
    assert await storage.passwords.list() == []


async def test_offline_sessions_are_keyed_by_user_and_connector(storage: Storage) -> None:
    a = m.OfflineSession(user_id="u", conn_id="ldap")
    b = m.OfflineSession(user_id="u", conn_id="github", connector_data=b"x")
    await storage.offline_sessions.create(a)
    await storage.offline_sessions.create(b)
    assert await storage.offline_sessions.get(m.offline_session_key("u", "ldap")) == a
    assert await storage.offline_sessions.get(m.offline_session_key("u", "github")) == b
    new = await storage.offline_sessions.update(
        m.offline_session_key("u", "ldap"), lambda s: dataclasses.replace(s, connector_data=b"y")
    )
    assert await storage.offline_sessions.get(m.offline_session_key("u", "ldap")) == new
    assert new.connector_data == b"y"


async def test_keys_singleton(storage: Storage) -> None:
    assert await storage.get_keys() == m.Keys()
    first = await storage.update_keys(lambda old: keys() if old == m.Keys() else pytest.fail("not empty"))
    assert first == keys()
    assert await storage.get_keys() == keys()
    later = datetime(2027, 1, 1, tzinfo=UTC)
    second = await storage.update_keys(lambda old: dataclasses.replace(old, next_rotation=later))
    assert second.next_rotation == later
    assert await storage.get_keys() == dataclasses.replace(keys(), next_rotation=later)
    assert isinstance((await storage.get_keys()).verification_keys, tuple)
