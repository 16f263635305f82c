"""The `portico` command line: hash-password, version, config check, argument errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import bcrypt


def portico(*args: str, stdin: str = "", cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance", *args],
        input=stdin, capture_output=True, text=True, timeout=60, cwd=cwd,
    )


def test_hash_password_from_stdin_verifies_with_bcrypt() -> None:
    result = portico("hash-password", stdin="s3cret pass\n")
    assert result.returncode == 0, result.stderr
    hashed = result.stdout.strip()
    assert hashed.startswith("$2b$10$")
    assert bcrypt.checkpw(b"s3cret pass", hashed.encode())
    assert not bcrypt.checkpw(b"s3cret pass\n", hashed.encode())


def test_hash_password_cost_and_refusals() -> None:
    assert portico("hash-password", "--cost", "12", stdin="pw\n").stdout.startswith("$2b$12$")
    bad_cost = portico("hash-password", "--cost", "4", stdin="pw\n")
    assert bad_cost.returncode == 2 and "between 10 and 16" in bad_cost.stderr
    empty = portico("hash-password", stdin="\n")
    assert empty.returncode == 1 and "empty password" in empty.stderr


def test_version_names_the_key_libraries() -> None:
    result = portico("version")
    assert result.returncode == 0
    assert result.stdout.startswith("portico ")
    for name in ("quart", "hypercorn", "joserfc", "aiosqlite"):
        assert f"\n{name} " in result.stdout


def test_config_check_good_and_bad(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        "issuer: http://127.0.0.1:5556/dex\n"
        "storage:\n  type: sqlite3\n  config:\n    file: portico.db\n"
        "web:\n  http: 127.0.0.1:5556\n"
        "staticClients:\n  - id: app\n    secret: s\n    redirectURIs: ['http://127.0.0.1:5555/callback']\n"
    )
    ok = portico("config", "check", str(good))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "0 errors" in ok.stdout

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "issuer: http://127.0.0.1:5556/dex\n"
        "storag:\n  type: sqlite3\n"
        "web:\n  http: 127.0.0.1:5556\n"
        "expiry:\n  idTokens: 1d\n"
    )
    failed = portico("config", "check", str(bad))
    assert failed.returncode == 1
    assert "storag" in failed.stderr and "did you mean" in failed.stderr and "storage" in failed.stderr
    assert "bad.yaml:7: error: expiry.idTokens" in failed.stderr
    assert "2 errors" in failed.stderr
    assert not (tmp_path / "portico.db").exists()


def test_config_check_missing_file(tmp_path: Path) -> None:
    result = portico("config", "check", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "nope.yaml" in result.stderr


def test_serve_refuses_a_broken_config_without_starting(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("issuer: not a url\n")
    result = portico("serve", str(bad), cwd=tmp_path)
    assert result.returncode == 1
    assert "issuer" in result.stderr and "nothing was started" in result.stderr
