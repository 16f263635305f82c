"""Token wire formats and minting: Dex's `sub` and refresh-token encodings, at_hash/c_hash, JWT claims."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from appliance.ids import new_id
from appliance.store.models import Claims

CROSS_CLIENT_PREFIX = "audience:server:client_id:"

# --- protobuf {1: string, 2: string}, byte-identical to Dex's internal.Marshal -------------------------
# Dex marshals small proto3 messages (IDTokenSubject, RefreshToken) and base64url-encodes them without
# padding. proto3 omits empty strings, so ("id", "") encodes field 1 only.

_MAX_VARINT_BYTES = 10


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    for i in range(_MAX_VARINT_BYTES):
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return result, pos
    raise ValueError("varint too long")


def _encode_pair(first: str, second: str) -> str:
    out = bytearray()
    for number, value in ((1, first), (2, second)):
        if value:
            data = value.encode("utf-8")
            out += bytes([number << 3 | 2]) + _varint(len(data)) + data
    return base64.urlsafe_b64encode(bytes(out)).rstrip(b"=").decode("ascii")


def _b64url_decode_raw(value: str) -> bytes:
    # Strict like Go's base64.RawURLEncoding: URL alphabet only, no padding.
    if len(value) % 4 == 1 or not value.isascii() or "=" in value:
        raise ValueError("not unpadded base64url")
    try:
        return base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=True)
    except binascii.Error as err:
        raise ValueError("not unpadded base64url") from err


def _decode_pair(value: str) -> tuple[str, str]:
    data = _b64url_decode_raw(value)
    fields = {1: "", 2: ""}
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if number not in fields or wire_type != 2:
            raise ValueError("unexpected protobuf field")
        length, pos = _read_varint(data, pos)
        if length > len(data) - pos:
            raise ValueError("truncated protobuf field")
        try:
            fields[number] = data[pos : pos + length].decode("utf-8")
        except UnicodeDecodeError as err:
            raise ValueError("protobuf string is not UTF-8") from err
        pos += length
    return fields[1], fields[2]


def encode_sub(user_id: str, connector_id: str) -> str:
    """The `sub` claim: Dex's IDTokenSubject{user_id, conn_id}, so RBAC bindings survive a switch."""
    return _encode_pair(user_id, connector_id)


def decode_sub(sub: str) -> tuple[str, str]:
    """(user_id, connector_id) from a `sub`; ValueError if it is not one."""
    return _decode_pair(sub)


def encode_refresh_token(refresh_id: str, token: str) -> str:
    """The refresh token handed to clients: Dex's RefreshToken{refresh_id, token}."""
    return _encode_pair(refresh_id, token)


def decode_refresh_token(value: str) -> tuple[str, str]:
    """(refresh_id, token); ValueError on anything that is not such a message."""
    return _decode_pair(value)


# --- at_hash / c_hash (OIDC Core 3.1.3.6, 3.3.2.11) --------------------------------------------------

_HASH_BY_BITS = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}


