"""The validation rules one by one, on small inline configs built over a minimal valid one."""

from __future__ import annotations

from datetime import timedelta

import pytest

from appliance.config.load import parse_config
from appliance.config.schema import Config, Problem

BASE = """\
issuer: http://127.0.0.1:5556/dex
storage: {type: memory}
web: {http: "127.0.0.1:5556"}
"""
HASH = "$2a$10$2b2cU8CPhOTaGrs1HRQuAueS7JTT5ZHsHSzYiFPm1leZck7Mc8T4W"


def run(text: str, env: dict[str, str] | None = None) -> tuple[Config | None, list[Problem]]:
    return parse_config(text, source="t.yaml", env=env or {})


def only(text: str, env: dict[str, str] | None = None) -> tuple[str, str, int, str]:
    """The one problem text produces, as (severity, path, line, message)."""
    _, problems = run(text, env)
    assert len(problems) == 1, problems
    p = problems[0]
    return p.severity, p.path, p.line, p.message


def test_minimal_config_and_defaults() -> None:
    config, problems = run(BASE)
    assert problems == []
    assert config is not None
    assert config.expiry.id_tokens == timedelta(hours=24)
    assert config.expiry.auth_requests == timedelta(hours=24)
    assert config.expiry.device_requests == timedelta(minutes=5)
    assert config.signer.keys_rotation_period == timedelta(hours=6)
    assert config.oauth2.grant_types == (
        "authorization_code",
        "refresh_token",
        "urn:ietf:params:oauth:grant-type:device_code",
        "urn:ietf:params:oauth:grant-type:token-exchange",
    )
    assert config.oauth2.response_types == ("code",)
    assert config.logger.level == "info"
    assert config.frontend.theme == "light"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", (0, "the configuration is empty")),
        ("# only a comment\n", (0, "the configuration is empty")),
        ("- a\n- b\n", (1, "expected a mapping, got a list")),
        (
            "a: 1\n---\nb: 2\n",
            (2, "invalid YAML: expected a single document in the stream but found another document"),
        ),
    ],
)
def test_not_a_config(text: str, expected: tuple[int, str]) -> None:
    config, problems = run(text)
    assert config is None
    assert [(p.line, p.message) for p in problems] == [expected]


def test_every_problem_is_reported_at_once() -> None:
    config, problems = run("isuer: x\nstorage: {type: sqlite3}\nweb: {}\nlogger: {level: loud}\n")
    assert config is None
    # "isuer" is suggested as "issuer", so the missing issuer is not reported a second time
    assert [(p.path, p.line) for p in problems] == [
        ("isuer", 1),
        ("storage.config.file", 2),
        ("web.http", 3),
        ("logger.level", 4),
    ]
    assert problems[0].message == 'unknown key (did you mean "issuer"?)'


def test_duplicate_keys_even_in_other_case() -> None:
    assert only(BASE + "Issuer: http://127.0.0.1:5556/x\n") == (
        "error",
        "Issuer",
        4,
        "duplicate key (already given on line 1; keys match case-insensitively)",
    )


def test_yaml_merge_keys_work() -> None:
    text = BASE + (
        "staticClients:\n"
        "  - &app {id: a, name: A, secret: s, redirectURIs: ['http://127.0.0.1/cb']}\n"
        "  - <<: *app\n"
        "    id: b\n"
    )
    config, problems = run(text)
    assert problems == []
    assert config is not None
    assert [(c.id, c.secret) for c in config.static_clients] == [("a", "s"), ("b", "s")]


def test_issuer_rules() -> None:
    assert only("storage: {type: memory}\nweb: {http: ':1'}\nissuer: https://h/dex?x=1\n")[1:] == (
        "issuer",
        3,
        "the issuer URL must not have a query or a fragment (OpenID Connect Discovery)",
    )
    severity, path, line, message = only(BASE.replace("http://127.0.0.1:5556", "http://auth.example.com"))
    assert (severity, path, line) == ("warning", "issuer", 1)
    assert "requires https" in message
    assert only(BASE.replace("issuer: http://127.0.0.1:5556/dex", "issuer: [a]"))[1:] == (
        "issuer",
        1,
        "expected a string, got a list",
    )


