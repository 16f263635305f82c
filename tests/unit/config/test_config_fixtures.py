"""One fixture file per kind of config problem: each asserts the key path, the line and the text."""

from __future__ import annotations

import base64
from datetime import timedelta
from pathlib import Path

import bcrypt

from appliance.config.load import load_config, parse_config
from appliance.config.schema import Config, Problem

FIXTURES = Path(__file__).parent / "fixtures"
DEX_PASSWORD_HASH = "$2a$10$2b2cU8CPhOTaGrs1HRQuAueS7JTT5ZHsHSzYiFPm1leZck7Mc8T4W"


def load(name: str, env: dict[str, str] | None = None) -> tuple[Config | None, list[Problem]]:
    return load_config(str(FIXTURES / name), env=env or {})


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]


def test_dex_dev_config_loads_unchanged() -> None:
    config, problems = load("dex-dev.yaml")
    assert errors(problems) == []
    assert config is not None
    assert config.issuer == "http://127.0.0.1:5556/dex"
    assert config.storage.type == "sqlite3"
    assert config.storage.config == {"file": "examples/dex.db"}
    assert config.web.http == "0.0.0.0:5556"
    assert config.telemetry.http == "0.0.0.0:5558"
    assert config.logger.level == "debug"
    assert config.expiry.refresh_tokens.reuse_interval == timedelta(seconds=3)
    assert config.expiry.refresh_tokens.valid_if_not_used_for == timedelta(days=90)
    assert config.expiry.refresh_tokens.absolute_lifetime == timedelta(hours=3960)
    [client] = config.static_clients
    assert (client.id, client.secret, client.name) == (
        "example-app",
        "ZXhhbXBsZS1hcHAtc2VjcmV0",
        "Example App",
    )
    assert client.redirect_uris == ("http://127.0.0.1:5555/callback", "/dex/device/callback")
    [connector] = config.connectors
    assert (connector.type, connector.id, connector.name, connector.config) == (
        "mockCallback",
        "mock",
        "Example",
        {},
    )
    assert config.enable_password_db is True
    [password] = config.static_passwords
    assert password.email == "admin@example.com"
    assert bcrypt.checkpw(b"password", password.hash.encode())
    assert config.source_path == str(FIXTURES / "dex-dev.yaml")
    # grpc is present in Dex's example: a warning, not an error
    assert [(p.path, p.line) for p in problems] == [("grpc", 35)]


def test_bad_yaml_is_one_problem_with_the_parser_line() -> None:
    config, problems = load("bad-yaml.yaml")
    assert config is None
    assert problems == [Problem("error", "", 8, "invalid YAML: mapping values are not allowed here")]


def test_unknown_key_suggests_the_closest_valid_one() -> None:
    config, problems = load("unknown-key.yaml")
    assert config is None
    assert problems == [
        Problem("error", "oauth2.skipAprovalScreen", 9, 'unknown key (did you mean "skipApprovalScreen"?)')
    ]


def test_wrong_types_name_the_path_and_line() -> None:
    config, problems = load("wrong-type.yaml")
    assert config is None
    assert problems == [
        Problem("error", "enablePasswordDB", 8, "expected true or false, got a string"),
        Problem("error", "staticClients[0].redirectURIs", 13, "expected a list, got a string"),
    ]


def test_bad_durations_are_errors_naming_the_key() -> None:
    config, problems = load("bad-duration.yaml")
    assert config is None
    assert [(p.severity, p.path, p.line) for p in problems] == [
        ("error", "expiry.idTokens", 9),
        ("error", "expiry.refreshTokens.validIfNotUsedFor", 11),
    ]
    assert problems[0].message.startswith('unknown unit "d" in duration "1d"')
    assert 'write days as hours, e.g. "24h"' in problems[0].message
    assert problems[1].message.startswith('unknown unit "days" in duration "90days"')


def test_missing_issuer_points_at_the_top_mapping() -> None:
    config, problems = load("missing-issuer.yaml")
    assert config is None
    assert problems == [
        Problem(
            "error",
            "issuer",
            2,
            "missing issuer: the public URL of Portico, e.g. https://auth.example.com/dex",
        )
    ]


