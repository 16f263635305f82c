"""The parsed, immutable key set held in memory: signs, verifies and renders the JWKS."""

from __future__ import annotations

import binascii
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from appliance.keys.errors import InvalidToken
from appliance.keys.jwk import (
    SUPPORTED_ALGORITHMS,
    PrivateKey,
    alg_of,
    b64url_decode,
    b64url_encode,
    kid_of,
    load_jwk,
    public_jwk_dict,
)
from appliance.store.models import Keys

# Only these header members are accepted on verify: anything else ("crit", "b64", "jku", "x5u", "jwk")
# changes how a token is processed or where its key comes from, and our own tokens never carry it.
_ALLOWED_HEADER = frozenset({"alg", "kid", "typ"})
_MAX_TOKEN_BYTES = 16 * 1024
_ES256_HALF = 32  # bytes of r and of s in an ES256 signature (RFC 7518 3.4)
# Tokens whose checked signature a key set remembers (at most ~1 MB of tokens and claims).
VERIFIED_CACHE_SIZE = 512


@dataclass(frozen=True)
class _Entry:
    """One key usable for verification, pinned to the single algorithm it was made for.

    Signing and verifying call `cryptography` with the key objects taken out of the JWK once, here:
    the JWS steps around the signature (RFC 7515 compact form) are a few lines, and joserfc's generic
    ones cost about as much again as an ES256 signature and a tenth of an RS256 one.
    """

    kid: str
    alg: str
    expiry: datetime | None  # None for the current signing key
    public_jwk: dict[str, Any]
    # The protected header of our tokens, encoded once: {"alg", "kid"}, as joserfc writes it.
    header_segment: bytes = field(default=b"", repr=False)
    # The `cryptography` key objects, taken out of the JWK once (the private one for the signing key).
    private: Any = field(default=None, repr=False)
    public: Any = field(default=None, repr=False)

    def sign(self, signing_input: bytes) -> bytes:
        private = self.private
        if isinstance(private, rsa.RSAPrivateKey):
            return private.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        if isinstance(private, ec.EllipticCurvePrivateKey):
            r, s = decode_dss_signature(private.sign(signing_input, ec.ECDSA(hashes.SHA256())))
            return r.to_bytes(_ES256_HALF, "big") + s.to_bytes(_ES256_HALF, "big")
        raise ValueError(f"key {self.kid}: cannot sign with a {type(private).__name__}")

    def verify(self, signing_input: bytes, signature: bytes) -> bool:
        public = self.public
        try:
            if self.alg == "RS256" and isinstance(public, rsa.RSAPublicKey):
                public.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
                return True
            if self.alg == "ES256" and isinstance(public, ec.EllipticCurvePublicKey):
                if len(signature) != 2 * _ES256_HALF:
                    return False
                der = encode_dss_signature(int.from_bytes(signature[:_ES256_HALF], "big"),
                                           int.from_bytes(signature[_ES256_HALF:], "big"))
                public.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
                return True
        except InvalidSignature:
            return False
        return False


def _entry(data: dict[str, Any], expiry: datetime | None, generated: PrivateKey | None = None) -> _Entry:
    """The entry of a stored JWK; `generated`: its private key as this process made it (not read back)."""
    kid = kid_of(data)
    alg = alg_of(data)
    if alg not in SUPPORTED_ALGORITHMS:
        raise ValueError(f"key {kid}: unsupported alg {alg!r}")
    # Each entry is pinned to one algorithm, its key type checked against it (RS256 needs RSA, ES256
    # EC P-256): the key-confusion and "none" defence.
    private, public = (generated, generated.public_key()) if generated is not None else load_jwk(data, alg)
    header = b64url_encode(json.dumps({"alg": alg, "kid": kid}, separators=(",", ":")).encode("ascii"))
    return _Entry(kid, alg, expiry, public_jwk_dict(public, kid, alg), header, private, public)


