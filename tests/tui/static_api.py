"""Fixed admin API answers for the console's snapshot tests (a snapshot needs data that never changes).

The behaviour tests run against a real server; `test_static_answers_match_the_real_api` there checks
that these answers keep the real API's shape.
"""

from __future__ import annotations

import copy
from typing import Any

from appliance.connectors.schemas import SCHEMAS
from appliance.tui.data import AdminUnavailable

AT = "2026-03-01T09:30:00+00:00"
KID = "kq2v3x7oadnf4h2mcz6w5r3jpe"
OLD_KID = "m4a7cw2yq9tj3ue5pzrb8kdl6n"

ANSWERS: dict[str, Any] = {
    "/v1/overview": {
        "issuer": "https://auth.example.com/dex", "version": "0.1.0", "pid": 4242, "uptime_s": 93784,
        "storage": {"type": "sqlite3", "where": "file=/var/lib/portico/portico.db"},
        "listeners": ["https://0.0.0.0:443", "unix:/run/portico/admin.sock (admin)"],
        "connectors": [
            {"id": "ldap", "type": "ldap", "name": "Corporate LDAP", "source": "config", "state": "open",
             "message": "", "tested_at": AT, "test_result": "ok: bound as cn=portico"},
            {"id": "github", "type": "github", "name": "GitHub", "source": "storage", "state": "error",
             "message": "clientSecret missing", "tested_at": "", "test_result": ""},
            {"id": "local", "type": "local", "name": "Email", "source": "builtin", "state": "open",
             "message": "", "tested_at": "", "test_result": ""},
        ],
        "keys": {"algorithm": "RS256", "current_kid": KID, "age_s": 7260, "next_rotation": AT,
                 "next_rotation_in_s": 14340},
        "config": {"path": "/etc/portico/config.yaml", "generation": 4, "last_reload": {
            "result": "applied", "trigger": "watch", "at": AT, "duration_ms": 12.5, "generation": 4,
            "problems": [], "restart_required": ["web.https"], "changes": ["staticClients +grafana"],
            "message": "applied"}},
        "activity": {"logins_last_hour": 37, "tokens_last_hour": 212},
    },
    "/v1/clients": [
        {"id": "kubernetes", "name": "Kubernetes", "public": False, "has_secret": True,
         "redirect_uris": ["http://localhost:8000"], "trusted_peers": [], "logo_url": "",
         "allowed_connectors": [], "source": "config", "read_only": True},
        {"id": "grafana", "name": "Grafana", "public": False, "has_secret": True,
         "redirect_uris": ["https://grafana.example.com/login/generic_oauth"],
         "trusted_peers": ["kubernetes"], "logo_url": "", "allowed_connectors": [], "source": "storage",
         "read_only": False},
    ],
    "/v1/users": [
        {"email": "admin@example.com", "username": "admin", "user_id": "08a8684b", "groups": ["admins"],
         "source": "config", "read_only": True, "totp": True},
        {"email": "jane@example.com", "username": "jane", "user_id": "41b2c7de", "groups": ["dev", "ops"],
         "source": "storage", "read_only": False, "totp": False},
    ],
    "/v1/connectors": [
        {"id": "ldap", "type": "ldap", "name": "Corporate LDAP", "source": "config", "state": "open",
         "message": "", "tested_at": AT, "test_result": "ok: bound as cn=portico", "read_only": True},
        {"id": "github", "type": "github", "name": "GitHub", "source": "storage", "state": "error",
         "message": "clientSecret missing", "tested_at": "", "test_result": "", "read_only": False,
         "config": {"clientID": "abc", "redirectURI": "https://auth.example.com/dex/callback",
                    "orgs": [{"name": "acme", "teams": ["platform", "sre"]}]}, "secrets": ["clientSecret"]},
        {"id": "local", "type": "local", "name": "Email", "source": "builtin", "state": "open",
         "message": "", "tested_at": "", "test_result": "", "read_only": True},
    ],
    # The real schemas: the forms are built from them (appliance.connectors.schemas).
    "/v1/connector-types": {t: s.as_dict() for t, s in sorted(SCHEMAS.items())},
    "/v1/sessions": {
        "refresh_tokens": [
            {"id": "rt7qyzo2mtsbjq", "client_id": "kubernetes", "connector_id": "ldap", "user_id": "jdoe",
             "username": "jdoe", "email": "jdoe@example.com", "scopes": ["openid", "offline_access"],
             "created_at": AT, "last_used": AT, "expiry": ""},
            {"id": "rtd4kfw9c1pxae", "client_id": "grafana", "connector_id": "local", "user_id": "41b2c7de",
             "username": "jane", "email": "jane@example.com", "scopes": ["openid"], "created_at": AT,
             "last_used": "2026-03-01T08:02:11+00:00", "expiry": ""},
        ],
        "offline_sessions": [{"user_id": "jdoe", "connector_id": "ldap", "tokens": 1},
                             {"user_id": "41b2c7de", "connector_id": "local", "tokens": 1}],
    },
    "/v1/keys": {"algorithm": "RS256", "current_kid": KID, "age_s": 7260, "next_rotation": AT,
                 "next_rotation_in_s": 14340,
                 "verification_keys": [{"kid": OLD_KID, "expiry": "2026-03-02T03:30:00+00:00"}]},
    "/v1/config": {
        "path": "/etc/portico/config.yaml",
        "text": "issuer: https://auth.example.com/dex\nstorage:\n  type: sqlite3\n  config:\n"
                "    file: /var/lib/portico/portico.db\nweb:\n  https: 0.0.0.0:443\nstaticClients:\n"
                "  - id: kubernetes\n    secret: ********\n",
        "generation": 5,
        "watching": {"files": ["/etc/portico/config.yaml"], "folders": []},
        "history": [{"result": "rejected", "trigger": "watch", "at": AT, "duration_ms": 3.1, "generation": 4,
                     "problems": [{"severity": "error", "path": "expiry.idTokens", "line": 14,
                                   "message": 'invalid duration "1d": use h, m, s (Go syntax)'}],
                     "restart_required": [], "changes": [],
                     "message": "the configuration has errors; the running configuration keeps serving"}],
        "metrics": {},
    },
    "/v1/audit": [
        {"id": "000632a1", "time": "2026-03-01T09:12:03+00:00", "uid": 0, "pid": 1201, "gid": 0,
         "action": "clients.create", "target": "grafana", "details": {}, "result": "ok"},
        {"id": "000632a2", "time": "2026-03-01T09:14:45+00:00", "uid": 1000, "pid": 1377, "gid": 1000,
         "action": "keys.rotate", "target": "", "details": {}, "result": "ok"},
        {"id": "000632a3", "time": "2026-03-01T09:20:10+00:00", "uid": 65534, "pid": 1402, "gid": 65534,
         "action": "users.delete", "target": "jane@example.com", "details": {}, "result": "denied"},
    ],
}


class StaticApi:
    """Answers GETs from ANSWERS; the audit tail answers once (later polls find nothing new)."""

    def __init__(self, unavailable: bool = False) -> None:
        self._unavailable = unavailable

    @property
    def where(self) -> str:
        return "/run/portico/admin.sock"

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None,
                   query: dict[str, Any] | None = None) -> Any:
        if self._unavailable:
            raise AdminUnavailable("no admin socket at /run/portico/admin.sock: is `portico serve` running?")
        if path == "/v1/audit" and (query or {}).get("after"):
            return []
        return copy.deepcopy(ANSWERS[path])
