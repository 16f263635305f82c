"""Graceful shutdown: requests in flight when SIGTERM arrives complete, new connections are refused,
the database is closed and the process exits 0 within the bound."""

from __future__ import annotations

import secrets
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urljoin

import bcrypt
import httpx
import pytest
from e2e.e2e_support import find_form
from telemetry_support import (
    CLIENT_ID,
    EMAIL,
    PASSWORD,
    REDIRECT_URI,
    config_maker,
    scrape,
    telemetry_url,
    value,
)

if TYPE_CHECKING:
    from conftest import ServerLauncher

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

IN_FLIGHT = 4
# Cost 11: each login spends ~0.25 s in bcrypt, and four of them queue on two cores, so they are still
# being worked on when the signal arrives.
SLOW_ROUNDS = 11
GRACE_S = 10.0  # appliance.web.server.serve's graceful_timeout


def test_requests_in_flight_complete_after_sigterm(portico_launcher: ServerLauncher, tmp_path: Path) -> None:
    slow_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=SLOW_ROUNDS)).decode()
    storage = {"type": "sqlite3", "config": {"file": str(tmp_path / "state" / "portico.db")}}
    make = config_maker(storage, log_format="text", level="info",
                        extra={"oauth2": {"skipApprovalScreen": True}})

    def make_slow(port: int) -> dict[str, object]:
        config = make(port)
        config["staticPasswords"][0]["hash"] = slow_hash  # type: ignore[index]
        return config

    server = portico_launcher.start(make_slow, name="shutdown")
    base = telemetry_url(server.config_path)
    clients = [httpx.Client(timeout=30.0) for _ in range(IN_FLIGHT)]
    try:
        # Each client opens its keep-alive connection with the login page, so the POSTs below travel on
        # connections the server has already accepted.
        posts = []
        for client in clients:
            page = client.get(f"{server.issuer}/auth", follow_redirects=True, params={
                "client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI, "response_type": "code",
                "scope": "openid email", "state": secrets.token_hex(8)})
            assert page.status_code == 200, page.text[:300]
            form = find_form(page.text, "password")
            data = {k: v for k, v in form.inputs.items() if form.input_types.get(k) == "hidden"}
            data.update({"login": EMAIL, "password": PASSWORD})
            posts.append((urljoin(str(page.url), form.action), data))

        results: list[httpx.Response | BaseException] = [RuntimeError("no answer")] * IN_FLIGHT

        def send(i: int) -> None:
            url, data = posts[i]
            try:
                results[i] = clients[i].post(url, data=data)
            except BaseException as exc:  # recorded, asserted below
                results[i] = exc

        threads = [threading.Thread(target=send, args=(i,)) for i in range(IN_FLIGHT)]
        for thread in threads:
            thread.start()
        # Signal only once the server is working on all of them (its in-flight gauge says so).
        deadline = time.monotonic() + 10.0
        while value(scrape(base), "portico_http_requests_in_flight") < IN_FLIGHT:
            assert time.monotonic() < deadline, "the logins never were all in flight at once"
            time.sleep(0.02)
        signalled = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.1)
        with pytest.raises(httpx.ConnectError):  # the listener is closed: no new work is taken
            httpx.get(f"{server.issuer}/keys", timeout=2.0)
        for thread in threads:
            thread.join(GRACE_S + 5)
        code = server.proc.wait(GRACE_S + 5)
        took = time.monotonic() - signalled
    finally:
        for client in clients:
            client.close()

    for result in results:
        assert isinstance(result, httpx.Response), f"a request in flight got no answer: {result!r}"
        assert result.status_code in (302, 303), (result.status_code, result.text[:300])
        assert result.headers["location"].startswith(REDIRECT_URI), result.headers["location"]
        assert "code=" in result.headers["location"]
    assert code == 0, server.stderr_tail()
    assert took < GRACE_S, f"shutdown took {took:.1f} s"
    log = server.stderr_text()
    assert log.count("login successful") == IN_FLIGHT
    for result in results:  # text lines carry the request id each response was sent with
        assert isinstance(result, httpx.Response)
        assert f"[{result.headers['x-request-id']}]: login successful" in log
    assert log.index("stopping: finishing the requests in flight") < log.rindex("login successful")
    assert log.rstrip().endswith("storage closed"), server.stderr_tail(5)
