"""The `oidc` connector against a real, independent OpenID Provider (node-oidc-provider on loopback)."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import OctKey
from upstream.op import CALLBACK, SECRET, TLSFiles, UpstreamOP, browse, free_port, new_key

from appliance.connectors.base import Identity, Scopes, UserNotInRequiredGroupsError
from appliance.connectors.oidc import (
    ACCESS_TOKEN_TYPE,
    ID_TOKEN_TYPE,
    OIDCConnector,
    UpstreamRefusedError,
    open_oidc,
)
from appliance.connectors.upstream_claims import ClaimError, decode_refresh_data
from appliance.connectors.upstream_discovery import ProviderMetadata
from appliance.connectors.upstream_jwks import TokenRejected
from appliance.errors import ConnectorError

PLAIN = Scopes()
OFFLINE = Scopes(offline_access=True)


@pytest.fixture(scope="module")
def op(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpstreamOP]:
    provider = UpstreamOP(tmp_path_factory.mktemp("op"))
    provider.start()
    yield provider
    provider.stop()


@pytest.fixture
def accounts(op: UpstreamOP) -> Iterator[dict[str, dict[str, Any]]]:
    """The provider's accounts, to change in a test; put back afterwards."""
    saved = json.loads(json.dumps(op.accounts))
    yield op.accounts
    op.accounts = saved
    op.write_accounts()


async def login(connector: OIDCConnector, user: str, scopes: Scopes = PLAIN, state: str = "req-1",
                **browse_args: Any) -> Identity:
    url = await connector.login_url(scopes, CALLBACK, state)
    return await connector.handle_callback(scopes, await browse(url, user, **browse_args))


async def direct_tokens(op: UpstreamOP, client_id: str, user: str) -> dict[str, Any]:
    """Tokens for any client, got the plain way (no connector): for token exchange and audience tests."""
    query = urlencode({"response_type": "code", "client_id": client_id, "redirect_uri": CALLBACK,
                       "scope": "openid profile email groups", "state": "direct", "nonce": "direct-nonce"})
    params = await browse(f"{op.issuer}/auth?{query}", user)
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{op.issuer}/token", auth=(client_id, SECRET), data={
            "grant_type": "authorization_code", "code": params["code"], "redirect_uri": CALLBACK})
    response.raise_for_status()
    tokens: dict[str, Any] = response.json()
    return tokens


# --- login ---------------------------------------------------------------------------------------


async def test_login_maps_the_identity_and_binds_pkce_and_nonce_to_state(op: UpstreamOP) -> None:
    connector = open_oidc("up", op.connector_config())
    url = await connector.login_url(PLAIN, CALLBACK, "auth-request-1")
    query = parse_qs(urlsplit(url).query)
    assert url.startswith(op.issuer + "/auth?")
    assert query["scope"] == ["openid profile email"]
    assert query["state"] == ["auth-request-1"]
    assert query["code_challenge_method"] == ["S256"]
    assert "prompt" not in query and "offline_access" not in query["scope"][0]
    # Deterministic per auth request, different between requests: nothing to store across the redirect.
    again = parse_qs(urlsplit(await connector.login_url(PLAIN, CALLBACK, "auth-request-1")).query)
    other = parse_qs(urlsplit(await connector.login_url(PLAIN, CALLBACK, "auth-request-2")).query)
    assert again["nonce"] == query["nonce"] and again["code_challenge"] == query["code_challenge"]
    assert other["nonce"] != query["nonce"] and other["code_challenge"] != query["code_challenge"]

    identity = await connector.handle_callback(PLAIN, await browse(url, "alice"))
    assert identity.user_id == "alice"
    assert identity.username == "Alice Liddell"
    assert identity.preferred_username == "alice"
    assert identity.email == "alice@example.org" and identity.email_verified is True
    assert identity.groups == ()  # groups only with insecureEnableGroups, as Dex
    refresh, id_token = decode_refresh_data(identity.connector_data)
    assert refresh == ""  # no offline_access asked, so the upstream issued none
    assert (await connector.verify_id_token(id_token))["sub"] == "alice"


