"""The connector forms: built from every type's schema, and driven with Pilot against a real server, a
real slapd (create an LDAP connector, test it, save it, log in through it) and a real OpenID provider
(edit an OIDC connector; the secret left "unchanged" stays and still works)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import httpx
import ldaputil
import pytest
from adminutil import Server, start_server
from e2e.e2e_support import find_form, is_approval_page
from static_api import StaticApi
from textual.pilot import Pilot
from textual.widgets import Button, Checkbox, Input, Select, Static
from tuiutil import choose_type, console, fill, notes, rows, select_row, settle, text_of
from upstream.op import SECRET, UpstreamOP, browse, client

from appliance.connectors.config_schema import Key
from appliance.connectors.schemas import SCHEMAS
from appliance.store.sqlite import open_sqlite
from appliance.tui.app import PorticoApp
from appliance.tui.connectorform import ConnectorForm
from appliance.tui.formdata import error_id, field_id

pytestmark = pytest.mark.timeout(180)
SIZE = (80, 24)
RP = "http://127.0.0.1:5555/callback"  # the static client "app" of adminutil.base_config


# --- every key of every type ----------------------------------------------------------------------


def _expected(keys: tuple[Key, ...], prefix: str = "") -> tuple[set[str], set[str], set[str]]:
    """(input ids, block error-line ids, add-entry button ids) a form shows for `keys`, with one entry
    in each list of objects; legacy keys are not offered."""
    inputs: set[str] = set()
    blocks: set[str] = set()
    adds: set[str] = set()
    for key in keys:
        if key.legacy:
            continue
        path = prefix + key.name
        if key.kind == "object":
            blocks.add(error_id(path))
            more = _expected(key.keys, path + ".")
        elif key.kind == "objects":
            blocks.add(error_id(path))
            adds.add(f"add-{field_id(path)[2:]}")
            more = _expected(key.keys, f"{path}[0].")
        else:
            inputs.add(field_id(path))
            continue
        inputs |= more[0]
        blocks |= more[1]
        adds |= more[2]
    return inputs, blocks, adds


async def test_every_key_of_every_type_has_its_field() -> None:
    """Every key the parser accepts (the schema) has its input in the form, of its kind, and the form
    has no input that is not a key of the schema."""
    api = StaticApi()
    schemas = await api.call("GET", "/v1/connector-types")
    app = PorticoApp(api, start="connectors")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        for type_, schema in sorted(SCHEMAS.items()):
            form = ConnectorForm(api, schemas, type_=type_)
            await app.push_screen(form)
            await pilot.pause()
            inputs, blocks, adds = _expected(schema.keys)
            for add in sorted(adds):  # one entry in each list of objects
                form.query_one(f"#{add}", Button).press()
                await pilot.pause()
            fields = form.query("#config-rows Input, #config-rows Select, #config-rows Checkbox")
            shown = {w.id for w in fields if w.id and w.id.startswith("f-")}
            assert shown == inputs, (type_, shown ^ inputs)
            errors = {w.id for w in form.query("#config-rows .field-error") if w.id}
            assert errors >= blocks | {"e-" + i[2:] for i in inputs}
            for path, key in schema.walk():
                if key.legacy or key.kind in ("object", "objects"):
                    continue
                widget = form.query_one(f"#{field_id(path.replace('[]', '[0]'))}")
                kind = ("select" if key.kind == "choice" or key.tristate else "box" if key.kind == "bool"
                        else "input")
                assert {"select": Select, "box": Checkbox, "input": Input}[kind] is type(widget), path
                if key.kind == "secret":
                    assert isinstance(widget, Input) and widget.password
            form.dismiss(None)
            await pilot.pause()


async def test_a_legacy_key_shows_only_while_a_stored_config_has_it() -> None:
    api = StaticApi()
    schemas = await api.call("GET", "/v1/connector-types")
    stored = {"id": "gh", "type": "github", "name": "GitHub", "secrets": [],
              "config": {"clientID": "a", "redirectURI": "https://x/cb", "org": "legacy-org"}}
    app = PorticoApp(api, start="connectors")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        form = ConnectorForm(api, schemas, connector=stored)
        await app.push_screen(form)
        await pilot.pause()
        assert form.query_one("#f-org", Input).value == "legacy-org"
        form.query_one("#f-org", Input).value = ""  # cleared: the saved config no longer has it
        config, errors = form.config()
        assert config == {"clientID": "a", "redirectURI": "https://x/cb"} and errors == {}
        new = ConnectorForm(api, schemas, type_="github")
        await app.push_screen(new)
        await pilot.pause()
        assert not new.query("#f-org") and new.query("#f-orgs-0--name") is not None


# --- a real server, a real directory and a real OpenID provider -------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("forms"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ldaputil.Slapd]:
    yield from ldaputil.slapd_fixture(tmp_path_factory.mktemp("slapd"), ldaputil.EXAMPLE_LDIF)


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory, server: Server) -> Iterator[UpstreamOP]:
    portico = client("portico", redirect_uri=f"{server.issuer}/callback")
    op = UpstreamOP(tmp_path_factory.mktemp("op"), clients=[portico])
    op.start()
    yield op
    op.stop()


def _claims(id_token: str) -> dict[str, Any]:
    payload = id_token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def _within(http: httpx.Client, issuer: str, response: httpx.Response) -> httpx.Response:
    """Follow Portico's redirects among its own pages; stop at a page or a redirect elsewhere."""
    for _ in range(8):
        location = urljoin(str(response.url), response.headers.get("location", ""))
        if not response.is_redirect or not location.startswith(issuer):
            return response
        response = http.get(location)
    raise AssertionError(f"too many redirects at {response.url}")


