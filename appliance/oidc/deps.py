"""What every request needs: the live configuration snapshot and the long-lived services (Deps)."""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from appliance.clock import Clock
from appliance.config.schema import Config, StaticClient, StaticPassword
from appliance.errors import NotFound, PorticoError
from appliance.oidc.discovery import build_discovery, supported_grant_types, supported_response_types
from appliance.oidc.urls import IssuerURL
from appliance.security.protection import Protection
from appliance.store.base import Steps, Storage
from appliance.store.models import Client, Password

if TYPE_CHECKING:
    from appliance.keys.manager import KeyManager

log = logging.getLogger("portico.oidc")

LOCAL_CONNECTOR_ID = "local"
LOCAL_CONNECTOR_TYPE = "local"
LOCAL_CONNECTOR_NAME = "Email"  # Dex's name for the password database connector

PasswordLookup = Callable[[str], Awaitable[Password | None]]


class ConnectorFactories(Protocol):
    """The connector types the server was handed (appliance.connectors.registry implements it)."""

    def open(self, type_: str, connector_id: str, config: Mapping[str, Any]) -> object:
        """A connector of that type; KeyError for an unknown type, ValueError for a bad config."""
        ...

    def open_local(self, lookup: PasswordLookup) -> object:
        """The `local` password-database connector over `lookup`."""
        ...


class SnapshotError(PorticoError):
    """A configuration could not be turned into a snapshot (a connector failed to open)."""


@dataclass(frozen=True)
class OpenConnector:
    id: str
    type: str
    name: str
    instance: object


@dataclass(frozen=True)
class Snapshot:
    """One immutable live configuration: config plus everything derived from it once."""

    config: Config
    issuer: IssuerURL
    connectors: Mapping[str, OpenConnector]  # by id, in config order (`local` last, as Dex)
    clients: Mapping[str, Client]  # static clients by id
    passwords: Mapping[str, Password]  # static passwords by lowercased email
    discovery: bytes  # the discovery document, serialised once
    response_types: frozenset[str]  # individual response types accepted at /auth
    grant_types: tuple[str, ...]  # grant types served at /token (sorted, as advertised)
    extra: Mapping[str, Any] = field(default_factory=dict)  # room for later issues


def client_from_static(item: StaticClient) -> Client:
    return Client(
        id=item.id, secret=item.secret, redirect_uris=item.redirect_uris, trusted_peers=item.trusted_peers,
        public=item.public, name=item.name, logo_url=item.logo_url,
        allowed_connectors=item.allowed_connectors,
        post_logout_redirect_uris=item.post_logout_redirect_uris,
        backchannel_logout_uri=item.backchannel_logout_uri,
        client_credentials_groups=item.client_credentials_groups, mfa_chain=item.mfa_chain,
    )


def password_from_static(item: StaticPassword) -> Password:
    return Password(
        email=item.email, hash=item.hash, username=item.username, user_id=item.user_id, groups=item.groups,
        name=item.name, preferred_username=item.preferred_username, email_verified=item.email_verified,
    )


class PasswordDB:
    """The password database as the `local` connector sees it: static passwords over stored ones."""

    def __init__(self, static: Mapping[str, Password], storage: Storage | None) -> None:
        self._static = static
        self._storage = storage

    async def __call__(self, email: str) -> Password | None:
        key = email.strip().lower()
        if not key:
            return None
        found = self._static.get(key)
        if found is not None:
            return found
        if self._storage is None:
            return None
        try:
            return await self._storage.passwords.get(key)
        except NotFound:
            return None

    def steps(self, email: str) -> Steps[Password | None]:
        """The lookup as steps of a database trip (Storage.run), for a refresh inside its transaction."""
        key = email.strip().lower()
        found = self._static.get(key) if key else None
        if found is not None or not key or self._storage is None:
            return found
        row = yield from self._storage.passwords.steps.find(key)
        return None if row is None else row.value