async def test_login_binding_is_the_same_on_every_replica(op: UpstreamOP) -> None:
    # Two processes (or a reload) open the connector from the same config: one starts the login,
    # the other finishes it.
    first, second = open_oidc("up", op.connector_config()), open_oidc("up", op.connector_config())
    url = await first.login_url(PLAIN, CALLBACK, "req-r")
    assert url == await second.login_url(PLAIN, CALLBACK, "req-r")
    assert (await second.handle_callback(PLAIN, await browse(url, "bob"))).user_id == "bob"
    # Without a client secret there is nothing shared to derive the key from: per process, or given.
    public = {**op.connector_config(), "clientSecret": ""}
    assert await open_oidc("up", public).login_url(PLAIN, CALLBACK, "r") != \
        await open_oidc("up", public).login_url(PLAIN, CALLBACK, "r")
    key = b"k" * 32
    assert await open_oidc("up", public, state_key=key).login_url(PLAIN, CALLBACK, "r") == \
        await open_oidc("up", public, state_key=key).login_url(PLAIN, CALLBACK, "r")


def test_offline_access_is_added_only_where_refresh_is_offered() -> None:
    meta = ProviderMetadata(issuer="i", discovered_issuer="i", authorization_endpoint="a", token_endpoint="t",
                            jwks_uri="j")
    assert meta.supports_refresh()  # nothing advertised: ask
    assert not replace(meta, scopes_supported=("openid", "email")).supports_refresh()  # Google
    assert not replace(meta, grant_types=("authorization_code",)).supports_refresh()
    assert replace(meta, scopes_supported=("openid", "offline_access"),
                   grant_types=("authorization_code", "refresh_token")).supports_refresh()


async def test_a_code_cannot_finish_another_auth_request(op: UpstreamOP) -> None:
    connector = open_oidc("up", op.connector_config())
    params = await browse(await connector.login_url(PLAIN, CALLBACK, "victim-request"), "alice")
    # Injected into another auth request: its PKCE verifier (and nonce) are derived from that one's state.
    with pytest.raises(ConnectorError, match="refused the code exchange: invalid_grant"):
        await connector.handle_callback(PLAIN, {**params, "state": "attacker-request"})


async def test_the_upstream_saying_no_is_a_distinct_error(op: UpstreamOP) -> None:
    connector = open_oidc("up", op.connector_config())
    params = await browse(await connector.login_url(PLAIN, CALLBACK, "r"), "alice", abort=True)
    with pytest.raises(UpstreamRefusedError, match="access_denied: End-User aborted interaction") as info:
        await connector.handle_callback(PLAIN, params)
    assert info.value.error == "access_denied"


async def test_an_answer_from_another_issuer_is_refused(op: UpstreamOP) -> None:
    connector = open_oidc("up", op.connector_config())
    params = await browse(await connector.login_url(PLAIN, CALLBACK, "r"), "alice")
    assert params["iss"] == op.issuer  # RFC 9207, which the provider advertises
    with pytest.raises(ConnectorError, match=re.escape("from issuer 'https://evil.example'")):
        await connector.handle_callback(PLAIN, {**params, "iss": "https://evil.example"})
    without = {k: v for k, v in params.items() if k != "iss"}
    with pytest.raises(ConnectorError, match="no iss parameter"):
        await connector.handle_callback(PLAIN, without)


async def test_basic_auth_unsupported_sends_the_secret_in_the_body(op: UpstreamOP) -> None:
    # The provider takes "portico-post"'s secret only in the body, as Okta does.
    basic = open_oidc("up", op.connector_config(clientID="portico-post"))
    with pytest.raises(ConnectorError, match="invalid_client"):
        await login(basic, "alice")
    post = open_oidc("up", op.connector_config(clientID="portico-post", basicAuthUnsupported=True))
    assert (await login(post, "alice")).user_id == "alice"


