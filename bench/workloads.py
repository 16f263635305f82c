"""The workloads: what each sends, what it needs prepared, and the probe that tells whether a server
supports it at all (an endpoint still being written answers 404 or unsupported_grant_type)."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx

from bench.flows import Item, Prep
from bench.servers import Server
from bench.wrk import Request

FORM = "application/x-www-form-urlencoded"
# Logins are bounded by bcrypt at some 15-25 a second per core: 50 concurrent ones would only queue
# (seconds of latency, and none finished in a short run). Both servers get the same cap.
LOGIN_CONNECTIONS = 8


class NotSupported(Exception):
    """The server does not offer this workload (yet)."""


@dataclass(frozen=True)
class Plan:
    """A workload's request plus how many single-use inputs were prepared (0: reusable)."""

    request: Request
    prepared: int = 0


Builder = Callable[[Server, Prep, "Budget"], Awaitable[Plan]]


@dataclass(frozen=True)
class Budget:
    """How much to prepare: the run's length, its connections, and where prepared files go."""

    duration_s: float
    connections: int
    workdir: Path
    max_codes: int = 30000

    def pool(self, rate_guess: float) -> int:
        return max(self.connections * 4, min(self.max_codes, int(rate_guess * self.duration_s * 1.3)))


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    # JWT signatures per request, by server flavor: what the signing ceiling divides.
    signatures: dict[str, int]
    # The physical limit beside it: "signing", "bcrypt", "framework" (a do-nothing Quart route), or
    # "fastpath" (Portico answers it before Quart: a do-nothing bare ASGI route; the peer: node:http's).
    bound: str
    build: Builder
    separate: bool = False  # reported apart (the hash dominates)
    connections: int = 0  # a cap below the run's concurrency (0: the run's)


def _basic(server: Server) -> str:
    f = server.fixture
    raw = f"{f.client_id}:{f.client_secret}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def _token_headers(server: Server) -> dict[str, str]:
    return {"Authorization": _basic(server), "Content-Type": FORM}


async def _probe(
    server: Server,
    method: str,
    path: str,
    expect: int,
    *,
    headers: dict[str, str] | None = None,
    body: str = "",
    check: Callable[[httpx.Response], bool] | None = None,
) -> None:
    async with httpx.AsyncClient(base_url=server.paths.base, timeout=30.0) as client:
        response = await client.request(method, path, headers=headers, content=body.encode() or None)
    if response.status_code == 404 or (
        response.status_code in (400, 401)
        and any(word in response.text for word in ("unsupported_grant_type", "unauthorized_client"))
    ):
        raise NotSupported(f"{response.status_code} {response.text[:200]}".strip())
    if response.status_code != expect or (check is not None and not check(response)):
        raise RuntimeError(
            f"{server.name} {method} {path}: probe answered {response.status_code}: {response.text[:300]}"
        )


def _token_format_ok(server: Server, answer: dict[str, object]) -> bool:
    """Portico's and the peer's access tokens are JWTs here (compact JWS: three parts); the peer's
    opaque view's are not: what the signature count of the workload assumes."""
    jwt = str(answer.get("access_token", "")).count(".") == 2
    return jwt != server.opaque


def _write(budget: Budget, server: Server, name: str, lines: list[str]) -> str:
    path = budget.workdir / f"{server.name}-{name}.txt"
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


async def _discovery(server: Server, prep: Prep, budget: Budget) -> Plan:
    await _probe(server, "GET", server.paths.discovery, 200)
    return Plan(Request("static", "GET", server.paths.discovery, 200))


async def _jwks(server: Server, prep: Prep, budget: Budget) -> Plan:
    await _probe(server, "GET", server.paths.jwks, 200, check=lambda r: bool(r.json().get("keys")))
    return Plan(Request("static", "GET", server.paths.jwks, 200))


async def _client_credentials(server: Server, prep: Prep, budget: Budget) -> Plan:
    body = "grant_type=client_credentials"
    headers = _token_headers(server)
    await _probe(
        server,
        "POST",
        server.paths.token,
        200,
        headers=headers,
        body=body,
        check=lambda r: "access_token" in r.json(),
    )
    return Plan(Request("static", "POST", server.paths.token, 200, headers, body))


