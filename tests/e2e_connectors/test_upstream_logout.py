"""Upstream logout: when a session came through an oidc connector whose upstream (node-oidc-provider)
advertises end_session_endpoint, Portico's RP-initiated logout ends the upstream's session too, through
the upstream's own logout page and back at /logout/callback; otherwise it logs out locally, as before."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
from connectors_support import auth_params, issuer_of, portico_config, require_browser, run_browser, token
from e2e.e2e_support import dex_sub
from upstream.op import SECRET, UpstreamOP, browse, client, free_port

from appliance.clock import FrozenClock
from appliance.config.load import parse_config
from appliance.config.schema import StorageConfig
from appliance.connectors.registry import default_registry
from appliance.connectors.upstream_claims import encode_refresh_data
from appliance.keys.manager import KeyManager
from appliance.oidc.deps import Deps, build_snapshot
from appliance.oidc.logout import LOGOUT_CALLBACK_PATH, start_upstream_logout
from appliance.store.models import BrowserSession, Claims
from appliance.store.open import open_storage

if TYPE_CHECKING:
    from conftest import ServerLauncher, ServerProcess

pytestmark = pytest.mark.e2e

STATE = "bye-123"


@dataclass
class Setup:
    op: UpstreamOP  # advertises end_session_endpoint
    plain_op: UpstreamOP  # does not
    server: ServerProcess
    redirect_uri: str
    logout_uri: str  # the RP's registered post_logout_redirect_uri

    @property
    def issuer(self) -> str:
        return self.server.issuer


def _connector(connector_id: str, op: UpstreamOP, callback: str) -> dict[str, Any]:
    return {"type": "oidc", "id": connector_id, "name": connector_id, "config": {
        "issuer": op.issuer, "clientID": "portico", "clientSecret": SECRET, "redirectURI": callback,
        "scopes": ["openid", "profile", "email", "groups"], "insecureEnableGroups": True}}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory,
          portico_module_launcher: ServerLauncher) -> Iterator[Setup]:
    workdir = tmp_path_factory.mktemp("logout")
    port = portico_module_launcher.free_port()
    callback = f"{issuer_of(port)}/callback"
    # Both register Portico's /logout/callback as a post_logout_redirect_uri (client() does).
    op = UpstreamOP(workdir / "op", clients=[client("portico", redirect_uri=callback)])
    plain_op = UpstreamOP(workdir / "plain", clients=[client("portico", redirect_uri=callback)],
                          end_session=False)
    for upstream_op in (op, plain_op):
        upstream_op.workdir.mkdir()
    op.start()
    try:
        plain_op.start()
        rp = f"http://127.0.0.1:{portico_module_launcher.free_port()}"
        redirect_uri, logout_uri = f"{rp}/callback", f"{rp}/logged-out"
        connectors = [_connector("oidc", op, callback), _connector("oidc-plain", plain_op, callback)]
        server = portico_module_launcher.start(lambda _: portico_config(
            port, connectors, [redirect_uri], workdir, skip_approval=True,
            post_logout_redirect_uris=[logout_uri]))
        yield Setup(op, plain_op, server, redirect_uri, logout_uri)
    finally:
        plain_op.stop()
        op.stop()


def _endpoint(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _fail(setup: Setup, what: str, detail: str) -> None:
    pytest.fail(f"{what}:\n{detail}\n--- server stderr ---\n{setup.server.stderr_tail()}\n--- upstream ---\n"
                f"{setup.op.log_tail()}", pytrace=False)


def test_logout_ends_the_upstream_session_too(setup: Setup, tmp_path: Path) -> None:
    """Chromium: log in through the upstream; log in again (the upstream's session spares the password:
    the control); log out at Portico, answer the upstream's "sign out?" question, come back to the RP
    with its state; log in again: now the upstream asks for the password."""
    require_browser()
    run = run_browser(setup.issuer, setup.redirect_uri, "oidc", tmp_path, username="alice",
                      extraAuthParams={"connector_id": "oidc"}, timeout_s=150,
                      upstreamLogout={"postLogoutRedirectUri": setup.logout_uri, "state": STATE})
    if run.result is None:
        _fail(setup, f"the browser run failed (exit {run.returncode})", run.stderr)
    assert run.result is not None
    result, origin = run.result, setup.op.issuer
    assert result["trail"][0] == f"upstream login {origin}", result["trail"]
    assert result["claims"]["sub"] == dex_sub("alice", "oidc")
    # The control: the upstream's session stood, so no password was asked (its consent page only).
    assert result["controlTrail"] == [f"upstream consent {origin}"], result["controlTrail"]

    logout = result["logout"]
    assert logout["upstreamQuestion"] == origin  # the upstream's own "sign out?" page was shown
    assert logout["returnedTo"] == setup.logout_uri and logout["returnedState"] == STATE
    hops = [hop for hop in logout["navigations"] if not hop.endswith("/favicon.ico")]
    assert hops == [
        f"GET {setup.issuer}/logout",
        f"GET {origin}/session/end",  # oidc-provider's end_session_endpoint
        f"POST {origin}/session/end/confirm",  # "Yes, sign me out"
        f"GET {setup.issuer}/logout/callback",
        f"GET {setup.logout_uri}",
    ], hops

    # Logged out at both: Portico sent the browser upstream (no SSO session of its own left), and the
    # upstream asked for the password again (its session ended too).
    assert result["againTrail"][0] == f"upstream login {origin}", result["againTrail"]
    assert result["againClaims"]["sub"] == dex_sub("alice", "oidc")
    assert result["againClaims"]["sid"] != result["controlClaims"]["sid"]
    assert "logging out at the upstream of connector oidc" in setup.server.stderr_text()


def test_without_end_session_endpoint_only_portico_logs_out(setup: Setup, tmp_path: Path) -> None:
    """The contrast, in Chromium: an upstream that offers no logout keeps its session, so the login after
    Portico's logout needs no password there (what the test above shows is not a given)."""
    require_browser()
    run = run_browser(setup.issuer, setup.redirect_uri, "oidc", tmp_path, username="bob",
                      extraAuthParams={"connector_id": "oidc-plain"}, timeout_s=150,
                      upstreamLogout={"postLogoutRedirectUri": setup.logout_uri, "state": STATE})
    if run.result is None:
        _fail(setup, f"the browser run failed (exit {run.returncode})", run.stderr)
    assert run.result is not None
    result, origin = run.result, setup.plain_op.issuer
    assert result["trail"][0] == f"upstream login {origin}", result["trail"]
    logout = result["logout"]
    assert logout["upstreamQuestion"] is None and logout["returnedState"] == STATE
    hops = [hop for hop in logout["navigations"] if not hop.endswith("/favicon.ico")]
    assert hops == [f"GET {setup.issuer}/logout", f"GET {setup.logout_uri}"], hops
    # Portico's session is gone (the browser went upstream), the upstream's is not (no password asked).
    assert result["againTrail"] == [f"upstream consent {origin}"], result["againTrail"]


