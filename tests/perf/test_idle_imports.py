"""A real `portico serve` that has answered only machine traffic (discovery, keys, tokens, introspection,
userinfo, the health and metrics probes) and reloaded its configuration has not loaded the web
framework: Quart, Flask, Werkzeug, Jinja2 and Hypercorn come in with the first page, which then works as
before (a whole login).

Two witnesses of what the process loaded: the interpreter's own import log (PYTHONPROFILEIMPORTTIME,
one line per module imported; the single binary's interpreter ignores PYTHON* variables, so there
only the second applies), and the process's memory map, where Jinja2's and Werkzeug's C helper
(markupsafe's _speedups) shows up once either is imported.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import yaml
from adminutil import free_port, wait_for
from e2e.e2e_support import CLIENT_ID, CLIENT_SECRET, FormLogin, make_config, query, sqlite_storage

if TYPE_CHECKING:
    from conftest import ServerLauncher, ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

REDIRECT_URI = "http://127.0.0.1:5555/callback"
FRAMEWORK = ("quart", "flask", "werkzeug", "jinja2", "hypercorn")
# Loaded only by what needs them, never by machine traffic: joserfc (with cryptography.x509 and the
# serialization modules, ~4 MB; the key set reads and writes its JWKs with `cryptography` itself), the
# config's spelling suggestions and the embedded development config.
NOT_AT_IDLE = ("joserfc", "cryptography.x509", "cryptography.hazmat.primitives.serialization", "difflib",
               "importlib.resources")
_IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)\s*$", re.MULTILINE)
_SPEEDUPS = "markupsafe/_speedups"


def _config(port: int, workdir: Path, telemetry_port: int) -> dict[str, Any]:
    config = make_config(port, [REDIRECT_URI], sqlite_storage(workdir / "idle.db"), skip_approval=True)
    config["oauth2"]["grantTypes"] = ["authorization_code", "refresh_token", "client_credentials"]
    config["telemetry"] = {"http": f"127.0.0.1:{telemetry_port}"}
    return config


def _process_tree(pid: int) -> list[int]:
    """The server and its children (the single binary's bootloader runs the server as its child)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        for child in children:
            found += _process_tree(int(child))
    return found


def _maps_speedups(server: ServerProcess) -> bool:
    return any(_SPEEDUPS in Path(f"/proc/{pid}/maps").read_text() for pid in _process_tree(server.proc.pid))


def _imported(server: ServerProcess) -> set[str]:
    """Top-level names of the modules the server's interpreter logged as imported (empty if it logs none)."""
    return {name.split(".")[0] for name in _modules(server)}


def _modules(server: ServerProcess) -> set[str]:
    """Full names of the modules the server's interpreter logged as imported."""
    return set(_IMPORT_LINE.findall(server.stderr_text()))


def _machine_traffic(server: ServerProcess, telemetry: str) -> None:
    issuer = server.issuer
    with httpx.Client(timeout=10.0) as http:
        discovery = http.get(f"{issuer}/.well-known/openid-configuration")
        assert discovery.status_code == 200 and discovery.json()["issuer"] == issuer
        keys = http.get(f"{issuer}/keys")
        assert keys.status_code == 200 and keys.json()["keys"]
        token = http.post(f"{issuer}/token", data={"grant_type": "client_credentials"},
                          auth=(CLIENT_ID, CLIENT_SECRET))
        assert token.status_code == 200, token.text
        access = token.json()["access_token"]
        refused = http.post(f"{issuer}/token", data={"grant_type": "client_credentials"},
                            auth=(CLIENT_ID, "wrong"))
        assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
        introspected = http.post(f"{issuer}/token/introspect", data={"token": access},
                                 auth=(CLIENT_ID, CLIENT_SECRET))
        assert introspected.status_code == 200 and introspected.json()["active"] is True
        assert http.get(f"{issuer}/userinfo").status_code == 401
        health = http.get(f"{issuer}/healthz")
        assert health.status_code == 200 and health.text == "Health check passed"
        for probe in ("/healthz/live", "/healthz/ready", "/healthz"):
            assert http.get(telemetry + probe).status_code == 200, probe
        metrics = http.get(f"{telemetry}/metrics").text
    for handler in ("/.well-known/openid-configuration", "/keys", "/token", "/token/introspect", "/userinfo",
                    "/healthz"):
        assert f'handler="{handler}"' in metrics, handler
    assert 'handler="other"' not in metrics


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def test_machine_traffic_never_loads_the_web_framework_and_the_first_page_does(
        portico_launcher: ServerLauncher, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        report_figure: Any) -> None:
    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")
    telemetry_port = free_port()
    server = portico_launcher.start(lambda port: _config(port, tmp_path, telemetry_port), name="idle")
    telemetry = f"http://127.0.0.1:{telemetry_port}"
    _machine_traffic(server, telemetry)
    server.proc.send_signal(signal.SIGHUP)  # a reload (a ConfigMap changed) needs no pages either
    wait_for(lambda: "configuration reload (sighup)" in server.stderr_text(), what="the reload")

    logged = _imported(server)
    assert not logged & set(FRAMEWORK), f"imported without a page being asked for: {logged & set(FRAMEWORK)}"
    idle = {name for name in _modules(server) if name.startswith(NOT_AT_IDLE)}
    assert not idle, f"imported by machine traffic: {sorted(idle)}"
    assert not _maps_speedups(server), "Jinja2 or Werkzeug is loaded (markupsafe's C helper is mapped)"
    if not os.environ.get("PORTICO_E2E_COMMAND"):  # this checkout's package: the import log must be there
        assert "appliance" in logged and "granian" in logged, "the import log is missing: nothing was checked"

    verifier, challenge = _pkce()
    params = {"client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI, "response_type": "code",
              "scope": "openid email", "state": secrets.token_urlsafe(8), "nonce": secrets.token_urlsafe(8),
              "code_challenge": challenge, "code_challenge_method": "S256"}
    login = FormLogin(server.issuer, REDIRECT_URI)
    try:
        started = time.perf_counter()
        page = login.login_page(params)
        report_figure("first login page after start (ms)", round((time.perf_counter() - started) * 1000))
        assert page.headers["content-type"].startswith("text/html") and 'name="password"' in page.text
        result = login.follow_to_page(login.submit_login(page))
    finally:
        login.close()
    callback = result.headers["location"]
    assert result.status_code in (302, 303) and callback.startswith(REDIRECT_URI), result.text[:500]
    code = query(callback)["code"]
    token = httpx.post(f"{server.issuer}/token", auth=(CLIENT_ID, CLIENT_SECRET), timeout=10.0, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier})
    assert token.status_code == 200 and token.json()["id_token"], token.text

    # The witnesses see the framework now: they could have seen it before.
    assert _maps_speedups(server)
    if not os.environ.get("PORTICO_E2E_COMMAND"):
        assert set(FRAMEWORK) <= _imported(server)
    assert "web app built on first use" in server.stderr_text()


