"""Preparing single-use inputs with httpx, as a browser would: logins, authorization codes, tokens.

Portico: GET /auth → 302 /auth/local → 302 /auth/local/login?state=… → form with a hidden csrf_token
(bound to a cookie) → POST login, password → 303 redirect_uri?code=…; afterwards the SSO session
cookie turns every /auth into a 303 with a code. The peer: GET /auth → 303 /interaction/UID → POST
/interaction/UID/login → 303 /auth/UID → 303 with a code; its session does the same afterwards, and
`prompt=consent` (which oidc-provider requires before it grants offline_access) adds one confirm step.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx

from bench.servers import Fixture, Server

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_ACTION = re.compile(r'<form[^>]*action="([^"]+)"')
CODE_SCOPE = "openid email profile groups"
# The peer's resource (bench/peer/peer.mjs): codes and refresh tokens asked for with it give a JWT access
# token, signed as Portico's are; without it, an opaque one.
PEER_RESOURCE = "urn:portico-bench:api"
OFFLINE_SCOPE = "openid email profile groups offline_access"


class FlowError(RuntimeError):
    """A server answered the preparation flow in an unexpected way."""


@dataclass(frozen=True)
class Item:
    """One prepared single-use request: a path, a Cookie header and a form body."""

    path: str
    cookie: str
    body: str

    def line(self) -> str:
        return f"{self.path}\t{self.cookie}\t{self.body}"


def _unescape(text: str) -> str:
    return text.replace("&amp;", "&")


class Browser:
    """One user's cookie jar against one server."""

    def __init__(self, server: Server, user: int) -> None:
        self.server = server
        self.fixture: Fixture = server.fixture
        self.user = user
        self.email = self.fixture.user(user)[1]
        self.client = httpx.AsyncClient(base_url=server.paths.base, timeout=60.0)
        self.logged_in = False

    async def aclose(self) -> None:
        await self.client.aclose()

    def _auth_query(self, scope: str, consent: bool, resource: str = "") -> str:
        params = {
            "client_id": self.fixture.client_id,
            "redirect_uri": self.fixture.redirect_uri,
            "response_type": "code",
            "scope": scope,
            "state": "bench",
        }
        if consent and self.server.flavor == "peer":
            params["prompt"] = "consent"
        if resource:
            params["resource"] = resource
        return self.server.paths.auth + "?" + urlencode(params)

    def _code(self, location: str) -> str | None:
        if not location.startswith(self.fixture.redirect_uri):
            return None
        codes = parse_qs(urlsplit(location).query).get("code")
        if not codes:
            raise FlowError(f"{self.server.name}: redirected back without a code: {location}")
        return codes[0]

    async def code(self, scope: str = CODE_SCOPE, offline: bool = False, resource: str = "") -> str:
        """Walk /auth to the redirect back, logging in through the form when there is no session yet."""
        response = await self.client.get(self._auth_query(scope, offline, resource))
        for _ in range(10):
            if response.status_code in (302, 303):
                location = response.headers["location"]
                code = self._code(location)
                if code is not None:
                    return code
                url = urljoin(str(response.url), location)
                if self.server.flavor == "peer" and "/interaction/" in url:
                    response = await self._peer_interaction(url)
                else:
                    response = await self.client.get(url)
            elif (
                response.status_code == 200
                and self.server.flavor == "portico"
                and "csrf_token" in response.text
            ):
                response = await self._portico_form(response)
            else:
                raise FlowError(
                    f"{self.server.name}: unexpected {response.status_code} at {response.url}: "
                    f"{response.text[:300]}"
                )
        raise FlowError(f"{self.server.name}: too many redirects before a code")

    async def _portico_form(self, page: httpx.Response) -> httpx.Response:
        csrf, action = _CSRF.search(page.text), _ACTION.search(page.text)
        if csrf is None or action is None:
            raise FlowError(f"{self.server.name}: no login form at {page.url}")
        self.logged_in = True
        return await self.client.post(
            urljoin(str(page.url), _unescape(action.group(1))),
            data={"csrf_token": csrf.group(1), "login": self.email, "password": self.fixture.password},
        )

    async def _peer_interaction(self, url: str) -> httpx.Response:
        if self.logged_in:
            return await self.client.post(url + "/confirm")
        self.logged_in = True
        return await self.client.post(
            url + "/login", data={"login": self.email, "password": self.fixture.password}
        )

    async def tokens(self, code: str) -> dict[str, str]:
        """Exchange a code at /token (client_secret_basic)."""
        response = await self.client.post(
            self.server.paths.token,
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.fixture.redirect_uri,
            },
            auth=(self.fixture.client_id, self.fixture.client_secret),
        )
        if response.status_code != 200:
            raise FlowError(
                f"{self.server.name}: code exchange answered {response.status_code}: {response.text}"
            )
        body: dict[str, str] = response.json()
        return body

    async def login_item(self) -> Item:
        """A login form ready to be posted (the bcrypt-bound request), without posting it. The jar is
        emptied afterwards: each item has its own login state."""
        try:
            response = await self.client.get(self._auth_query(CODE_SCOPE, False))
            for _ in range(5):
                if response.status_code not in (302, 303):
                    break
                url = urljoin(str(response.url), response.headers["location"])
                if self.server.flavor == "peer" and "/interaction/" in url:
                    path = urlsplit(url).path + "/login"
                    body = urlencode({"login": self.email, "password": self.fixture.password})
                    return Item(path, self._cookie_header(), body)
                response = await self.client.get(url)
            csrf, action = _CSRF.search(response.text), _ACTION.search(response.text)
            if response.status_code != 200 or csrf is None or action is None:
                raise FlowError(
                    f"{self.server.name}: no login form ({response.status_code} at {response.url})"
                )
            body = urlencode(
                {"csrf_token": csrf.group(1), "login": self.email, "password": self.fixture.password}
            )
            return Item(_unescape(action.group(1)), self._cookie_header(), body)
        finally:
            self.client.cookies.clear()

    def _cookie_header(self) -> str:
        return "; ".join(f"{cookie.name}={cookie.value}" for cookie in self.client.cookies.jar)


