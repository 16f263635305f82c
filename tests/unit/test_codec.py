"""The store codec: exact JSON round trips of the stored dataclasses, and its edge cases."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Optional

import pytest

from appliance.store import codec
from appliance.store import models as m

T = datetime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
CLAIMS = m.Claims("u1", "User", "user", "u@example.com", True, ("a", "b"))
PKCE = m.PKCE("challenge", "S256")

SAMPLES: list[Any] = [
    CLAIMS,
    PKCE,
    m.Client(
        "c",
        "s",
        ("https://a/cb",),
        ("p",),
        True,
        "n",
        "l",
        ("ldap",),
        ("https://a/bye",),
        "https://a/bc",
        ("g",),
    ),
    m.Password("A@Example.com", "$2b$10$hash", "a", "uid", ("g",), "N", "pn", False),
    m.Connector("ldap", "ldap", "LDAP", "3", {"host": "x", "n": [1, {"k": None}], "f": 1.5, "b": False}),
    m.AuthRequest(
        "ar",
        "c",
        ("code",),
        ("openid",),
        "https://a/cb",
        T,
        "nonce",
        "state",
        True,
        True,
        CLAIMS,
        "ldap",
        b"\x00\xffdata",
        PKCE,
        b"\x01" * 32,
    ),
    m.AuthRequest("ar", "c", ("code",), ("openid",), "https://a/cb", T),
    m.AuthCode("ac", "c", "https://a/cb", ("openid",), "ldap", CLAIMS, T, "n", None, PKCE),
    m.RefreshToken(
        "rt", "tok", "c", "ldap", CLAIMS, ("openid",), T, T + timedelta(seconds=1), "old", "n", b""
    ),
    m.OfflineSession("u1", "ldap", b"cd"),
    m.OfflineSession("u1", "ldap"),
    m.Keys({"kid": "k", "d": "secret"}, {"kid": "k"}, (m.VerificationKey({"kid": "old"}, T),), T),
    m.Keys(),
    m.DeviceRequest("BCDF-GHJK", "dc", "c", ("openid",), T, "secret"),
    m.DeviceToken("dc", "pending", T, T, 5, "", PKCE),
]


@pytest.mark.parametrize("obj", SAMPLES, ids=lambda o: type(o).__name__)
def test_round_trip_is_exact(obj: Any) -> None:
    text = codec.dumps(obj)
    back = codec.loads(type(obj), text)
    assert back == obj
    assert codec.from_dict(type(obj), json.loads(text)) == obj
    # Types survive too, not only equality (a list would compare unequal to a tuple anyway).
    for name in vars(obj):
        assert type(getattr(back, name)) is type(getattr(obj, name)), name


def test_encoding_is_plain_json() -> None:
    obj = SAMPLES[5]  # the full AuthRequest
    data = json.loads(codec.dumps(obj))
    assert data["expiry"] == "2026-05-06T07:08:09.123456+00:00"
    assert base64.b64decode(data["connector_data"]) == b"\x00\xffdata"
    assert data["claims"]["groups"] == ["a", "b"]
    assert data["pkce"] == {"code_challenge": "challenge", "code_challenge_method": "S256"}
    assert data["response_types"] == ["code"]


def test_datetimes_are_stored_as_utc_and_stay_aware() -> None:
    local = datetime(2026, 5, 6, 9, 8, 9, 1, tzinfo=timezone(timedelta(hours=2)))
    token = m.DeviceToken("dc", "pending", local, local, 5)
    data = codec.to_dict(token)
    assert data["expiry"] == "2026-05-06T07:08:09.000001+00:00"
    back = codec.from_dict(m.DeviceToken, data)
    assert back == token
    assert back.expiry.utcoffset() == timedelta(0)


def test_whole_seconds_keep_their_format() -> None:
    token = m.DeviceToken("dc", "pending", T.replace(microsecond=0), T, 5)
    assert codec.to_dict(token)["expiry"] == "2026-05-06T07:08:09.000000+00:00"
    assert codec.loads(m.DeviceToken, codec.dumps(token)) == token


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        codec.dumps(m.DeviceToken("dc", "pending", datetime(2026, 1, 1), T, 5))


def test_text_survives_as_ascii_json() -> None:
    odd = "nul\x00 sep\x1f é 🦊 \ud800"  # a lone surrogate too: it cannot be UTF-8 encoded raw
    claims = m.Claims(odd, groups=(odd,))
    text = codec.dumps(claims)
    assert text.isascii()
    assert codec.loads(m.Claims, text) == claims


def test_missing_keys_take_defaults_and_unknown_keys_are_ignored() -> None:
    data = {
        "user_code": "U",
        "device_code": "D",
        "client_id": "c",
        "scopes": ["openid"],
        "expiry": T.isoformat(),
        "added_in_a_later_version": 1,
    }
    req = codec.from_dict(m.DeviceRequest, data)
    assert req == m.DeviceRequest("U", "D", "c", ("openid",), T)
    with pytest.raises(TypeError):
        codec.from_dict(m.DeviceRequest, {"user_code": "U"})


def test_null_optional_fields() -> None:
    req = codec.from_dict(
        m.AuthRequest, {**codec.to_dict(SAMPLES[6]), "claims": None, "connector_data": None}
    )
    assert req.claims is None
    assert req.connector_data is None


@dataclass(frozen=True)
class Extra:
    span: timedelta
    items: list[int] = field(default_factory=list)
    maybe: Optional[m.PKCE] = None  # noqa: UP045 - the old spelling must work too
    by_name: dict[str, m.PKCE] = field(default_factory=dict)
    score: float = 0.0


def test_other_supported_types() -> None:
    obj = Extra(timedelta(days=1, microseconds=3), [1, 2], PKCE, {"x": PKCE}, 2.0)
    assert codec.to_dict(obj)["span"] == 86_400_000_003
    assert codec.loads(Extra, codec.dumps(obj)) == obj
    assert codec.loads(Extra, codec.dumps(Extra(timedelta(0)))) == Extra(timedelta(0))


@dataclass(frozen=True)
class BadUnion:
    value: int | str


@dataclass(frozen=True)
class BadDictKey:
    value: dict[int, str]


@pytest.mark.parametrize("cls", [BadUnion, BadDictKey])
def test_unsupported_field_types_fail_loudly(cls: type[Any]) -> None:
    with pytest.raises(TypeError, match="unsupported"):
        codec.from_dict(cls, {"value": 1})


def test_non_dataclasses_are_refused() -> None:
    with pytest.raises(TypeError, match="not a dataclass"):
        codec.from_dict(dict, {})