async def build_snapshot(
    config: Config, factories: ConnectorFactories | None = None, *, storage: Storage | None = None
) -> Snapshot:
    """Open the connectors of `config` and precompute what requests read.

    `storage` lets the `local` connector see passwords created through the admin API; without it only
    static passwords log in. Raises SnapshotError when a connector cannot be opened.
    """
    issuer = IssuerURL.parse(config.issuer)
    clients = {item.id: client_from_static(item) for item in config.static_clients}
    passwords = {item.email.lower(): password_from_static(item) for item in config.static_passwords}
    connectors: dict[str, OpenConnector] = {}
    wanted = list(config.connectors)
    if (wanted or config.enable_password_db) and factories is None:
        raise SnapshotError(
            "the configuration names connectors but no connector types were handed in: call "
            "build_snapshot(config, appliance.connectors.registry.default_registry(), storage=storage)"
        )
    for item in wanted:
        assert factories is not None
        try:
            instance = factories.open(item.type, item.id, item.config)
        except KeyError as exc:
            raise SnapshotError(f"connector {item.id!r}: unknown type {item.type!r}") from exc
        except (ValueError, TypeError) as exc:
            raise SnapshotError(f"connector {item.id!r} ({item.type}): {exc}") from exc
        connectors[item.id] = OpenConnector(item.id, item.type, item.name or item.id, instance)
    if config.enable_password_db:
        assert factories is not None
        local = factories.open_local(PasswordDB(MappingProxyType(passwords), storage))
        connectors[LOCAL_CONNECTOR_ID] = OpenConnector(
            LOCAL_CONNECTOR_ID, LOCAL_CONNECTOR_TYPE, LOCAL_CONNECTOR_NAME, local
        )
    response_types = supported_response_types(config)
    grant_types = supported_grant_types(config)
    return Snapshot(
        config=config,
        issuer=issuer,
        connectors=MappingProxyType(connectors),
        clients=MappingProxyType(clients),
        passwords=MappingProxyType(passwords),
        discovery=build_discovery(config, issuer, response_types, grant_types),
        response_types=response_types,
        grant_types=grant_types,
    )


async def close_snapshot(snapshot: Snapshot) -> None:
    """Close the connectors of a snapshot that was swapped out (those that have something to close)."""
    for conn in snapshot.connectors.values():
        closer = getattr(conn.instance, "aclose", None) or getattr(conn.instance, "close", None)
        if closer is None:
            continue
        with contextlib.suppress(Exception):
            result = closer()
            if inspect.isawaitable(result):
                await result


class Deps:
    """The long-lived services and the current snapshot, held by one reference.

    A request reads `deps.snapshot` once when it starts and uses that value throughout, so a reload
    (`swap`) never changes the configuration under a request in flight.
    """

    def __init__(self, *, storage: Storage, keys: KeyManager, clock: Clock, snapshot: Snapshot) -> None:
        self.storage = storage
        self.keys = keys
        self.clock = clock
        self.protection = Protection(storage, clock)  # brute-force throttle and rate limits
        self._snapshot = snapshot

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def swap(self, new: Snapshot) -> Snapshot:
        """Install `new`; returns the old snapshot (the caller closes it once requests drain)."""
        old, self._snapshot = self._snapshot, new
        return old

    async def get_client(self, snapshot: Snapshot, client_id: str) -> Client:
        """A client: static clients first, then storage. NotFound if neither knows it."""
        if not client_id:
            raise NotFound("client")
        found = snapshot.clients.get(client_id)
        if found is not None:
            return found
        return await self.storage.clients.get(client_id)

    async def find_client(self, snapshot: Snapshot, client_id: str) -> Client | None:
        try:
            return await self.get_client(snapshot, client_id)
        except NotFound:
            return None

    async def get_password(self, snapshot: Snapshot, email: str) -> Password | None:
        """A local user by email (case-insensitive): static passwords first, then storage."""
        return await PasswordDB(snapshot.passwords, self.storage)(email)