def _finish(http: httpx.Client, issuer: str, response: httpx.Response) -> dict[str, Any]:
    """From after the upstream login: the approval, the code, the tokens; the ID token's claims."""
    response = _within(http, issuer, response)
    if response.status_code == 200 and is_approval_page(response.text):
        form = find_form(response.text, "approval", "approve")
        target = urljoin(str(response.url), form.action or str(response.url))
        response = _within(http, issuer, http.post(target, data={**form.inputs, "approval": "approve"}))
    location = response.headers.get("location", "")
    assert response.is_redirect and location.startswith(RP), f"{response.status_code}: {response.text[:500]}"
    code = dict(parse_qsl(urlsplit(location).query))["code"]
    tokens = http.post(f"{issuer}/token", data={"grant_type": "authorization_code", "code": code,
                                                 "redirect_uri": RP}, auth=("app", "app-secret"))
    assert tokens.status_code == 200, tokens.text
    return _claims(tokens.json()["id_token"])


def _authorize(http: httpx.Client, issuer: str, connector_id: str) -> httpx.Response:
    return http.get(f"{issuer}/auth", params={
        "client_id": "app", "redirect_uri": RP, "response_type": "code", "state": "st-1",
        "scope": "openid email profile groups", "connector_id": connector_id})


def ldap_login(issuer: str, connector_id: str, username: str, password: str) -> dict[str, Any]:
    with httpx.Client(timeout=15, follow_redirects=False) as http:
        page = _within(http, issuer, _authorize(http, issuer, connector_id))
        assert page.status_code == 200, page.text[:500]
        form = find_form(page.text, "password")
        data = {k: v for k, v in form.inputs.items() if form.input_types.get(k) == "hidden"}
        data.update({"login": username, "password": password})
        target = urljoin(str(page.url), form.action or str(page.url))
        return _finish(http, issuer, http.post(target, data=data))


async def oidc_login(issuer: str, connector_id: str, user: str) -> dict[str, Any]:
    with httpx.Client(timeout=15, follow_redirects=False) as http:
        away = await asyncio.to_thread(lambda: _within(http, issuer, _authorize(http, issuer, connector_id)))
        assert away.is_redirect, away.text[:500]
        back = await browse(away.headers["location"], user, callback=f"{issuer}/callback")
        return await asyncio.to_thread(
            lambda: _finish(http, issuer, http.get(f"{issuer}/callback", params=back)))


async def _press_add(pilot: Pilot[Any], list_path: str) -> None:
    """Focus the list's "+ add" button and press enter, as a keyboard user does."""
    pilot.app.screen.query_one(f"#add-{field_id(list_path)[2:]}", Button).focus()
    await pilot.press("enter")
    await settle(pilot)