class _Browser:
    """An HTTP client standing in for a browser at Portico (cookies kept), the upstream walked by browse()."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.http = httpx.Client(timeout=30, follow_redirects=False)

    def close(self) -> None:
        self.http.close()

    def login(self, connector_id: str, user: str) -> str:
        """A login through the upstream's pages; Portico's ID token for the RP."""
        setup = self.setup
        start = self.http.get(f"{setup.issuer}/auth", params=auth_params(setup.redirect_uri,
                                                                         connector_id=connector_id))
        to_upstream = self.http.get(urljoin(str(start.url), start.headers["location"]))
        assert to_upstream.status_code == 302, to_upstream.text[:300]
        callback = f"{setup.issuer}/callback"
        params = asyncio.run(browse(to_upstream.headers["location"], user, callback=callback))
        back = self.http.get(callback, params=params)
        assert back.status_code in (302, 303) and back.headers["location"].startswith(setup.redirect_uri)
        code = parse_qs(urlsplit(back.headers["location"]).query)["code"][0]
        answer = token(setup.issuer, grant_type="authorization_code", code=code,
                       redirect_uri=setup.redirect_uri)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["id_token"])

    def has_session(self) -> bool:
        """Whether Portico still knows this browser: prompt=none answers a code, or login_required."""
        answer = self.http.get(f"{self.setup.issuer}/auth", params=auth_params(self.setup.redirect_uri,
                                                                                prompt="none"))
        query = parse_qs(urlsplit(answer.headers.get("location", "")).query)
        assert "code" in query or query.get("error") == ["login_required"], answer.headers
        return "code" in query


@pytest.fixture
def browser(setup: Setup) -> Iterator[_Browser]:
    b = _Browser(setup)
    yield b
    b.close()


def test_an_upstream_without_end_session_endpoint_logs_out_here(setup: Setup, browser: _Browser) -> None:
    discovery = httpx.get(f"{setup.plain_op.issuer}/.well-known/openid-configuration", timeout=10).json()
    assert "end_session_endpoint" not in discovery
    id_token = browser.login("oidc-plain", "bob")
    assert browser.has_session()
    out = browser.http.get(f"{setup.issuer}/logout", params={
        "id_token_hint": id_token, "post_logout_redirect_uri": setup.logout_uri, "state": STATE})
    # Straight back to the RP with its state: nothing upstream to end.
    assert out.status_code == 303 and out.headers["location"] == f"{setup.logout_uri}?state={STATE}"
    assert not browser.has_session()


def test_the_logout_callback_needs_a_logout_in_progress(setup: Setup, browser: _Browser) -> None:
    stray = httpx.get(f"{setup.issuer}/logout/callback", timeout=10)
    assert stray.status_code == 400 and "No logout in progress." in stray.text
    browser.login("oidc", "alice")
    # A live session, but no logout was started: the callback does nothing (no one can end a session
    # by sending its browser there).
    visited = browser.http.get(f"{setup.issuer}/logout/callback")
    assert visited.status_code == 400 and "No logout in progress." in visited.text
    assert browser.has_session()


def test_the_logout_goes_upstream_and_finishes_at_the_callback(setup: Setup, browser: _Browser) -> None:
    """Over HTTP, the same as in Chromium, step by step: what Portico sends upstream, and that its
    session lives on until the upstream sends the browser back."""
    id_token = browser.login("oidc", "alice")
    out = browser.http.get(f"{setup.issuer}/logout", params={
        "id_token_hint": id_token, "post_logout_redirect_uri": setup.logout_uri, "state": STATE})
    assert out.status_code == 303
    assert _endpoint(out.headers["location"]) == f"{setup.op.issuer}/session/end"
    sent = parse_qs(urlsplit(out.headers["location"]).query)
    assert sent["post_logout_redirect_uri"] == [f"{setup.issuer}{LOGOUT_CALLBACK_PATH}"]
    assert sent["client_id"] == ["portico"] and "state" not in sent
    hint = sent["id_token_hint"][0]  # the upstream's ID token of this login, for the upstream to check
    assert hint != id_token and hint.count(".") == 2
    assert browser.has_session()  # not yet: the user may still cancel at the upstream
    back = browser.http.get(f"{setup.issuer}{LOGOUT_CALLBACK_PATH}")
    assert back.status_code == 303 and back.headers["location"] == f"{setup.logout_uri}?state={STATE}"
    assert not browser.has_session()
    again = browser.http.get(f"{setup.issuer}{LOGOUT_CALLBACK_PATH}")
    assert again.status_code == 400  # done once, and only once


# In-process: start_upstream_logout's decisions, with the real upstreams behind real connectors.

@pytest.fixture
async def deps(setup: Setup) -> AsyncIterator[Deps]:
    callback = "http://127.0.0.1:5556/dex/callback"
    connectors = [_connector("oidc", setup.op, callback), _connector("oidc-plain", setup.plain_op, callback),
                  {"type": "oidc", "id": "oidc-dead", "name": "Dead", "config": {
                      "issuer": f"http://127.0.0.1:{free_port()}", "clientID": "portico",
                      "clientSecret": SECRET, "redirectURI": callback}},
                  {"type": "mockCallback", "id": "mock", "name": "Mock"}]
    text = json.dumps({"issuer": "http://127.0.0.1:5556/dex", "storage": {"type": "memory"},
                       "web": {"http": "127.0.0.1:5556"},
                       "connectors": connectors})  # JSON is YAML
    config, problems = parse_config(text)
    assert config is not None, [str(p) for p in problems]
    storage = await open_storage(StorageConfig(type="memory"))
    clock = FrozenClock()
    keys = KeyManager(storage, clock, algorithm=config.signer.algorithm,
                      rotation_period=config.signer.keys_rotation_period,
                      id_token_lifetime=config.expiry.id_tokens)
    snapshot = await build_snapshot(config, default_registry(), storage=storage)
    yield Deps(storage=storage, keys=keys, clock=clock, snapshot=snapshot)
    await storage.close()


async def _session(deps: Deps, connector_id: str, connector_data: bytes | None) -> BrowserSession:
    now = deps.clock.now()
    session = BrowserSession(id=f"s-{connector_id}", secret_hash="x", connector_id=connector_id,
                             claims=Claims(user_id="alice"), auth_time=now, expiry=now + timedelta(hours=1),
                             last_active=now, connector_data=connector_data)
    await deps.storage.browser_sessions.create(session)
    return session


async def test_when_portico_logs_out_only_here(deps: Deps) -> None:
    snap = deps.snapshot
    with_hint = encode_refresh_data("upstream-refresh-token", "an.upstream.id-token")
    # No upstream ID token kept (Dex's connector data has none): no id_token_hint to send.
    bare = await _session(deps, "oidc", encode_refresh_data("upstream-refresh-token"))
    assert await start_upstream_logout(deps, snap, bare, "https://rp.example/bye") is None
    # The upstream advertises no end_session_endpoint.
    plain = await _session(deps, "oidc-plain", with_hint)
    assert await start_upstream_logout(deps, snap, plain, "") is None
    # The upstream cannot be discovered (down): logged out here rather than not at all.
    dead = await _session(deps, "oidc-dead", with_hint)
    assert await start_upstream_logout(deps, snap, dead, "") is None
    # Not an OpenID Provider at all.
    mock = await _session(deps, "mock", b"foobar")
    assert await start_upstream_logout(deps, snap, mock, "") is None
    for session in (bare, plain, dead, mock):
        assert (await deps.storage.browser_sessions.get(session.id)).logout_redirect is None


async def test_when_portico_logs_out_upstream(deps: Deps, setup: Setup) -> None:
    session = await _session(deps, "oidc", encode_refresh_data("rt", "an.upstream.id-token"))
    url = await start_upstream_logout(deps, deps.snapshot, session, "https://rp.example/bye?state=s")
    assert url is not None
    assert _endpoint(url) == f"{setup.op.issuer}/session/end"
    assert parse_qs(urlsplit(url).query) == {
        "id_token_hint": ["an.upstream.id-token"],
        "post_logout_redirect_uri": ["http://127.0.0.1:5556/dex/logout/callback"],
        "client_id": ["portico"],
    }
    stored = await deps.storage.browser_sessions.get(session.id)
    assert stored == replace(session, logout_redirect="https://rp.example/bye?state=s")