def test_storage_rules() -> None:
    text = BASE.replace("storage: {type: memory}", "storage: {type: mysql, config: {host: db}}")
    assert only(text) == ("error", "storage.type", 2, "storage type mysql is not supported by Portico yet")
    text = BASE.replace("storage: {type: memory}", "storage: {type: sqllite3}")
    assert only(text) == (
        "error",
        "storage.type",
        2,
        'unknown storage type "sqllite3" (did you mean "sqlite3"?)',
    )
    assert only(BASE.replace("storage: {type: memory}\n", "")) == (
        "error",
        "storage",
        1,
        "no storage configured (Dex requires it), e.g. type: sqlite3",
    )
    text = BASE.replace(
        "storage: {type: memory}", "storage: {type: postgres, config: {port: 99999, sssl: {}}}"
    )
    _, problems = run(text)
    assert [(p.path, p.message) for p in problems] == [
        ("storage.config.sssl", 'unknown key (did you mean "ssl"?)'),
        ("storage.config.port", "99999 is out of range 0..65535"),
    ]


def test_web_rules() -> None:
    assert only(BASE.replace('web: {http: "127.0.0.1:5556"}', "web: {https: '0.0.0.0:443', tlsCert: c}")) == (
        "error",
        "web.tlsKey",
        3,
        "web.https needs tlsKey (the private key file)",
    )
    assert only(BASE.replace('"127.0.0.1:5556"', '"::1:5556"'))[1:3] == ("web.http", 3)
    config, problems = run(BASE.replace('"127.0.0.1:5556"', '"[::1]:5556"'))
    assert problems == []
    assert only(BASE.replace('web: {http: "127.0.0.1:5556"}', "web: {}"))[1:] == (
        "web.http",
        3,
        "set web.http and/or web.https: an address to listen on",
    )
    text = BASE + "  tlsMinVersion: '1.3'\n  tlsMaxVersion: '1.2'\n"
    text = text.replace('web: {http: "127.0.0.1:5556"}', 'web:\n  http: "127.0.0.1:5556"')
    assert only(text)[1:] == ("web.tlsMinVersion", 5, "tlsMinVersion is greater than tlsMaxVersion")
    text = BASE.replace(
        'web: {http: "127.0.0.1:5556"}',
        'web: {http: ":5556", headers: {x-frame-options: DENY}, clientRemoteIP: {header: X-Real-IP}}',
    )
    config, problems = run(text)
    assert [(p.severity, p.path) for p in problems] == [("warning", "web.clientRemoteIP.header")]
    assert config is not None
    assert config.web.headers == {"X-Frame-Options": "DENY"}
    assert only(BASE + "web2: {}\n")[1:] == ("web2", 4, 'unknown key (did you mean "web"?)')


def test_client_redirect_uris() -> None:
    text = BASE + (
        "staticClients:\n"
        "- id: a\n"
        "  name: A\n"
        "  public: true\n"
        "  redirectURIs:\n"
        "  - /device/callback\n"
        "  - /dex/device/callback\n"
        "  - urn:ietf:wg:oauth:2.0:oob\n"
        "  - com.example.app:/oauth\n"
        "  - http://[::1]:8000/cb\n"
        "  - https://app.example.com/cb\n"
        "  - callback\n"
        "  - http://app.example.com/cb\n"
    )
    _, problems = run(text)
    assert [(p.severity, p.path, p.line) for p in problems] == [
        ("error", "staticClients[0].redirectURIs[6]", 15),
        ("warning", "staticClients[0].redirectURIs[7]", 16),
    ]


def test_client_id_and_id_env_exclude_each_other() -> None:
    text = BASE + "staticClients:\n- {id: a, idEnv: A, name: A, public: true}\n"
    assert only(text, {"A": "x"}) == (
        "error",
        "staticClients[0].idEnv",
        5,
        "id and idEnv exclude each other; give one",
    )


def test_static_passwords_need_password_db() -> None:
    text = BASE + f"staticPasswords:\n- {{email: a@b.c, hash: '{HASH}', userID: u}}\n"
    assert only(text) == (
        "error",
        "staticPasswords",
        5,
        "static passwords need enablePasswordDB: true (as in Dex)",
    )


def test_connectors_rules() -> None:
    text = BASE + (
        "enablePasswordDB: true\n"
        "connectors:\n"
        "- {type: ldap, id: local, name: L}\n"
        "- {type: oidc, id: x, name: X, config: {issuer: 'https://a'}}\n"
        "- {type: github, id: x, name: Y}\n"
        "- {type: gitlab, id: z}\n"
    )
    _, problems = run(text)
    assert [(p.path, p.line, p.message) for p in problems] == [
        ("connectors[0].id", 6, 'the id "local" is taken by the password database (enablePasswordDB)'),
        ("connectors[2].id", 8, 'duplicate connector id "x" (first used by connectors[1])'),
        ("connectors[3].name", 9, "a connector needs name"),
    ]