class Prep:
    """Logged-in browsers for one server, reused by every workload's preparation."""

    def __init__(self, server: Server) -> None:
        self.server = server
        # Codes and refresh tokens for the token workloads: on the peer, for its JWT resource (two
        # signatures per grant, as on Portico) unless this is the view of its opaque access tokens.
        same_work = server.flavor == "peer" and not server.opaque
        self.resource = PEER_RESOURCE if same_work else ""
        self.browsers: list[Browser] = []
        self.observed: dict[str, float] = {}  # req/s of the workloads measured so far on this server

    async def aclose(self) -> None:
        for browser in self.browsers:
            await browser.aclose()
        self.browsers = []

    async def _ensure(self, count: int) -> list[Browser]:
        while len(self.browsers) < count:
            self.browsers.append(Browser(self.server, len(self.browsers)))
        return self.browsers[:count]

    async def codes(self, count: int, concurrency: int = 16) -> list[str]:
        browsers = await self._ensure(min(concurrency, self.server.fixture.users))
        share = [
            count // len(browsers) + (1 if i < count % len(browsers) else 0) for i in range(len(browsers))
        ]

        async def run(browser: Browser, n: int) -> list[str]:
            return [await browser.code(resource=self.resource) for _ in range(n)]

        results = await asyncio.gather(*(run(b, n) for b, n in zip(browsers, share, strict=True)))
        return [code for part in results for code in part]

    async def refresh_tokens(self, count: int) -> list[str]:
        """One refresh token per user (Dex-style servers may keep only a few per user and client)."""
        if count > self.server.fixture.users:
            raise ValueError(
                f"{count} refresh tokens need {count} users; the fixture has {self.server.fixture.users}"
            )
        browsers = await self._ensure(count)

        async def one(browser: Browser) -> str:
            code = await browser.code(OFFLINE_SCOPE, offline=True, resource=self.resource)
            body = await browser.tokens(code)
            if "refresh_token" not in body:
                raise FlowError(f"{self.server.name}: no refresh token with offline_access: {sorted(body)}")
            return body["refresh_token"]

        sem = asyncio.Semaphore(16)

        async def limited(browser: Browser) -> str:
            async with sem:
                return await one(browser)

        return list(await asyncio.gather(*(limited(b) for b in browsers)))

    async def access_token(self) -> str:
        browser = (await self._ensure(1))[0]
        return (await browser.tokens(await browser.code()))["access_token"]

    async def login_items(self, count: int) -> list[Item]:
        users = self.server.fixture.users
        workers = [Browser(self.server, i % users) for i in range(min(8, count))]
        share = [count // len(workers) + (1 if i < count % len(workers) else 0) for i in range(len(workers))]

        async def run(browser: Browser, n: int) -> list[Item]:
            try:
                return [await browser.login_item() for _ in range(n)]
            finally:
                await browser.aclose()

        results = await asyncio.gather(*(run(b, n) for b, n in zip(workers, share, strict=True)))
        return [item for part in results for item in part]
