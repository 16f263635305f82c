"""Admin use-cases for connectors: list, forms per type, validate-and-test, create, edit, delete, test."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from appliance.admin.audit import redact
from appliance.admin.reload import Reloader, close_connector
from appliance.admin.service import BadRequest, ReadOnly
from appliance.connectors.base import CallbackConnector, PasswordConnector, Scopes
from appliance.errors import ConnectorError
from appliance.ids import new_id
from appliance.oidc.deps import LOCAL_CONNECTOR_ID, ConnectorFactories, Deps
from appliance.store.models import Connector

__all__ = ["FORMS", "ConnectorService", "Field", "check_connector"]

TEST_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Field:
    """One input of a connector form; `name` is a dotted path into the connector's config."""

    name: str
    label: str
    kind: str = "text"  # text | secret | bool | list
    required: bool = False
    placeholder: str = ""


# The forms of the connector types Portico knows, after Dex's config keys. A type without a form is
# edited as a YAML/JSON mapping.
FORMS: Mapping[str, tuple[Field, ...]] = {
    "ldap": (
        Field("host", "Host:port", required=True, placeholder="ldap.example.com:636"),
        Field("insecureNoSSL", "Plain LDAP (no TLS)", "bool"),
        Field("startTLS", "StartTLS", "bool"),
        Field("rootCA", "CA file", placeholder="/etc/portico/ldap-ca.pem"),
        Field("bindDN", "Bind DN", placeholder="cn=portico,dc=example,dc=com"),
        Field("bindPW", "Bind password", "secret"),
        Field("usernamePrompt", "Username prompt", placeholder="Username"),
        Field("userSearch.baseDN", "User base DN", required=True, placeholder="ou=people,dc=example,dc=com"),
        Field("userSearch.filter", "User filter", placeholder="(objectClass=person)"),
        Field("userSearch.username", "Username attribute", required=True, placeholder="uid"),
        Field("userSearch.idAttr", "ID attribute", required=True, placeholder="uid"),
        Field("userSearch.emailAttr", "Email attribute", required=True, placeholder="mail"),
        Field("userSearch.nameAttr", "Name attribute", placeholder="cn"),
        Field("groupSearch.baseDN", "Group base DN", placeholder="ou=groups,dc=example,dc=com"),
        Field("groupSearch.filter", "Group filter", placeholder="(objectClass=groupOfNames)"),
        Field("groupSearch.nameAttr", "Group name attribute", placeholder="cn"),
    ),
    "oidc": (
        Field("issuer", "Issuer URL", required=True, placeholder="https://accounts.example.com"),
        Field("clientID", "Client ID", required=True),
        Field("clientSecret", "Client secret", "secret", required=True),
        Field("redirectURI", "Redirect URI", required=True, placeholder="https://auth.example.com/dex/callback"),
        Field("scopes", "Scopes", "list", placeholder="openid, profile, email, groups"),
        Field("insecureSkipEmailVerified", "Skip email_verified", "bool"),
    ),
    "github": (
        Field("clientID", "Client ID", required=True),
        Field("clientSecret", "Client secret", "secret", required=True),
        Field("redirectURI", "Redirect URI", required=True),
        Field("orgs", "Organisations (names)", "list"),
    ),
    "saml": (
        Field("ssoURL", "IdP SSO URL", required=True),
        Field("ca", "IdP CA file", required=True),
        Field("redirectURI", "ACS (redirect) URI", required=True),
        Field("entityIssuer", "Entity issuer"),
        Field("usernameAttr", "Username attribute", required=True),
        Field("emailAttr", "Email attribute", required=True),
        Field("groupsAttr", "Groups attribute"),
    ),
    "mockPassword": (
        Field("username", "Username", required=True),
        Field("password", "Password", "secret", required=True),
    ),
    "mockCallback": (),
}


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """{"userSearch.baseDN": "x"} -> {"userSearch": {"baseDN": "x"}}; empty values left out."""
    out: dict[str, Any] = {}
    for path, value in flat.items():
        if value in ("", None, []):
            continue
        node = out
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


async def check_connector(instance: object, username: str = "", password: str = "") -> tuple[bool, str]:
    """A real check of an opened connector: the type's own probe (LDAP: bind and look up the base
    DNs), else a login with the given test credentials, else building a login URL."""
    try:
        probe = getattr(instance, "test_connection", None)
        if probe is not None:
            return True, str(await asyncio.wait_for(probe(), TEST_TIMEOUT_S))
        if isinstance(instance, PasswordConnector) and username:
            who = await asyncio.wait_for(instance.login(Scopes(groups=True), username, password),
                                         TEST_TIMEOUT_S)
            if who is None:
                return False, f"the upstream refused the test credentials for {username!r}"
            groups = ", ".join(who.groups) or "none"
            return True, f"logged in as {who.username or who.user_id} <{who.email}>; groups: {groups}"
        if isinstance(instance, CallbackConnector):
            building = instance.login_url(Scopes(), "https://portico.invalid/callback", "test")
            url = await asyncio.wait_for(building, TEST_TIMEOUT_S)
            return True, f"login URL builds: {url.split('?')[0]}"
        if isinstance(instance, PasswordConnector):
            return True, "opened; give a test username and password for a live login check"
        return True, "opened; this type has no live check"
    except TimeoutError:
        return False, f"no answer within {TEST_TIMEOUT_S:.0f} s"
    except ConnectorError as exc:
        return False, str(exc)


