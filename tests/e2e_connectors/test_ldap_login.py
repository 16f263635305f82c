"""LDAP through the real server: Chromium on Portico's form against a real slapd, tokens with openid-client,
refresh while the user exists and after it is deleted, a wrong password, and slapd going away."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import httpx
import ldap3
import ldaputil
import pytest
from connectors_support import portico_config, refresh, require_browser, run_browser, start_login
from e2e.e2e_support import CLIENT_ID, dex_sub, find_form

if TYPE_CHECKING:
    from conftest import ServerLauncher, ServerProcess

pytestmark = pytest.mark.e2e

JANE_GROUPS = {"staff", "admins", "developers", "engineering", "loop-a", "loop-b"}  # engineering: nested
TEMP_UID = "temp-user"
TEMP_PASSWORD = "temp-password"


@dataclass
class Setup:
    slapd: ldaputil.Slapd
    server: ServerProcess
    redirect_uri: str

    @property
    def issuer(self) -> str:
        return self.server.issuer


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory,
          portico_module_launcher: ServerLauncher) -> Iterator[Setup]:
    workdir = tmp_path_factory.mktemp("ldap")
    slapd_run = ldaputil.slapd_fixture(workdir / "slapd", ldaputil.EXAMPLE_LDIF)
    slapd = next(slapd_run)
    redirect_uri = f"http://127.0.0.1:{portico_module_launcher.free_port()}/callback"
    connector = {"type": "ldap", "id": "ldap", "name": "Corporate LDAP",
                 "config": {**ldaputil.connector_config(slapd, "ldaps"), "usernamePrompt": "Username"}}
    server = portico_module_launcher.start(
        lambda port: portico_config(port, [connector], [redirect_uri], workdir))
    yield Setup(slapd, server, redirect_uri)
    slapd_run.close()  # stops slapd


def _fail(setup: Setup, what: str, detail: str) -> None:
    pytest.fail(f"{what}:\n{detail}\n--- server stderr ---\n{setup.server.stderr_tail()}", pytrace=False)


def _submit_password(setup: Setup, username: str, password: str) -> httpx.Response:
    login, page = start_login(setup.issuer, setup.redirect_uri)
    try:
        assert page.status_code == 200, page.text[:500]
        form = find_form(page.text, "password")
        data = {k: v for k, v in form.inputs.items() if form.input_types.get(k) == "hidden"}
        data.update({"login": username, "password": password})
        return login.http.post(urljoin(str(page.url), form.action), data=data)
    finally:
        login.close()


def test_browser_login_tokens_refresh_then_the_user_is_deleted(
        setup: Setup, tmp_path: Path, report_figure: Any) -> None:
    require_browser()
    people = ldaputil.PEOPLE_DN
    temp_dn = f"uid={TEMP_UID},{people}"
    setup.slapd.add(temp_dn, ["inetOrgPerson"], {"uid": TEMP_UID, "cn": "Temp User", "sn": "User",
                                                 "mail": "temp@example.org", "userPassword": TEMP_PASSWORD})
    setup.slapd.modify(f"cn=developers,{ldaputil.GROUPS_DN}", {"member": [(ldap3.MODIFY_ADD, [temp_dn])]})

    # jane, through every page in Chromium: her groups, the nested one included, in the ID token.
    run = run_browser(setup.issuer, setup.redirect_uri, "password", tmp_path / "jane", username="jane",
                      password=ldaputil.PASSWORDS["jane"], refresh=True)
    if run.result is None:
        _fail(setup, f"the browser login failed (exit {run.returncode})", run.stderr)
    assert run.result is not None
    claims = run.result["claims"]
    assert claims["iss"] == setup.issuer and claims["aud"] == CLIENT_ID
    assert claims["sub"] == dex_sub("jane", "ldap")
    assert claims["email"] == "jane@example.org" and claims["email_verified"] is True
    assert claims["name"] == "Jane Doe" and claims["preferred_username"] == "jane"
    assert set(claims["groups"]) == JANE_GROUPS
    assert run.result["approvalPage"] is True
    assert run.result["refreshedClaims"]["groups"] == claims["groups"]
    assert run.result["userinfo"]["sub"] == claims["sub"]
    report_figure("ldap browser login + code + refresh (ms)", run.result["elapsedMs"])

    # A user who is then deleted from the directory: refresh works before, invalid_grant after.
    temp = run_browser(setup.issuer, setup.redirect_uri, "password", tmp_path / "temp", username=TEMP_UID,
                       password=TEMP_PASSWORD)
    if temp.result is None:
        _fail(setup, f"the browser login failed (exit {temp.returncode})", temp.stderr)
    assert temp.result is not None
    assert set(temp.result["claims"]["groups"]) == {"developers", "engineering"}
    first = refresh(setup.issuer, temp.result["tokens"]["refresh_token"])
    assert first.status_code == 200, first.text
    setup.slapd.delete(temp_dn)
    gone = refresh(setup.issuer, first.json()["refresh_token"])
    assert gone.status_code == 400 and gone.json()["error"] == "invalid_grant", gone.text
    assert "no longer in the directory" in setup.server.stderr_text()  # the reason is in the log...
    assert "directory" not in gone.text  # ...and not in the answer


def test_a_wrong_password_shows_the_form_again_with_an_error(setup: Setup) -> None:
    answer = _submit_password(setup, "jane", "not-her-password")
    assert answer.status_code == 200
    assert 'role="alert"' in answer.text and "Incorrect username or password" in answer.text
    form = find_form(answer.text, "password")
    assert form.inputs.get("login") == "jane"  # kept for the second try
    assert form.input_types.get("csrf_token") == "hidden"


def test_slapd_down_is_a_clear_page_and_refresh_a_temporary_error(setup: Setup, tmp_path: Path) -> None:
    """Last in the module: slapd is killed (and started again at the end)."""
    require_browser()
    run = run_browser(setup.issuer, setup.redirect_uri, "password", tmp_path / "john", username="john",
                      password=ldaputil.PASSWORDS["john"])
    if run.result is None:
        _fail(setup, f"the browser login failed (exit {run.returncode})", run.stderr)
    assert run.result is not None
    refresh_token = run.result["tokens"]["refresh_token"]
    setup.slapd.stop()
    try:
        started = time.monotonic()
        answer = _submit_password(setup, "jane", ldaputil.PASSWORDS["jane"])
        elapsed = time.monotonic() - started
        assert answer.status_code == 502, (answer.status_code, answer.text[:500])
        assert "Login failed" in answer.text and "Please try again later" in answer.text
        assert "127.0.0.1" not in answer.text and "Traceback" not in answer.text  # no upstream detail
        assert elapsed < 20, f"the outage took {elapsed:.1f} s to show"
        # An outage is no reason to end the grant: the client may retry the same refresh token later.
        outage = refresh(setup.issuer, refresh_token)
        assert outage.status_code == 503, outage.text
        assert outage.json() == {"error": "temporarily_unavailable"}
        health = httpx.get(f"{setup.issuer}/healthz", timeout=5)
        assert health.status_code == 200
        assert "Traceback" not in setup.server.stderr_text()
    finally:
        setup.slapd.restart()
    again = refresh(setup.issuer, refresh_token)
    assert again.status_code == 200, again.text  # the same token works once the directory is back
