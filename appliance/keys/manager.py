"""KeyManager: signing-key rotation over shared storage, the in-memory key set, signing and the JWKS."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

from appliance.clock import Clock
from appliance.ids import new_id
from appliance.keys.errors import InvalidToken, KeysNotLoaded
from appliance.keys.jwk import (
    PrivateKey,
    check_algorithm,
    generate_private_key,
    private_jwk_dict,
    public_jwk_dict,
)
from appliance.keys.keyset import LoadedKeys
from appliance.store.models import Keys, VerificationKey

__all__ = ["InvalidToken", "KeyManager", "KeyStorage", "KeysNotLoaded"]


class KeyStorage(Protocol):
    """The part of appliance.store.base.Storage the KeyManager uses (any Storage is one)."""

    async def get_keys(self) -> Keys: ...

    async def update_keys(self, updater: Callable[[Keys], Keys]) -> Keys: ...


class _AlreadyRotated(Exception):
    """Raised inside the updater to abort: another process rotated first."""


@dataclasses.dataclass(frozen=True)
class _View:
    """What the hot path reads: the parsed keys and the JWKS rendered for a period of time."""

    loaded: LoadedKeys
    jwks: dict[str, Any]
    jwks_bytes: bytes
    valid_until: datetime | None  # re-render the JWKS once a verification key expires


def _is_due(keys: Keys, now: datetime) -> bool:
    return keys.signing_key is None or keys.next_rotation is None or keys.next_rotation <= now


class KeyManager:
    """Owns the signing keys of this process.

    Storage is authoritative: every replica rotates through `update_keys` (compare-and-swap) and
    reloads from storage, so exactly one replica rotates per period (Dex's keyRotator semantics).
    `sign`, `verify` and `jwks*` are synchronous and read one immutable snapshot.
    """

    def __init__(
        self,
        storage: KeyStorage,
        clock: Clock,
        *,
        algorithm: str = "RS256",
        rotation_period: timedelta,
        id_token_lifetime: timedelta,
        log: logging.Logger | None = None,
    ) -> None:
        if rotation_period <= timedelta(0):
            raise ValueError("rotation_period must be positive")
        if id_token_lifetime <= timedelta(0):
            raise ValueError("id_token_lifetime must be positive")
        self._storage = storage
        self._clock = clock
        self._algorithm = check_algorithm(algorithm)
        self._rotation_period = rotation_period
        self._id_token_lifetime = id_token_lifetime
        self._log = log or logging.getLogger("portico.keys")
        self._view: _View | None = None
        self._lock = asyncio.Lock()
        # Set once the first load has ended, with keys or without (it failed): see wait_loaded.
        self._first_load_done = asyncio.Event()

    # --- properties -------------------------------------------------------------------------------

    @property
    def algorithm(self) -> str:
        """The algorithm `sign` uses now: the current signing key's, else the configured one.

        They differ only while a key made under another `signer.config.algorithm` is still current.
        """
        return self._view.loaded.alg if self._view else self._algorithm

    @property
    def configured_algorithm(self) -> str:
        """The algorithm new keys are generated with."""
        return self._algorithm

    @property
    def loaded(self) -> bool:
        return self._view is not None

    async def wait_loaded(self) -> bool:
        """Wait until keys are loaded, or the first load (ensure_loaded) has failed; True if loaded.

        `portico serve` answers discovery while the first key is generated or read; whatever needs the
        keys waits here instead of failing. After a failed first load the caller goes on and meets
        KeysNotLoaded as it would have before (the server is stopping by then).
        """
        if self._view is None:
            await self._first_load_done.wait()
        return self._view is not None

    @property
    def next_rotation(self) -> datetime | None:
        """When the loaded key set is due to rotate (for JWKS caching headers); None before loading."""
        return self._view.loaded.source.next_rotation if self._view else None

    def signing_alg_values(self) -> list[str]:
        """Algorithms tokens may be signed with (discovery's id_token_signing_alg_values_supported)."""
        values = [self.algorithm]
        if self._view is not None:
            for entry in self._view.loaded.entries.values():
                if entry.alg not in values:
                    values.append(entry.alg)
        return values

    # --- rotation and loading ---------------------------------------------------------------------

    async def rotate_if_due(self) -> bool:
        """Rotate when no key exists or next_rotation has come. True if this process rotated."""
        if not _is_due(await self._storage.get_keys(), self._clock.now()):
            return False
        kid = new_id()
        key = await asyncio.to_thread(generate_private_key, self._algorithm)
        private = private_jwk_dict(key, kid, self._algorithm)
        public = public_jwk_dict(key.public_key(), kid, self._algorithm)

        def updater(current: Keys) -> Keys:
            now = self._clock.now()
            if not _is_due(current, now):
                raise _AlreadyRotated  # another replica rotated between our read and our write
            verification = [vk for vk in current.verification_keys if vk.expiry > now]
            if current.signing_key_pub is not None:
                # Tokens signed with the old key stay verifiable for as long as they can live.
                verification.append(VerificationKey(current.signing_key_pub, now + self._id_token_lifetime))
            return Keys(
                signing_key=private,
                signing_key_pub=public,
                verification_keys=tuple(verification),
                next_rotation=now + self._rotation_period,
            )

        try:
            stored = await self._storage.update_keys(updater)
        except _AlreadyRotated:
            return False
        self._log.info("signing keys rotated: new kid %s (%s), next rotation %s",
                       kid, self._algorithm, stored.next_rotation)
        await self._install(stored, (kid, key))
        return True

    async def refresh(self) -> None:
        """Load the key set from storage; parses only when it changed since the last load."""
        await self._install(await self._storage.get_keys())

    async def ensure_loaded(self) -> None:
        """Start-up: create keys if none exist (or they are due), then load them. Whatever waits in
        wait_loaded goes on when this ends, with keys or not."""
        try:
            await self.rotate_if_due()
            await self.refresh()
        finally:
            self._first_load_done.set()

    async def run_forever(self, check_interval: float = 30.0) -> None:
        """Rotate when due and reload, every `check_interval` seconds, until cancelled. Never dies."""
        while True:
            try:
                await self.rotate_if_due()
                await self.refresh()
            except Exception:
                self._log.exception("signing key rotation/refresh failed; keeping the loaded keys")
            await asyncio.sleep(check_interval)

    async def _install(self, keys: Keys, generated: tuple[str, PrivateKey] | None = None) -> None:
        async with self._lock:
            if self._view is not None and self._view.loaded.source == keys:
                return
            if keys.signing_key is None:
                return  # nothing stored yet: keep whatever we have (possibly nothing)
            loaded = await asyncio.to_thread(LoadedKeys.parse, keys, generated)
            for reason in loaded.skipped:
                self._log.warning("%s", reason)
            self._view = self._render(loaded, self._clock.now())
            self._first_load_done.set()

    @staticmethod
    def _render(loaded: LoadedKeys, now: datetime) -> _View:
        jwks = loaded.jwks(now)
        body = json.dumps(jwks, separators=(",", ":")).encode()
        return _View(loaded, jwks, body, loaded.next_jwks_change(now))

    # --- the hot path -----------------------------------------------------------------------------

    def _current(self) -> _View:
        view = self._view
        if view is None:
            raise KeysNotLoaded("signing keys are not loaded yet: await ensure_loaded() or refresh() first")
        if view.valid_until is not None:
            now = self._clock.now()
            if now >= view.valid_until:
                view = self._view = self._render(view.loaded, now)
        return view

    def jwks(self) -> dict[str, Any]:
        """The public JWKS: the current key and the unexpired verification keys (a fresh copy)."""
        return {"keys": [dict(k) for k in self._current().jwks["keys"]]}

    def jwks_bytes(self) -> bytes:
        """The JWKS as JSON bytes, rendered once per change of the key set."""
        return self._current().jwks_bytes

    def sign(self, claims: dict[str, Any]) -> str:
        """A compact JWS of `claims` (JSON) with header {alg, kid} of the current signing key."""
        return self._current().loaded.sign(claims)

    def verify(self, token: str, *, now: datetime) -> dict[str, Any]:
        """The claims of a token signed by the current or an unexpired verification key.

        Raises InvalidToken for anything else: unknown kid, alg other than the key's (so "none" and
        HS256 key confusion fail), bad signature, missing or passed `exp` (exp <= now).
        """
        return self._current().loaded.verify(token, now)
