"""Token wire formats (Dex-identical), at_hash/c_hash, per-scope claims and minting."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from appliance.clock import FrozenClock
from appliance.keys.manager import KeyManager
from appliance.oidc.tokens import (
    build_id_token_claims,
    decode_refresh_token,
    decode_sub,
    encode_refresh_token,
    encode_sub,
    mint_tokens,
    token_hash,
)
from appliance.store.models import Claims, Keys

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
CLAIMS = Claims(
    user_id="0-385-28089-0",
    username="Kilgore Trout",
    preferred_username="kilgore",
    email="kilgore@kilgore.trout",
    email_verified=True,
    groups=("authors", "admins"),
)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --- sub and refresh token encodings -----------------------------------------------------------------


def test_sub_matches_dex_vectors() -> None:
    assert encode_sub("0-385-28089-0", "local") == "Cg0wLTM4NS0yODA4OS0wEgVsb2NhbA"
    # The subject of Dex's example static user (admin@example.com) as seen in Dex's docs.
    dex_admin = "CiQwOGE4Njg0Yi1kYjg4LTRiNzMtOTBhOS0zY2QxNjYxZjU0NjYSBWxvY2Fs"
    assert encode_sub("08a8684b-db88-4b73-90a9-3cd1661f5466", "local") == dex_admin
    assert decode_sub(dex_admin) == ("08a8684b-db88-4b73-90a9-3cd1661f5466", "local")


def test_sub_unicode_is_utf8_with_byte_lengths() -> None:
    user = "ユーザー"  # 4 characters, 12 UTF-8 bytes: the length prefix counts bytes
    expected = b64(b"\x0a\x0c" + user.encode() + b"\x12\x04ldap")
    assert encode_sub(user, "ldap") == expected
    assert decode_sub(expected) == (user, "ldap")


def test_sub_long_user_id_uses_multibyte_varint() -> None:
    user = "u" * 200  # 200 = 0xC8 0x01 as a varint
    assert encode_sub(user, "c") == b64(b"\x0a\xc8\x01" + user.encode() + b"\x12\x01c")
    assert decode_sub(encode_sub(user, "c")) == (user, "c")


def test_sub_empty_connector_omits_field_two_like_proto3() -> None:
    # client_credentials: sub encodes (client id, ""); proto3 drops the empty string field.
    assert encode_sub("my-client", "") == b64(b"\x0a\x09my-client")
    assert decode_sub(encode_sub("my-client", "")) == ("my-client", "")


def test_refresh_token_round_trip() -> None:
    value = encode_refresh_token("refid123", "s3cr3t-token")
    assert value == b64(b"\x0a\x08refid123\x12\x0cs3cr3t-token")
    assert decode_refresh_token(value) == ("refid123", "s3cr3t-token")


@pytest.mark.parametrize(
    "garbage",
    [
        "not base64!",
        "abc=",  # padding is not raw base64url
        "A",  # impossible length
        b64(b"\x0a\x10short"),  # length runs past the end
        b64(b"\x08\x01"),  # field 1 as a varint, not a string
        b64(b"\x1a\x01x"),  # field 3
        b64(b"\x0a\x02\xff\xfe"),  # not UTF-8
        b64(b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"),  # varint too long
        "Zm9vLmJhcg+",  # standard alphabet
    ],
)
def test_decode_rejects_garbage(garbage: str) -> None:
    with pytest.raises(ValueError):
        decode_refresh_token(garbage)
    with pytest.raises(ValueError):
        decode_sub(garbage)


# --- at_hash / c_hash -------------------------------------------------------------------------------


def test_token_hash_published_oidc_examples() -> None:
    # OpenID Connect Core 1.0, Appendix A.3 (at_hash) and A.4 (c_hash), RS256.
    assert token_hash("RS256", "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y") == "77QmUPtjPfzWtF2AnpK9RQ"
    assert (
        token_hash("RS256", "Qcb0Orv1zh30vL1MPRsbm-diHiMwcLyZvn1arpZv-Jxf_11jnpEX3Tgfvk")
        == "LDktKdoQak3Pk0cnXxCltA"
    )


@pytest.mark.parametrize(
    ("alg", "hasher"),
    [
        ("RS256", hashlib.sha256),
        ("ES256", hashlib.sha256),
        ("PS256", hashlib.sha256),
        ("RS384", hashlib.sha384),
        ("ES384", hashlib.sha384),
        ("RS512", hashlib.sha512),
        ("ES512", hashlib.sha512),
    ],
)
def test_token_hash_left_half_of_alg_digest(alg: str, hasher: Callable[[bytes], hashlib._Hash]) -> None:
    value = "dNZX1hEZ9wBCzNL40Upu646bdzQA"
    digest = hasher(value.encode()).digest()
    assert token_hash(alg, value) == b64(digest[: len(digest) // 2])


def test_token_hash_rejects_unknown_alg() -> None:
    for alg in ("none", "HS256", "EdDSA", "RS1024", ""):
        with pytest.raises(ValueError):
            token_hash(alg, "x")


# --- claims -----------------------------------------------------------------------------------------


def claims_for(scopes: list[str], **kw: object) -> dict[str, object]:
    args: dict[str, object] = {
        "issuer": "https://dex.example/dex",
        "subject_claims": CLAIMS,
        "connector_id": "local",
        "scopes": scopes,
        "audience": ["app"],
        "azp": "app",
        "nonce": "",
        "now": NOW,
        "lifetime": timedelta(hours=24),
        "access_token": None,
        "code": None,
        "alg": "RS256",
    }
    args.update(kw)
    return build_id_token_claims(**args)  # type: ignore[arg-type]


def test_minimal_claims_and_member_order() -> None:
    got = claims_for(["openid"])
    assert got == {
        "iss": "https://dex.example/dex",
        "sub": "Cg0wLTM4NS0yODA4OS0wEgVsb2NhbA",
        "aud": "app",
        "exp": int(NOW.timestamp()) + 86400,
        "iat": int(NOW.timestamp()),
    }
    assert list(got) == ["iss", "sub", "aud", "exp", "iat"]


def test_claims_per_scope() -> None:
    assert {"email", "email_verified"} <= set(claims_for(["openid", "email"]))
    email = claims_for(["openid", "email"])
    assert (email["email"], email["email_verified"]) == ("kilgore@kilgore.trout", True)
    assert claims_for(["openid", "groups"])["groups"] == ["authors", "admins"]
    profile = claims_for(["openid", "profile"])
    assert (profile["name"], profile["preferred_username"]) == ("Kilgore Trout", "kilgore")
    fed = claims_for(["openid", "federated:id"])
    assert fed["federated_claims"] == {"connector_id": "local", "user_id": "0-385-28089-0"}
    full = claims_for(["openid", "email", "groups", "profile", "federated:id"], nonce="n-0S6")
    assert list(full) == [
        "iss", "sub", "aud", "exp", "iat", "nonce", "email", "email_verified", "groups",
        "name", "preferred_username", "federated_claims",
    ]
    # Nothing leaks without its scope.
    bare = claims_for(["openid", "offline_access"])
    scoped = {"email", "email_verified", "groups", "name", "preferred_username", "federated_claims"}
    assert not scoped & set(bare)


def test_omitempty_like_dex() -> None:
    empty = Claims(user_id="u1")
    got = claims_for(["openid", "email", "groups", "profile"], subject_claims=empty)
    # email_verified is a pointer in Dex, so it appears (false) whenever email was asked for.
    assert got["email_verified"] is False
    assert not {"email", "groups", "name", "preferred_username", "nonce", "azp"} & set(got)


def test_aud_string_or_list_and_azp() -> None:
    one = claims_for(["openid"])
    assert one["aud"] == "app" and "azp" not in one
    many = claims_for(["openid", "audience:server:client_id:peer"], audience=["peer", "app"])
    assert many["aud"] == ["peer", "app"] and many["azp"] == "app"
    # Dex sets azp whenever a cross-client audience was asked for, even if it is the client itself.
    self_peer = claims_for(["openid", "audience:server:client_id:app"], audience=["app"])
    assert self_peer["aud"] == "app" and self_peer["azp"] == "app"


def test_hashes_in_claims() -> None:
    got = claims_for(["openid"], access_token="tok", code="cod", alg="ES256")
    assert got["at_hash"] == token_hash("ES256", "tok")
    assert got["c_hash"] == token_hash("ES256", "cod")


# --- minting ----------------------------------------------------------------------------------------


class OneKeyStore:
    """A minimal test double of the two key methods of Storage (no concurrency needed here)."""

    def __init__(self) -> None:
        self.keys = Keys()

    async def get_keys(self) -> Keys:
        return self.keys

    async def update_keys(self, updater: Callable[[Keys], Keys]) -> Keys:
        self.keys = updater(self.keys)
        return self.keys


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
async def test_mint_tokens(alg: str) -> None:
    km = KeyManager(OneKeyStore(), FrozenClock(NOW), algorithm=alg, rotation_period=timedelta(hours=6),
                    id_token_lifetime=timedelta(hours=24))
    await km.ensure_loaded()
    minted = mint_tokens(
        km, issuer="https://dex.example/dex", subject_claims=CLAIMS, connector_id="local",
        scopes=["openid", "email"], audience=["app"], azp="app", nonce="abc", now=NOW,
        lifetime=timedelta(hours=24), want_id_token=True, code="the-code",
    )
    assert minted.expires_in == 86400 and minted.expiry == NOW + timedelta(hours=24)
    access = km.verify(minted.access_token, now=NOW)
    assert minted.id_token is not None
    id_claims = km.verify(minted.id_token, now=NOW)
    assert "at_hash" not in access and "c_hash" not in access
    assert id_claims["at_hash"] == token_hash(alg, minted.access_token)
    assert id_claims["c_hash"] == token_hash(alg, "the-code")
    # Otherwise the same claims, as Dex puts the ID token's claims into the access token.
    assert {k: v for k, v in id_claims.items() if k not in ("at_hash", "c_hash")} == access
    assert access["nonce"] == "abc" and access["email"] == CLAIMS.email
    assert "the-code" not in repr(minted) and minted.access_token not in repr(minted)

    no_id = mint_tokens(
        km, issuer="i", subject_claims=CLAIMS, connector_id="local", scopes=["openid"],
        audience=["app"], azp="app", nonce="", now=NOW, lifetime=timedelta(minutes=5),
        want_id_token=False,
    )
    assert no_id.id_token is None and no_id.expires_in == 300
    assert km.verify(no_id.access_token, now=NOW)["iss"] == "i"

