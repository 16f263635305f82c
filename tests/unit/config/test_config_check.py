"""`portico config check`: exit codes, one line per problem and the summary; the embedded default."""

from __future__ import annotations

from pathlib import Path

import bcrypt

from appliance.config.load import check_config_file, default_config_text, format_problem, parse_config
from appliance.config.schema import Problem

FIXTURES = Path(__file__).parent / "fixtures"


def test_valid_file_with_warning_exits_0() -> None:
    path = str(FIXTURES / "dex-dev.yaml")
    code, text = check_config_file(path)
    assert code == 0
    lines = text.splitlines()
    assert lines[0].startswith(f"{path}:35: warning: grpc: not supported by Portico yet")
    assert lines[-1] == "0 errors, 1 warning"
    assert len(lines) == 2


def test_errors_exit_1_and_every_problem_is_listed() -> None:
    path = str(FIXTURES / "wrong-type.yaml")
    code, text = check_config_file(path)
    assert code == 1
    assert text.splitlines() == [
        f"{path}:8: error: enablePasswordDB: expected true or false, got a string",
        f"{path}:13: error: staticClients[0].redirectURIs: expected a list, got a string",
        "2 errors, 0 warnings",
    ]


def test_yaml_error_line_has_no_key_path() -> None:
    path = str(FIXTURES / "bad-yaml.yaml")
    code, text = check_config_file(path)
    assert (code, text) == (
        1,
        f"{path}:8: error: invalid YAML: mapping values are not allowed here\n1 error, 0 warnings\n",
    )


def test_unreadable_files_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    code, text = check_config_file(str(missing))
    assert code == 2
    assert text == f"{missing}: error: cannot read the file: No such file or directory\n"
    code, text = check_config_file(str(tmp_path))
    assert code == 2
    assert "Is a directory" in text
    binary = tmp_path / "latin1.yaml"
    binary.write_bytes(b"issuer: caf\xe9\n")
    code, text = check_config_file(str(binary))
    assert (code, text) == (2, f"{binary}: error: cannot read the file: it is not UTF-8 text\n")


def test_format_problem_without_line() -> None:
    assert format_problem("f.yaml", Problem("error", "issuer", 0, "x")) == "f.yaml: error: issuer: x"
    assert format_problem("f.yaml", Problem("warning", "", 3, "y")) == "f.yaml:3: warning: y"


def test_embedded_default_config() -> None:
    config, problems = parse_config(default_config_text(), env={})
    assert problems == []
    assert config is not None
    assert config.source_path == ""
    assert config.issuer == "http://127.0.0.1:5556/dex"
    assert (config.storage.type, config.storage.config) == ("sqlite3", {"file": "data/portico.db"})
    assert config.web.http == "127.0.0.1:5556"
    assert config.oauth2.skip_approval_screen is False
    assert config.enable_password_db is True
    [user] = config.static_passwords
    assert (user.email, user.username, user.groups) == (
        "admin@example.com",
        "admin",
        ("admins", "developers"),
    )
    assert user.user_id == "fd9d7267-8f66-47a6-8e01-d26d687f7c77"
    assert bcrypt.checkpw(b"password", user.hash.encode())
    [client] = config.static_clients
    assert (client.id, client.name, client.public, client.secret) == (
        "portico-demo",
        "Portico demo client",
        True,
        "",
    )
    assert client.redirect_uris == ("http://127.0.0.1:5555/callback", "http://localhost:8000/callback")


def test_reprs_hide_secrets() -> None:
    config, _ = parse_config((FIXTURES / "dex-dev.yaml").read_text(), env={})
    assert config is not None
    text = repr(config)
    assert "ZXhhbXBsZS1hcHAtc2VjcmV0" not in text
    assert "$2a$10$" not in text
    assert "example-app" in text
