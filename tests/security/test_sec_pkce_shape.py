"""PKCE parameters of the wrong shape (RFC 7636 4.1-4.2): a code_challenge at /auth and /device/code, a
code_verifier at /token. Malformed is invalid_request; well-formed but wrong stays invalid_grant."""

from __future__ import annotations

from typing import Any

import pytest
from security_support import APP_REDIRECT, PREFIX, mock_code, query_of, redeem, s256
from web_harness import Harness, location, path_and_query

VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"  # RFC 7636 appendix B
UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"


async def _auth(h: Harness, **extra: str) -> Any:
    query = {"client_id": "app", "redirect_uri": APP_REDIRECT, "response_type": "code", "scope": "openid",
             "state": "st-1", "connector_id": "mock", **extra}
    return await h.client.get(f"{PREFIX}/auth", query_string=query)


@pytest.mark.parametrize(("challenge", "method"), [
    ("E" * 42, "S256"),  # one short of a SHA-256 digest in base64url
    ("E" * 44, "S256"),
    (s256(VERIFIER) + "=", "S256"),  # padded
    (s256(VERIFIER)[:-1] + ".", "S256"),  # "." is unreserved but not base64url
    ("p" * 42, "plain"),
    ("p" * 129, "plain"),
    ("p" * 42 + "+", "plain"),
    ("p" * 42 + " ", "plain"),
    ("p" * 42 + "%", ""),  # no method: plain
    ("é" * 43, "plain"),
])
async def test_malformed_challenge_is_sent_back_as_invalid_request(sec: Harness, challenge: str,
                                                                   method: str) -> None:
    extra = {"code_challenge": challenge, **({"code_challenge_method": method} if method else {})}
    response = await _auth(sec, **extra)
    assert response.status_code == 303, await sec.text(response)
    answer = query_of(location(response))
    assert location(response).startswith(APP_REDIRECT)
    assert answer["error"] == "invalid_request" and answer["state"] == "st-1", answer
    assert "code_challenge" in answer["error_description"]
    assert await sec.storage.auth_requests.list() == []  # nothing was stored for it


@pytest.mark.parametrize(("challenge", "method"), [
    (s256(VERIFIER), "S256"),
    ("p" * 43, "plain"),
    ((UNRESERVED * 2)[:128], "plain"),  # the longest, every unreserved character
    (UNRESERVED[:43], ""),
])
async def test_well_formed_challenges_go_on_to_the_login(sec: Harness, challenge: str, method: str) -> None:
    extra = {"code_challenge": challenge, **({"code_challenge_method": method} if method else {})}
    response = await _auth(sec, **extra)
    assert response.status_code == 302 and "error=" not in location(response), location(response)
    login = await sec.client.get(path_and_query(location(response)))  # /auth/mock stores the request
    assert login.status_code in (302, 303), await sec.text(login)
    stored = await sec.storage.auth_requests.list()
    assert [(r.pkce.code_challenge, r.pkce.code_challenge_method) for r in stored] == [
        (challenge, method or "plain")]


async def test_unknown_methods_are_invalid_request(sec: Harness) -> None:
    for method in ("S512", "s256", "none"):
        response = await _auth(sec, code_challenge=s256(VERIFIER), code_challenge_method=method)
        answer = query_of(location(response))
        assert answer["error"] == "invalid_request" and "method" in answer["error_description"], answer


async def test_malformed_verifier_is_invalid_request_and_spends_nothing(sec: Harness) -> None:
    code = await mock_code(sec, code_challenge=s256(VERIFIER), code_challenge_method="S256")
    for verifier in (VERIFIER[:42], "v" * 129, VERIFIER[:-1] + "+", VERIFIER[:-1] + "/", VERIFIER[:-1] + "é"):
        response = await redeem(sec, code, code_verifier=verifier)
        body = await response.get_json()
        assert (response.status_code, body["error"]) == (400, "invalid_request"), verifier
        assert "code_verifier" in body["error_description"]
    # Well-formed but not the one: invalid_grant, as before.
    wrong = await redeem(sec, code, code_verifier="w" * 43)
    assert (wrong.status_code, (await wrong.get_json())["error"]) == (400, "invalid_grant")
    assert (await redeem(sec, code, code_verifier=VERIFIER)).status_code == 200


async def test_plain_challenge_round_trip_with_every_unreserved_character(sec: Harness) -> None:
    verifier = (UNRESERVED * 2)[:128]
    code = await mock_code(sec, code_challenge=verifier, code_challenge_method="plain")
    assert (await redeem(sec, code, code_verifier=verifier)).status_code == 200


async def test_device_code_checks_the_challenge_too(sec: Harness) -> None:
    form = {"client_id": "native", "scope": "openid", "code_challenge": "E" * 42,
            "code_challenge_method": "S256"}
    response = await sec.client.post(f"{PREFIX}/device/code", form=form)
    body = await response.get_json()
    assert (response.status_code, body["error"]) == (400, "invalid_request"), body
    assert await sec.storage.device_requests.list() == []
    good = await sec.client.post(f"{PREFIX}/device/code", form={**form, "code_challenge": s256(VERIFIER)})
    assert good.status_code == 200
