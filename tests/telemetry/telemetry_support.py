"""Helpers for the telemetry tests: a Dex config with a telemetry listener, metrics and log readers."""

from __future__ import annotations

import functools
import json
import socket
from collections.abc import Callable
from typing import Any

import bcrypt
import httpx
from prometheus_client.parser import text_string_to_metric_families

CLIENT_ID = "example-app"
CLIENT_SECRET = "ZXhhbXBsZS1hcHAtc2VjcmV0"
EMAIL = "kilgore@example.com"
# Distinctive, so a test can search the logs for it without matching ordinary words.
PASSWORD = "Tr0ub4dor&3-correct-horse"
USER_ID = "7b0c8a63-5a3e-4c8c-9a8b-1f0f2b9d3e11"
REDIRECT_URI = "http://127.0.0.1:9/callback"  # never followed: the tests stop at the redirect


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@functools.cache
def password_hash() -> str:
    return bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode()


def config_maker(storage: dict[str, Any], *, log_format: str = "json", level: str = "debug",
                 extra: dict[str, Any] | None = None) -> Callable[[int], dict[str, Any]]:
    """make_config(port) for ServerLauncher.start: public listener on `port`, telemetry on another."""

    def make(port: int) -> dict[str, Any]:
        config: dict[str, Any] = {
            "issuer": f"http://127.0.0.1:{port}/dex",
            "storage": storage,
            "web": {"http": f"127.0.0.1:{port}"},
            "telemetry": {"http": f"127.0.0.1:{free_port()}"},
            "logger": {"level": level, "format": log_format},
            "staticClients": [{"id": CLIENT_ID, "secret": CLIENT_SECRET, "name": "Example App",
                               "redirectURIs": [REDIRECT_URI]}],
            "enablePasswordDB": True,
            "staticPasswords": [{"email": EMAIL, "hash": password_hash(), "username": "kilgore",
                                 "userID": USER_ID}],
        }
        config.update(extra or {})
        return config

    return make


def telemetry_url(config_path: Any) -> str:
    """The telemetry listener's base URL, read back from the config file the launcher wrote."""
    import yaml

    with open(config_path) as handle:
        return "http://" + yaml.safe_load(handle)["telemetry"]["http"]


Labels = tuple[tuple[str, str], ...]


def scrape(base: str) -> dict[str, dict[Labels, float]]:
    """GET /metrics, parsed with prometheus_client's parser: sample name → {sorted labels: value}."""
    response = httpx.get(f"{base}/metrics", timeout=5.0)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    out: dict[str, dict[Labels, float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def value(metrics: dict[str, dict[Labels, float]], name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 when none)."""
    wanted = set(labels.items())
    return sum(v for key, v in metrics.get(name, {}).items() if wanted <= set(key))


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every non-empty stderr line as a JSON object (a line that is not one fails the test)."""
    lines = []
    for line in text.splitlines():
        if line.strip():
            entry = json.loads(line)
            assert isinstance(entry, dict), line
            lines.append(entry)
    return lines