def test_oauth2_grant_types_resolve_like_dex() -> None:
    text = BASE + (
        "enablePasswordDB: true\n"
        "oauth2:\n"
        "  responseTypes: [code, 'code id_token', token]\n"
        "  passwordConnector: local\n"
    )
    config, problems = run(text)
    assert problems == []
    assert config is not None
    assert config.oauth2.grant_types == (
        "authorization_code",
        "implicit",
        "password",
        "refresh_token",
        "urn:ietf:params:oauth:grant-type:device_code",
        "urn:ietf:params:oauth:grant-type:token-exchange",
    )
    assert config.oauth2.response_types == ("code", "code id_token", "token")
    config, problems = run(BASE + "oauth2: {grantTypes: [client_credentials, authorization_code]}\n")
    assert problems == []
    assert config is not None
    assert config.oauth2.grant_types == ("authorization_code", "client_credentials")
    config, _ = run(BASE, {"DEX_CLIENT_CREDENTIAL_GRANT_ENABLED_BY_DEFAULT": "true"})
    assert config is not None
    assert "client_credentials" in config.oauth2.grant_types
    assert only(BASE + "oauth2: {passwordConnector: ldap}\n") == (
        "warning",
        "oauth2.passwordConnector",
        4,
        'no connector has id "ldap"',
    )
    assert only(BASE + "oauth2: {pkce: {codeChallengeMethodsSupported: [S256, S512]}}\n")[1:] == (
        "oauth2.pkce.codeChallengeMethodsSupported[1]",
        4,
        'unsupported PKCE method "S512"; one of S256, plain',
    )


def test_signer_and_deprecated_signing_keys() -> None:
    config, problems = run(BASE + "expiry: {signingKeys: 3h}\n")
    assert config is not None
    assert config.signer.keys_rotation_period == timedelta(hours=3)
    assert [(p.severity, p.path, p.line) for p in problems] == [("warning", "expiry.signingKeys", 4)]
    config, problems = run(
        BASE + "expiry: {signingKeys: 3h}\nsigner: {type: local, config: {keysRotationPeriod: 1h}}\n"
    )
    assert config is not None
    assert config.signer.keys_rotation_period == timedelta(hours=1)
    assert config.expiry.signing_keys == timedelta(hours=1)
    assert "using signer.config.keysRotationPeriod" in problems[0].message
    assert only(BASE + "signer: {type: vault, config: {addr: x}}\n") == (
        "error",
        "signer.type",
        4,
        "signer type vault is not supported by Portico yet",
    )
    assert only(BASE + "signer: {type: local}\n")[1:] == (
        "signer.config.keysRotationPeriod",
        4,
        'the local signer needs config.keysRotationPeriod, e.g. "6h"',
    )


def test_frontend_themes() -> None:
    config, problems = run(BASE + "frontend: {theme: tectonic}\n")
    assert config is not None
    assert config.frontend.theme == "light"
    assert [(p.severity, p.path) for p in problems] == [("warning", "frontend.theme")]
    assert only(BASE + "frontend: {theme: drak}\n") == (
        "error",
        "frontend.theme",
        4,
        'unknown theme "drak"; Portico has light and dark (did you mean "dark"?)',
    )
    config, problems = run(BASE + "frontend: {theme: acme, dir: /srv/web}\n")
    assert config is not None
    assert config.frontend.theme == "acme"
    assert [p.severity for p in problems] == ["warning"]


def test_logger_values_are_case_insensitive_like_slog() -> None:
    config, problems = run(BASE + "logger: {level: WARN, format: JSON}\n")
    assert problems == []
    assert config is not None
    assert (config.logger.level, config.logger.format) == ("warn", "json")


def test_recursive_aliases_are_errors_not_crashes() -> None:
    text = BASE + "connectors:\n- type: oidc\n  id: a\n  name: A\n  config: &x {k: *x}\n"
    config, problems = run(text)
    assert config is None
    assert [(p.path, p.line) for p in problems] == [("connectors[0].config.k", 8)]
    config, problems = run(BASE + "oauth2: &y\n  <<: *y\n  skipApprovalScreen: true\n")  # merges itself
    assert config is not None
    assert config.oauth2.skip_approval_screen is True


def test_missing_key_reported_unless_a_misspelling_was_suggested() -> None:
    _, problems = run(BASE.replace('web: {http: "127.0.0.1:5556"}', 'web: {htpp: "127.0.0.1:5556"}'))
    assert [(p.path, p.message) for p in problems] == [("web.htpp", 'unknown key (did you mean "http"?)')]
    _, problems = run(BASE.replace("issuer:", "url:"))
    assert [(p.path, p.line, p.message) for p in problems] == [
        ("url", 1, "unknown key"),
        ("issuer", 1, "missing issuer: the public URL of Portico, e.g. https://auth.example.com/dex"),
    ]