@dataclass
class ConnectorService:
    deps: Deps
    reloader: Reloader
    registry: ConnectorFactories
    types: Callable[[], list[str]]

    async def list(self) -> list[dict[str, Any]]:
        stored = {c.id: c for c in await self.deps.storage.connectors.list()}
        out = []
        for state in self.reloader.connectors.values():
            item = dataclasses.asdict(state)
            item["read_only"] = state.source != "storage"
            if state.id in stored:
                item["config"] = redact(stored[state.id].config)
            out.append(item)
        return out

    def forms(self) -> dict[str, Any]:
        return {t: [dataclasses.asdict(f) for f in FORMS[t]] if t in FORMS else None for t in self.types()}

    def _writable(self, connector_id: str) -> None:
        if connector_id == LOCAL_CONNECTOR_ID:
            raise ReadOnly("the local connector is the password database; enable it with enablePasswordDB")
        if any(c.id == connector_id for c in self.deps.snapshot.config.connectors):
            raise ReadOnly(f"connector {connector_id!r} comes from the config file: edit it there")

    def _parse(self, body: Mapping[str, Any], connector_id: str | None = None) -> Connector:
        cid = connector_id or str(body.get("id", "")).strip()
        if not cid or not cid.replace("-", "").replace("_", "").isalnum():
            raise BadRequest("id must be letters, digits, - or _")
        type_ = str(body.get("type", "")).strip()
        if type_ not in self.types():
            raise BadRequest(f"unknown connector type {type_!r}; one of {', '.join(self.types())}")
        config = body.get("config", {})
        if not isinstance(config, Mapping):
            raise BadRequest("config must be a mapping")
        config = nest(config) if any("." in str(k) for k in config) else dict(config)
        missing = [f.name for f in FORMS.get(type_, ()) if f.required and not _lookup(config, f.name)]
        if missing:
            raise BadRequest(f"missing required settings: {', '.join(missing)}")
        return Connector(id=cid, type=type_, name=str(body.get("name", "")).strip() or cid,
                         resource_version=new_id(), config=config)

    async def validate(self, body: Mapping[str, Any], connector_id: str | None = None) -> dict[str, Any]:
        """Open the connector and run its check without saving anything."""
        connector = self._parse(body, connector_id)
        try:
            instance = self.registry.open(connector.type, connector.id, connector.config)
        except (ValueError, TypeError, KeyError) as exc:
            raise BadRequest(f"connector {connector.id!r} ({connector.type}): {exc}") from exc
        try:
            ok, message = await check_connector(instance, str(body.get("test_username", "")),
                                                str(body.get("test_password", "")))
        finally:
            await close_connector(instance)
        return {"id": connector.id, "type": connector.type, "ok": ok, "message": message}

    async def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        connector = self._parse(body)
        self._writable(connector.id)
        result = await self.validate(body)
        if not result["ok"]:
            raise BadRequest(f"the connector test failed, nothing was saved: {result['message']}")
        await self.deps.storage.connectors.create(connector)
        report = await self.reloader.rebuild("connectors")
        return {**result, "reload": report.as_dict()}

    async def update(self, connector_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        self._writable(connector_id)
        current = await self.deps.storage.connectors.get(connector_id)
        merged = {"type": current.type, "name": current.name, **body}
        # Settings left out (a secret field left empty in the console's form) keep their stored value.
        merged["config"] = _deep_merge(current.config, nest(body.get("config") or {}))
        connector = self._parse(merged, connector_id)
        result = await self.validate(merged, connector_id)
        if not result["ok"]:
            raise BadRequest(f"the connector test failed, nothing was saved: {result['message']}")
        await self.deps.storage.connectors.update(connector_id, lambda _: connector)
        report = await self.reloader.rebuild("connectors")
        return {**result, "reload": report.as_dict()}

    async def delete(self, connector_id: str) -> dict[str, Any]:
        self._writable(connector_id)
        await self.deps.storage.connectors.delete(connector_id)
        report = await self.reloader.rebuild("connectors")
        return {"deleted": connector_id, "reload": report.as_dict()}

    async def test(self, connector_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        conn = self.deps.snapshot.connectors.get(connector_id)
        if conn is None:
            state = self.reloader.connectors.get(connector_id)
            why = state.message if state else "no such connector"
            return {"id": connector_id, "ok": False, "message": f"not open: {why}"}
        ok, message = await check_connector(conn.instance, str(body.get("username", "")),
                                            str(body.get("password", "")))
        state = self.reloader.connectors.get(connector_id)
        if state is not None:
            state.tested_at = datetime.now().astimezone().isoformat(timespec="seconds")
            state.test_result = ("ok: " if ok else "failed: ") + message
        return {"id": connector_id, "ok": ok, "message": message}


def _deep_merge(base: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in new.items():
        old = out.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            out[key] = _deep_merge(old, value)
        else:
            out[key] = value
    return out


def _lookup(config: Mapping[str, Any], path: str) -> Any:
    node: Any = config
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node
