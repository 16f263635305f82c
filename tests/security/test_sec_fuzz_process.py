"""The fuzzer against a real `portico serve` process (Hypercorn, SQLite): fewer examples than in process,
but through the real HTTP parser; no 5xx, no traceback on the server's stderr, no stored object created
by a rejected request, and the grant made before the run still works."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from fuzz_strategies import FuzzRequest, answer_problems, fuzz_request
from fuzz_targets import TARGETS, Target
from hypothesis import HealthCheck, given, reject, settings
from process_support import ProcessFlow, sqlite_ids, sqlite_integrity
from security_support import security_config

from appliance.web.app import MAX_BODY_BYTES

EXAMPLES = int(os.environ.get("FUZZ_PROCESS_EXAMPLES", "12"))
# Failures the client itself raises before anything is sent (a URL httpx will not build).
# How a connection closed by the server mid-request shows up in the client.
_CLOSED = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
_NOT_SENT = (httpx.InvalidURL, httpx.UnsupportedProtocol, httpx.LocalProtocolError, UnicodeEncodeError)


def _send(http: httpx.Client, issuer: str, request: FuzzRequest) -> httpx.Response | None:
    url = f"{issuer}{request.path}" + (f"?{request.query}" if request.query else "")
    try:
        return http.request(request.method, url, content=request.body, headers=list(request.headers))
    except _NOT_SENT:
        return None


def test_fuzz_every_endpoint_against_the_process(portico_launcher: Any, tmp_path: Path) -> None:
    database = tmp_path / "portico.db"
    server = portico_launcher.start(
        lambda port: security_config(
            f"http://127.0.0.1:{port}/dex", {"type": "sqlite3", "config": {"file": str(database)}}
        )
    )
    flow = ProcessFlow(server.issuer)
    try:
        grant = flow.password_tokens()
        live = flow.live_values()
        before = sqlite_ids(database)
        created: set[str] = set()
        with httpx.Client(timeout=15.0, follow_redirects=False) as http:
            for target in TARGETS:
                created |= target.may_create
                _fuzz_target(http, server, target, live, partial(_appeared, before, database, created))
        stderr = server.stderr_text()
        assert "Traceback" not in stderr and "internal error" not in stderr, server.stderr_tail(80)
        appeared = _appeared(before, database, created)
        assert not appeared, f"fuzzed requests created stored objects: {appeared}"
        userinfo = flow.http.get(
            f"{server.issuer}/userinfo", headers={"Authorization": f"Bearer {grant['access_token']}"}
        )
        assert userinfo.status_code == 200, userinfo.text
        assert flow.refresh(grant["refresh_token"]).status_code == 200
        assert flow.http.get(f"{server.issuer}/healthz").status_code == 200
    finally:
        flow.close()
    assert server.stop() == 0, server.stderr_tail()
    assert sqlite_integrity(database) == "ok"


def _appeared(before: dict[str, set[str]], database: Path, allowed: set[str]) -> dict[str, list[str]]:
    """Stored objects that are new since `before`, in collections no fuzzed target may add to."""
    after = sqlite_ids(database)
    return {name: sorted(after[name] - before[name])
            for name in before if after[name] - before[name] and name not in allowed}


def _fuzz_target(http: httpx.Client, server: Any, target: Target, live: dict[str, str],
                 appeared: Callable[[], dict[str, list[str]]]) -> None:
    @settings(
        max_examples=max(1, int(EXAMPLES * target.share)),
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example,
            HealthCheck.filter_too_much,
        ],
    )
    @given(request=fuzz_request(target, live))
    def one(request: FuzzRequest) -> None:
        http.cookies.clear()
        try:
            response = _send(http, server.issuer, request)
        except httpx.TransportError as exc:
            if len(request.body or b"") > MAX_BODY_BYTES and isinstance(exc, _CLOSED):
                # Past the size limit the server answers without reading the rest and closes; a client
                # still sending may see the close before the answer. The server must still be well.
                assert http.get(f"{server.issuer}/healthz").status_code == 200, server.stderr_tail()
                return
            raise AssertionError(
                f"{target.name}: {request.describe()}\n -> connection failed: {exc!r}\n{server.stderr_tail()}"
            ) from exc
        if response is None:
            reject()
        problems = answer_problems(
            target, response.status_code, response.headers.get("content-type", ""), response.text,
            response.headers.get("location"),
        )
        assert not problems, f"{target.name}: {request.describe()}\n -> {response.status_code}: {problems}"
        new = appeared()  # named with the request that made it, not only at the end
        assert not new, f"{target.name}: {request.describe()}\n -> {response.status_code} created {new}"

    one()