async def test_a_secret_with_reserved_characters_works_with_basic_auth(op: UpstreamOP) -> None:
    config = op.connector_config(clientID="odd-secret", clientSecret="s3cr3t:with+odd/chars&=")
    connector = open_oidc("up", config)
    assert (await login(connector, "bob")).user_id == "bob"


# --- claims --------------------------------------------------------------------------------------


async def test_claim_mapping_and_group_modifications(op: UpstreamOP) -> None:
    connector = open_oidc("up", op.connector_config(
        scopes=["profile", "email", "groups"],
        insecureEnableGroups=True,
        userIDKey="email",
        overrideClaimMapping=True,
        claimMapping={"preferred_username": "login"},
        claimModifications={
            "filterGroupClaims": {"groupsFilter": "^(admins|devs)$"},
            "modifyGroupNames": {"prefix": "up:", "suffix": "!"},
            "newGroupFromClaims": [
                {"claims": ["org", "team"], "delimiter": "|", "clearDelimiter": True, "prefix": "org"},
                {"claims": ["missing-claim"], "delimiter": "/", "prefix": "never"},
            ],
        },
    ))
    identity = await login(connector, "alice")
    assert identity.user_id == "alice@example.org"
    assert identity.preferred_username == "aliddell"  # claimMapping wins over preferred_username: override
    assert identity.groups == ("up:admins!", "up:devs!", "org|acme|redblue")


async def test_the_standard_claim_wins_unless_override(op: UpstreamOP) -> None:
    connector = open_oidc("up", op.connector_config(claimMapping={"preferred_username": "login"}))
    assert (await login(connector, "alice")).preferred_username == "alice"
    # bob has no preferred_username, so the mapped key is read (and absent too)
    assert (await login(connector, "bob")).preferred_username == ""


async def test_get_user_info_merges_userinfo_claims(op: UpstreamOP) -> None:
    thin = open_oidc("up", op.connector_config(userNameKey="department"))
    with pytest.raises(ClaimError, match='missing "department" claim'):
        await login(thin, "alice")  # only userinfo has it
    full = open_oidc("up", op.connector_config(userNameKey="department", getUserInfo=True))
    identity = await login(full, "alice")
    assert identity.username == "research"
    assert identity.email == "alice@example.org"


async def test_allowed_groups_refuses_users_in_none_of_them(op: UpstreamOP) -> None:
    config = op.connector_config(scopes=["profile", "email", "groups"], insecureEnableGroups=True,
                                 allowedGroups=["builders", "ops"])
    connector = open_oidc("up", config)
    with pytest.raises(UserNotInRequiredGroupsError, match="not a member of allowed groups"):
        await login(connector, "alice")
    assert (await login(connector, "bob")).groups == ("builders",)


async def test_allowed_groups_is_enforced_even_without_insecure_enable_groups(op: UpstreamOP) -> None:
    connector = open_oidc("up", op.connector_config(scopes=["profile", "email", "groups"],
                                                    allowedGroups=["builders"]))
    with pytest.raises(UserNotInRequiredGroupsError):
        await login(connector, "alice")
    assert (await login(connector, "bob")).groups == ()  # checked, but not passed on


async def test_email_verified_is_required_unless_insecure_skip(op: UpstreamOP) -> None:
    strict = open_oidc("up", op.connector_config())
    unverified = await login(strict, "carol")
    assert unverified.email_verified is False  # present and false is passed on, as Dex
    with pytest.raises(ClaimError, match='missing "email_verified" claim'):
        await login(strict, "dave")
    lax = open_oidc("up", op.connector_config(insecureSkipEmailVerified=True))
    assert (await login(lax, "dave")).email_verified is True


# --- refresh ---------------------------------------------------------------------------------------


