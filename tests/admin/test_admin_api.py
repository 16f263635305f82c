"""The admin API over the real Unix socket of a running server: use-cases, read-only config objects,
permission refusal (filesystem and SO_PEERCRED) and the audit trail."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
from adminutil import Server, start_server, wait_for

from appliance.admin.client import AdminAPIError, AdminClient, AdminUnavailable
from appliance.store.models import Claims, OfflineSession, RefreshToken
from appliance.store.sqlite import open_sqlite

pytestmark = pytest.mark.timeout(120)
NOBODY = 65534


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("admin"))
    yield running
    running.stop()


def _picker(server: Server) -> str:
    response = httpx.get(f"{server.issuer}/auth", params={
        "client_id": "app", "redirect_uri": "http://127.0.0.1:5555/callback", "response_type": "code",
        "scope": "openid", "state": "s"}, timeout=10)
    return response.text


def _as_nobody(call: Callable[[], Any]) -> Any:
    """Run `call` in a forked child that dropped to uid/gid nobody; its result (or error) as JSON."""
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("the permission tests need root (to become another user)")
        pytest.skip("needs root to become another user")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            out: Any = {"ok": call()}
        except AdminUnavailable as exc:
            out = {"unavailable": str(exc)}
        except AdminAPIError as exc:
            out = {"status": exc.status, "code": exc.code, "message": exc.message}
        except BaseException as exc:
            out = {"other": repr(exc)}
        os.write(write_end, json.dumps(out, default=str).encode())
        os._exit(0)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    return json.loads(b"".join(chunks)), pid


def test_socket_is_0660_and_refuses_other_users(server: Server) -> None:
    mode = stat.S_IMODE(os.stat(server.socket).st_mode)
    assert mode == 0o660
    result, _ = _as_nobody(lambda: AdminClient(str(server.socket)).get("/v1/clients"))
    assert "permission denied" in result["unavailable"]


def test_peer_credentials_refuse_and_audit_an_outsider(server: Server) -> None:
    # Open the file mode up: the server itself must still refuse a uid that is not allowed.
    os.chmod(server.socket, 0o666)
    try:
        result, child = _as_nobody(lambda: AdminClient(str(server.socket)).post(
            "/v1/clients", {"id": "intruder", "redirect_uris": ["http://x/cb"]}))
    finally:
        os.chmod(server.socket, 0o660)
    assert result["status"] == 403 and result["code"] == "forbidden"
    admin = server.admin()
    with pytest.raises(AdminAPIError) as missing:
        admin.get("/v1/clients/intruder")
    assert missing.value.status == 404
    denied = admin.get("/v1/audit", q="denied")
    entry = next(e for e in denied if e["pid"] == child)
    assert entry["uid"] == NOBODY and entry["action"] == "clients.create" and entry["result"] == "denied"
    assert admin.get("/v1/metrics")["portico_admin_requests_denied_total"] >= 1


def test_clients_lifecycle_secret_shown_once_and_audited(server: Server) -> None:
    admin = server.admin()
    created = admin.post("/v1/clients", {"id": "kube", "name": "Kubernetes",
                                         "redirect_uris": ["http://127.0.0.1:8000/callback"]})
    secret = created["secret"]
    assert len(secret) >= 32 and created["source"] == "storage"
    listed = {c["id"]: c for c in admin.get("/v1/clients")}
    assert listed["app"]["read_only"] is True and listed["app"]["source"] == "config"
    assert listed["kube"]["has_secret"] is True and "secret" not in listed["kube"]
    assert server.token_error("kube", secret) == "invalid_grant"  # live at once, from storage
    assert server.token_error("kube", "wrong") == "invalid_client"

    updated = admin.patch("/v1/clients/kube", {"trusted_peers": ["app"],
                                               "redirect_uris": ["http://127.0.0.1:8000/cb2"]})
    assert updated["trusted_peers"] == ["app"] and updated["redirect_uris"] == ["http://127.0.0.1:8000/cb2"]
    with pytest.raises(AdminAPIError) as read_only:
        admin.patch("/v1/clients/app", {"name": "x"})
    assert read_only.value.status == 409 and read_only.value.code == "read_only"
    assert "config file" in read_only.value.message
    with pytest.raises(AdminAPIError) as exists:
        admin.post("/v1/clients", {"id": "kube"})
    assert exists.value.status == 409
    assert admin.delete("/v1/clients/kube") == {"deleted": "kube"}
    assert server.token_error("kube", secret) == "invalid_client"

    events = admin.get("/v1/audit", q="clients")
    mine = [e for e in events if e["target"] == "kube"]
    assert [e["action"] for e in mine] == ["clients.create", "clients.update", "clients.create",
                                           "clients.delete"]
    assert [e["result"] for e in mine][:2] == ["ok", "ok"] and mine[2]["result"].startswith("error:")
    assert all(e["uid"] == os.geteuid() and e["pid"] == os.getpid() for e in mine)
    assert secret not in json.dumps(events)


def _stored_password(server: Server, email: str) -> Any:
    async def read() -> Any:
        storage = await open_sqlite(str(server.workdir / "portico.db"))
        try:
            return await storage.passwords.get(email)
        finally:
            await storage.close()

    return asyncio.run(read())


def test_users_create_reset_groups_delete(server: Server) -> None:
    admin = server.admin()
    user = admin.post("/v1/users", {"email": "Jane@Example.com", "password": "first pass", "groups": ["dev"]})
    assert user["email"] == "jane@example.com" and user["groups"] == ["dev"]
    stored = _stored_password(server, "jane@example.com")
    assert bcrypt.checkpw(b"first pass", stored.hash.encode())
    admin.post(AdminClient.item("users", "jane@example.com", "password"), {"password": "second pass"})
    stored = _stored_password(server, "jane@example.com")
    assert bcrypt.checkpw(b"second pass", stored.hash.encode())
    assert admin.patch(AdminClient.item("users", "jane@example.com"),
                       {"groups": ["ops", "admins"]})["groups"] == ["ops", "admins"]
    with pytest.raises(AdminAPIError) as bad:
        admin.post("/v1/users", {"email": "not-an-email", "password": "x"})
    assert bad.value.status == 400
    events = admin.get("/v1/audit", q="users")
    assert "first pass" not in json.dumps(events) and "second pass" not in json.dumps(events)
    assert any(e["details"].get("password") == "********" for e in events)
    admin.delete(AdminClient.item("users", "jane@example.com"))
    assert all(u["email"] != "jane@example.com" for u in admin.get("/v1/users"))


def test_stored_connectors_are_validated_tested_and_served(server: Server) -> None:
    admin = server.admin()
    forms = admin.get("/v1/connector-types")
    assert [(k["name"], k["kind"], k["required"]) for k in forms["mockPassword"]["keys"]] == [
        ("username", "string", True), ("password", "secret", True)]
    with pytest.raises(AdminAPIError) as missing:
        admin.post("/v1/connectors", {"id": "mp", "type": "mockPassword", "config": {"username": "u"}})
    assert missing.value.status == 400 and "password" in missing.value.message
    assert {"path": "config.password", "message": "no password supplied"} in missing.value.problems
    assert "Mock Login" not in _picker(server)

    created = admin.post("/v1/connectors", {"id": "mp", "type": "mockPassword", "name": "Mock Login",
                                            "config": {"username": "kilgore", "password": "trout"}})
    assert created["ok"] is True and created["reload"]["result"] == "applied"
    listed = {c["id"]: c for c in admin.get("/v1/connectors")}
    assert listed["mp"]["source"] == "storage" and listed["mp"]["state"] == "open"
    # A secret is never sent back, not even masked: the API says that it is set.
    assert listed["mp"]["config"] == {"username": "kilgore"} and listed["mp"]["secrets"] == ["password"]
    assert listed["local"]["read_only"] is True
    assert "Mock Login" in _picker(server)  # the public app serves it at once

    good = admin.post("/v1/connectors/mp/test", {"username": "kilgore", "password": "trout"})
    bad = admin.post("/v1/connectors/mp/test", {"username": "kilgore", "password": "nope"})
    assert good["ok"] is True and "logged in" in good["message"]
    assert bad["ok"] is False
    admin.patch("/v1/connectors/mp", {"name": "Renamed Mock"})
    wait_for(lambda: "Renamed Mock" in _picker(server), what="the renamed connector")
    # An edited config that leaves the secret out keeps it (the console never sees it) ...
    admin.patch("/v1/connectors/mp", {"config": {"username": "kilgore2"}})
    assert admin.post("/v1/connectors/mp/test", {"username": "kilgore2", "password": "trout"})["ok"] is True
    # ... and one that names it replaces it; a failing edit is refused and changes nothing.
    with pytest.raises(AdminAPIError) as refused:
        admin.patch("/v1/connectors/mp", {"config": {"username": "x"}, "type": "ldap"})
    assert refused.value.problems == [{"path": "type", "message": "the type cannot change"}]
    checked = admin.post("/v1/connectors/mp/validate", {"config": {"username": "k2"},
                                                        "test_username": "k2", "test_password": "trout"})
    assert checked["ok"] is True and "logged in" in checked["message"]
    admin.patch("/v1/connectors/mp", {"config": {"username": "k3", "password": "new-trout"}})
    assert admin.post("/v1/connectors/mp/test", {"username": "k3", "password": "new-trout"})["ok"] is True
    assert admin.post("/v1/connectors/mp/test", {"username": "k3", "password": "trout"})["ok"] is False
    admin.delete("/v1/connectors/mp")
    assert "Renamed Mock" not in _picker(server)
    events = [e for e in admin.get("/v1/audit", q="connectors") if e["target"] == "mp"]
    assert "trout" not in json.dumps(events) and "new-trout" not in json.dumps(events)


def test_connector_problems_name_their_key_paths(server: Server) -> None:
    """The server validates a stored connector as a config file's: every problem with its key path."""
    admin = server.admin()
    result = admin.post("/v1/connectors/validate", {"id": "bad-ldap", "type": "ldap", "config": {
        "host": "ldap://nope", "bindDN": "cn=x", "userSearch": {"baseDN": "ou=p", "filter": "no-parens"},
        "groupSearch": {"userMatchers": [{"userAttr": "uid", "grupAttr": "memberUid"}]}}})
    assert result["ok"] is False
    where = {p["path"] for p in result["problems"]}
    assert {"config.host", "config.bindPW", "config.bindDN", "config.userSearch.filter",
            "config.userSearch.username"} <= where
    # An unknown key inside a list entry is not a field of the form: it is reported on the block.
    assert any(p["path"] == "config" and "groupSearch.userMatchers[0].grupAttr" in p["message"]
               for p in result["problems"])
    with pytest.raises(AdminAPIError) as bad:
        admin.post("/v1/connectors", {"id": "bad id!", "type": "nope", "config": []})
    assert {p["path"] for p in bad.value.problems} == {"id", "type", "config"}
    assert all(c["id"] != "bad-ldap" for c in admin.get("/v1/connectors"))


