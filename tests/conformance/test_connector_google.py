"""The `google` connector against a fake Google: ID tokens, hosted domains, Workspace groups, refresh."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fakes.google import FakeGoogle, GoogleUser, ServiceAccountKey, new_service_account
from fakes.oauth import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, browse
from fakes.server import FakeServer
from joserfc.jwk import RSAKey

from appliance.clock import FrozenClock
from appliance.connectors.base import Identity, Scopes, UserNotInRequiredGroupsError
from appliance.connectors.google import GoogleConnector, GoogleEndpoints, open_google
from appliance.connectors.social_http import UpstreamDenied
from appliance.errors import ConnectorError

REDIRECT = "https://portico.example/dex/callback"
GROUPS = Scopes(groups=True)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[FakeGoogle, FakeServer]]:
    fake = FakeGoogle(REDIRECT)
    server = FakeServer(fake.app).start()
    fake.issuer = server.url
    yield fake, server
    server.stop()


@pytest.fixture(scope="module")
def account() -> ServiceAccountKey:
    return new_service_account()


@pytest.fixture
def google(served: tuple[FakeGoogle, FakeServer], account: ServiceAccountKey) -> FakeGoogle:
    fake, _ = served
    fake.reset()
    fake.users["ann"] = GoogleUser(
        sub="110169484474386276334", email="ann@corp.example", name="Ann Admin", hd="corp.example"
    )
    fake.users["gmail"] = GoogleUser(
        sub="2", email="someone@gmail.com", name="Some One", email_verified=False
    )
    fake.accounts[account.key_id] = account
    fake.admins = {"root@corp.example"}
    fake.memberships = {
        "ann@corp.example": ["eng@corp.example", "all@corp.example", "ops@corp.example"],
        "eng@corp.example": ["tech@corp.example", "all@corp.example"],
        "tech@corp.example": ["everyone@corp.example"],
    }
    return fake


def endpoints(server: FakeServer) -> GoogleEndpoints:
    return GoogleEndpoints(
        issuer=server.url,
        auth_url=f"{server.url}/o/oauth2/v2/auth",
        token_url=f"{server.url}/token",
        jwks_url=f"{server.url}/oauth2/v3/certs",
        directory_url=server.url,
    )


def make(
    served: tuple[FakeGoogle, FakeServer], clock: FrozenClock | None = None, **extra: Any
) -> GoogleConnector:
    _, server = served
    config = {
        "clientID": DEFAULT_CLIENT_ID,
        "clientSecret": DEFAULT_CLIENT_SECRET,
        "redirectURI": REDIRECT,
        **extra,
    }
    return open_google("google", config, endpoints=endpoints(server), clock=clock)


def with_directory(served: Any, account: ServiceAccountKey, tmp_path: Path, **extra: Any) -> GoogleConnector:
    key_file = account.write(tmp_path / "sa.json", f"{served[1].url}/token")
    return make(
        served,
        serviceAccountFilePath=str(key_file),
        domainToAdminEmail={"corp.example": "root@corp.example"},
        **extra,
    )


async def login(conn: GoogleConnector, scopes: Scopes, user: str = "ann") -> Identity:
    params = await browse(await conn.login_url(scopes, REDIRECT, "st"), user)
    return await conn.handle_callback(scopes, params)


async def test_login_url(served: Any, google: FakeGoogle) -> None:
    conn = make(served, hostedDomains=["corp.example"])
    query = parse_qs(urlsplit(await conn.login_url(Scopes(), REDIRECT, "st")).query)
    assert query["scope"] == ["openid profile email"] and query["hd"] == ["corp.example"]
    assert "access_type" not in query and "prompt" not in query
    offline = parse_qs(urlsplit(await conn.login_url(Scopes(offline_access=True), REDIRECT, "s")).query)
    assert offline["access_type"] == ["offline"] and offline["prompt"] == ["consent"]
    several = make(served, hostedDomains=["a.example", "b.example"], scopes=["email"], promptType="")
    query = parse_qs(
        urlsplit(await several.login_url(Scopes(offline_access=True), REDIRECT, "s")).query,
        keep_blank_values=True,
    )
    assert query["hd"] == ["*"] and query["scope"] == ["openid email"] and query["prompt"] == [""]


async def test_login_verifies_the_id_token(served: Any, google: FakeGoogle) -> None:
    identity = await login(make(served), Scopes())
    assert identity == Identity(
        user_id="110169484474386276334", username="Ann Admin", email="ann@corp.example", email_verified=True
    )
    identity = await login(make(served), Scopes(), "gmail")
    assert identity.email_verified is False  # passed on, as Dex does; the client decides


async def test_id_token_for_another_audience_or_issuer_is_refused(served: Any, google: FakeGoogle) -> None:
    google.audience = "someone-else"
    with pytest.raises(ConnectorError, match=r"failed to verify ID Token.*aud"):
        await login(make(served), Scopes())
    google.audience = ""
    google.issuer, real = "https://evil.example", google.issuer
    try:
        with pytest.raises(ConnectorError, match=r"failed to verify ID Token.*iss"):
            await login(make(served), Scopes())
    finally:
        google.issuer = real


async def test_expired_id_token_and_unknown_key(served: Any, google: FakeGoogle) -> None:
    late = FrozenClock()
    late.set(late.now().replace(year=2100))
    with pytest.raises(ConnectorError, match=r"failed to verify ID Token.*exp"):
        await login(make(served, clock=late), Scopes())
    google.jwks_fetches = 0
    conn = make(served)
    await login(conn, Scopes())
    assert google.jwks_fetches == 1
    await login(conn, Scopes())
    assert google.jwks_fetches == 1  # the key set is cached
    # Google rotates: a token signed by a key not in the cached set makes the connector fetch the set again.
    google.signing_key = RSAKey.generate_key(2048, parameters={"kid": "k2"})
    assert (await login(conn, Scopes())).email == "ann@corp.example"
    assert google.jwks_fetches == 2
    # A key Google does not publish at all: refused after one more look at the set.
    google.published = [google.signing_key]
    google.signing_key = RSAKey.generate_key(2048, parameters={"kid": "k3"})
    with pytest.raises(ConnectorError, match="failed to verify ID Token"):
        await login(conn, Scopes())
    assert google.jwks_fetches == 3


async def test_hosted_domains(served: Any, google: FakeGoogle) -> None:
    assert (await login(make(served, hostedDomains=["x.example", "corp.example"]), Scopes())).user_id
    with pytest.raises(UpstreamDenied, match="unexpected hd claim"):
        await login(make(served, hostedDomains=["corp.example"]), Scopes(), "gmail")


async def test_groups_through_the_directory_api(
    served: Any, google: FakeGoogle, account: ServiceAccountKey, tmp_path: Path
) -> None:
    conn = with_directory(served, account, tmp_path)
    assert (await login(conn, Scopes())).groups == ()  # only with the groups scope
    identity = await login(conn, GROUPS)
    assert identity.groups == ("eng@corp.example", "all@corp.example", "ops@corp.example")
    claims = google.assertions[-1]
    assert claims["sub"] == "root@corp.example" and claims["iss"] == account.client_email
    assert len(google.assertions) == 1  # the directory token is reused while it lives
    transitive = with_directory(served, account, tmp_path, fetchTransitiveGroupMembership=True)
    identity = await login(transitive, GROUPS)
    assert identity.groups == (
        "eng@corp.example",
        "tech@corp.example",
        "everyone@corp.example",
        "all@corp.example",
        "ops@corp.example",
    )


async def test_groups_allow_list(
    served: Any, google: FakeGoogle, account: ServiceAccountKey, tmp_path: Path
) -> None:
    conn = with_directory(served, account, tmp_path, groups=["ops@corp.example", "x@corp.example"])
    assert (await login(conn, GROUPS)).groups == ("ops@corp.example",)
    refused = with_directory(served, account, tmp_path, groups=["x@corp.example"])
    with pytest.raises(UserNotInRequiredGroupsError):
        await login(refused, GROUPS)


async def test_directory_failures(
    served: Any, google: FakeGoogle, account: ServiceAccountKey, tmp_path: Path
) -> None:
    google.failures["/admin/directory/v1/groups"] = 500
    with pytest.raises(ConnectorError, match="HTTP 500"):
        await login(with_directory(served, account, tmp_path), GROUPS)
    google.failures = {}
    google.admins = set()  # domain-wide delegation not granted
    with pytest.raises(ConnectorError, match=r"unauthorized_client|HTTP 401"):
        await login(with_directory(served, account, tmp_path), GROUPS)
    google.admins = {"root@corp.example"}
    other_domain = make(
        served,
        serviceAccountFilePath=str(account.write(tmp_path / "k.json", f"{served[1].url}/token")),
        domainToAdminEmail={"other.example": "root@other.example"},
    )
    with pytest.raises(ConnectorError, match=r"no domainToAdminEmail entry for domain 'corp.example'"):
        await login(other_domain, GROUPS)


async def test_refresh_keeps_the_refresh_token_and_name(served: Any, google: FakeGoogle) -> None:
    google.oauth.issue_refresh_tokens = True
    google.oauth.rotate_refresh_tokens = False  # Google keeps refresh tokens, and sends no new one
    google.drop_name_on_refresh = True
    conn = make(served)
    identity = await login(conn, Scopes(offline_access=True))
    assert identity.connector_data  # Dex keeps the raw refresh token, not JSON
    assert identity.connector_data.decode() in google.oauth.refresh
    google.users["ann"].email = "ann.new@corp.example"
    refreshed = await conn.refresh(Scopes(offline_access=True), identity)
    assert refreshed.email == "ann.new@corp.example" and refreshed.username == "Ann Admin"
    assert refreshed.connector_data == identity.connector_data
    with pytest.raises(ConnectorError, match="invalid_grant"):
        await conn.refresh(Scopes(), Identity(user_id="x", connector_data=b"revoked"))
    with pytest.raises(ConnectorError, match="no upstream refresh token"):
        await conn.refresh(Scopes(), Identity(user_id="x"))


def test_config(tmp_path: Path, account: ServiceAccountKey, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    base = {"clientID": "i", "clientSecret": "s", "redirectURI": REDIRECT}
    with pytest.raises(ValueError, match="requires domainToAdminEmail"):
        open_google("g", {**base, "serviceAccountFilePath": "/nonexistent.json"})
    with pytest.raises(ValueError, match="needs serviceAccountFilePath"):
        open_google("g", {**base, "domainToAdminEmail": {"*": "a@b.example"}})
    with pytest.raises(ValueError, match="cannot read"):
        open_google(
            "g", {**base, "adminEmail": "a@b.example", "serviceAccountFilePath": str(tmp_path / "no")}
        )
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "authorized_user"}')
    with pytest.raises(ValueError, match="not a service account key file"):
        open_google("g", {**base, "domainToAdminEmail": {"*": "a@b"}, "serviceAccountFilePath": str(bad)})
    key_file = account.write(tmp_path / "sa.json", "https://oauth2.googleapis.com/token")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    conn = open_google("g", {**base, "AdminEmail": "a@b.example"})
    assert conn.directory is not None and conn.cfg.domain_to_admin == {"*": "a@b.example"}
    assert "PRIVATE" not in repr(conn.cfg)
    assert conn.cfg.prompt_type == "consent"