def test_issuer_must_be_an_http_url() -> None:
    config, problems = load("bad-issuer.yaml")
    assert config is None
    assert problems == [
        Problem(
            "error",
            "issuer",
            1,
            '"127.0.0.1:5556/dex" is not an http(s) URL with a host, e.g. https://auth.example.com/dex',
        )
    ]


def test_duplicate_client_id() -> None:
    config, problems = load("duplicate-client.yaml")
    assert config is None
    assert problems == [
        Problem(
            "error",
            "staticClients[1].id",
            13,
            'duplicate client id "example-app" (first used by staticClients[0])',
        )
    ]


def test_confidential_client_without_secret_public_one_is_fine() -> None:
    config, problems = load("missing-secret.yaml")
    assert config is None
    assert problems == [
        Problem(
            "error",
            "staticClients[0].secret",
            9,
            "a confidential client needs secret (or secretEnv); or set public: true",
        )
    ]


def test_unknown_connector_type() -> None:
    config, problems = load("unknown-connector.yaml")
    assert config is None
    assert problems == [
        Problem("error", "connectors[1].type", 12, 'unknown connector type "ldpa" (did you mean "ldap"?)')
    ]


def test_unsupported_storage_type() -> None:
    config, problems = load("unsupported-storage.yaml")
    assert config is None
    assert problems == [
        Problem("error", "storage.type", 3, "storage type etcd is not supported by Portico yet")
    ]


def test_bad_bcrypt_hashes_and_base64_of_a_good_one() -> None:
    config, problems = load("bad-bcrypt.yaml")
    assert config is None
    assert [(p.severity, p.path, p.line) for p in problems] == [
        ("error", "staticPasswords[0].hash", 11),
        ("error", "staticPasswords[1].hash", 15),
    ]
    assert problems[0].message.startswith("not a bcrypt hash")
    assert "password" not in problems[0].message.split(";")[0]  # the bad value is never echoed
    assert problems[1].message.startswith("bcrypt cost 4 is outside 10..16")


MINIMAL = """\
issuer: http://127.0.0.1:5556/dex
storage: {type: memory}
web: {http: "127.0.0.1:5556"}
enablePasswordDB: true
"""


def test_base64_of_a_bcrypt_hash_is_decoded_as_dex_does() -> None:
    encoded = base64.b64encode(DEX_PASSWORD_HASH.encode()).decode()
    text = MINIMAL + f"staticPasswords:\n  - {{email: a@example.com, userID: u1, hash: {encoded}}}\n"
    config, problems = parse_config(text, source="test.yaml", env={})
    assert problems == []
    assert config is not None
    assert config.static_passwords[0].hash == DEX_PASSWORD_HASH


ENV = {
    "PG_HOST": "db.internal",
    "PG_PORT": "5433",
    "PG_PASSWORD": "s3cr$t",
    "GITHUB_CLIENT_ID": "gh-id",
    "GITHUB_CLIENT_SECRET": "gh-secret",
    "GITHUB_ORG": "acme",
    "GITHUB_TEAM": "platform",
    "ROTATION": "12h",
}


def test_env_expansion_only_inside_storage_connector_and_signer_config() -> None:
    config, problems = load("env-expansion.yaml", ENV)
    assert problems == []
    assert config is not None
    assert config.storage.type == "postgres"
    assert config.storage.config == {
        "database": "portico",
        "user": "portico",
        "password": "s3cr$t",
        "host": "db.internal",
        "port": 5433,
        "ssl": {"mode": "disable"},
    }
    assert config.connectors[0].config == {
        "clientID": "gh-id",
        "clientSecret": "gh-secret",
        "redirectURI": "http://127.0.0.1:5556/dex/callback",
        "orgs": [{"name": "acme", "teams": ["platform"]}],
    }
    assert config.signer.keys_rotation_period == timedelta(hours=12)
    assert config.signer.algorithm == "ES256"
    assert config.expiry.signing_keys == timedelta(hours=12)
    assert config.frontend.issuer == "$PG_HOST"  # outside the three config blocks: not expanded