def test_sessions_list_and_revoke(server: Server) -> None:
    now = datetime.now(UTC)

    async def seed() -> None:
        storage = await open_sqlite(str(server.workdir / "portico.db"))
        try:
            for n, client in ((1, "app"), (2, "kubectl")):
                token = RefreshToken(id=f"rt{n}", token="digest", client_id=client, connector_id="local",
                                     claims=Claims(user_id="u-42", username="ann", email="ann@example.com"),
                                     scopes=("openid", "offline_access"), created_at=now, last_used=now)
                await storage.refresh_tokens.create(token)
            await storage.offline_sessions.create(OfflineSession("u-42", "local"))
        finally:
            await storage.close()

    asyncio.run(seed())
    admin = server.admin()
    listed = admin.get("/v1/sessions", user="ann@example.com")
    assert {t["id"] for t in listed["refresh_tokens"]} == {"rt1", "rt2"}
    assert listed["offline_sessions"] == [{"user_id": "u-42", "connector_id": "local", "tokens": 2}]
    assert admin.delete("/v1/sessions/rt1")["revoked"] == ["rt1"]
    assert [t["id"] for t in admin.get("/v1/sessions", user="u-42")["refresh_tokens"]] == ["rt2"]
    assert admin.post("/v1/sessions/revoke", {"user": "ann"})["revoked"] == ["rt2"]
    after = admin.get("/v1/sessions", user="u-42")
    assert after == {"refresh_tokens": [], "offline_sessions": []}