async def test_refresh_uses_the_upstream_refresh_token_and_remaps_claims(
        op: UpstreamOP, accounts: dict[str, dict[str, Any]]) -> None:
    connector = open_oidc("up", op.connector_config(scopes=["profile", "email", "groups"],
                                                    insecureEnableGroups=True))
    url = await connector.login_url(OFFLINE, CALLBACK, "offline-request")
    query = parse_qs(urlsplit(url).query)
    assert query["scope"] == ["openid profile email groups offline_access"]
    assert query["prompt"] == ["consent"] and query["access_type"] == ["offline"]
    identity = await connector.handle_callback(OFFLINE, await browse(url, "alice"))
    first_refresh, _ = decode_refresh_data(identity.connector_data)
    assert first_refresh

    accounts["alice"]["claims"].update(name="Alice Kingsleigh", groups=["queens"])
    op.write_accounts()
    refreshed = await connector.refresh(OFFLINE, identity)
    assert refreshed.user_id == "alice"
    assert refreshed.username == "Alice Kingsleigh" and refreshed.groups == ("queens",)
    second_refresh, id_token = decode_refresh_data(refreshed.connector_data)
    assert second_refresh and second_refresh != first_refresh  # the provider rotates refresh tokens
    assert OIDCConnector.upstream_id_token(refreshed.connector_data) == id_token != ""

    with pytest.raises(ConnectorError, match="refused the refresh: invalid_grant"):
        await connector.refresh(OFFLINE, identity)  # the rotated-away token is dead upstream


async def test_refresh_without_an_upstream_refresh_token_is_a_clear_error(op: UpstreamOP) -> None:
    connector = open_oidc("up", op.connector_config())
    identity = await login(connector, "alice")
    with pytest.raises(ConnectorError, match="no upstream refresh token"):
        await connector.refresh(PLAIN, identity)


async def test_refresh_reads_connector_data_written_by_dex(op: UpstreamOP) -> None:
    connector = open_oidc("up", op.connector_config())
    identity = await login(connector, "alice", OFFLINE)
    refresh, _ = decode_refresh_data(identity.connector_data)
    dex_data = json.dumps({"RefreshToken": base64.b64encode(refresh.encode()).decode()}).encode()
    refreshed = await connector.refresh(OFFLINE, Identity(user_id="alice", connector_data=dex_data))
    assert refreshed.username == "Alice Liddell"


# --- token exchange, upstream logout ----------------------------------------------------------


async def test_token_identity_with_upstream_tokens(op: UpstreamOP) -> None:
    plain = open_oidc("up", op.connector_config())
    tokens = await direct_tokens(op, "other-app", "alice")
    # An ID token minted for another client is accepted, as Dex (no audience check in token exchange)...
    by_id_token = await plain.token_identity(ID_TOKEN_TYPE, tokens["id_token"])
    assert by_id_token.user_id == "alice" and by_id_token.username == "Alice Liddell"
    assert by_id_token.connector_data is None
    # ...but it is not an ID token for this connector's own client.
    with pytest.raises(TokenRejected, match="'aud'"):
        await plain.verify_id_token(tokens["id_token"])
    with pytest.raises(ConnectorError, match="getUserInfo is required"):
        await plain.token_identity(ACCESS_TOKEN_TYPE, tokens["access_token"])

    connector = open_oidc("up", op.connector_config(getUserInfo=True, userNameKey="department"))
    by_access_token = await connector.token_identity(ACCESS_TOKEN_TYPE, tokens["access_token"])
    assert by_access_token.user_id == "alice" and by_access_token.username == "research"

    with pytest.raises(ConnectorError, match="HTTP 401"):
        await connector.token_identity(ACCESS_TOKEN_TYPE, "not-a-token")
    with pytest.raises(ConnectorError, match="unknown token type"):
        await connector.token_identity("urn:ietf:params:oauth:token-type:saml2", tokens["id_token"])


async def test_end_session_url(op: UpstreamOP) -> None:
    connector = open_oidc("up", op.connector_config())
    url = await connector.end_session_url("the-id-token", "http://127.0.0.1:5556/dex/logout/callback")
    assert url is not None and url.startswith(op.issuer + "/session/end?")
    assert parse_qs(urlsplit(url).query) == {
        "id_token_hint": ["the-id-token"],
        "post_logout_redirect_uri": ["http://127.0.0.1:5556/dex/logout/callback"],
        "client_id": ["portico"],
    }
    # The provider accepts it: it answers with its logout confirmation page, not an error.
    async with httpx.AsyncClient() as http:
        response = await http.get(await connector.end_session_url() or "")
    assert response.status_code == 200 and "logout" in response.text.lower()


