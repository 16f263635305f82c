"""Admin use-cases for connectors: list, the form of each type, validate-and-test, create, edit, delete."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn

from appliance.admin.audit import redact
from appliance.admin.reload import Reloader, close_connector
from appliance.admin.service import BadRequest, ReadOnly
from appliance.connectors.base import CallbackConnector, PasswordConnector, Scopes
from appliance.connectors.config_schema import Schema, problems_of
from appliance.connectors.schemas import schema_of
from appliance.errors import ConnectorError
from appliance.ids import new_id
from appliance.oidc.deps import LOCAL_CONNECTOR_ID, ConnectorFactories, Deps
from appliance.store.models import Connector

__all__ = ["ConnectorService", "InvalidConnector", "check_connector", "locate_problems"]

TEST_TIMEOUT_S = 20.0


class InvalidConnector(BadRequest):
    """The connector's settings are wrong; `problems` says where: [{"path": "config.host", "message"}]."""

    def __init__(self, message: str, problems: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.problems = problems


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """{"userSearch.baseDN": "x"} -> {"userSearch": {"baseDN": "x"}} (older clients sent dotted keys)."""
    out: dict[str, Any] = {}
    for path, value in flat.items():
        node = out
        *parents, leaf = str(path).split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def locate_problems(schema: Schema | None, exc: BaseException) -> list[dict[str, str]]:
    """A parser's error as problems with the key paths they name ("config.userSearch.baseDN"); a problem
    that names no key of the form is given at "config"."""
    out: list[dict[str, str]] = []
    for message in problems_of(exc):
        paths = schema.locate(message) if schema is not None else ()
        out += [{"path": f"config.{p}", "message": message} for p in paths] or [
            {"path": "config", "message": message}]
    return out


async def check_connector(instance: object, username: str = "", password: str = "",
                          callback_url: str = "https://portico.invalid/callback") -> tuple[bool, str]:
    """A real check of an opened connector: the type's own probe (LDAP: bind as the service account
    and look up the base DNs), then a login with the test credentials when given; else building a
    login URL to `callback_url` (the issuer's /callback: the oidc connector insists on its own), which
    for an OpenID provider means its discovery document."""
    try:
        said: list[str] = []
        probe = getattr(instance, "test_connection", None)
        if probe is not None:
            said.append(str(await asyncio.wait_for(probe(), TEST_TIMEOUT_S)))
        if isinstance(instance, PasswordConnector) and username:
            who = await asyncio.wait_for(instance.login(Scopes(groups=True), username, password),
                                         TEST_TIMEOUT_S)
            if who is None:
                refused = f"the upstream refused the test credentials for {username!r}"
                return False, "; ".join([*said, refused])
            groups = ", ".join(who.groups) or "none"
            said.append(f"logged in as {who.username or who.user_id} <{who.email}>; groups: {groups}")
        elif probe is None and isinstance(instance, CallbackConnector):
            building = instance.login_url(Scopes(), callback_url, "test")
            url = await asyncio.wait_for(building, TEST_TIMEOUT_S)
            said.append(f"login URL builds: {url.split('?')[0]}")
        elif probe is None and isinstance(instance, PasswordConnector):
            said.append("opened; give a test username and password for a live login check")
        return True, "; ".join(said) or "opened; this type has no live check"
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
                item["config"], item["secrets"] = _shown(stored[state.id])
            out.append(item)
        return out

    def forms(self) -> dict[str, Any]:
        """The config schema of every type, the console's forms; None for a type without one."""
        return {t: (s.as_dict() if (s := schema_of(t)) is not None else None) for t in self.types()}

    def _callback(self) -> str:
        return self.deps.snapshot.issuer.abs_url("/callback")

    def _writable(self, connector_id: str) -> None:
        if connector_id == LOCAL_CONNECTOR_ID:
            raise ReadOnly("the local connector is the password database; enable it with enablePasswordDB")
        if any(c.id == connector_id for c in self.deps.snapshot.config.connectors):
            raise ReadOnly(f"connector {connector_id!r} comes from the config file: edit it there")

    def _parse(self, body: Mapping[str, Any], connector_id: str | None = None) -> Connector:
        problems: list[dict[str, str]] = []
        cid = connector_id or str(body.get("id", "")).strip()
        if not cid or not cid.replace("-", "").replace("_", "").isalnum():
            problems.append({"path": "id", "message": "id must be letters, digits, - or _"})
        type_ = str(body.get("type", "")).strip()
        if type_ not in self.types():
            problems.append({"path": "type", "message": f"unknown connector type {type_!r}; one of "
                             + ", ".join(self.types())})
        name = body.get("name", "")
        if not isinstance(name, str):
            problems.append({"path": "name", "message": "name must be a string"})
        config = body.get("config", {})
        if not isinstance(config, Mapping):
            problems.append({"path": "config", "message": "config must be a mapping"})
            config = {}
        if problems:
            raise InvalidConnector("; ".join(p["message"] for p in problems), problems)
        config = nest(config) if any("." in str(k) for k in config) else dict(config)
        return Connector(id=cid, type=type_, name=str(name).strip() or cid, resource_version=new_id(),
                         config=config)

    async def validate(self, body: Mapping[str, Any], connector_id: str | None = None) -> dict[str, Any]:
        """Open the connector as a config file's would be, and test it; nothing is saved. With
        `connector_id` (an edit), secrets left out are those of the stored connector."""
        if connector_id is not None:
            body = await self._edited(connector_id, body)
        return await self._validated(self._parse(body, connector_id), body)

    async def _validated(self, connector: Connector, body: Mapping[str, Any]) -> dict[str, Any]:
        schema = schema_of(connector.type)
        answer: dict[str, Any] = {"id": connector.id, "type": connector.type, "problems": []}
        try:
            # Opening reads files (CA bundles, key files): off the event loop.
            instance = await asyncio.to_thread(self.registry.open, connector.type, connector.id,
                                               connector.config)
        except (ValueError, TypeError, KeyError) as exc:
            problems = locate_problems(schema, exc)
            return {**answer, "ok": False, "problems": problems,
                    "message": f"connector {connector.id!r} ({connector.type}): {exc}"}
        try:
            ok, message = await check_connector(instance, str(body.get("test_username", "")),
                                                str(body.get("test_password", "")), self._callback())
        finally:
            await close_connector(instance)
        return {**answer, "ok": ok, "message": message}

    @staticmethod
    def _refuse(result: Mapping[str, Any]) -> NoReturn:
        if result["problems"]:
            raise InvalidConnector(f"nothing was saved: {result['message']}", result["problems"])
        raise BadRequest(f"the connector test failed, nothing was saved: {result['message']}")

    async def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        connector = self._parse(body)
        self._writable(connector.id)
        result = await self._validated(connector, body)
        if not result["ok"]:
            self._refuse(result)
        await self.deps.storage.connectors.create(connector)
        report = await self.reloader.rebuild("connectors")
        return {**result, "reload": report.as_dict()}

    async def _edited(self, connector_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """An edit's full body: the stored type and name unless given; a config given replaces the
        stored one, except for the secrets it leaves out (a form never sees them); none keeps it."""
        current = await self.deps.storage.connectors.get(connector_id)
        if body.get("type", current.type) != current.type:
            raise InvalidConnector("the type of a connector cannot change: delete it and create another",
                                   [{"path": "type", "message": "the type cannot change"}])
        merged = {**body, "type": current.type, "name": body.get("name", current.name)}
        config = body.get("config")
        if config is None:
            merged["config"] = current.config
        elif isinstance(config, Mapping):
            new = nest(config) if any("." in str(k) for k in config) else dict(config)
            schema = schema_of(current.type)
            merged["config"] = schema.keep_secrets(new, current.config) if schema else new
        return merged

    async def update(self, connector_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        self._writable(connector_id)
        merged = await self._edited(connector_id, body)
        connector = self._parse(merged, connector_id)
        result = await self._validated(connector, merged)
        if not result["ok"]:
            self._refuse(result)
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
                                            str(body.get("password", "")), self._callback())
        state = self.reloader.connectors.get(connector_id)
        if state is not None:
            state.tested_at = datetime.now().astimezone().isoformat(timespec="seconds")
            state.test_result = ("ok: " if ok else "failed: ") + message
        return {"id": connector_id, "ok": ok, "message": message}


def _shown(connector: Connector) -> tuple[dict[str, Any], list[str]]:
    """A stored connector's config as the API shows it: secret values left out (never sent back), and
    the paths of the secrets that are set (the console says "unchanged")."""
    schema = schema_of(connector.type)
    if schema is None:  # a type added without a schema: mask whatever looks secret
        return dict(redact(connector.config)), []
    return schema.without_secrets(connector.config)