def test_keys_rotate_now(server: Server) -> None:
    admin = server.admin()
    before = admin.get("/v1/keys")
    rotated = admin.post("/v1/keys/rotate")
    assert rotated["previous_kid"] == before["current_kid"] != rotated["current_kid"]
    assert before["current_kid"] in [v["kid"] for v in rotated["verification_keys"]]
    jwks = httpx.get(f"{server.issuer}/keys", timeout=10).json()
    assert {k["kid"] for k in jwks["keys"]} >= {before["current_kid"], rotated["current_kid"]}
    assert any(e["action"] == "keys.rotate" and e["result"] == "ok" for e in admin.get("/v1/audit"))


def test_overview_config_and_reload(server: Server) -> None:
    admin = server.admin()
    overview = admin.get("/v1/overview")
    assert overview["issuer"] == server.issuer and overview["storage"]["type"] == "sqlite3"
    assert f"http://127.0.0.1:{server.port}" in overview["listeners"]
    assert overview["keys"]["current_kid"]
    config = admin.get("/v1/config")
    assert config["path"] == str(server.config_path)
    assert "app-secret" not in config["text"] and "secret: ********" in config["text"]
    assert str(server.config_path) in config["watching"]["files"]
    report = admin.post("/v1/reload")
    assert report["result"] == "applied" and report["trigger"] == "api"
    assert any(e["action"] == "config.reload" for e in admin.get("/v1/audit"))


def test_errors_are_json_with_codes(server: Server) -> None:
    admin = server.admin()
    for method, path, status in (("GET", "/v1/nope", 404), ("PUT", "/v1/clients", 405),
                                 ("GET", "/v1/clients/missing", 404)):
        with pytest.raises(AdminAPIError) as err:
            admin.call(method, path)
        assert err.value.status == status
    with pytest.raises(AdminUnavailable) as gone:
        AdminClient(str(Path(server.socket).with_name("other.sock"))).get("/v1/overview")
    assert "is `portico serve` running?" in str(gone.value)
