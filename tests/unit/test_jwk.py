"""The JWK dicts of appliance/keys/jwk.py against joserfc's: the same members in the same order, each
reading the other's, and the stored keys joserfc refused still refused."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jwk as jose_jwk

from appliance.keys.jwk import generate_signing_jwk, load_jwk, private_jwk_dict, public_jwk_dict
from appliance.keys.keyset import LoadedKeys
from appliance.store.models import Keys, VerificationKey

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ALGS = ("RS256", "ES256")


def joserfc_pair(alg: str, kid: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """What keys/jwk.py made with joserfc before (kept here as the reference)."""
    params: jose_jwk.KeyParameters = {"kid": kid, "alg": alg, "use": "sig"}
    key: jose_jwk.Key = (jose_jwk.generate_key("RSA", 2048, parameters=params) if alg == "RS256"
                         else jose_jwk.generate_key("EC", "P-256", parameters=params))
    public = dict(key.as_dict(private=False))
    public.update({"kid": kid, "alg": alg, "use": "sig"})
    return dict(key.as_dict(private=True)), public


@pytest.mark.parametrize("alg", ALGS)
def test_our_jwks_are_joserfcs_member_for_member(alg: str) -> None:
    for _ in range(8):  # several keys: short leading bytes in some numbers, not in others
        private, public = generate_signing_jwk(alg, "k1")
        imported = jose_jwk.import_key(private)  # type: ignore[arg-type]
        assert json.dumps(private) == json.dumps(dict(imported.as_dict(private=True)))
        theirs = dict(imported.as_dict(private=False))
        theirs.update({"kid": "k1", "alg": alg, "use": "sig"})
        assert json.dumps(public) == json.dumps(theirs)


@pytest.mark.parametrize("alg", ALGS)
def test_we_read_joserfcs_jwks_and_write_them_back_unchanged(alg: str) -> None:
    private, public = joserfc_pair(alg, "k2")
    key, pub = load_jwk(private, alg)
    assert key is not None
    assert json.dumps(private_jwk_dict(key, "k2", alg)) == json.dumps(private)
    assert json.dumps(public_jwk_dict(pub, "k2", alg)) == json.dumps(public)
    only_public, pub2 = load_jwk(public, alg)
    assert only_public is None and public_jwk_dict(pub2, "k2", alg) == public


def test_an_rsa_key_stored_with_d_only_is_completed() -> None:
    """RFC 7518 6.3.2: the primes and CRT values may be left out; they follow from n, e and d."""
    private, _ = generate_signing_jwk("RS256", "k3")
    bare = {name: private[name] for name in ("kty", "n", "e", "d", "kid", "alg")}
    key, _ = load_jwk(bare, "RS256")
    assert isinstance(key, rsa.RSAPrivateKey)
    assert private_jwk_dict(key, "k3", "RS256") == private


def _flip(value: str) -> str:
    raw = bytearray(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    raw[-1] ^= 2
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


@pytest.mark.parametrize(("alg", "change"), [
    ("RS256", {"kty": "EC"}),
    ("ES256", {"kty": "RSA"}),
    ("ES256", {"crv": "P-384"}),
    ("RS256", {"use": "enc"}),
    ("RS256", {"n": None}),
    ("RS256", {"e": "AQ=B"}),
    ("RS256", {"e": "A"}),
    ("RS256", {"q": "flip"}),  # not a valid key: cryptography's check refuses it
    ("RS256", {"oth": []}),
    ("ES256", {"x": "flip"}),  # not on the curve
    ("ES256", {"d": "flip"}),  # not the point's private value
])
def test_unusable_keys_are_refused(alg: str, change: dict[str, Any]) -> None:
    private, _ = generate_signing_jwk(alg, "k4")
    for name, value in change.items():
        if value is None:
            del private[name]
        else:
            private[name] = _flip(private[name]) if value == "flip" else value
    with pytest.raises(ValueError):
        load_jwk(private, alg)


def test_generated_keys_are_the_expected_types() -> None:
    rsa_private, _ = generate_signing_jwk("RS256", "r")
    ec_private, _ = generate_signing_jwk("ES256", "e")
    rsa_key, _ = load_jwk(rsa_private, "RS256")
    ec_key, _ = load_jwk(ec_private, "ES256")
    assert isinstance(rsa_key, rsa.RSAPrivateKey) and rsa_key.key_size == 2048
    assert rsa_key.private_numbers().public_numbers.e == 65537
    assert isinstance(ec_key, ec.EllipticCurvePrivateKey) and isinstance(ec_key.curve, ec.SECP256R1)


@pytest.mark.parametrize("alg", ALGS)
def test_a_key_set_of_joserfc_keys_signs_and_skips_a_bad_verification_key(alg: str) -> None:
    private, public = joserfc_pair(alg, "cur")
    _, old_public = joserfc_pair(alg, "old")
    bad = {**old_public, "kid": "bad", "kty": "oct"}
    keys = LoadedKeys.parse(Keys(signing_key=private, signing_key_pub=public, next_rotation=NOW,
                                 verification_keys=(VerificationKey(old_public, NOW + timedelta(hours=1)),
                                                    VerificationKey(bad, NOW + timedelta(hours=1)))))
    assert [key["kid"] for key in keys.jwks(NOW)["keys"]] == ["cur", "old"]
    assert keys.jwks(NOW)["keys"][0] == public
    assert len(keys.skipped) == 1 and "bad" not in keys.entries
    assert keys.verify(keys.sign({"exp": NOW.timestamp() + 60}), NOW)["exp"] == NOW.timestamp() + 60


def test_a_signing_key_without_its_private_part_is_refused() -> None:
    _, public = generate_signing_jwk("RS256", "k5")
    with pytest.raises(ValueError, match="private"):
        LoadedKeys.parse(Keys(signing_key=public, signing_key_pub=public, next_rotation=NOW))


def test_the_generated_key_is_used_as_made_only_when_it_is_the_stored_signing_key() -> None:
    stored_private, stored_public = generate_signing_jwk("ES256", "stored")
    other = ec.generate_private_key(ec.SECP256R1())
    keys = Keys(signing_key=stored_private, signing_key_pub=stored_public, next_rotation=NOW)
    # Another kid: the stored key is read (and a token it signs verifies under the stored public key).
    loaded = LoadedKeys.parse(keys, ("another", other))
    assert loaded.entries["stored"].public_jwk == stored_public
    # The same kid: the object handed over is the one that signs.
    own = LoadedKeys.parse(keys, ("stored", other))
    assert own.signing.private is other
