"""A real `portico serve` on SQLite: locked and unknown accounts get the same answers (password grant
and form), the admin API and the CLI list and clear lockouts, the audit log and /metrics record them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
import yaml
from adminutil import REPO_ROOT, Server, start_server, wait_for
from bf_support import (
    PASSWORD,
    Browser,
    comparable_headers,
    comparable_page,
    counter,
    email,
    fail_until_locked,
    password_grant,
    server_config,
    telemetry_port,
)

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def telemetry() -> str:
    return f"http://127.0.0.1:{telemetry_port()}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, telemetry: str) -> Iterator[Server]:
    port = int(telemetry.rsplit(":", 1)[1])
    running = start_server(tmp_path_factory.mktemp("bruteforce"),
                           lambda p: server_config(p, telemetry_port=port))
    yield running
    running.stop()


def portico(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "appliance", *args, "--socket", str(server.socket)],
                          text=True, capture_output=True, timeout=60, cwd=REPO_ROOT)


def test_a_locked_account_answers_exactly_as_an_unknown_one(server: Server) -> None:
    issuer = server.issuer
    wrong = password_grant(issuer, email("jane"), "wrong password")
    fail_until_locked(issuer, email("jane"), times=2)  # the third failure locks
    locked = password_grant(issuer, email("jane"), PASSWORD)  # the right password, refused
    unknown = password_grant(issuer, "ghost@example.com", "wrong password")
    for answer in (wrong, locked, unknown):
        assert answer.status_code == 401
        assert answer.json() == {"error": "access_denied",
                                 "error_description": "Invalid username or password."}
    assert comparable_headers(locked) == comparable_headers(unknown) == comparable_headers(wrong)

    browser = Browser(issuer)
    try:
        locked_page = browser.post(email("jane"), PASSWORD)
        unknown_page = browser.post("ghost@example.com", "wrong password")
        known_wrong = browser.post(email("bob"), "wrong password")
    finally:
        browser.close()
    assert locked_page.status_code == unknown_page.status_code == known_wrong.status_code == 200
    assert "Incorrect email address or password" in locked_page.text
    assert comparable_page(locked_page.text, email("jane")) == comparable_page(unknown_page.text,
                                                                               "ghost@example.com")
    assert comparable_page(known_wrong.text, email("bob")) == comparable_page(unknown_page.text,
                                                                              "ghost@example.com")
    assert comparable_headers(locked_page) == comparable_headers(unknown_page)


def test_admin_api_lists_clears_and_audits(server: Server, telemetry: str) -> None:
    admin = server.admin()
    before = counter(telemetry, "portico_lockouts_total", kind="account")
    fail_until_locked(server.issuer, email("carol"))
    rows = {r["id"]: r for r in admin.get("/v1/lockouts")}
    carol = next(r for r in rows.values() if r["subject"] == email("carol"))
    assert carol["locked"] and carol["kind"] == "account" and carol["connector_id"] == "local"
    assert carol["failures"] == 3 and carol["locked_until"]
    assert password_grant(server.issuer, email("carol"), PASSWORD).status_code == 401
    assert counter(telemetry, "portico_lockouts_total", kind="account") == before + 1
    # The address counter shows with ?all (it has not reached its own limit).
    everything = admin.get("/v1/lockouts", all="1")
    assert any(r["kind"] == "ip" and r["subject"] == "127.0.0.1" and not r["locked"] for r in everything)

    cleared = admin.delete(admin.item("lockouts", carol["id"]))
    assert cleared["cleared"] == [carol["id"]]
    assert password_grant(server.issuer, email("carol"), PASSWORD).status_code == 200
    events = admin.get("/v1/audit", q="lockouts")
    started = [e for e in events if e["action"] == "lockouts.start" and e["target"] == carol["id"]]
    assert started and started[0]["details"]["username"] == email("carol")
    assert started[0]["details"]["client_ip"] == "127.0.0.1"
    assert any(e["action"] == "lockouts.clear" and e["target"] == carol["id"] and e["result"] == "ok"
               for e in events)
    assert PASSWORD not in str(events) and "wrong password" not in str(events)


def test_cli_lists_and_clears(server: Server) -> None:
    fail_until_locked(server.issuer, email("dave"))
    listed = portico(server, "lockouts", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("ID") and email("dave") in listed.stdout
    cleared = portico(server, "lockouts", "clear", "--user", email("DAVE"), "--connector", "local")
    assert cleared.returncode == 0, cleared.stderr
    assert "cleared account:local:dave@example.com" in cleared.stdout
    assert email("dave") not in portico(server, "lockouts", "list").stdout
    assert password_grant(server.issuer, email("dave"), PASSWORD).status_code == 200
    nothing = portico(server, "lockouts", "clear", "--user", "nobody-at-all")
    assert nothing.returncode == 1 and "no lockout" in nothing.stderr
    audit = portico(server, "audit", "--filter", "lockouts.clear")
    assert "account:local:dave@example.com" in audit.stdout


def test_a_success_resets_the_account_counter(server: Server) -> None:
    fail_until_locked(server.issuer, email("erin"), times=2)
    assert password_grant(server.issuer, email("erin"), PASSWORD).status_code == 200
    ids = {r["id"] for r in server.admin().get("/v1/lockouts", all="1")}
    assert "account:local:erin@example.com" not in ids
    # So two more failures do not lock.
    fail_until_locked(server.issuer, email("erin"), times=2)
    assert password_grant(server.issuer, email("erin"), PASSWORD).status_code == 200


def test_reload_applies_new_thresholds(server: Server) -> None:
    # One failure is enough once a reload lowers maxFailures to 1 (the last test: it changes the config).
    config = yaml.safe_load(server.config_path.read_text())
    config["security"]["bruteForce"]["account"]["maxFailures"] = 1
    server.write_config(config)
    result = server.admin().post("/v1/reload")
    assert result["result"] in ("applied", "unchanged"), result
    wait_for(lambda: password_grant(server.issuer, "once@example.com", "wrong").status_code == 401
             and "account:local:once@example.com" in {r["id"] for r in server.admin().get("/v1/lockouts")},
             what="a lockout after one failure")