# --- tampered tokens, key rollover, outages ----------------------------------------------------


def _claims(op: UpstreamOP, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": op.issuer, "sub": "alice", "aud": "portico", "iat": now, "exp": now + 300,
              "nonce": "n-1"}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


async def test_tampered_id_tokens_are_refused(op: UpstreamOP) -> None:
    connector = open_oidc("up", op.connector_config())
    key, kid = op.key, op.key.kid
    header = {"alg": "RS256", "kid": kid}
    # The control: the provider's own key and the right claims pass, so each refusal below is specific.
    good = jwt.encode(header, _claims(op), key)
    assert (await connector.verify_id_token(good, nonce="n-1"))["sub"] == "alice"
    refused = {
        "signature": jwt.encode(header, _claims(op), new_key(kid)),  # an attacker's key under the same kid
        "'aud'": jwt.encode(header, _claims(op, aud="someone-else"), key),
        "'nonce'": jwt.encode(header, _claims(op, nonce="n-2"), key),
        "'iss'": jwt.encode(header, _claims(op, iss="https://evil.example"), key),
        "expired": jwt.encode(header, _claims(op, exp=int(time.time()) - 3600), key),
        "'HS256'": jwt.encode({"alg": "HS256"}, _claims(op), OctKey.import_key(SECRET.encode() * 2)),
    }
    for reason, token in refused.items():
        with pytest.raises(TokenRejected, match=reason):
            await connector.verify_id_token(token, nonce="n-1")
    unsigned = ".".join(base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()
                        for part in ({"alg": "none"}, _claims(op))) + "."
    with pytest.raises(TokenRejected, match="'none'"):
        await connector.verify_id_token(unsigned, nonce="n-1")
    with pytest.raises(TokenRejected, match="not a signed JWT"):
        await connector.verify_id_token("garbage", nonce="n-1")


async def test_key_rollover_refetches_the_jwks_once(op: UpstreamOP) -> None:
    connector = open_oidc("up", op.connector_config())
    first = await login(connector, "alice", OFFLINE)
    old_id_token = OIDCConnector.upstream_id_token(first.connector_data)
    await connector.token_identity(ID_TOKEN_TYPE, old_id_token)
    assert connector.jwks_fetches == 1

    op.restart(new_key("key-b"))  # the provider now signs with key-b only and has forgotten its grants
    second = await login(connector, "bob")
    assert second.user_id == "bob"
    assert connector.jwks_fetches == 2  # the unknown kid made it fetch once...
    assert (await login(connector, "alice")).user_id == "alice"
    assert connector.jwks_fetches == 2  # ...and the new key is cached from then on
    with pytest.raises(TokenRejected, match="no key of the upstream's JWKS verifies the ID token"):
        await connector.token_identity(ID_TOKEN_TYPE, old_id_token)  # key-a is gone upstream
    with pytest.raises(ConnectorError, match="invalid_grant"):
        await connector.refresh(OFFLINE, first)  # the restarted provider does not know the old grant


async def test_a_down_upstream_is_a_clear_connector_error(op: UpstreamOP) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    connector = open_oidc("down", {**op.connector_config(), "issuer": dead})  # opening does no network
    started = time.monotonic()
    with pytest.raises(ConnectorError, match=f"cannot reach the upstream's discovery document at {dead}"):
        await connector.login_url(PLAIN, CALLBACK, "r")
    with pytest.raises(ConnectorError, match="cannot reach"):
        await connector.open()
    assert time.monotonic() - started < 5

    # Discovery works, but the token endpoint is down when the browser comes back.
    half = open_oidc("half", op.connector_config(providerDiscoveryOverrides={"tokenURL": dead + "/token"}))
    params = await browse(await half.login_url(PLAIN, CALLBACK, "r"), "alice")
    with pytest.raises(ConnectorError, match=f"cannot reach the upstream's token endpoint at {dead}/token"):
        await half.handle_callback(PLAIN, params)


