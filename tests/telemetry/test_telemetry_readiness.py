"""/healthz/ready follows the database: a real PostgreSQL database is dropped under a running server."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import httpx
import pytest
from e2e.e2e_support import create_postgres_database
from telemetry_support import config_maker, scrape, telemetry_url, value

if TYPE_CHECKING:
    from conftest import ServerLauncher

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.timeout(120)]

# The probe caches an answer for 3 s and waits 1 s for the database: 503 must come well within this.
NOT_READY_WITHIN_S = 10.0


def test_ready_turns_503_when_the_database_goes_and_live_stays_200(portico_launcher: ServerLauncher) -> None:
    storage, drop = create_postgres_database()
    try:
        server = portico_launcher.start(config_maker(storage, log_format="text", level="info"),
                                        name="ready-pg")
        base = telemetry_url(server.config_path)
        with httpx.Client(timeout=5.0) as http:
            ready = http.get(f"{base}/healthz/ready")
            assert ready.status_code == 200, ready.text
            assert http.get(f"{base}/healthz").status_code == 200

            drop()  # DROP DATABASE … WITH (FORCE): the server's connections are cut, reconnects fail
            deadline = time.monotonic() + NOT_READY_WITHIN_S
            while (ready := http.get(f"{base}/healthz/ready")).status_code == 200:
                assert time.monotonic() < deadline, "still ready long after the database was dropped"
                time.sleep(0.25)
            assert ready.status_code == 503
            body = ready.json()
            assert body["config"]["message"] == "configuration loaded"
            assert body["storage"]["error"] and body["storage"]["num_failures"] >= 1
            assert body["storage"]["first_failure_time"]
            assert http.get(f"{base}/healthz/live").status_code == 200
            dex = http.get(f"{base}/healthz")
            assert dex.status_code == 503 and "error" in dex.json()["storage"]
            # The public endpoints that need no database keep answering.
            assert http.get(f"{server.issuer}/keys").status_code == 200
        assert value(scrape(base), "portico_storage_errors_total", operation="ping") >= 1
        assert server.stop() == 0
        assert "storage closed" in server.stderr_text()
    finally:
        drop()