def test_a_broken_custom_template_still_stops_the_start(tmp_path: Path) -> None:
    """The pages are built on first use now; a frontend.dir whose template does not compile is still
    refused at start, with the file and line, as when the app was built at start."""
    templates = tmp_path / "web" / "templates"
    templates.mkdir(parents=True)
    (templates / "error.html").write_text("<h1>{{ title }}</h1>\n{% if %}\n")
    storage = sqlite_storage(tmp_path / "broken.db")
    config = make_config(free_port(), [REDIRECT_URI], storage, skip_approval=True)
    config["frontend"] = {"dir": str(tmp_path / "web")}
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    command = shlex.split(os.environ.get("PORTICO_E2E_COMMAND", "")) or [sys.executable, "-m", "appliance"]
    done = subprocess.run([*command, "serve", str(path), "--admin-socket", str(tmp_path / "a.sock")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1, done.stderr[-2000:]
    assert f"template {templates / 'error.html'}:2: " in done.stderr
    assert "listening on" not in done.stderr


def test_metrics_count_without_prometheus_client_until_read() -> None:
    """The registry (prometheus_client and the HTTP servers its exposition module imports) is made when
    the metrics are first read; counting before that needs none of it, and nothing is lost."""
    check = """
import sys
from appliance.telemetry.metrics import Telemetry
telemetry = Telemetry({"version": "test"})
telemetry.http.observe(200, "get", "/keys", 0.001, 100)
telemetry.login("local", "success")
telemetry.gauge("portico_test_gauge", "A gauge.", lambda: 7.0)
assert "prometheus_client" not in sys.modules, "counting imported prometheus_client"
first = telemetry.render().decode()
assert "prometheus_client" in sys.modules
from prometheus_client.metrics_core import CounterMetricFamily

class Late:
    def collect(self):
        yield CounterMetricFamily("portico_late_total", "Registered after the first read.", value=3.0)

telemetry.register(Late())
second = telemetry.render().decode()
for line in ('http_requests_total{code="200",handler="/keys",method="get"} 1.0',
             'portico_logins_total{connector="local",result="success"} 1.0', "portico_test_gauge 7.0",
             "process_start_time_seconds", "python_info"):
    assert line in first and line in second, line
assert "portico_late_total 3.0" in second and "portico_late_total" not in first
"""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_metrics_content_type_is_prometheus_clients() -> None:
    from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

    from appliance.telemetry.metrics import CONTENT_TYPE

    assert CONTENT_TYPE == CONTENT_TYPE_PLAIN_0_0_4
