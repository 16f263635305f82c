"""An upstream OpenID Provider (node-oidc-provider) behind the real server: Chromium through Portico and
the provider's login and consent pages, refresh through the upstream, token exchange of an upstream ID
token, the upstream rotating its key (rollover, then retirement), and the upstream going down (the page
Chromium shows, and refresh as an outage)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx
import pytest
from connectors_support import (
    claims_of,
    issuer_of,
    portico_config,
    refresh,
    require_browser,
    run_browser,
    token,
)
from e2e.e2e_support import dex_sub
from upstream.op import SECRET, UpstreamOP, browse, client, free_port, new_key

if TYPE_CHECKING:
    from conftest import ServerLauncher, ServerProcess

pytestmark = pytest.mark.e2e

OTHER_CALLBACK = "http://127.0.0.1:9/other-app/callback"  # never contacted: browse() stops before it
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
ALICE_GROUPS = ["up-admins", "up-devs", "up-wonderland-team"]


@dataclass
class Setup:
    op: UpstreamOP
    server: ServerProcess
    redirect_uri: str
    callback: str
    dead: str  # an address where nothing listens

    @property
    def issuer(self) -> str:
        return self.server.issuer


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory,
          portico_module_launcher: ServerLauncher) -> Iterator[Setup]:
    workdir = tmp_path_factory.mktemp("oidc")
    port = portico_module_launcher.free_port()
    callback = f"{issuer_of(port)}/callback"
    op = UpstreamOP(workdir, clients=[client("portico", redirect_uri=callback),
                                      client("other-app", redirect_uri=OTHER_CALLBACK)])
    op.start()
    try:
        redirect_uri = f"http://127.0.0.1:{portico_module_launcher.free_port()}/callback"
        upstream = {"issuer": op.issuer, "clientID": "portico", "clientSecret": SECRET,
                    "redirectURI": callback, "scopes": ["openid", "profile", "email", "groups"],
                    "insecureEnableGroups": True,
                    "claimModifications": {"modifyGroupNames": {"prefix": "up-"}}}
        dead = f"http://127.0.0.1:{free_port()}"
        connectors = [
            {"type": "oidc", "id": "oidc", "name": "Upstream", "config": upstream},
            {"type": "oidc", "id": "oidc-down", "name": "Down", "config": {**upstream, "issuer": dead}},
            {"type": "oidc", "id": "oidc-tokendown", "name": "Token endpoint down",
             "config": {**upstream, "providerDiscoveryOverrides": {"tokenURL": f"{dead}/token"}}},
        ]
        server = portico_module_launcher.start(
            lambda _: portico_config(port, connectors, [redirect_uri], workdir))
        yield Setup(op, server, redirect_uri, callback, dead)
    finally:
        op.stop()


def _fail(setup: Setup, what: str, detail: str) -> None:
    pytest.fail(f"{what}:\n{detail}\n--- server stderr ---\n{setup.server.stderr_tail()}\n--- upstream ---\n"
                f"{setup.op.log_tail()}", pytrace=False)


def _login(setup: Setup, workdir: Path, username: str, **options: Any) -> dict[str, Any]:
    run = run_browser(setup.issuer, setup.redirect_uri, "oidc", workdir, username=username,
                      extraAuthParams={"connector_id": "oidc"}, **options)
    if run.result is None:
        _fail(setup, f"the browser login failed (exit {run.returncode})", run.stderr)
    assert run.result is not None
    return run.result


def _upstream_id_token(setup: Setup, user: str) -> str:
    """An ID token the upstream issued to another of its clients (a CI job's): what token exchange takes."""
    url = f"{setup.op.issuer}/auth?" + urlencode({
        "client_id": "other-app", "redirect_uri": OTHER_CALLBACK, "response_type": "code",
        "scope": "openid email profile groups", "nonce": "n-1", "state": "s-1"})
    params = asyncio.run(browse(url, user, callback=OTHER_CALLBACK))
    answer = httpx.post(f"{setup.op.issuer}/token", auth=("other-app", SECRET), timeout=10, data={
        "grant_type": "authorization_code", "code": params["code"], "redirect_uri": OTHER_CALLBACK})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["id_token"])


