"""The key set signs and verifies with `cryptography` directly (appliance/keys/keyset.py): its tokens must
be exactly joserfc's, and each must accept the other's."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from joserfc import jws
from joserfc.jwk import import_key

from appliance.keys.errors import InvalidToken
from appliance.keys.jwk import generate_signing_jwk
from appliance.keys.keyset import LoadedKeys
from appliance.store.models import Keys

NOW = datetime(2026, 1, 1, tzinfo=UTC)
CLAIMS = {"iss": "https://id.example/dex", "sub": "CgNib2I", "aud": ["a", "b"], "exp": 1767312000,
          "iat": 1767225600, "name": "Zoë \u2603", "groups": ["x"], "email_verified": True}


def key_set(alg: str) -> tuple[LoadedKeys, dict[str, object]]:
    private, public = generate_signing_jwk(alg, f"kid-{alg.lower()}")
    return LoadedKeys.parse(Keys(signing_key=private, signing_key_pub=public,
                                 next_rotation=NOW + timedelta(hours=6))), private


def joserfc_sign(private: dict[str, object], alg: str, claims: dict[str, object]) -> str:
    payload = json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode()
    return jws.serialize_compact({"alg": alg, "kid": private["kid"]}, payload, import_key(private),  # type: ignore[arg-type]
                                 registry=jws.JWSRegistry(algorithms=[alg]))


def test_rs256_tokens_are_byte_for_byte_joserfcs() -> None:
    keys, private = key_set("RS256")
    for claims in (CLAIMS, {"exp": 1767312000}, {**CLAIMS, "nonce": "n" * 300}):
        assert keys.sign(claims) == joserfc_sign(private, "RS256", claims)


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_each_accepts_the_others_tokens(alg: str) -> None:
    keys, private = key_set(alg)
    ours = keys.sign(CLAIMS)
    theirs = joserfc_sign(private, alg, CLAIMS)
    assert keys.verify(theirs, NOW) == CLAIMS
    assert keys.verify(ours, NOW) == CLAIMS
    registry = jws.JWSRegistry(algorithms=[alg])
    obj = jws.extract_compact(ours.encode())
    assert jws.validate_compact(obj, import_key(private), registry=registry)  # type: ignore[arg-type]
    assert obj.headers() == {"alg": alg, "kid": private["kid"]}


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_a_flipped_bit_anywhere_is_refused(alg: str) -> None:
    keys, _ = key_set(alg)
    token = keys.sign(CLAIMS)
    head, body, sig = token.split(".")
    raw_sig = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    raw_sig[len(raw_sig) // 2] ^= 1
    flipped = base64.urlsafe_b64encode(bytes(raw_sig)).rstrip(b"=").decode()
    other = "A" if body[-2] != "A" else "B"
    for forged in (f"{head}.{body}.{flipped}", f"{head}.{body[:-2]}{other}{body[-1]}.{sig}",
                   f"{head}.{body}.{sig[:-4]}", f"{head}.{body}.", f"{head}.{body}.{sig}=",
                   f"{head}.{body}.{sig}.", f"{head}..{sig}", f" {token}",
                   f"{head}.{body}.{sig[:10]}*{sig[11:]}"):
        with pytest.raises(InvalidToken):
            keys.verify(forged, NOW)


def test_an_es256_signature_of_the_wrong_length_is_refused() -> None:
    keys, _ = key_set("ES256")
    head, body, sig = keys.sign(CLAIMS).split(".")
    raw = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    for bad in (raw[:-1], raw + b"\0", b"\0" + raw[:-1] + b"\0" * 2):
        with pytest.raises(InvalidToken, match="signature"):
            keys.verify(f"{head}.{body}.{base64.urlsafe_b64encode(bad).rstrip(b'=').decode()}", NOW)
