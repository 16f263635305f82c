"""Generating signing keys and reading stored JWK dicts (the only place key types are chosen)."""

from __future__ import annotations

from typing import Any, Literal

from joserfc import jwk

# The algorithms Portico signs with, and the key each needs (Dex: RS256; ES256 via signer.config).
SUPPORTED_ALGORITHMS: tuple[str, ...] = ("RS256", "ES256")
_RSA_BITS = 2048
_EC_CURVE: Literal["P-256"] = "P-256"


def check_algorithm(alg: str) -> str:
    if alg not in SUPPORTED_ALGORITHMS:
        expected = ", ".join(SUPPORTED_ALGORITHMS)
        raise ValueError(f"unsupported signing algorithm {alg!r}: expected one of {expected}")
    return alg


def generate_signing_jwk(alg: str, kid: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A new key pair as (private JWK, public JWK), both with kid, alg and use=sig.

    CPU-bound (RSA generation takes tens of milliseconds): call it through asyncio.to_thread.
    """
    check_algorithm(alg)
    params: jwk.KeyParameters = {"kid": kid, "alg": alg, "use": "sig"}
    key: jwk.Key
    if alg == "RS256":
        key = jwk.generate_key("RSA", _RSA_BITS, parameters=params)
    else:
        key = jwk.generate_key("EC", _EC_CURVE, parameters=params)
    private = dict(key.as_dict(private=True))
    return private, public_jwk_dict(key, kid, alg)


def public_jwk_dict(key: jwk.Key, kid: str, alg: str) -> dict[str, Any]:
    """The public half of `key` as a JWK dict with exactly the public members plus kid, alg, use."""
    public = dict(key.as_dict(private=False))
    public.update({"kid": kid, "alg": alg, "use": "sig"})
    return public


def alg_of(data: dict[str, Any]) -> str:
    """The signing algorithm of a stored JWK: its "alg", else implied by its key type (older records)."""
    alg = data.get("alg")
    if isinstance(alg, str) and alg:
        return alg
    if data.get("kty") == "RSA":
        return "RS256"
    if data.get("kty") == "EC" and data.get("crv") == "P-256":
        return "ES256"
    raise ValueError("stored JWK has no usable alg")


def kid_of(data: dict[str, Any]) -> str:
    kid = data.get("kid")
    if not isinstance(kid, str) or not kid:
        raise ValueError("stored JWK has no kid")
    return kid