async def test_issuer_must_match_unless_aliased(op: UpstreamOP) -> None:
    slash = open_oidc("up", op.connector_config(issuer=op.issuer + "/"))
    with pytest.raises(ConnectorError, match="set issuerAlias"):
        await slash.open()
    aliased = open_oidc("up", op.connector_config(issuer=op.issuer + "/", issuerAlias=op.issuer))
    assert (await login(aliased, "alice")).user_id == "alice"
    wrong_alias = open_oidc("up", op.connector_config(issuerAlias="https://login.example/tenant"))
    with pytest.raises(TokenRejected, match="'iss'"):
        await login(wrong_alias, "alice")


async def test_tls_with_root_cas_or_insecure_skip_verify(tmp_path: Path) -> None:
    tls = TLSFiles.make(tmp_path)
    secure = UpstreamOP(tmp_path, tls=tls)
    secure.start()
    try:
        untrusted = open_oidc("tls", secure.connector_config())
        with pytest.raises(ConnectorError, match="CERTIFICATE_VERIFY_FAILED"):
            await untrusted.open()
        pem = tls.ca.read_text()
        for entry in (str(tls.ca), pem, base64.b64encode(pem.encode()).decode()):
            trusted = open_oidc("tls", secure.connector_config(rootCAs=[entry]))
            await trusted.open()
        identity = await login(trusted, "alice", verify=tls.context())  # token and JWKS over TLS too
        assert identity.user_id == "alice"
        skipping = open_oidc("tls", secure.connector_config(insecureSkipVerify=True))
        await skipping.open()
    finally:
        secure.stop()


# --- config ------------------------------------------------------------------------------------------


def test_config_is_checked_with_every_problem_named() -> None:
    with pytest.raises(ValueError) as info:
        open_oidc("bad", {
            "clientSecret": "hunter2", "scopse": ["email"], "pkceChallenge": "S512",
            "claimModifications": {"filterGroupClaims": {"groupsFilter": "(unclosed"}},
            "rootCAs": ["/no/such/file.pem"], "hostedDomains": ["example.org"],
        })
    message = str(info.value)
    for expected in ("issuer is required", "clientID is required", "redirectURI is required",
                     'unknown key scopse (did you mean "scopes"?)', 'pkceChallenge must be "S256" or "plain"',
                     "groupsFilter is not a valid regular expression", "rootCAs[0] is not in PEM format",
                     "hostedDomains"):
        assert expected in message
    assert "hunter2" not in message  # the secret's value is never echoed


def test_keys_match_case_insensitively_as_go_json() -> None:
    connector = open_oidc("ci", {"Issuer": "https://idp.example", "CLIENTID": "c", "clientsecret": "s",
                                 "redirectUri": CALLBACK, "InsecureEnableGroups": True})
    assert connector.config.client_id == "c" and connector.config.rules.enable_groups
    assert "clientSecret" not in repr(connector.config) and "'s'" not in repr(connector.config)
    with pytest.raises(ValueError, match="given twice"):
        open_oidc("ci", {"issuer": "https://a", "Issuer": "https://b", "clientID": "c",
                         "redirectURI": CALLBACK})


async def test_login_url_options_and_the_callback_check(op: UpstreamOP) -> None:
    connector = open_oidc("up", op.connector_config(acrValues=["urn:mfa", "urn:pwd"], promptType="login",
                                                    pkceChallenge="plain", scopes=["email"]))
    query = parse_qs(urlsplit(await connector.login_url(OFFLINE, CALLBACK, "r")).query)
    assert query["acr_values"] == ["urn:mfa urn:pwd"]
    assert query["prompt"] == ["login"]
    assert query["scope"] == ["openid email offline_access"]
    assert query["code_challenge_method"] == ["plain"] and len(query["code_challenge"][0]) == 43
    with pytest.raises(ConnectorError, match="did not match the URL in the config"):
        await connector.login_url(PLAIN, "https://elsewhere.example/callback", "r")