def token_hash(alg: str, value: str) -> str:
    """Left half of the alg's SHA-2 digest of the ASCII `value`, base64url without padding."""
    if len(alg) != 5 or alg[:2] not in ("RS", "ES", "PS") or alg[2:] not in _HASH_BY_BITS:
        raise ValueError(f"no token hash defined for alg {alg!r}")
    digest = _HASH_BY_BITS[alg[2:]](value.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode("ascii")


# --- claims and minting ------------------------------------------------------------------------------


def build_id_token_claims(
    *,
    issuer: str,
    subject_claims: Claims,
    connector_id: str,
    scopes: Sequence[str],
    audience: Sequence[str],
    azp: str,
    nonce: str,
    now: datetime,
    lifetime: timedelta,
    access_token: str | None,
    code: str | None,
    alg: str,
    jti: str = "",
    auth_time: datetime | None = None,
    sid: str = "",
) -> dict[str, Any]:
    """The claims Dex's newIDToken puts in a token, in Dex's member order.

    `audience` is the final list (requested peers, then the client); `azp` is the client. As in Dex,
    azp is set when the client asked for a cross-client audience, i.e. there are several audiences or
    an `audience:server:client_id:` scope (which may name the client itself).
    """
    if not audience:
        raise ValueError("audience must not be empty")
    scope_set = set(scopes)
    out: dict[str, Any] = {
        "iss": issuer,
        "sub": encode_sub(subject_claims.user_id, connector_id),
        "aud": audience[0] if len(audience) == 1 else list(audience),
        "exp": int((now + lifetime).timestamp()),
        "iat": int(now.timestamp()),
    }
    # Dex's main branch adds these three (jti always; auth_time and sid with browser sessions).
    if jti:
        out["jti"] = jti
    if auth_time is not None:
        out["auth_time"] = int(auth_time.timestamp())
    if sid:
        out["sid"] = sid
    cross_client = any(s.startswith(CROSS_CLIENT_PREFIX) for s in scopes)
    if azp and (len(audience) > 1 or cross_client):
        out["azp"] = azp
    if nonce:
        out["nonce"] = nonce
    if access_token:
        out["at_hash"] = token_hash(alg, access_token)
    if code:
        out["c_hash"] = token_hash(alg, code)
    # Dex's struct tags are omitempty except email_verified (a pointer, set whenever email was asked).
    if "email" in scope_set:
        if subject_claims.email:
            out["email"] = subject_claims.email
        out["email_verified"] = subject_claims.email_verified
    if "groups" in scope_set and subject_claims.groups:
        out["groups"] = list(subject_claims.groups)
    if "profile" in scope_set:
        if subject_claims.username:
            out["name"] = subject_claims.username
        if subject_claims.preferred_username:
            out["preferred_username"] = subject_claims.preferred_username
    if "federated:id" in scope_set:
        out["federated_claims"] = {"connector_id": connector_id, "user_id": subject_claims.user_id}
    return out


class TokenSigner(Protocol):
    """What minting needs from appliance.keys.manager.KeyManager."""

    @property
    def algorithm(self) -> str: ...

    def sign(self, claims: dict[str, Any]) -> str: ...


@dataclass(frozen=True)
class MintedTokens:
    access_token: str
    id_token: str | None
    expires_in: int  # seconds, for the token response
    expiry: datetime
    access_jti: str = ""  # the access token's jti: "<grant id>.<unique>" (revocation keys on both)

    def __repr__(self) -> str:  # tokens are bearer secrets: keep them out of logs
        return f"MintedTokens(expires_in={self.expires_in}, id_token={self.id_token is not None})"


def mint_tokens(
    keys: TokenSigner,
    *,
    issuer: str,
    subject_claims: Claims,
    connector_id: str,
    scopes: Sequence[str],
    audience: Sequence[str],
    azp: str,
    nonce: str,
    now: datetime,
    lifetime: timedelta,
    want_id_token: bool,
    code: str | None = None,
    grant_id: str = "",
    auth_time: datetime | None = None,
    sid: str = "",
) -> MintedTokens:
    """Sign the access token (a JWT with the ID token's claims, as Dex) and, if wanted, the ID token
    carrying at_hash of that access token and c_hash of `code`. Synchronous: two signatures."""
    alg = keys.algorithm  # read once: sign() below uses the same key (no await in between)

    def claims(access_token: str | None, code_value: str | None, jti: str) -> dict[str, Any]:
        return build_id_token_claims(
            issuer=issuer, subject_claims=subject_claims, connector_id=connector_id, scopes=scopes,
            audience=audience, azp=azp, nonce=nonce, now=now, lifetime=lifetime,
            access_token=access_token, code=code_value, alg=alg, jti=jti, auth_time=auth_time, sid=sid,
        )

    # With a grant id every token gets a jti; the access token's starts with the grant id, so that
    # revoking a grant (a replayed code, a reused refresh token) reaches the access tokens it issued.
    access_jti = f"{grant_id}.{new_id()}" if grant_id else ""
    access_token = keys.sign(claims(None, None, access_jti))
    id_jti = new_id() if grant_id else ""
    id_token = keys.sign(claims(access_token, code, id_jti)) if want_id_token else None
    return MintedTokens(access_token, id_token, int(lifetime.total_seconds()), now + lifetime, access_jti)
