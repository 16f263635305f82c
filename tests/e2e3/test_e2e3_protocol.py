"""End to end: the OAuth 2.0 / OIDC surface beyond the code flow, with the certified openid-client
driving a real `portico serve` (and a second real Portico as the token-exchange upstream) and Debian's
Chromium doing the person's part: the device flow, RP-initiated and back-channel logout, implicit and
hybrid responses, client_credentials, password, token exchange, introspection and revocation."""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from backchannel import Listener, backchannel_listener
from e2e3_support import (
    CI_ID,
    CI_SECRET,
    DEVICE_CLIENT,
    RP_ID,
    RP_SECRET,
    SVC_ID,
    SVC_SECRET,
    idp_config,
    launcher_command,
    run_flow,
    upstream_config,
)
from e2e_support import ADMIN_EMAIL, ADMIN_PASSWORD, ADMIN_USER_ID, dex_sub, require, rp_missing
from joserfc import jwt
from joserfc.jwk import KeySet

pytestmark = pytest.mark.e2e

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"


@dataclass
class Stack:
    issuer: str
    upstream_issuer: str
    rp_port: int
    backchannel: Listener

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self.rp_port}/callback"

    def inputs(self, **extra: str) -> dict[str, str]:
        return {"issuer": self.issuer, "client_id": RP_ID, "client_secret": RP_SECRET,
                "redirect_uri": self.redirect_uri, "username": ADMIN_EMAIL, "password": ADMIN_PASSWORD,
                **extra}