async def _refresh(server: Server, prep: Prep, budget: Budget) -> Plan:
    # Every connection holds one token in flight; the rest wait in the pool. One more for the probe,
    # one that wrk's first scripted request (a check it never sends) takes out of the pool.
    count = min(server.fixture.users, budget.connections + 14)
    tokens = await prep.refresh_tokens(count)
    headers = _token_headers(server)
    await _probe(
        server,
        "POST",
        server.paths.token,
        200,
        headers=headers,
        body=urlencode({"grant_type": "refresh_token", "refresh_token": tokens.pop()}),
        check=lambda r: "refresh_token" in r.json() and _token_format_ok(server, r.json()),
    )
    return Plan(
        Request(
            "rotate",
            "POST",
            server.paths.token,
            200,
            headers,
            "grant_type=refresh_token&refresh_token={token}",
            _write(budget, server, "refresh", tokens),
        ),
        len(tokens),
    )


async def _code(server: Server, prep: Prep, budget: Budget) -> Plan:
    # A code exchange costs about what a rotation costs (signatures and a write): the refresh_token
    # rate measured just before, with a margin, sizes the pool. A run that uses it all ends early
    # (and says so in its duration) rather than replaying spent codes.
    guess = prep.observed.get("refresh_token", 0.0) * 1.6 or {"portico": 1500.0, "peer": 2500.0}.get(
        server.flavor, 1500.0
    )
    codes = await prep.codes(budget.pool(guess) + 1)
    redirect = server.fixture.redirect_uri

    def body(code: str) -> str:
        return urlencode({"grant_type": "authorization_code", "code": code, "redirect_uri": redirect})

    headers = _token_headers(server)
    await _probe(
        server,
        "POST",
        server.paths.token,
        200,
        headers=headers,
        body=body(codes.pop()),
        check=lambda r: "id_token" in r.json() and _token_format_ok(server, r.json()),
    )
    lines = [Item("", "", body(code)).line() for code in codes]
    return Plan(
        Request(
            "pool", "POST", server.paths.token, 200, headers, file=_write(budget, server, "codes", lines)
        ),
        len(lines),
    )


async def _access_token_request(server: Server, prep: Prep) -> str:
    return await prep.access_token()


async def _introspection(server: Server, prep: Prep, budget: Budget) -> Plan:
    body = urlencode({"token": await _access_token_request(server, prep)})
    headers = _token_headers(server)
    await _probe(
        server,
        "POST",
        server.paths.introspect,
        200,
        headers=headers,
        body=body,
        check=lambda r: r.json().get("active") is True,
    )
    return Plan(Request("static", "POST", server.paths.introspect, 200, headers, body))


async def _userinfo(server: Server, prep: Prep, budget: Budget) -> Plan:
    headers = {"Authorization": "Bearer " + await _access_token_request(server, prep)}
    await _probe(
        server, "GET", server.paths.userinfo, 200, headers=headers, check=lambda r: "sub" in r.json()
    )
    return Plan(Request("static", "GET", server.paths.userinfo, 200, headers))


async def _login(server: Server, prep: Prep, budget: Budget) -> Plan:
    # bcrypt cost 10 allows some 15-25 checks a second on one core: a small pool lasts the run.
    items = await prep.login_items(budget.pool(40.0) + 1)
    probe = items.pop()
    headers = {"Content-Type": FORM, "Cookie": probe.cookie}
    await _probe(server, "POST", probe.path, 303, headers=headers, body=probe.body)
    return Plan(
        Request(
            "pool",
            "POST",
            probe.path,
            303,
            {"Content-Type": FORM},
            file=_write(budget, server, "logins", [item.line() for item in items]),
        ),
        len(items),
    )


WORKLOADS: list[Workload] = [
    Workload("discovery", "discovery document", {"portico": 0, "peer": 0}, "fastpath", _discovery),
    Workload("jwks", "JWKS", {"portico": 0, "peer": 0}, "fastpath", _jwks),
    Workload(
        "client_credentials",
        "client_credentials grant",
        {"portico": 1, "peer": 1},
        "signing",
        _client_credentials,
    ),
    # The peer signs an ID token and a JWT access token, as Portico does; its opaque view only the first.
    Workload(
        "refresh_token",
        "refresh_token grant, rotated",
        {"portico": 2, "peer": 2, "peer-opaque": 1},
        "signing",
        _refresh,
    ),
    Workload(
        "authorization_code",
        "authorization code exchange",
        {"portico": 2, "peer": 2, "peer-opaque": 1},
        "signing",
        _code,
    ),
    Workload("introspection", "token introspection", {"portico": 0, "peer": 0}, "fastpath", _introspection),
    Workload("userinfo", "userinfo", {"portico": 0, "peer": 0}, "fastpath", _userinfo),
    Workload(
        "password_login",
        "password login through the form (bcrypt cost 10)",
        {"portico": 0, "peer": 0},
        "bcrypt",
        _login,
        separate=True,
        connections=LOGIN_CONNECTIONS,
    ),
]
BY_NAME = {w.name: w for w in WORKLOADS}
