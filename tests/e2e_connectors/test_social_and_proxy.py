"""A social connector (github, against the fake GitHub over TLS) and authproxy, through the real server over
HTTP: /auth → upstream → /callback → approval → tokens, and the refusals shown as 403 pages."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urljoin

import httpx
import pytest
from connectors_support import claims_of, issuer_of, portico_config, refresh, start_login, token
from e2e.e2e_support import FormLogin, dex_sub, is_approval_page, query
from fakes.github import API, FakeGitHub, GitHubUser
from fakes.oauth import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from fakes.server import FakeServer
from fakes.tls import make_tls_files

if TYPE_CHECKING:
    from conftest import ServerLauncher, ServerProcess

pytestmark = pytest.mark.e2e

MONA = GitHubUser(
    id=1001, login="octocat", name="Mona Lisa",
    emails=[{"email": "mona@example.com", "verified": True, "primary": True, "visibility": "private"}],
    orgs=["acme", "widgets"], teams=[("acme", "Core Devs", "core-devs"), ("acme", "Ops", "ops")],
)
OUTSIDER = GitHubUser(id=1002, login="outsider", name="Out Sider", orgs=["elsewhere"],
                      emails=[{"email": "out@example.com", "verified": True, "primary": True}])


@dataclass
class Setup:
    github: FakeGitHub
    fake: FakeServer
    ca: ssl.SSLContext
    server: ServerProcess
    redirect_uri: str

    @property
    def issuer(self) -> str:
        return self.server.issuer


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory,
          portico_module_launcher: ServerLauncher) -> Iterator[Setup]:
    workdir = tmp_path_factory.mktemp("social")
    port = portico_module_launcher.free_port()
    callback = f"{issuer_of(port)}/callback"
    tls = make_tls_files(workdir)
    github = FakeGitHub(callback)
    github.add(MONA)
    github.add(OUTSIDER)
    fake = FakeServer(github.app, tls.cert, tls.key).start()
    try:
        redirect_uri = f"http://127.0.0.1:{portico_module_launcher.free_port()}/callback"
        connectors = [
            {"type": "github", "id": "github", "name": "GitHub Enterprise", "config": {
                "clientID": DEFAULT_CLIENT_ID, "clientSecret": DEFAULT_CLIENT_SECRET, "redirectURI": callback,
                "hostName": fake.host, "rootCA": str(tls.ca_pem), "orgs": [{"name": "acme"}],
                "teamNameField": "slug"}},
            {"type": "authproxy", "id": "proxy", "name": "Single sign-on proxy",
             "config": {"staticGroups": ["proxied"]}},
        ]
        server = portico_module_launcher.start(
            lambda _: portico_config(port, connectors, [redirect_uri], workdir))
        yield Setup(github, fake, ssl.create_default_context(cafile=str(tls.ca_pem)), server, redirect_uri)
    finally:
        fake.stop()


def _github_callback(setup: Setup, user: str, *, deny: bool = False) -> tuple[FormLogin, httpx.Response]:
    """/auth → /auth/github → the fake's authorize page (as `user`) → Portico's /callback; its answer."""
    login, start = start_login(setup.issuer, setup.redirect_uri, connector_id="github")
    to_github = start.headers["location"]
    assert start.status_code == 302 and to_github.startswith(setup.fake.url), (start.status_code, to_github)
    extra = "&fake_user=" + user + ("&fake_deny=1" if deny else "")
    back = httpx.get(to_github + extra, verify=setup.ca, timeout=10)
    assert back.status_code == 302
    return login, login.http.get(back.headers["location"])


def _finish(login: FormLogin, response: httpx.Response, setup: Setup) -> dict[str, str]:
    """Approval, then the code grant: the token response."""
    page = login.follow_to_page(response)
    assert page.status_code == 200 and is_approval_page(page.text), page.text[:500]
    done = login.follow_to_page(login.submit_approval(page))
    code = query(done.headers["location"])["code"]
    tokens = token(setup.issuer, grant_type="authorization_code", code=code, redirect_uri=setup.redirect_uri)
    assert tokens.status_code == 200, tokens.text
    return dict(tokens.json())


def test_github_login_to_tokens_and_refresh(setup: Setup) -> None:
    login, answer = _github_callback(setup, "octocat")
    try:
        assert answer.status_code == 303, answer.text[:500]
        tokens = _finish(login, answer, setup)
    finally:
        login.close()
    claims = claims_of(tokens["id_token"])
    assert claims["sub"] == dex_sub("1001", "github")
    assert claims["email"] == "mona@example.com" and claims["name"] == "Mona Lisa"
    assert claims["preferred_username"] == "octocat"
    assert claims["groups"] == ["acme:core-devs", "acme:ops"]
    again = refresh(setup.issuer, tokens["refresh_token"])
    assert again.status_code == 200, again.text
    assert claims_of(again.json()["id_token"])["groups"] == ["acme:core-devs", "acme:ops"]


def test_github_refusals_are_403_pages(setup: Setup) -> None:
    # Not in the required org, and consent denied upstream: both the same generic 403 page.
    for user, deny in (("outsider", False), ("octocat", True)):
        login, answer = _github_callback(setup, user, deny=deny)
        login.close()
        assert answer.status_code == 403, (user, deny, answer.status_code, answer.text[:300])
        assert "Access denied" in answer.text
        assert "elsewhere" not in answer.text and "acme" not in answer.text
    log = setup.server.stderr_text()
    assert "not in required orgs" in log and "access_denied" in log  # the reasons are for the operator


def test_github_down_is_a_login_failed_page(setup: Setup) -> None:
    setup.github.failures[f"{API}/user"] = 500
    try:
        login, answer = _github_callback(setup, "octocat")
        login.close()
    finally:
        setup.github.failures.clear()
    assert answer.status_code == 502 and "Login failed" in answer.text
    assert "500" not in answer.text and setup.fake.host not in answer.text


def test_authproxy_reads_its_headers_on_its_own_path_only(setup: Setup) -> None:
    headers = {"X-Remote-User": "alice", "X-Remote-User-Email": "alice@example.org",
               "X-Remote-Group": "ops, dev"}
    login, start = start_login(setup.issuer, setup.redirect_uri, connector_id="proxy")
    try:
        assert start.status_code == 302
        target = urljoin(str(start.url), start.headers["location"])
        assert target.startswith(f"{setup.issuer}/callback/proxy?state="), target
        # The bare /callback is not the path the proxy authenticates: its headers are anybody's.
        bare = login.http.get(f"{setup.issuer}/callback?{target.split('?', 1)[1]}", headers=headers)
        assert bare.status_code == 400
        # Without the proxy's header: a failed login, not a crash.
        missing = login.http.get(target)
        assert missing.status_code == 502 and "Login failed" in missing.text
        answer = login.http.get(target, headers=headers)
        assert answer.status_code == 303, answer.text[:500]
        tokens = _finish(login, answer, setup)
    finally:
        login.close()
    claims = claims_of(tokens["id_token"])
    assert claims["sub"] == dex_sub("alice", "proxy")
    assert claims["email"] == "alice@example.org"
    assert claims["groups"] == ["ops", "dev", "proxied"]