def test_browser_login_refresh_through_the_upstream_and_token_exchange(
        setup: Setup, tmp_path: Path, report_figure: Any) -> None:
    require_browser()
    result = _login(setup, tmp_path / "alice", "alice", refresh=True)
    claims = result["claims"]
    assert claims["iss"] == setup.issuer and claims["sub"] == dex_sub("alice", "oidc")
    assert claims["email"] == "alice@example.org" and claims["email_verified"] is True
    assert claims["name"] == "Alice Liddell" and claims["preferred_username"] == "alice"
    assert claims["groups"] == ALICE_GROUPS  # mapped: the upstream's groups with the configured prefix
    origin = setup.op.issuer
    assert result["trail"][:2] == [f"upstream login {origin}", f"upstream consent {origin}"], result["trail"]
    assert result["approvalPage"] is True
    assert result["refreshedClaims"]["groups"] == ALICE_GROUPS
    report_figure("upstream oidc browser login + code + refresh (ms)", result["elapsedMs"])

    # Refresh asks the upstream again: a change there shows in the next tokens.
    accounts = json.loads(json.dumps(setup.op.accounts))
    setup.op.accounts["alice"]["claims"].update(name="Alice Kingsleigh", groups=["queens"])
    setup.op.write_accounts()
    try:
        again = refresh(setup.issuer, result["tokens"]["refreshed_refresh_token"])
        assert again.status_code == 200, again.text
        fresh = claims_of(again.json()["id_token"])
        assert fresh["name"] == "Alice Kingsleigh" and fresh["groups"] == ["up-queens"]
        assert fresh["sub"] == claims["sub"]
    finally:
        setup.op.accounts = accounts
        setup.op.write_accounts()

    # Token exchange (RFC 8693): an upstream ID token for a Portico ID token, through the connector.
    upstream_id = _upstream_id_token(setup, "bob")
    exchanged = token(setup.issuer, grant_type=TOKEN_EXCHANGE, connector_id="oidc", subject_token=upstream_id,
                      subject_token_type=ID_TOKEN_TYPE, requested_token_type=ID_TOKEN_TYPE,
                      scope="openid email groups")
    assert exchanged.status_code == 200, exchanged.text
    body = exchanged.json()
    assert body["issued_token_type"] == ID_TOKEN_TYPE
    minted = claims_of(body["access_token"])
    assert minted["iss"] == setup.issuer and minted["sub"] == dex_sub("bob", "oidc")
    assert minted["email"] == "bob@example.org" and minted["groups"] == ["up-builders"]
    forged = upstream_id[:-4] + ("AAAA" if not upstream_id.endswith("AAAA") else "BBBB")
    refused = token(setup.issuer, grant_type=TOKEN_EXCHANGE, connector_id="oidc", subject_token=forged,
                    subject_token_type=ID_TOKEN_TYPE, scope="openid")
    assert refused.status_code == 401 and refused.json()["error"] == "access_denied", refused.text


def _kid(jwt: str) -> str:
    header = jwt.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"])


def _exchange(setup: Setup, upstream_id_token: str) -> httpx.Response:
    return token(setup.issuer, grant_type=TOKEN_EXCHANGE, connector_id="oidc",
                 subject_token=upstream_id_token, subject_token_type=ID_TOKEN_TYPE, scope="openid")


def _error_page(setup: Setup, workdir: Path, connector_id: str, username: str = "alice") -> dict[str, Any]:
    """A login in Chromium that is expected to end on Portico's error page: what the person saw."""
    run = run_browser(setup.issuer, setup.redirect_uri, "oidc", workdir, username=username, expectError=True,
                      extraAuthParams={"connector_id": connector_id})
    if run.result is None:
        _fail(setup, f"the browser run failed (exit {run.returncode})", run.stderr)
    assert run.result is not None
    if run.result["errorPage"] is None:
        _fail(setup, "the login did not end on an error page", json.dumps(run.result["trail"]))
    return run.result


