"""PKCE (RFC 7636) and client authentication parsing (RFC 6749 2.3.1)."""

from __future__ import annotations

import base64

import pytest

from appliance.errors import OAuthError
from appliance.oidc.clientauth import parse_client_credentials, secret_matches
from appliance.oidc.pkce import code_challenge, verify_pkce
from appliance.store.models import PKCE, Client


def test_s256_matches_the_rfc_7636_example() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert code_challenge(verifier, "S256") == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    assert code_challenge(verifier, "plain") == verifier
    with pytest.raises(ValueError):
        code_challenge(verifier, "S512")


@pytest.mark.parametrize(("verifier", "pkce", "error"), [
    ("", PKCE(), None),
    ("v" * 43, PKCE(code_challenge("v" * 43, "S256"), "S256"), None),
    ("v" * 43, PKCE("v" * 43, "plain"), None),
    ("v" * 43, PKCE("v" * 43, ""), None),  # no method stored: plain
    ("w" * 43, PKCE(code_challenge("v" * 43, "S256"), "S256"), "invalid_grant"),
    ("v" * 43, PKCE(code_challenge("v" * 43, "S256"), "plain"), "invalid_grant"),
    ("", PKCE("c" * 43, "S256"), "invalid_grant"),  # challenge without verifier
    ("v" * 43, PKCE(), "invalid_request"),  # verifier without challenge
])
def test_verify_pkce(verifier: str, pkce: PKCE, error: str | None) -> None:
    if error is None:
        verify_pkce(verifier, pkce)
    else:
        with pytest.raises(OAuthError) as caught:
            verify_pkce(verifier, pkce)
        assert caught.value.error == error


def basic(raw: str) -> str:
    return "Basic " + base64.b64encode(raw.encode()).decode()


def test_basic_credentials_are_form_url_decoded() -> None:
    creds = parse_client_credentials({}, basic("my%20client:p%40ss+word%2B%3A"))
    assert creds.client_id == "my client"
    assert creds.client_secret == "p@ss word+:"
    assert creds.method == "client_secret_basic"


def test_basic_scheme_is_case_insensitive_and_secret_may_contain_colons() -> None:
    creds = parse_client_credentials({}, basic("id:a:b:c").replace("Basic", "bAsIc"))
    assert (creds.client_id, creds.client_secret) == ("id", "a:b:c")


def test_basic_takes_precedence_over_the_form() -> None:
    creds = parse_client_credentials({"client_id": "form", "client_secret": "f"}, basic("hdr:h"))
    assert (creds.client_id, creds.client_secret) == ("hdr", "h")


@pytest.mark.parametrize("raw", ["id%zz:secret", "id:sec%2"])
def test_bad_percent_escapes_are_invalid_request(raw: str) -> None:
    with pytest.raises(OAuthError) as caught:
        parse_client_credentials({}, basic(raw))
    assert caught.value.error == "invalid_request" and caught.value.status == 400


@pytest.mark.parametrize("header", ["Bearer abc", "Basic !!!notbase64", basic("no-colon"), ""])
def test_anything_but_basic_falls_back_to_the_form(header: str) -> None:
    creds = parse_client_credentials({"client_id": "form", "client_secret": "f"}, header)
    assert (creds.client_id, creds.client_secret, creds.method) == ("form", "f", "client_secret_post")


def test_post_credentials_are_taken_verbatim() -> None:
    creds = parse_client_credentials({"client_id": "a+b", "client_secret": "c%20d"}, "")
    assert (creds.client_id, creds.client_secret) == ("a+b", "c%20d")


def test_secrets_never_show_in_repr() -> None:
    creds = parse_client_credentials({}, basic("id:topsecret"))
    assert "topsecret" not in repr(creds)


def test_secret_matching() -> None:
    confidential = Client(id="c", secret="s3cret")
    assert secret_matches(confidential, "s3cret")
    assert not secret_matches(confidential, "s3cre")
    assert not secret_matches(confidential, "")
    public = Client(id="p", public=True)
    assert secret_matches(public, "")
    assert not secret_matches(public, "anything")
