"""Async clients for the load and crash tests: logins (mock callback and password), code exchange and
refresh against a real server, with latencies and every answered token recorded."""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
from security_support import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    APP_REDIRECT,
    CSRF_RE,
    SECRETS,
    client_auth,
    query_of,
)

SCOPE = "openid email profile groups offline_access"


class UnexpectedAnswer(Exception):
    """The server answered, but not as the flow expects (counted as an error by the load test)."""


@dataclass
class Recorder:
    """Latencies by operation, errors, and every token a client was answered."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    answered: list[dict[str, Any]] = field(default_factory=list)  # token responses, in order

    def add(self, operation: str, seconds: float) -> None:
        self.latencies.setdefault(operation, []).append(seconds)

    def count(self) -> int:
        return sum(len(values) for values in self.latencies.values())


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summary(recorder: Recorder, seconds: float) -> dict[str, str]:
    """Per operation: count, rate and p50/p95/p99 in milliseconds."""
    out = {}
    for operation, values in sorted(recorder.latencies.items()):
        out[operation] = (
            f"n={len(values)} {len(values) / seconds:.0f}/s p50={percentile(values, 0.5) * 1000:.1f}ms "
            f"p95={percentile(values, 0.95) * 1000:.1f}ms p99={percentile(values, 0.99) * 1000:.1f}ms"
        )
    return out


class AsyncFlow:
    """One browser plus the app's back end, over one connection pool."""

    def __init__(self, issuer: str, recorder: Recorder, timeout: float = 30.0) -> None:
        self.issuer = issuer
        self.recorder = recorder
        self.http = httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, limits=httpx.Limits(max_connections=4)
        )

    async def close(self) -> None:
        await self.http.aclose()

    async def _timed(self, operation: str, method: str, url: str, **kw: Any) -> httpx.Response:
        started = time.perf_counter()
        response = await self.http.request(method, url, **kw)
        self.recorder.add(operation, time.perf_counter() - started)
        return response

    async def login(self, *, password: bool = False, fresh: bool = True) -> str:
        """A whole login, returning the code: through the mock callback connector, or the password form
        (bcrypt). `fresh` drops the SSO session first, so the login really happens."""
        if fresh:
            self.http.cookies.clear()
        params = {
            "client_id": "app", "redirect_uri": APP_REDIRECT, "response_type": "code", "scope": SCOPE,
            "state": "st", "nonce": "n", "connector_id": "local" if password else "mock",
        }
        response = await self._timed("auth", "GET", f"{self.issuer}/auth", params=params)
        for _ in range(4):
            if response.status_code == 303:
                break
            if response.status_code == 200 and password:
                response = await self._submit_password(response)
                continue
            if response.status_code != 302:
                raise UnexpectedAnswer(f"login: {response.status_code} {response.text[:300]}")
            target = urljoin(str(response.url), response.headers["location"])
            operation = "callback" if "/callback" in target else "auth"
            response = await self._timed(operation, "GET", target)
        location = response.headers.get("location", "")
        if response.status_code != 303 or not location.startswith(APP_REDIRECT):
            raise UnexpectedAnswer(f"login ended with {response.status_code} {location!r}")
        return query_of(location)["code"]

    async def _submit_password(self, page: httpx.Response) -> httpx.Response:
        token = CSRF_RE.search(page.text)
        if token is None:
            raise UnexpectedAnswer(f"no password form: {page.text[:300]}")
        return await self._timed(
            "password_login",
            "POST",
            str(page.url),
            data={
                "login": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "csrf_token": html.unescape(token.group(1)),
            },
        )

    async def redeem(self, code: str) -> dict[str, Any]:
        response = await self._timed(
            "token_code", "POST", f"{self.issuer}/token", headers=client_auth("app"),
            data={"grant_type": "authorization_code", "code": code, "redirect_uri": APP_REDIRECT},
        )
        return self._tokens(response, "code exchange")

    async def refresh(self, refresh_token: str) -> dict[str, Any]:
        response = await self._timed(
            "token_refresh", "POST", f"{self.issuer}/token", headers=client_auth("app"),
            data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        )
        return self._tokens(response, "refresh")

    def _tokens(self, response: httpx.Response, what: str) -> dict[str, Any]:
        if response.status_code != 200:
            raise UnexpectedAnswer(f"{what}: {response.status_code} {response.text[:300]}")
        body = dict(response.json())
        self.recorder.answered.append(body)
        return body


def rss_bytes(pid: int) -> int:
    """The resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def introspect(http: httpx.Client, issuer: str, token: str) -> dict[str, Any]:
    response = http.post(f"{issuer}/token/introspect", auth=("app", SECRETS["app"]), data={"token": token})
    assert response.status_code == 200, response.text
    return dict(response.json())