def test_the_upstream_rotates_its_key(setup: Setup, tmp_path: Path) -> None:
    """A rollover as providers do it (the new key signs, the old one stays published for a while), then
    the old key's retirement; every login through Chromium."""
    require_browser()
    key_a = setup.op.key
    before = _login(setup, tmp_path / "before", "alice")
    old_id_token = _upstream_id_token(setup, "alice")
    assert _kid(old_id_token) == key_a.kid
    assert _exchange(setup, old_id_token).status_code == 200  # Portico now holds the set {key-a}

    # Rollover: key-b signs, key-a is still published. The next login brings a kid Portico has not seen.
    key_b = new_key("key-b")
    setup.op.restart(key_b, retired=[key_a])  # the restart also forgets the upstream's grants
    during = _login(setup, tmp_path / "during", "bob")
    assert during["claims"]["sub"] == dex_sub("bob", "oidc")
    assert during["trail"][0].startswith("upstream login")
    new_id_token = _upstream_id_token(setup, "bob")
    assert _kid(new_id_token) == "key-b"
    assert _exchange(setup, new_id_token).status_code == 200
    assert _exchange(setup, old_id_token).status_code == 200  # still published: still good
    # The grant is gone upstream: the refresh token is dead (invalid_grant, not an outage).
    dead = refresh(setup.issuer, before["tokens"]["refresh_token"])
    assert dead.status_code == 400 and dead.json()["error"] == "invalid_grant", dead.text

    # Retirement: only key-c is published now. Tokens of the retired keys no longer exchange.
    setup.op.restart(new_key("key-c"))
    after = _login(setup, tmp_path / "after", "alice")
    assert after["claims"]["sub"] == dex_sub("alice", "oidc") and after["claims"]["groups"] == ALICE_GROUPS
    for stale in (old_id_token, new_id_token):
        refused = _exchange(setup, stale)
        assert refused.status_code == 401 and refused.json()["error"] == "access_denied", refused.text


def test_the_upstream_down_is_a_clear_page(setup: Setup, tmp_path: Path) -> None:
    """Last in the module: the upstream is stopped, then started again."""
    require_browser()
    logged_in = _login(setup, tmp_path / "alice", "alice")

    # Never discovered (nothing answers at its issuer): the login cannot start. Chromium shows the page.
    down = _error_page(setup, tmp_path / "down", "oidc-down")
    page = down["errorPage"]
    assert page["statusLine"].casefold() == "error 502" and page["heading"] == "Login failed", page
    assert "try again later" in page["text"] and "Traceback" not in page["text"]
    assert setup.dead not in page["text"] and "127.0.0.1" not in page["text"]  # no upstream detail
    assert down["trail"] == [] and down["porticoPages"][-1]["status"] == 502

    # Down on the way back: the upstream's own pages work, its token endpoint does not answer, so the
    # code that comes back to /callback cannot be redeemed.
    way_back = _error_page(setup, tmp_path / "way-back", "oidc-tokendown")
    origin = setup.op.issuer
    assert way_back["trail"] == [f"upstream login {origin}", f"upstream consent {origin}"], way_back["trail"]
    page = way_back["errorPage"]
    assert page["url"] == setup.callback and page["statusLine"].casefold() == "error 502", page
    assert page["heading"] == "Login failed", page
    assert setup.dead not in page["text"] and "Traceback" not in page["text"]
    assert [p["status"] for p in way_back["porticoPages"] if p["path"].endswith("/callback")] == [502]

    # The whole upstream down: a refresh is an outage (503, retry later), not the end of the grant.
    setup.op.stop()
    try:
        # Twice: the first answer did not use the token up (a reuse would be refused as a replay).
        for _ in range(2):
            outage = refresh(setup.issuer, logged_in["tokens"]["refresh_token"])
            assert outage.status_code == 503 and outage.json() == {"error": "temporarily_unavailable"}
        assert httpx.get(f"{setup.issuer}/healthz", timeout=10).status_code == 200
    finally:
        setup.op.start()
    # Back, but the restart made it forget its grants: now the upstream refuses, and that is final.
    gone = refresh(setup.issuer, logged_in["tokens"]["refresh_token"])
    assert gone.status_code == 400 and gone.json()["error"] == "invalid_grant", gone.text
    stderr = setup.server.stderr_text()
    assert "cannot reach" in stderr  # the reason, for the operator