@pytest.fixture(scope="module")
def stack(portico_module_launcher: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    missing = rp_missing()
    require(missing is None, missing or "")
    work = tmp_path_factory.mktemp("e2e3")
    rp_port = portico_module_launcher.free_port()

    with contextlib.ExitStack() as exit_stack:
        listener = exit_stack.enter_context(backchannel_listener())
        upstream = portico_module_launcher.start(lambda port: upstream_config(port, work / "upstream.db"),
                                                 name="upstream")

        with pytest.MonkeyPatch.context() as mp:
            # The IdP under test runs the real CLI with one more connector type, registered by the
            # launcher only: tests/upstream_portico.py, verifying the upstream's tokens by its JWKS.
            mp.setenv("PORTICO_E2E_COMMAND", launcher_command())
            idp = portico_module_launcher.start(
                lambda port: idp_config(port, work / "idp.db", rp_port=rp_port, backchannel=listener.url,
                                        upstream_issuer=upstream.issuer), name="idp")
        yield Stack(idp.issuer, upstream.issuer, rp_port, listener)


def verify_jwt(issuer: str, token: str) -> dict[str, Any]:
    """Signature against the issuer's published JWKS (what a client does), then the claims."""
    keys = KeySet.import_key_set(httpx.get(f"{issuer}/keys", timeout=10).json())
    return dict(jwt.decode(token, keys, algorithms=["RS256", "ES256"]).claims)


def test_device_flow_browser_types_the_code_while_the_client_polls(
    stack: Stack, tmp_path: Path, report_figure: Any
) -> None:
    result = run_flow("device", stack.inputs(client_id=DEVICE_CLIENT, client_secret=""),
                      artifacts=tmp_path / "artifacts").require()
    assert result["prefilled"] == result["user_code"]  # /device?user_code= pre-fills the field
    assert result["verification_uri"] == f"{stack.issuer}/device" and result["interval"] == 5
    claims = result["claims"]
    assert claims["sub"] == dex_sub(ADMIN_USER_ID, "local") and claims["aud"] == DEVICE_CLIENT
    assert claims["email"] == ADMIN_EMAIL and claims["iss"] == stack.issuer
    assert result["has_refresh_token"] and result["refreshed_sub"] == claims["sub"]
    report_figure("device flow wall time (ms)", result["elapsed_ms"])


def test_rp_logout_then_prompt_none_is_login_required_and_backchannel_arrives(
    stack: Stack, tmp_path: Path
) -> None:
    stack.backchannel.bodies.clear()
    stack.backchannel.received.clear()
    result = run_flow("logout", stack.inputs(post_logout_uri=f"http://127.0.0.1:{stack.rp_port}/bye"),
                      artifacts=tmp_path / "artifacts").require()
    assert result["end_session_endpoint"] == f"{stack.issuer}/logout"
    # Before logout the session answers prompt=none silently, with the same sid and auth_time.
    assert result["sso_before_logout"] == {"sid": result["sid"], "auth_time": result["auth_time"]}
    assert result["logout_landing"] == {"path": "/bye", "state_ok": True}
    assert result["after_logout"] == {"error": "login_required", "state_ok": True}
    assert stack.backchannel.received.wait(10), "no back-channel logout arrived"
    token = stack.backchannel.bodies[-1]["logout_token"][0]
    claims = verify_jwt(stack.issuer, token)
    assert claims["iss"] == stack.issuer and claims["aud"] == RP_ID
    assert claims["sid"] == result["sid"] and claims["sub"] == result["sub"]
    assert claims["events"] == {BACKCHANNEL_EVENT: {}} and "nonce" not in claims
    assert claims["exp"] > time.time()


def test_implicit_and_hybrid_responses_arrive_in_the_fragment(stack: Stack, tmp_path: Path) -> None:
    result = run_flow("fragment", stack.inputs(), artifacts=tmp_path / "artifacts").require()
    implicit, hybrid = result["implicit"], result["hybrid"]
    assert implicit["query"] == "" and implicit["fragment_keys"] == ["id_token", "state"]
    assert implicit["claims"]["sub"] == dex_sub(ADMIN_USER_ID, "local") and implicit["claims"]["aud"] == RP_ID
    assert hybrid["query"] == "" and hybrid["fragment_keys"] == ["code", "id_token", "state"]
    assert hybrid["claims"]["sub"] == implicit["claims"]["sub"] and hybrid["access_token"]


def upstream_id_token(stack: Stack) -> str:
    """An ID token of the upstream Portico, for its CI client (the password grant there)."""
    response = httpx.post(f"{stack.upstream_issuer}/token", timeout=10, auth=(CI_ID, CI_SECRET), data={
        "grant_type": "password", "username": ADMIN_EMAIL, "password": ADMIN_PASSWORD,
        "scope": "openid email groups"})
    assert response.status_code == 200, response.text
    return str(response.json()["id_token"])


def test_client_credentials_password_exchange_introspection_revocation(stack: Stack) -> None:
    subject = upstream_id_token(stack)
    result = run_flow("grants", stack.inputs(svc_id=SVC_ID, svc_secret=SVC_SECRET, subject_token=subject,
                                             connector_id="upstream")).require()
    cc = result["client_credentials"]
    # proto3 leaves the empty connector id out: field 1 only (Dex's IDTokenSubject{client id, ""}).
    only_id = base64.urlsafe_b64encode(b"\x0a" + bytes([len(SVC_ID)]) + SVC_ID.encode()).rstrip(b"=").decode()
    assert cc["claims"]["sub"] == only_id and cc["claims"]["name"] == "Service"
    assert cc["claims"]["groups"] == ["robots"] and not cc["has_refresh_token"]
    password = result["password"]
    assert password["claims"]["sub"] == dex_sub(ADMIN_USER_ID, "local") and password["has_refresh_token"]
    assert password["bad_password"] == "access_denied"
    exchange = result["exchange"]
    assert exchange["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    exchanged = verify_jwt(stack.issuer, exchange["access_token"])
    upstream_sub = verify_jwt(stack.upstream_issuer, subject)["sub"]
    assert exchanged["sub"] == dex_sub(upstream_sub, "upstream") and exchanged["aud"] == RP_ID
    intro = result["introspection"]
    assert intro["active"]["active"] is True and intro["active"]["client_id"] == RP_ID
    assert intro["active"]["sub"] == password["claims"]["sub"]
    assert intro["active_refresh"]["active"] is True
    assert intro["active_refresh"]["token_use"] == "refresh_token"
    assert intro["junk"] == {"active": False}
    revocation = result["revocation"]
    assert revocation["refresh_after"] == {"active": False}
    assert revocation["access_after"] == {"active": False}  # the refresh token's grant went with it
    assert revocation["refresh_error"] == "invalid_grant"
    assert revocation["userinfo_error"] in ("invalid_token", "OAUTH_WWW_AUTHENTICATE_CHALLENGE")


def test_every_grant_refuses_a_wrong_secret_and_a_wrong_client(stack: Stack) -> None:
    """Over plain HTTP: the token endpoint authenticates the client before any grant runs."""
    token = f"{stack.issuer}/token"
    forms = {
        "password": {"grant_type": "password", "username": ADMIN_EMAIL, "password": ADMIN_PASSWORD,
                     "scope": "openid"},
        "client_credentials": {"grant_type": "client_credentials", "scope": "openid"},
        "token_exchange": {"grant_type": EXCHANGE_GRANT, "subject_token": "x",
                           "subject_token_type": ID_TOKEN_TYPE,
                           "connector_id": "upstream"},
        "refresh_token": {"grant_type": "refresh_token", "refresh_token": "x"},
        "device_code": {"grant_type": DEVICE_GRANT, "device_code": "x"},
        "authorization_code": {"grant_type": "authorization_code", "code": "x",
                               "redirect_uri": stack.redirect_uri},
    }
    with httpx.Client(timeout=10) as http:
        for name, form in forms.items():
            wrong_secret = http.post(token, data=form, auth=(RP_ID, "wrong"))
            assert (wrong_secret.status_code, wrong_secret.json()["error"]) == (401, "invalid_client"), name
            ghost = http.post(token, data={**form, "client_id": "ghost"})
            assert (ghost.status_code, ghost.json()["error"]) == (401, "invalid_client"), name
        # The device code of one client is useless to another.
        device = http.post(f"{stack.issuer}/device/code",
                           data={"client_id": DEVICE_CLIENT, "scope": "openid"})
        assert device.status_code == 200, device.text
        stolen = http.post(token, auth=(RP_ID, RP_SECRET), data={"grant_type": DEVICE_GRANT,
                                                                 "device_code": device.json()["device_code"]})
        assert (stolen.status_code, stolen.json()["error"]) == (400, "invalid_grant")
        pending = http.post(token, data={"grant_type": DEVICE_GRANT, "client_id": DEVICE_CLIENT,
                                         "device_code": device.json()["device_code"]})
        assert pending.json()["error"] in ("authorization_pending", "slow_down")
        # Introspection wants an authenticated client here (Dex answers anybody).
        anonymous = http.post(f"{stack.issuer}/token/introspect", data={"token": "x"})
        assert anonymous.status_code == 401
        # A public client may not use client_credentials.
        public = http.post(token, data={**forms["client_credentials"], "client_id": DEVICE_CLIENT})
        assert (public.status_code, public.json()["error"]) == (400, "unauthorized_client")