def test_env_expansion_of_unset_variables_warns_and_gives_empty_strings() -> None:
    config, problems = load("env-expansion.yaml", {**ENV, "PG_PASSWORD": "", "GITHUB_CLIENT_SECRET": ""})
    assert problems == []  # set but empty: no warning, as os.ExpandEnv cannot tell either
    env = {k: v for k, v in ENV.items() if k != "GITHUB_CLIENT_SECRET"}
    config, problems = load("env-expansion.yaml", env)
    assert problems == [
        Problem(
            "warning",
            "connectors[0].config.clientSecret",
            23,
            "environment variable GITHUB_CLIENT_SECRET is not set; "
            "$GITHUB_CLIENT_SECRET expands to an empty string",
        )
    ]
    assert config is not None
    assert config.connectors[0].config["clientSecret"] == ""


def test_env_expansion_can_be_turned_off_like_dex() -> None:
    config, problems = load("env-expansion.yaml", {**ENV, "DEX_EXPAND_ENV": "false"})
    assert config is None  # "$PG_PORT" is not a number and "$ROTATION" is not a duration
    assert [(p.path, p.line) for p in errors(problems)] == [
        ("storage.config.port", 6),
        ("signer.config.keysRotationPeriod", 31),
    ]


def test_id_env_and_secret_env() -> None:
    config, problems = load("client-env.yaml")
    assert config is None
    assert problems == [
        Problem(
            "error", "staticClients[0].idEnv", 9, "environment variable DEX_CLIENT_ID is not set or empty"
        ),
        Problem(
            "error",
            "staticClients[0].secretEnv",
            10,
            "environment variable DEX_CLIENT_SECRET is not set or empty",
        ),
    ]
    config, problems = load("client-env.yaml", {"DEX_CLIENT_ID": "secure-app", "DEX_CLIENT_SECRET": "x" * 32})
    assert problems == []
    assert config is not None
    assert (config.static_clients[0].id, config.static_clients[0].secret) == ("secure-app", "x" * 32)


def test_hash_from_env() -> None:
    config, problems = load("hash-from-env.yaml")
    assert config is None
    assert problems == [
        Problem(
            "error",
            "staticPasswords[0].hashFromEnv",
            11,
            "environment variable ADMIN_PASSWORD_HASH is not set or empty",
        )
    ]
    config, problems = load("hash-from-env.yaml", {"ADMIN_PASSWORD_HASH": DEX_PASSWORD_HASH})
    assert problems == []
    assert config is not None
    assert config.static_passwords[0].hash == DEX_PASSWORD_HASH
    config, problems = load("hash-from-env.yaml", {"ADMIN_PASSWORD_HASH": "not-a-hash"})
    assert [(p.path, p.line) for p in problems] == [("staticPasswords[0].hashFromEnv", 11)]
    assert problems[0].message.startswith("not a bcrypt hash")


def test_keys_match_case_insensitively() -> None:
    config, problems = load("case-insensitive.yaml")
    assert problems == []
    assert config is not None
    assert config.issuer == "http://127.0.0.1:5556/dex"
    assert config.storage.config == {"file": "portico.db"}
    assert config.web.http == "127.0.0.1:5556"
    assert config.expiry.id_tokens == timedelta(hours=1)
    assert config.expiry.refresh_tokens.reuse_interval == timedelta(seconds=3)
    assert config.enable_password_db is True
    assert config.static_passwords[0].user_id == "08a8684b-db88-4b73-90a9-3cd1661f5466"
    assert config.static_clients[0].redirect_uris == ("http://127.0.0.1:5555/callback",)


def test_dex_known_but_unsupported_keys_are_warnings() -> None:
    config, problems = load("dex-known-unsupported.yaml")
    assert config is not None
    assert [(p.severity, p.path, p.line) for p in problems] == [
        ("warning", "telemetry.enableProfiling", 10),
        ("warning", "grpc", 11),
        ("warning", "logger.excludeFields", 14),
    ]
    assert all(p.message.startswith("not supported by Portico yet, ignored: ") for p in problems)
    assert config.telemetry.enable_profiling is False
