"""Attacks on the token layer: PKCE downgrade and method switching, one client using another's code,
refresh token or device code, code replay, and forged JWTs (alg none, HS256 key confusion, foreign
keys and kids, expired, other issuer) at /userinfo, /token/introspect and /logout."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from security_support import (
    APP_REDIRECT,
    PREFIX,
    client_auth,
    mock_code,
    redeem,
    refresh,
    s256,
    tokens_for,
)
from web_harness import Harness, location

VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"


async def _error(response: Any) -> str:
    return str((await response.get_json()).get("error"))


# ---------------------------------------------------------------- PKCE


async def test_pkce_downgrade_to_plain_is_refused(sec: Harness) -> None:
    challenge = s256(VERIFIER)
    code = await mock_code(sec, code_challenge=challenge, code_challenge_method="S256")
    # The attacker saw the challenge (it travels in the browser) and offers it as a plain verifier.
    for extra in (
        {"code_verifier": challenge}, {"code_verifier": challenge, "code_challenge_method": "plain"}, {},
        {"code_verifier": ""}, {"code_verifier": VERIFIER + "x"}, {"code_verifier": VERIFIER.upper()},
    ):
        response = await redeem(sec, code, **extra)
        assert response.status_code == 400 and await _error(response) == "invalid_grant", extra
    # A verifier of the wrong shape (RFC 7636 4.1: 43 to 128 unreserved characters) is malformed.
    for bad in (VERIFIER[:-1], VERIFIER + "!", "v" * 129):
        response = await redeem(sec, code, code_verifier=bad)
        assert response.status_code == 400 and await _error(response) == "invalid_request", bad
    good = await redeem(sec, code, code_verifier=VERIFIER)
    assert good.status_code == 200


async def test_pkce_method_switching(sec: Harness) -> None:
    # A plain challenge is compared as-is: the S256 transform of the verifier does not answer it.
    code = await mock_code(sec, code_challenge=VERIFIER, code_challenge_method="plain")
    response = await redeem(sec, code, code_verifier=s256(VERIFIER))
    assert response.status_code == 400 and await _error(response) == "invalid_grant"
    assert (await redeem(sec, code, code_verifier=VERIFIER)).status_code == 200
    # Unknown or mis-cased methods are refused at /auth, back to the client.
    for method in ("s256", "SHA256", "S512", "none", "PLAIN"):
        start = await sec.client.get(
            f"{PREFIX}/auth",
            query_string={
                "client_id": "app", "redirect_uri": APP_REDIRECT, "response_type": "code", "scope": "openid",
                "state": "s", "code_challenge": s256(VERIFIER), "code_challenge_method": method,
                "connector_id": "mock",
            },
        )
        assert start.status_code == 303 and "error=invalid_request" in location(start), method
    # A verifier for a code that had no challenge: refused, not ignored (an injected code's tell).
    plain_code = await mock_code(sec)
    response = await redeem(sec, plain_code, code_verifier=VERIFIER)
    assert response.status_code == 400 and await _error(response) == "invalid_request"


# ---------------------------------------------------------------- one client using another's grant


async def test_client_b_cannot_redeem_client_a_code(sec: Harness) -> None:
    code = await mock_code(sec)  # issued to app
    for redirect in (APP_REDIRECT, "https://other.example/callback"):
        stolen = await redeem(sec, code, "other", redirect)
        assert stolen.status_code == 400 and await _error(stolen) == "invalid_grant"
    public = await sec.client.post(
        f"{PREFIX}/token",
        form={
            "grant_type": "authorization_code", "code": code, "redirect_uri": APP_REDIRECT,
            "client_id": "native",
        },
    )
    assert public.status_code == 400 and await _error(public) == "invalid_grant"
    unauthenticated = await sec.client.post(
        f"{PREFIX}/token",
        form={
            "grant_type": "authorization_code", "code": code, "redirect_uri": APP_REDIRECT,
            "client_id": "app",
        },
    )
    assert unauthenticated.status_code == 401 and await _error(unauthenticated) == "invalid_client"
    assert (await redeem(sec, code)).status_code == 200  # the owner still can


async def test_client_b_cannot_use_client_a_refresh_token(sec: Harness) -> None:
    tokens = await tokens_for(sec)
    stolen = await refresh(sec, tokens["refresh_token"], "other")
    assert stolen.status_code == 400 and await _error(stolen) == "invalid_grant"
    revoked = await sec.client.post(
        f"{PREFIX}/token/revoke", headers=client_auth("other"), form={"token": tokens["refresh_token"]}
    )
    assert revoked.status_code == 200  # RFC 7009: no answer tells the prober anything ...
    foreign_access = await sec.client.post(
        f"{PREFIX}/token/revoke", headers=client_auth("other"), form={"token": tokens["access_token"]}
    )
    assert foreign_access.status_code == 200
    # ... and nothing happened: the owner's tokens still work.
    assert (await refresh(sec, tokens["refresh_token"])).status_code == 200
    userinfo = await sec.client.get(
        f"{PREFIX}/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert userinfo.status_code == 200


async def test_client_b_cannot_poll_client_a_device_code(sec: Harness) -> None:
    device = await sec.client.post(f"{PREFIX}/device/code", form={"client_id": "native", "scope": "openid"})
    device_code = (await device.get_json())["device_code"]
    stolen = await sec.client.post(
        f"{PREFIX}/token", headers=client_auth("app"),
        form={"grant_type": "urn:ietf:params:oauth:grant-type:device_code", "device_code": device_code},
    )
    assert stolen.status_code == 400 and await _error(stolen) == "invalid_grant"


async def test_code_replay_revokes_what_the_code_issued(sec: Harness) -> None:
    code = await mock_code(sec)
    first = await redeem(sec, code)
    assert first.status_code == 200
    tokens = await first.get_json()
    replay = await redeem(sec, code)
    assert replay.status_code == 400 and await _error(replay) == "invalid_grant"
    userinfo = await sec.client.get(
        f"{PREFIX}/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert userinfo.status_code == 401
    assert (await refresh(sec, tokens["refresh_token"])).status_code == 400


async def test_refresh_token_replay_revokes_the_family(sec: Harness) -> None:
    tokens = await tokens_for(sec)
    rotated = await refresh(sec, tokens["refresh_token"])
    assert rotated.status_code == 200
    newer = await rotated.get_json()
    replay = await refresh(sec, tokens["refresh_token"])  # the old one, as a thief would
    assert replay.status_code == 400
    assert (await refresh(sec, newer["refresh_token"])).status_code == 400  # the family is gone


# ---------------------------------------------------------------- forged JWTs


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64json(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def jwt_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, payload, _ = token.split(".")
    return (
        json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))),
        json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))),
    )


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: str = "") -> str:
    return f"{b64json(header)}.{b64json(claims)}.{signature}"


def hs256(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    signing_input = f"{b64json(header)}.{b64json(claims)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def _public_key(jwk: dict[str, Any]) -> rsa.RSAPublicKey:
    def number(name: str) -> int:
        raw = jwk[name]
        return int.from_bytes(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)), "big")

    return rsa.RSAPublicNumbers(number("e"), number("n")).public_key()


def _rs256(header: dict[str, Any], claims: dict[str, Any], key: rsa.RSAPrivateKey) -> str:
    signing_input = f"{b64json(header)}.{b64json(claims)}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


async def _forgeries(h: Harness) -> dict[str, str]:
    tokens = await tokens_for(h)
    real = tokens["access_token"]
    header, claims = jwt_parts(real)
    jwks = await (await h.client.get(f"{PREFIX}/keys")).get_json()
    jwk = next(key for key in jwks["keys"] if key["kid"] == header["kid"])
    public = _public_key(jwk)
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    attacker_jwk = {
        "kty": "RSA", "e": "AQAB", "n": b64url(attacker.public_key().public_numbers().n.to_bytes(256, "big")),
    }
    now = int(h.clock.now().timestamp())
    admin = {**claims, "sub": "attacker-chosen", "email": "root@example.com", "groups": ["system:masters"]}
    h_part, p_part, s_part = real.split(".")
    return {
        "alg none": unsigned({"alg": "none", "kid": header["kid"]}, admin),
        "alg None": unsigned({"alg": "None", "typ": "JWT"}, admin),
        "alg NONE with the real signature": unsigned({"alg": "NONE", "kid": header["kid"]}, admin, s_part),
        "HS256 with the PEM as secret": hs256({"alg": "HS256", "kid": header["kid"]}, admin, pem),
        "HS256 with the PEM, no newline": hs256({"alg": "HS256", "kid": header["kid"]}, admin, pem.strip()),
        "HS256 with the DER as secret": hs256({"alg": "HS256", "kid": header["kid"]}, admin, der),
        "HS256 with the JWK as secret": hs256(
            {"alg": "HS256", "kid": header["kid"]}, admin, json.dumps(jwk).encode()
        ),
        "HS256 with the modulus as secret": hs256(
            {"alg": "HS256", "kid": header["kid"]}, admin, jwk["n"].encode()
        ),
        "attacker key, our kid": _rs256({"alg": "RS256", "kid": header["kid"]}, admin, attacker),
        "attacker key, unknown kid": _rs256({"alg": "RS256", "kid": "attacker"}, admin, attacker),
        "attacker key, no kid": _rs256({"alg": "RS256"}, admin, attacker),
        "attacker key embedded (jwk header)": _rs256(
            {"alg": "RS256", "kid": header["kid"], "jwk": attacker_jwk}, admin, attacker
        ),
        "attacker key by URL (jku header)": _rs256(
            {"alg": "RS256", "kid": header["kid"], "jku": "https://evil.example/jwks"}, admin, attacker
        ),
        "crit header": _rs256({"alg": "RS256", "kid": header["kid"], "crit": ["exp"]}, admin, attacker),
        "PS256 header over our RS256 signature": f"{b64json({**header, 'alg': 'PS256'})}.{p_part}.{s_part}",
        "ES256 header": f"{b64json({**header, 'alg': 'ES256'})}.{p_part}.{s_part}",
        "claims swapped, signature kept": f"{h_part}.{b64json(admin)}.{s_part}",
        "signature stripped": f"{h_part}.{p_part}.",
        "signature of another token": f"{h_part}.{p_part}.{tokens['id_token'].split('.')[2]}",
        "two parts": f"{h_part}.{p_part}",
        "four parts": f"{real}.{s_part}",
        "JWE shape": f"{h_part}.{p_part}.{s_part}.{s_part}.{s_part}",
        "kid as a list": unsigned({"alg": "RS256", "kid": [header["kid"]]}, claims, s_part),
        "header not an object": f"{b64url(b'[1]')}.{p_part}.{s_part}",
        "expired (signed by us)": h.deps.keys.sign({**claims, "exp": now - 1}),
        "no exp (signed by us)": h.deps.keys.sign({k: v for k, v in claims.items() if k != "exp"}),
        "exp as a string (signed by us)": h.deps.keys.sign({**claims, "exp": str(now + 3600)}),
        "other issuer (signed by us)": h.deps.keys.sign({**claims, "iss": "https://evil.example/dex"}),
        "issuer with a trailing slash (signed by us)": h.deps.keys.sign(
            {**claims, "iss": claims["iss"] + "/"}
        ),
        "no issuer (signed by us)": h.deps.keys.sign({k: v for k, v in claims.items() if k != "iss"}),
        "huge": real + "A" * 20_000,
    }


async def test_forged_tokens_at_userinfo(sec: Harness) -> None:
    forged = await _forgeries(sec)
    accepted = []
    for label, token in forged.items():
        response = await sec.client.get(f"{PREFIX}/userinfo", headers={"Authorization": f"Bearer {token}"})
        challenge = response.headers.get("WWW-Authenticate", "")
        if response.status_code != 401 or 'error="invalid_token"' not in challenge:
            accepted.append(f"{label}: {response.status_code} {challenge!r} {await sec.text(response)}")
        elif (await response.get_json()).get("error") != "invalid_token":
            accepted.append(f"{label}: body {await sec.text(response)}")
    assert not accepted, "\n".join(accepted)


async def test_forged_tokens_at_introspection_and_logout(sec: Harness) -> None:
    forged = await _forgeries(sec)
    problems = []
    for label, token in forged.items():
        response = await sec.client.post(
            f"{PREFIX}/token/introspect", headers=client_auth("app"), form={"token": token}
        )
        if response.status_code != 200 or await response.get_json() != {"active": False}:
            problems.append(f"introspect {label}: {response.status_code} {await sec.text(response)}")
        if label.startswith(("expired", "huge")):
            continue  # an expired hint is a valid hint (OIDC Core 3.1.2.1)
        logout = await sec.client.get(
            f"{PREFIX}/logout",
            query_string={"id_token_hint": token, "post_logout_redirect_uri": "https://app.example/bye"},
        )
        if logout.status_code != 400 or "Location" in logout.headers:
            problems.append(f"logout {label}: {logout.status_code} {logout.headers.get('Location')}")
    assert not problems, "\n".join(problems)


async def test_an_expired_access_token_is_refused(sec: Harness) -> None:
    tokens = await tokens_for(sec)
    sec.clock.advance(timedelta(hours=24, seconds=1))  # expiry.idTokens defaults to 24h
    response = await sec.client.get(
        f"{PREFIX}/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert response.status_code == 401 and 'error="invalid_token"' in response.headers["WWW-Authenticate"]