async def test_ldap_connector_created_through_the_form_then_used(server: Server,
                                                                slapd: ldaputil.Slapd) -> None:
    app = console(server, "connectors")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        await pilot.press(*"corp-ldap")
        await choose_type(pilot, "ldap")
        await fill(pilot, {
            "h-name": "Corporate Directory", "host": slapd.ldaps_host, "rootCA": str(slapd.ca_file),
            "bindDN": ldaputil.SERVICE_DN, "bindPW": ldaputil.SERVICE_PW,
            "userSearch.baseDN": ldaputil.PEOPLE_DN, "userSearch.filter": "objectClass=person",
            "userSearch.username": "uid", "userSearch.idAttr": "uid", "userSearch.emailAttr": "mail",
            "userSearch.nameAttr": "cn", "groupSearch.baseDN": ldaputil.GROUPS_DN,
            "groupSearch.filter": "(|(objectClass=posixGroup)(objectClass=groupOfNames))",
            "groupSearch.nameAttr": "cn",
        })
        # Two ways to find a user's groups: a list of objects, one entry at a time.
        await _press_add(pilot, "groupSearch.userMatchers")
        assert app.screen.query_one("#f-groupSearch--userMatchers-0--userAttr", Input).has_focus
        await pilot.press(*"uid", "tab", *"memberUid")
        await _press_add(pilot, "groupSearch.userMatchers")
        await fill(pilot, {"groupSearch.userMatchers[1].userAttr": "DN",
                           "groupSearch.userMatchers[1].groupAttr": "member",
                           "groupSearch.userMatchers[1].recursionGroupAttr": "member",
                           "h-test_username": "jane", "h-test_password": ldaputil.PASSWORDS["jane"]})
        # The server checks it as it would check config.yaml: the filter needs its parentheses.
        await pilot.press("ctrl+t")
        await settle(pilot)
        error = app.screen.query_one(f"#{error_id('userSearch.filter')}", Static)
        assert "must be in parentheses" in text_of(error) and not error.has_class("hidden")
        assert app.screen.query_one(f"#{field_id('userSearch.filter')}", Input).has_focus
        await fill(pilot, {"userSearch.filter": "(objectClass=person)"})
        await pilot.press("ctrl+t")  # a real bind, base DN lookups and a login as jane: nothing saved
        await settle(pilot)
        status = text_of(app.screen.query_one("#form-status", Static))
        assert status.startswith("✓ test passed") and "logged in as Jane Doe <jane@example.org>" in status
        assert "developers" in status
        assert error.has_class("hidden")
        listed = await asyncio.to_thread(server.admin().get, "/v1/connectors")
        assert all(c["id"] != "corp-ldap" for c in listed)  # a test saves nothing

        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "Connector corp-ldap saved" in text_of(app.screen.query_one(".dialog-title", Static))
        await pilot.press("enter")
        await settle(pilot)
        assert ["corp-ldap", "ldap", "Corporate Direc…", "storage", "open", "-"] in rows(app)  # clipped

    claims = await asyncio.to_thread(ldap_login, server.issuer, "corp-ldap", "jane",
                                     ldaputil.PASSWORDS["jane"])
    assert claims["email"] == "jane@example.org"
    assert {"admins", "developers", "engineering", "staff"} <= set(claims["groups"])


async def test_oidc_connector_edited_in_the_form_keeps_its_unchanged_secret(
        server: Server, upstream: UpstreamOP) -> None:
    admin = server.admin()
    await asyncio.to_thread(admin.post, "/v1/connectors", {
        "id": "up-oidc", "type": "oidc", "name": "Upstream",
        "config": {"issuer": upstream.issuer, "clientID": "portico", "clientSecret": SECRET,
                   "redirectURI": f"{server.issuer}/callback", "scopes": ["profile", "email"],
                   "insecureEnableGroups": True}})
    app = console(server, "connectors")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        select_row(app, "up-oidc")
        await pilot.press("e")
        await settle(pilot)
        secret = app.screen.query_one("#f-clientSecret", Input)
        assert secret.value == "" and secret.placeholder == "unchanged (type to replace)"
        assert app.screen.query_one("#f-scopes", Input).value == "profile, email"
        assert app.screen.query_one("#f-insecureEnableGroups", Checkbox).value is True
        await fill(pilot, {"h-name": "Upstream SSO", "scopes": "profile, email, groups",
                           "claimModifications.modifyGroupNames.prefix": "up-"})
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert any(n.startswith("up-oidc tested and saved") for n in notes(app))
        assert ["up-oidc", "oidc", "Upstream SSO", "storage", "open", "-"] in rows(app)

    storage = await open_sqlite(str(server.workdir / "portico.db"))
    try:
        stored = (await storage.connectors.get("up-oidc")).config
    finally:
        await storage.close()
    assert stored["clientSecret"] == SECRET  # never seen by the console, kept by the server
    assert stored["scopes"] == ["profile", "email", "groups"]
    assert stored["claimModifications"] == {"modifyGroupNames": {"prefix": "up-"}}
    # And it works: the code exchange with the upstream authenticates with that secret.
    claims = await oidc_login(server.issuer, "up-oidc", "alice")
    assert claims["email"] == "alice@example.org" and "up-admins" in claims["groups"]