@dataclass(frozen=True)
class LoadedKeys:
    """One snapshot of the stored key set, parsed once. Never mutated: a change builds a new one."""

    source: Keys
    signing: _Entry
    entries: dict[str, _Entry]  # by kid: the signing key first, then the verification keys
    skipped: tuple[str, ...]  # why unusable stored verification keys were left out
    # Tokens whose signature this key set checked: token -> (kid, claims). A resource server presents
    # the same access token at introspection or userinfo on every call it serves; the signature of those
    # exact bytes under this key set is checked once. Expiry (the token's and its key's) is checked on
    # every call; a key set change builds a new LoadedKeys, and so an empty cache.
    _verified: dict[str, tuple[str, dict[str, Any]]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @classmethod
    def parse(cls, keys: Keys, generated: tuple[str, PrivateKey] | None = None) -> LoadedKeys:
        """Parse a stored key set. CPU-bound (reading an RSA private key checks it, ~50 ms holding the
        GIL): run it in a thread. `generated` is (kid, key) of a key this process just made and stored:
        when it is the signing key it is used as it is, not read back from its JWK and checked again.

        ValueError if the signing key is unusable; an unusable verification key is skipped (and named in
        `skipped`) so one bad old record cannot stop signing.
        """
        if keys.signing_key is None:
            raise ValueError("no signing key stored")
        own = generated[1] if generated is not None and generated[0] == keys.signing_key.get("kid") else None
        private = _entry(keys.signing_key, None, own)
        if private.private is None:
            raise ValueError("stored signing key has no private part")
        entries: dict[str, _Entry] = {private.kid: private}
        skipped: list[str] = []
        for vk in keys.verification_keys:
            try:
                entry = _entry(vk.public_key, vk.expiry)
            except (ValueError, TypeError, KeyError, OverflowError) as err:
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
        """The compact JWS (RFC 7515 7.1) of `claims` with header {alg, kid}: the same bytes joserfc's
        serialize_compact makes (RS256 signatures are deterministic; tests/unit compares them)."""
        payload = json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode()
        signing = self.signing
        signing_input = signing.header_segment + b"." + b64url_encode(payload)
        return (signing_input + b"." + b64url_encode(signing.sign(signing_input))).decode("ascii")

    def verify(self, token: str, now: datetime) -> dict[str, Any]:
        """The claims of a token we signed with a key still in the set; InvalidToken otherwise."""
        known = self._verified.get(token)
        if known is None:
            known = self._check_signature(token)
            self._remember(token, known)
        kid, claims = known
        entry = self.entries[kid]
        if entry.expiry is not None and entry.expiry <= now:
            raise InvalidToken("unknown signing key")
        exp = claims.get("exp")
        if isinstance(exp, bool) or not isinstance(exp, int | float):
            raise InvalidToken("token has no expiry")
        if exp <= now.timestamp():
            raise InvalidToken("token expired")
        return dict(claims)  # a copy: the cached claims stay as verified

    def _remember(self, token: str, known: tuple[str, dict[str, Any]]) -> None:
        cache = self._verified
        while len(cache) >= VERIFIED_CACHE_SIZE:
            try:  # the oldest goes (dicts keep insertion order); another thread may have taken it
                del cache[next(iter(cache))]
            except (KeyError, RuntimeError, StopIteration):
                break
        cache[token] = known

    def _check_signature(self, token: str) -> tuple[str, dict[str, Any]]:
        """(kid, claims) of a well-formed token whose signature a key of this set checks."""
        raw = token.encode("ascii", "replace")
        if len(raw) > _MAX_TOKEN_BYTES:
            raise InvalidToken("token too large")
        parts = raw.split(b".")
        if len(parts) != 3:
            raise InvalidToken("malformed token")
        try:
            header = json.loads(b64url_decode(parts[0]))
            signature = b64url_decode(parts[2])
        except (ValueError, binascii.Error) as err:  # json.JSONDecodeError and UnicodeDecodeError too
            raise InvalidToken("malformed token") from err
        if not isinstance(header, dict):
            raise InvalidToken("malformed token")
        if not set(header) <= _ALLOWED_HEADER:
            raise InvalidToken("unsupported token header")
        kid, alg = header.get("kid"), header.get("alg")
        if not isinstance(kid, str) or not isinstance(alg, str):
            raise InvalidToken("token header lacks kid or alg")
        entry = self.entries.get(kid)
        if entry is None:
            raise InvalidToken("unknown signing key")
        if alg != entry.alg:
            raise InvalidToken("token algorithm does not match its key")
        if not entry.verify(parts[0] + b"." + parts[1], signature):
            raise InvalidToken("bad signature")
        try:
            claims = json.loads(b64url_decode(parts[1]))
        except (ValueError, binascii.Error) as err:
            raise InvalidToken("malformed claims") from err
        if not isinstance(claims, dict):
            raise InvalidToken("malformed claims")
        return kid, claims
