"""Signing keys as JWK dicts (RFC 7517/7518): generating them, and reading stored ones into `cryptography`
key objects (the only place key types are chosen).

Two key types only (RSA for RS256, EC P-256 for ES256), written and read member for member as joserfc
does (tests/unit/test_jwk.py compares both ways). joserfc is not used here because importing it brings
`cryptography.x509` and the serialization modules with it, about 4 MB resident in a server that only ever
handles these two key types; the connectors that verify upstream tokens still use it.
"""

from __future__ import annotations

import base64
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa

# The algorithms Portico signs with, and the key each needs (Dex: RS256; ES256 via signer.config).
SUPPORTED_ALGORITHMS: tuple[str, ...] = ("RS256", "ES256")
_RSA_BITS = 2048
_RSA_EXPONENT = 65537
_EC_CURVE = "P-256"
_EC_BYTES = 32  # each P-256 coordinate and the private value, fixed length (RFC 7518 6.2.1.2, 6.2.2.1)
_KTY = {"RS256": "RSA", "ES256": "EC"}
_RSA_PRIVATE = ("d", "p", "q", "dp", "dq", "qi")

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


def check_algorithm(alg: str) -> str:
    if alg not in SUPPORTED_ALGORITHMS:
        expected = ", ".join(SUPPORTED_ALGORITHMS)
        raise ValueError(f"unsupported signing algorithm {alg!r}: expected one of {expected}")
    return alg


def generate_private_key(alg: str) -> PrivateKey:
    """A new private key for `alg`. CPU-bound (RSA takes 50-500 ms): call it through asyncio.to_thread."""
    if check_algorithm(alg) == "RS256":
        return rsa.generate_private_key(_RSA_EXPONENT, _RSA_BITS)
    return ec.generate_private_key(ec.SECP256R1())


def generate_signing_jwk(alg: str, kid: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A new key pair as (private JWK, public JWK), both with kid, alg and use=sig. CPU-bound."""
    key = generate_private_key(alg)
    return private_jwk_dict(key, kid, alg), public_jwk_dict(key.public_key(), kid, alg)


def private_jwk_dict(key: PrivateKey, kid: str, alg: str) -> dict[str, Any]:
    """`key` as a private JWK: the public members, then the private ones, then kid, alg, use, kty."""
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.private_numbers()
        members = _rsa_public_members(numbers.public_numbers)
        for name, value in zip(_RSA_PRIVATE, (numbers.d, numbers.p, numbers.q, numbers.dmp1, numbers.dmq1,
                                              numbers.iqmp), strict=True):
            members[name] = _int_to_b64(value)
    else:
        ec_numbers = key.private_numbers()
        members = _ec_public_members(ec_numbers.public_numbers)
        members["d"] = _int_to_b64(ec_numbers.private_value, _EC_BYTES)
    return _with_parameters(members, kid, alg)


def public_jwk_dict(key: PublicKey, kid: str, alg: str) -> dict[str, Any]:
    """The public JWK of `key`: exactly the public members, then kid, alg, use and kty."""
    if isinstance(key, rsa.RSAPublicKey):
        members = _rsa_public_members(key.public_numbers())
    else:
        members = _ec_public_members(key.public_numbers())
    return _with_parameters(members, kid, alg)


def load_jwk(data: dict[str, Any], alg: str) -> tuple[PrivateKey | None, PublicKey]:
    """(private key or None, public key) of a stored JWK made for `alg`. ValueError when it is not one:
    another key type or curve, a "use" other than "sig", a member missing or not base64url, numbers
    that do not form a valid key (`cryptography` checks an RSA private key's parts and an EC point)."""
    kty = _KTY.get(alg)
    if kty is None or data.get("kty") != kty:
        raise ValueError(f"algorithm {alg} requires an {kty or 'unknown'} key, not {data.get('kty')!r}")
    if data.get("use", "sig") != "sig":
        raise ValueError(f"key is for {data.get('use')!r}, not for signatures")
    if kty == "RSA":
        return _load_rsa(data)
    if data.get("crv") != _EC_CURVE:
        raise ValueError(f"key for {alg} must be on {_EC_CURVE}, not {data.get('crv')!r}")
    return _load_ec(data)


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


def _load_rsa(data: dict[str, Any]) -> tuple[rsa.RSAPrivateKey | None, rsa.RSAPublicKey]:
    public = rsa.RSAPublicNumbers(_member_int(data, "e"), _member_int(data, "n"))
    if "d" not in data:
        return None, public.public_key()
    if "oth" in data:
        raise ValueError("RSA keys with more than two primes are not supported")
    d = _member_int(data, "d")
    if all(name in data for name in _RSA_PRIVATE):
        p, q = _member_int(data, "p"), _member_int(data, "q")
        dp, dq, qi = _member_int(data, "dp"), _member_int(data, "dq"), _member_int(data, "qi")
    else:  # only "d" given (RFC 7518 6.3.2): the factors and the CRT values follow from it
        p, q = rsa.rsa_recover_prime_factors(public.n, public.e, d)
        dp, dq, qi = rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q)
    private = rsa.RSAPrivateNumbers(p, q, d, dp, dq, qi, public).private_key()
    return private, private.public_key()


def _load_ec(data: dict[str, Any]) -> tuple[ec.EllipticCurvePrivateKey | None, ec.EllipticCurvePublicKey]:
    public = ec.EllipticCurvePublicNumbers(_member_int(data, "x"), _member_int(data, "y"), ec.SECP256R1())
    if "d" not in data:
        return None, public.public_key()
    private = ec.EllipticCurvePrivateNumbers(_member_int(data, "d"), public).private_key()
    return private, private.public_key()


def _rsa_public_members(numbers: rsa.RSAPublicNumbers) -> dict[str, Any]:
    return {"n": _int_to_b64(numbers.n), "e": _int_to_b64(numbers.e)}


def _ec_public_members(numbers: ec.EllipticCurvePublicNumbers) -> dict[str, Any]:
    if not isinstance(numbers.curve, ec.SECP256R1):
        raise ValueError(f"unsupported curve {numbers.curve.name}")
    return {"crv": _EC_CURVE, "x": _int_to_b64(numbers.x, _EC_BYTES), "y": _int_to_b64(numbers.y, _EC_BYTES)}


def _with_parameters(members: dict[str, Any], kid: str, alg: str) -> dict[str, Any]:
    members.update({"kid": kid, "alg": alg, "use": "sig", "kty": _KTY[check_algorithm(alg)]})
    return members


def b64url_encode(data: bytes) -> bytes:
    """Base64url without padding (RFC 7515 2): JWS segments and JWK members."""
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def b64url_decode(segment: bytes) -> bytes:
    """Unpadded base64url, strictly (only the URL alphabet: any other byte is a ValueError)."""
    if len(segment) % 4 == 1 or segment.translate(None, _B64URL):  # what is left is not the alphabet
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))


def _int_to_b64(value: int, length: int = 0) -> str:
    """Base64urlUInt (RFC 7518 2): big-endian, no padding; `length` bytes when fixed, else the fewest."""
    data = value.to_bytes(length or max(1, (value.bit_length() + 7) // 8), "big")
    return b64url_encode(data).decode("ascii")


def _member_int(data: dict[str, Any], name: str) -> int:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f'JWK member "{name}" is missing')
    try:
        return int.from_bytes(b64url_decode(value.encode("ascii", "replace")), "big")
    except ValueError as err:  # binascii.Error is one too
        raise ValueError(f'JWK member "{name}" is not base64url') from err


_B64URL = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
