"""Every route of the app, over HTTPS and plain HTTP of one real server: every answer (pages, JSON, the
fast path's documents, assets, errors, 404 and 405) carries the security headers, and HSTS exactly on
HTTPS. The routes come from the app's own URL map, so a new route is walked without editing this."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest
from security_support import close_harness, open_harness, security_config
from tls_support import client_context, make_pair, start_https

from appliance.web.tls import DEFAULT_HSTS

pytestmark = pytest.mark.timeout(180)

# What each route variable becomes: a connector of the security config, an asset that exists.
_VALUES = {"connector_id": ("local", "mock"), "path": ("css/portico.css", "img/logo.svg", "none.css")}
_VARIABLE = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>")


def _expand(rule: str) -> list[str]:
    names = _VARIABLE.findall(rule)
    if not names:
        return [rule]
    assert len(names) == 1, rule
    return [_VARIABLE.sub(value, rule) for value in _VALUES[names[0]]]


def _routes() -> list[tuple[str, str]]:
    """(method, path) for every method of every route (HEAD and OPTIONS too), plus a method each route
    does not take (405) and a path no route has (404)."""

    async def rules() -> list[tuple[str, list[str]]]:
        harness = await open_harness()
        try:
            return [(rule.rule, sorted(rule.methods or ())) for rule in harness.app.url_map.iter_rules()]
        finally:
            await close_harness(harness)

    found: list[tuple[str, str]] = []
    for rule, methods in asyncio.run(rules()):
        for path in _expand(rule):
            found += [(method, path) for method in [*methods, "PUT"]]
    # And answers the bare routes do not give: a redirect to a login form, an error sent back to the client.
    login = "client_id=app&redirect_uri=https://app.example/callback&response_type=code&state=s&scope="
    return [*sorted(set(found)), ("GET", "/dex/no/such/page"), ("GET", "/elsewhere"),
            ("GET", f"/dex/auth/local?{login}openid"), ("GET", f"/dex/auth/local?{login}nope")]


def _problems(headers: httpx.Headers, https: bool) -> list[str]:
    problems = []
    csp = headers.get("content-security-policy", "")
    if "frame-ancestors 'none'" not in csp:
        problems.append(f"CSP without frame-ancestors 'none': {csp!r}")
    if "unsafe-inline" in csp or "unsafe-eval" in csp or "script-src 'self'" not in csp:
        problems.append(f"CSP allows inline or eval'd script: {csp!r}")
    for name, value in (("x-content-type-options", "nosniff"), ("referrer-policy", "no-referrer"),
                        ("x-frame-options", "DENY")):
        if headers.get_list(name) != [value]:
            problems.append(f"{name}: {headers.get_list(name)}")
    hsts = headers.get_list("strict-transport-security")
    if hsts != ([DEFAULT_HSTS] if https else []):
        problems.append(f"strict-transport-security on {'https' if https else 'http'}: {hsts}")
    return problems


def test_every_route_has_the_security_headers(tmp_path: Path) -> None:
    routes = _routes()
    assert len(routes) > 60 and ("POST", "/dex/token") in routes and ("GET", "/dex/keys") in routes
    pair = make_pair(tmp_path / "a")
    config = security_config(storage={"type": "sqlite3", "config": {"file": "portico.db"}})
    running = start_https(tmp_path, pair, config=config)
    bad: list[str] = []
    statuses: set[int] = set()
    try:
        with httpx.Client(verify=client_context(pair), timeout=20) as https, httpx.Client(timeout=20) as http:
            for method, path in routes:
                for client, base, secure in ((https, f"https://127.0.0.1:{running.https_port}", True),
                                             (http, f"http://127.0.0.1:{running.server.port}", False)):
                    headers = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
                    answer = client.request(method, base + path,
                                            headers=headers if method == "OPTIONS" else None)
                    statuses.add(answer.status_code)
                    if answer.status_code >= 500:
                        bad.append(f"{method} {path}: {answer.status_code}")
                    found = _problems(answer.headers, secure)
                    bad += [f"{method} {base}{path} ({answer.status_code}): {p}" for p in found]
    finally:
        running.server.stop()
    assert not bad, "\n".join(bad)
    # The walk met pages, redirects, client errors, missing pages and refused methods.
    assert {200, 302, 303, 400, 401, 404, 405} <= statuses, statuses
