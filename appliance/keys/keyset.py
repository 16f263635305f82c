"""The parsed, immutable key set held in memory: signs, verifies and renders the JWKS."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import Key, import_key

from appliance.keys.errors import InvalidToken
from appliance.keys.jwk import SUPPORTED_ALGORITHMS, alg_of, kid_of, public_jwk_dict
from appliance.store.models import Keys

# Only these header members are accepted on verify: anything else ("crit", "b64", "jku", "x5u", "jwk")
# changes how a token is processed or where its key comes from, and our own tokens never carry it.
_ALLOWED_HEADER = frozenset({"alg", "kid", "typ"})
_MAX_TOKEN_BYTES = 16 * 1024


@dataclass(frozen=True)
class _Entry:
    """One key usable for verification, pinned to the single algorithm it was made for."""

    kid: str
    alg: str
    key: Key
    registry: jws.JWSRegistry
    expiry: datetime | None  # None for the current signing key
    public_jwk: dict[str, Any]


def _registry(alg: str) -> jws.JWSRegistry:
    # A registry that allows exactly one algorithm: the key-confusion and "none" defence.
    return jws.JWSRegistry(algorithms=[alg])


def _entry(data: dict[str, Any], expiry: datetime | None) -> _Entry:
    kid = kid_of(data)
    alg = alg_of(data)
    if alg not in SUPPORTED_ALGORITHMS:
        raise ValueError(f"key {kid}: unsupported alg {alg!r}")
    key = import_key(data)
    registry = _registry(alg)
    registry.get_alg(alg).check_key(key)  # RS256 needs RSA, ES256 needs EC P-256
    return _Entry(kid, alg, key, registry, expiry, public_jwk_dict(key, kid, alg))


@dataclass(frozen=True)
class LoadedKeys:
    """One snapshot of the stored key set, parsed once. Never mutated: a change builds a new one."""

    source: Keys
    signing: _Entry
    entries: dict[str, _Entry]  # by kid: the signing key first, then the verification keys
    skipped: tuple[str, ...]  # why unusable stored verification keys were left out

    @classmethod
    def parse(cls, keys: Keys) -> LoadedKeys:
        """Parse a stored key set. CPU-bound (RSA private import checks the key): run it in a thread.

        ValueError/JoseError if the signing key is unusable; an unusable verification key is skipped
        (and named in `skipped`) so one bad old record cannot stop signing.
        """
        if keys.signing_key is None:
            raise ValueError("no signing key stored")
        private = _entry(keys.signing_key, None)
        if not private.key.is_private:
            raise ValueError("stored signing key has no private part")
        entries: dict[str, _Entry] = {private.kid: private}
        skipped: list[str] = []
        for vk in keys.verification_keys:
            try:
                entry = _entry(vk.public_key, vk.expiry)
            except (JoseError, ValueError, TypeError, KeyError) as err:
                skipped.append(f"verification key skipped: {type(err).__name__}: {err}")
                continue
            entries.setdefault(entry.kid, entry)
        return cls(keys, private, entries, tuple(skipped))

    @property
    def alg(self) -> str:
        return self.signing.alg

    @property
    def kid(self) -> str:
        return self.signing.kid

    def live_entries(self, now: datetime) -> list[_Entry]:
        return [e for e in self.entries.values() if e.expiry is None or e.expiry > now]

    def jwks(self, now: datetime) -> dict[str, Any]:
        """{"keys": [current public key, unexpired verification keys...]}."""
        return {"keys": [dict(e.public_jwk) for e in self.live_entries(now)]}

    def next_jwks_change(self, now: datetime) -> datetime | None:
        """When the next still-live verification key expires (the JWKS must be re-rendered then)."""
        expiries = [e.expiry for e in self.live_entries(now) if e.expiry is not None]
        return min(expiries) if expiries else None

    def sign(self, claims: dict[str, Any]) -> str:
        payload = json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode()
        header = {"alg": self.signing.alg, "kid": self.signing.kid}
        return jws.serialize_compact(header, payload, self.signing.key, registry=self.signing.registry)

    def verify(self, token: str, now: datetime) -> dict[str, Any]:
        """The claims of a token we signed with a key still in the set; InvalidToken otherwise."""
        raw = token.encode("ascii", "replace")
        if len(raw) > _MAX_TOKEN_BYTES:
            raise InvalidToken("token too large")
        try:
            obj = jws.extract_compact(raw)
        except (JoseError, ValueError, TypeError) as err:
            raise InvalidToken("malformed token") from err
        header = obj.headers()
        if not set(header) <= _ALLOWED_HEADER:
            raise InvalidToken("unsupported token header")
        kid, alg = header.get("kid"), header.get("alg")
        if not isinstance(kid, str) or not isinstance(alg, str):
            raise InvalidToken("token header lacks kid or alg")
        entry = self.entries.get(kid)
        if entry is None or (entry.expiry is not None and entry.expiry <= now):
            raise InvalidToken("unknown signing key")
        if alg != entry.alg:
            raise InvalidToken("token algorithm does not match its key")
        try:
            valid = jws.validate_compact(obj, entry.key, registry=entry.registry)
        except (JoseError, ValueError, TypeError) as err:
            raise InvalidToken("bad signature") from err
        if not valid:
            raise InvalidToken("bad signature")
        try:
            claims = json.loads(obj.payload)
        except ValueError as err:
            raise InvalidToken("malformed claims") from err
        if not isinstance(claims, dict):
            raise InvalidToken("malformed claims")
        exp = claims.get("exp")
        if isinstance(exp, bool) or not isinstance(exp, int | float):
            raise InvalidToken("token has no expiry")
        if exp <= now.timestamp():
            raise InvalidToken("token expired")
        return claims
