"""The password connector contract: the same checks against every password connector (local, ldap)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from types import MappingProxyType

import bcrypt
import pytest
from ldaputil import EXAMPLE_LDIF, PASSWORDS, Slapd, connector_config, slapd_fixture

from appliance.connectors.base import Identity, PasswordConnector, RefreshConnector, Scopes
from appliance.connectors.ldap import open_ldap
from appliance.connectors.local import LocalConnector
from appliance.oidc.deps import PasswordDB
from appliance.store.models import Password

LOCAL_PASSWORD = "local-secret-1"
NO_SCOPES = Scopes()


@dataclass(frozen=True)
class Subject:
    """A connector under test and what its documentation promises about one known user."""

    name: str
    connector: PasswordConnector
    username: str
    password: str
    user_id: str
    email: str
    other_case: str  # the username in other letter case: the same user for both connectors
    padded: str  # the username with spaces around it: the same user for both (see each docstring)


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    yield from slapd_fixture(tmp_path_factory.mktemp("slapd"), EXAMPLE_LDIF)


@functools.cache
def local_hash() -> str:
    return bcrypt.hashpw(LOCAL_PASSWORD.encode(), bcrypt.gensalt(10)).decode()


def local_subject() -> Subject:
    hashed = local_hash()
    user = Password(email="ann@example.com", hash=hashed, username="ann", user_id="ann-id")
    connector = LocalConnector(PasswordDB(MappingProxyType({user.email: user}), None))
    # local: the email is the login; it is trimmed and lowercased before the lookup.
    return Subject("local", connector, "ann@example.com", LOCAL_PASSWORD, "ann-id", "ann@example.com",
                   other_case="Ann@Example.COM", padded="  ann@example.com ")


@pytest.fixture(params=["local", "ldap"])
async def subject(request: pytest.FixtureRequest) -> AsyncIterator[Subject]:
    if request.param == "local":
        yield local_subject()
        return
    server: Slapd = request.getfixturevalue("slapd")
    connector = open_ldap("ldap", connector_config(server))
    # ldap: the username goes to the directory as typed; uid's matching rule (caseIgnoreMatch) ignores
    # case and surrounding spaces, and the identity comes from the entry, not from what was typed.
    yield Subject("ldap", connector, "jane", PASSWORDS["jane"], "jane", "jane@example.org",
                  other_case="JaNe", padded=" jane  ")
    await connector.close()


async def login(
    subject: Subject, username: str, password: str, scopes: Scopes = NO_SCOPES
) -> Identity | None:
    return await subject.connector.login(scopes, username, password)


async def test_implements_the_protocols(subject: Subject) -> None:
    assert isinstance(subject.connector, PasswordConnector)
    assert isinstance(subject.connector, RefreshConnector)
    assert isinstance(subject.connector.prompt(), str) and subject.connector.prompt()


async def test_valid_login(subject: Subject) -> None:
    identity = await login(subject, subject.username, subject.password)
    assert identity is not None
    assert (identity.user_id, identity.email) == (subject.user_id, subject.email)


async def test_wrong_password(subject: Subject) -> None:
    assert await login(subject, subject.username, subject.password + "x") is None
    assert await login(subject, subject.username, subject.password.upper()) is None


async def test_unknown_user(subject: Subject) -> None:
    assert await login(subject, "ghost-" + subject.username, subject.password) is None


async def test_empty_password_and_username(subject: Subject) -> None:
    assert await login(subject, subject.username, "") is None
    assert await login(subject, "", subject.password) is None
    assert await login(subject, "", "") is None


async def test_username_case_and_spaces(subject: Subject) -> None:
    for typed in (subject.other_case, subject.padded):
        identity = await login(subject, typed, subject.password)
        assert identity is not None, typed
        assert (identity.user_id, identity.email) == (subject.user_id, subject.email)


async def test_refresh_returns_the_same_user(subject: Subject) -> None:
    identity = await login(subject, subject.username, subject.password, Scopes(offline_access=True))
    assert identity is not None
    assert isinstance(subject.connector, RefreshConnector)
    fresh = await subject.connector.refresh(Scopes(offline_access=True), identity)
    assert (fresh.user_id, fresh.email) == (identity.user_id, identity.email)
    again = await subject.connector.refresh(Scopes(offline_access=True), fresh)
    assert again.user_id == identity.user_id


async def test_concurrent_logins(subject: Subject) -> None:
    results = await asyncio.gather(
        *(login(subject, subject.username, subject.password if i % 2 else "wrong") for i in range(6))
    )
    assert [r.user_id if r else None for r in results] == [None, subject.user_id] * 3
