"""The fast path's /token, /token/introspect and /userinfo answer exactly as the Quart routes do.

Two twin stacks (same config, same signing keys, same frozen clock) and one seeded source of random ids:
each request goes to one twin through the production stack (middleware → fast path → Quart) and to the
other through the middleware over Quart alone, with the random source reset before each. RS256 signs
deterministically, so even issued tokens must be byte-identical: status, every header in order (the
request id blanked) and body; and the log lines the two write must match too.
"""

from __future__ import annotations

import base64
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import bcrypt
import pytest
from perf_support import Answer, Counting, Stack, make_stack, scope, send_messages

import appliance.ids
from appliance.errors import ConnectorError
from appliance.oidc.grant import TokenContext
from appliance.oidc.refreshstore import create_refresh_token
from appliance.oidc.revocation import revoke_id
from appliance.store.models import AuthCode, Claims
from appliance.telemetry.metrics import HTTPStats
from appliance.telemetry.middleware import TelemetryMiddleware, route_resolver
from appliance.web.fastpath import FastPath

pytestmark = pytest.mark.timeout(120)

ISSUER = "http://127.0.0.1:5556/dex"
ORIGIN = "https://spa.example"
FORM = "application/x-www-form-urlencoded"
PASSWORD = "correct horse"
USER_ID = "0a1b2c3d-user"
REDIRECT = "https://app.example/cb"
_HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()


def config(web_extra: str = "") -> str:
    return f"""
issuer: {ISSUER}
storage:
  type: memory
web:
  http: 127.0.0.1:5556
{web_extra}
oauth2:
  skipApprovalScreen: true
  passwordConnector: local
  grantTypes: [authorization_code, refresh_token, password, client_credentials]
enablePasswordDB: true
staticPasswords:
  - email: ada@example.com
    hash: "{_HASH}"
    username: ada
    userID: {USER_ID}
    groups: [admins]
staticClients:
  - id: app
    name: App
    secret: app-secret
    redirectURIs: [{REDIRECT}]
  - id: cli
    name: CLI
    public: true
    redirectURIs: [http://127.0.0.1/cb]
"""


CONFIGS = {
    "plain": config(),
    "cors-and-headers": config(f"""  allowedOrigins: ["{ORIGIN}"]
  allowedHeaders: [Authorization, X-Custom]
  headers:
    X-Frame-Options: SAMEORIGIN
    Strict-Transport-Security: max-age=31536000
"""),
}


def basic(client: str = "app", secret: str = "app-secret") -> tuple[str, str]:
    return ("Authorization", "Basic " + base64.b64encode(f"{client}:{secret}".encode()).decode())


class SeededSecrets:
    """Stands in for the `secrets` module behind appliance.ids: the same ids on both twins."""

    def __init__(self) -> None:
        self._rng = random.Random(0)

    def reset(self) -> None:
        self._rng = random.Random(8)

    def token_bytes(self, n: int) -> bytes:
        return self._rng.randbytes(n)

    def token_urlsafe(self, n: int) -> str:
        return base64.urlsafe_b64encode(self.token_bytes(n)).rstrip(b"=").decode()

    def token_hex(self, n: int) -> str:
        return self.token_bytes(n).hex()

    def choice(self, seq: Any) -> Any:
        return self._rng.choice(seq)


Messages = list[dict[str, Any]]
NEVER: Messages = []  # the client sends headers, then nothing (its body never comes)


request = send_messages  # one request through an ASGI app, its body as messages


def body(data: bytes, *more: bytes) -> Messages:
    parts = [data, *more]
    return [{"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
            for i, part in enumerate(parts)]


def form(**fields: str) -> bytes:
    from urllib.parse import urlencode
    return urlencode(fields).encode()


def normalised(answer: Answer) -> Answer:
    ids = [value for key, value in answer.headers if key == b"x-request-id"]
    assert len(ids) == (1 if answer.status else 0), answer.headers
    return Answer(answer.status, [(k, b"<id>" if k == b"x-request-id" else v) for k, v in answer.headers],
                  answer.body)


class Twins:
    """The production stack on one twin, Quart alone on the other; `both` sends the same request."""

    def __init__(self, fast: Stack, slow: Stack, seeded: SeededSecrets,
                 caplog: pytest.LogCaptureFixture) -> None:
        self.fast_stack, self.slow_stack = fast, slow
        self.seeded = seeded
        self.caplog = caplog
        self.inner = Counting(fast.app)
        self.stats = HTTPStats()
        prefix = fast.deps.snapshot.issuer.path
        self.fast = TelemetryMiddleware(
            FastPath(self.inner, fast.deps, fast.app.url_map.bind("x").allowed_methods,
                     token_endpoint=fast.tokens), self.stats, route_resolver(fast.app.url_map, prefix))
        self.slow = TelemetryMiddleware(slow.app, HTTPStats(), route_resolver(slow.app.url_map, prefix))

    async def prepare(self, step: Callable[[Stack], Awaitable[Any]]) -> tuple[Any, Any]:
        """Run `step` on both twins from the same random state (so both store the same objects)."""
        self.seeded.reset()
        first = await step(self.fast_stack)
        self.seeded.reset()
        second = await step(self.slow_stack)
        return first, second

    async def both(self, method: str, path: str, headers: list[tuple[str, str]] | None = None,
                   messages: Messages | None = None) -> tuple[Answer, Answer]:
        answers = []
        lines = []
        for app in (self.fast, self.slow):
            self.seeded.reset()
            self.caplog.clear()
            req = scope(method, "/dex" + path, headers or [])
            answers.append(await request(app, req, body(b"") if messages is None else messages))
            lines.append([(r.name, r.levelno, _masked(r.getMessage())) for r in self.caplog.records
                          if r.name.startswith("portico")])
        assert lines[0] == lines[1]
        return answers[0], answers[1]

    async def same(self, method: str, path: str, headers: list[tuple[str, str]] | None = None,
                   messages: Messages | None = None, *, answered: bool = True) -> Answer:
        """Both answers, checked equal; `answered`: whether the fast path answered by itself."""
        calls = self.inner.calls
        fast, slow = await self.both(method, path, headers, messages)
        assert normalised(fast) == normalised(slow)
        assert (self.inner.calls == calls) is answered, "the fast path answered" if not answered else \
            "the fast path handed the request to the app"
        return fast


def _masked(message: str) -> str:
    # "[<request id>] ..." prefixes differ between the twins' requests; the rest must not.
    if message.startswith("[") and "]" in message:
        return "[id]" + message.partition("]")[2]
    return message


@pytest.fixture(params=sorted(CONFIGS))
async def twins(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
                caplog: pytest.LogCaptureFixture) -> AsyncIterator[Twins]:
    caplog.set_level(logging.INFO, logger="portico")
    seeded = SeededSecrets()
    monkeypatch.setattr(appliance.ids, "secrets", seeded)
    text = CONFIGS[request.param]
    fast = await make_stack(text)
    slow = await make_stack(text, key_set=await fast.storage.get_keys())
    yield Twins(fast, slow, seeded, caplog)
    await fast.close()
    await slow.close()


def token_request(fields: bytes, *extra: tuple[str, str]) -> dict[str, Any]:
    return {"headers": [("Content-Type", FORM), basic(), *extra], "messages": body(fields)}


async def new_code(stack: Stack, *, offline: bool = True) -> str:
    now = stack.clock.now()
    code = AuthCode(
        id=appliance.ids.new_id(), client_id="app", redirect_uri=REDIRECT,
        scopes=("openid", "email", "profile", "groups", *(("offline_access",) if offline else ())),
        connector_id="local", nonce="n-1", expiry=now + timedelta(minutes=30), auth_time=now,
        claims=Claims(user_id=USER_ID, username="ada", preferred_username="ada", email="ada@example.com",
                      email_verified=True, groups=("admins",)),
    )
    await stack.storage.auth_codes.create(code)
    return code.id


async def new_refresh(stack: Stack) -> str:
    return await create_refresh_token(
        stack.deps, client_id="app", connector_id="local", scopes=("openid", "email", "offline_access"),
        claims=Claims(user_id=USER_ID, username="ada", email="ada@example.com", email_verified=True),
        nonce="", connector_data=None, grant_id=appliance.ids.new_id())


async def access_token(twins: Twins) -> str:
    answer = await twins.same("POST", "/token", **token_request(form(grant_type="client_credentials",
                                                                     scope="openid email")))
    token = json.loads(answer.body)["access_token"]
    assert isinstance(token, str)
    return token


# --- /token ------------------------------------------------------------------------------------------


async def test_token_grants_issue_identical_tokens(twins: Twins) -> None:
    cc = await twins.same("POST", "/token", **token_request(form(grant_type="client_credentials",
                                                                 scope="openid groups profile")))
    assert cc.status == 200 and json.loads(cc.body)["token_type"] == "bearer"
    post = await twins.same("POST", "/token", [("Content-Type", FORM)], body(form(
        grant_type="client_credentials", client_id="app", client_secret="app-secret")))
    assert post.status == 200

    code, _ = await twins.prepare(new_code)
    exchanged = await twins.same("POST", "/token", **token_request(form(
        grant_type="authorization_code", code=code, redirect_uri=REDIRECT)))
    tokens = json.loads(exchanged.body)
    assert exchanged.status == 200 and {"id_token", "refresh_token", "access_token"} <= set(tokens)
    assert exchanged.header(b"cache-control") == b"no-store" and exchanged.header(b"pragma") == b"no-cache"

    refreshed = await twins.same("POST", "/token", **token_request(form(
        grant_type="refresh_token", refresh_token=tokens["refresh_token"])))
    assert refreshed.status == 200 and json.loads(refreshed.body)["refresh_token"] != tokens["refresh_token"]

    replay = await twins.same("POST", "/token", **token_request(form(
        grant_type="authorization_code", code=code, redirect_uri=REDIRECT)))
    assert replay.status == 400 and json.loads(replay.body)["error"] == "invalid_grant"

    password = await twins.same("POST", "/token", **token_request(form(
        grant_type="password", username="ada@example.com", password=PASSWORD, scope="openid email")))
    assert password.status == 200
    wrong = await twins.same("POST", "/token", **token_request(form(
        grant_type="password", username="ada@example.com", password="wrong", scope="openid")))
    assert wrong.status == 401 and json.loads(wrong.body)["error"] == "access_denied"


async def test_refresh_rotation_through_both_paths(twins: Twins) -> None:
    token, _ = await twins.prepare(new_refresh)
    first = await twins.same("POST", "/token", **token_request(form(grant_type="refresh_token",
                                                                    refresh_token=token)))
    assert first.status == 200
    # The previous secret again, past the reuse interval: a replay, the family is revoked.
    again = await twins.same("POST", "/token", **token_request(form(grant_type="refresh_token",
                                                                    refresh_token=token)))
    assert again.status == 400 and json.loads(again.body)["error"] == "invalid_grant"
    rotated = json.loads(first.body)["refresh_token"]
    revoked = await twins.same("POST", "/token", **token_request(form(grant_type="refresh_token",
                                                                      refresh_token=rotated)))
    assert revoked.status == 400


TOKEN_ERRORS: dict[str, tuple[list[tuple[str, str]], Messages, int, str]] = {
    "missing grant_type": ([("Content-Type", FORM), basic()], body(b"scope=openid"), 400,
                           "unsupported_grant_type"),
    "unknown grant_type": ([("Content-Type", FORM), basic()], body(b"grant_type=magic"), 400,
                           "unsupported_grant_type"),
    "disabled grant_type": ([("Content-Type", FORM), basic()],
                            body(b"grant_type=urn:ietf:params:oauth:grant-type:device_code"), 400,
                            "unsupported_grant_type"),
    "wrong secret, basic": ([("Content-Type", FORM), basic(secret="nope")],
                            body(b"grant_type=client_credentials"), 401, "invalid_client"),
    "wrong secret, post": ([("Content-Type", FORM)],
                           body(b"grant_type=client_credentials&client_id=app&client_secret=x"), 401,
                           "invalid_client"),
    "bad basic escape": ([("Content-Type", FORM), ("Authorization", "Basic " + base64.b64encode(
        b"app%zz:app-secret").decode())], body(b"grant_type=client_credentials"), 400, "invalid_request"),
    "public client": ([("Content-Type", FORM)], body(b"grant_type=client_credentials&client_id=cli"), 400,
                      "unauthorized_client"),
    "missing code": ([("Content-Type", FORM), basic()], body(b"grant_type=authorization_code"), 400,
                     "invalid_request"),
    "unknown code": ([("Content-Type", FORM), basic()],
                     body(b"grant_type=authorization_code&code=nope&redirect_uri=x"), 400, "invalid_grant"),
    "bad refresh token": ([("Content-Type", FORM), basic()],
                          body(b"grant_type=refresh_token&refresh_token=%%"), 400, "invalid_grant"),
    "bad scope": ([("Content-Type", FORM), basic()],
                  body(b"grant_type=client_credentials&scope=offline_access"), 400, "invalid_scope"),
    "duplicate parameter": ([("Content-Type", FORM), basic()],
                            body(b"grant_type=client_credentials&scope=openid&scope=email"), 400,
                            "invalid_request"),
    "duplicate grant_type": ([("Content-Type", FORM), basic()],
                             body(b"grant_type=client_credentials&grant_type=password"), 400,
                             "invalid_request"),
    "body not UTF-8": ([("Content-Type", FORM), basic()], body(b"grant_type=client_credentials&scope=\xff"),
                       400, "unsupported_grant_type"),
    "bad percent escape": ([("Content-Type", FORM), basic()],
                           body(b"grant_type=client_credentials&scope=openid%ff"), 400, "invalid_scope"),
    "semicolon is no separator": ([("Content-Type", FORM), basic()],
                                  body(b"grant_type=client_credentials;scope=openid"), 400,
                                  "unsupported_grant_type"),
    "empty body": ([("Content-Type", FORM), basic()], body(b""), 400, "unsupported_grant_type"),
    "form in two parts": ([("Content-Type", FORM), basic()],
                          body(b"grant_type=client_", b"credentials&scope=x"), 400, "invalid_scope"),
    "form type in capitals": ([("Content-Type", "Application/X-WWW-Form-Urlencoded"), basic()],
                              body(b"grant_type=client_credentials&scope=nope"), 400, "invalid_scope"),
}


@pytest.mark.parametrize("case", sorted(TOKEN_ERRORS))
async def test_token_errors_are_the_apps(twins: Twins, case: str) -> None:
    headers, messages, status, error = TOKEN_ERRORS[case]
    answer = await twins.same("POST", "/token", headers, messages)
    assert answer.status == status
    assert json.loads(answer.body)["error"] == error
    assert answer.header(b"cache-control") == b"no-store"
    if case == "wrong secret, basic":
        assert answer.header(b"www-authenticate") == b'Basic realm="portico"'


# Requests the fast path leaves to the app, untouched: (method, path, headers, body, expected status).
HANDED_OVER: dict[str, tuple[str, str, list[tuple[str, str]], Messages, int]] = {
    "JSON body": ("POST", "/token", [("Content-Type", "application/json"), basic()],
                  body(b'{"grant_type": "client_credentials"}'), 400),
    "no content type": ("POST", "/token", [basic()], body(b"grant_type=client_credentials"), 400),
    "form with another charset": ("POST", "/token", [("Content-Type", FORM + "; charset=latin-1"), basic()],
                                  body(b"grant_type=client_credentials"), 200),
    "multipart form": ("POST", "/token", [("Content-Type", "multipart/form-data; boundary=XyZ"), basic()],
                       body(b'--XyZ\r\nContent-Disposition: form-data; name="grant_type"\r\n\r\n'
                            b"client_credentials\r\n--XyZ--\r\n"), 200),
    "declared too large": ("POST", "/token", [("Content-Type", FORM), basic(), ("Content-Length", "70000")],
                           body(b"grant_type=client_credentials&x=" + b"y" * 69968), 413),
    "bad content length": ("POST", "/token", [("Content-Type", FORM), basic(), ("Content-Length", "-1")],
                           body(b"grant_type=client_credentials"), 200),
    "GET /token": ("GET", "/token", [], body(b""), 405),
    "HEAD /token": ("HEAD", "/token", [], body(b""), 405),
    "PUT /token/introspect": ("PUT", "/token/introspect", [], body(b""), 405),
    "HEAD /userinfo": ("HEAD", "/userinfo", [], body(b""), 401),
    "DELETE /userinfo": ("DELETE", "/userinfo", [], body(b""), 405),
    "trailing slash": ("POST", "/token/", [("Content-Type", FORM), basic()], body(b"grant_type=x"), 404),
}


@pytest.mark.parametrize("case", sorted(HANDED_OVER))
async def test_other_requests_are_handed_to_the_app(twins: Twins, case: str) -> None:
    method, path, headers, messages, status = HANDED_OVER[case]
    answer = await twins.same(method, path, headers, messages, answered=False)
    assert answer.status == status


async def test_a_body_that_grows_past_the_limit_is_replayed_to_the_app(twins: Twins) -> None:
    chunk = b"x" * 40_000
    answer = await twins.same("POST", "/token", [("Content-Type", FORM), basic()],
                              body(b"grant_type=client_credentials&pad=", chunk, chunk), answered=False)
    assert answer.status == 413 and json.loads(answer.body) == {"error": "invalid_request"}


async def test_a_body_within_the_limit_in_many_parts(twins: Twins) -> None:
    parts = [b"grant_type=client_credentials&pad=", *([b"z" * 8000] * 7)]
    answer = await twins.same("POST", "/token", [("Content-Type", FORM), basic()], body(*parts))
    assert answer.status == 200


async def test_a_body_that_never_comes_times_out_like_the_app(twins: Twins) -> None:
    for stack in (twins.fast_stack, twins.slow_stack):
        stack.app.config["BODY_TIMEOUT"] = 0.2
    prefix = twins.fast_stack.deps.snapshot.issuer.path
    # The fast path reads the app's BODY_TIMEOUT when it is built.
    twins.fast = TelemetryMiddleware(
        FastPath(twins.inner, twins.fast_stack.deps, twins.fast_stack.app.url_map.bind("x").allowed_methods,
                 token_endpoint=twins.fast_stack.tokens),
        twins.stats, route_resolver(twins.fast_stack.app.url_map, prefix))
    answer = await twins.same("POST", "/token", [("Content-Type", FORM), basic()], NEVER)
    assert answer.status == 408 and json.loads(answer.body) == {"error": "invalid_request"}
    half = await twins.same("POST", "/token", [("Content-Type", FORM), basic()],
                            [{"type": "http.request", "body": b"grant_type=", "more_body": True}])
    assert half.status == 408


async def test_a_client_that_leaves_gets_no_answer_on_either_path(twins: Twins) -> None:
    gone = await twins.same("POST", "/token", [("Content-Type", FORM), basic()],
                            [{"type": "http.request", "body": b"grant_type=", "more_body": True},
                             {"type": "http.disconnect"}])
    assert gone.status == 0 and gone.body == b""


@pytest.mark.parametrize("failure", ["unexpected", "connector"])
async def test_failures_inside_the_core_are_rendered_like_the_app(
        twins: Twins, failure: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(self: Any, ctx: TokenContext) -> dict[str, object]:
        if failure == "connector":
            raise ConnectorError("upstream ldap.internal:636 refused")
        raise RuntimeError("secret detail 5f3a")

    from appliance.oidc.clientcreds import ClientCredentialsGrant
    monkeypatch.setattr(ClientCredentialsGrant, "exchange", broken)
    answer = await twins.same("POST", "/token", **token_request(form(grant_type="client_credentials")))
    assert answer.status == (502 if failure == "connector" else 500)
    assert json.loads(answer.body) == {"error": "server_error"}
    assert b"secret detail" not in answer.body and b"ldap.internal" not in answer.body
    level = logging.WARNING if failure == "connector" else logging.ERROR
    assert any(r.levelno == level and r.name == "portico.web" for r in twins.caplog.records)


# --- /token/introspect and /userinfo -------------------------------------------------------------------


async def test_introspection_answers_alike(twins: Twins) -> None:
    token = await access_token(twins)
    refresh, _ = await twins.prepare(new_refresh)
    for raw in (token, refresh):
        active = await twins.same("POST", "/token/introspect", [("Content-Type", FORM), basic()],
                                  body(form(token=raw)))
        assert active.status == 200 and json.loads(active.body)["active"] is True
    inactive = await twins.same("POST", "/token/introspect", [("Content-Type", FORM), basic()],
                                body(form(token=token[:-4] + "AAAA")))
    assert json.loads(inactive.body) == {"active": False}
    for headers, fields, status in (
        ([("Content-Type", FORM)], form(token=token), 401),
        ([("Content-Type", FORM), basic(secret="x")], form(token=token), 401),
        ([("Content-Type", FORM)], form(token=token, client_id="cli"), 401),
        ([("Content-Type", FORM), basic()], b"token=a&token=b", 400),
        ([("Content-Type", FORM), basic()], b"token=\xfe", 200),
    ):
        answer = await twins.same("POST", "/token/introspect", headers, body(fields))
        assert answer.status == status


async def test_userinfo_answers_alike(twins: Twins) -> None:
    token = await access_token(twins)
    bearer = ("Authorization", f"Bearer {token}")
    got = await twins.same("GET", "/userinfo", [bearer])
    assert got.status == 200 and json.loads(got.body)["sub"]
    posted = await twins.same("POST", "/userinfo", [bearer, ("Content-Type", FORM)], body(b"a=b&a=c"))
    assert posted.body == got.body
    big = await twins.same("POST", "/userinfo", [bearer, ("Content-Length", "100000")],
                           body(b"q" * 100_000))
    assert big.status == 200
    # A body within the limit is read (and dropped) before the answer, as the app drains it: a client
    # that leaves while sending it gets no answer on either path.
    gone = await twins.same("POST", "/userinfo", [bearer, ("Content-Length", "10")],
                            [{"type": "http.request", "body": b"abc", "more_body": True},
                             {"type": "http.disconnect"}])
    assert gone.status == 0
    for headers, challenge in (
        ([], b"Bearer"),
        ([("Authorization", "Basic abc")], b"Bearer"),
        ([("Authorization", "Bearer " + token[:-3] + "xyz")], b'Bearer error="invalid_token"'),
        ([("Authorization", "bearer \xe9")], b'Bearer error="invalid_token"'),
    ):
        refused = await twins.same("GET", "/userinfo", headers)
        assert refused.status == 401 and refused.header(b"www-authenticate") == challenge

    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))

    async def revoke(stack: Stack) -> None:
        await revoke_id(stack.deps, claims["jti"], stack.clock.now() + timedelta(hours=1))

    await twins.prepare(revoke)
    revoked = await twins.same("GET", "/userinfo", [bearer])
    assert revoked.status == 401


# --- CORS, OPTIONS, telemetry ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/token", "/token/introspect", "/userinfo"])
@pytest.mark.parametrize("headers", [
    [("Origin", ORIGIN), ("Access-Control-Request-Method", "POST")],
    [("Origin", ORIGIN)],
    [("Origin", "https://evil.example"), ("Access-Control-Request-Method", "POST")],
    [],
])
async def test_options_and_preflights(twins: Twins, path: str, headers: list[tuple[str, str]]) -> None:
    answer = await twins.same("OPTIONS", path, headers)
    assert answer.status == 200 and answer.header(b"allow")


async def test_cross_origin_answers(twins: Twins) -> None:
    token = await access_token(twins)
    for origin in (ORIGIN, "https://evil.example", ""):
        for method, path, headers, messages in (
            ("POST", "/token", [("Content-Type", FORM), basic()], body(b"grant_type=client_credentials")),
            ("POST", "/token", [("Content-Type", FORM), basic()], body(b"grant_type=nope")),
            ("POST", "/token/introspect", [("Content-Type", FORM), basic()], body(form(token=token))),
            ("GET", "/userinfo", [("Authorization", f"Bearer {token}")], body(b"")),
            ("GET", "/userinfo", [], body(b"")),
        ):
            answer = await twins.same(method, path, [*headers, ("Origin", origin)], messages)
            allowed = origin == ORIGIN and bool(twins.fast_stack.deps.snapshot.config.web.allowed_origins)
            assert (answer.header(b"access-control-allow-origin") == ORIGIN.encode()) is allowed


async def test_fast_answers_are_counted_under_their_routes(twins: Twins) -> None:
    token = await access_token(twins)
    await twins.same("GET", "/userinfo", [("Authorization", f"Bearer {token}")])
    await twins.same("GET", "/userinfo", [])
    await twins.same("POST", "/token/introspect", [("Content-Type", FORM), basic()], body(form(token=token)))
    family = next(iter(twins.stats.collect()))
    counts = {(s.labels["code"], s.labels["method"], s.labels["handler"]): s.value for s in family.samples}
    assert counts[("200", "post", "/token")] == 1
    assert counts[("200", "get", "/userinfo")] == 1
    assert counts[("401", "get", "/userinfo")] == 1
    assert counts[("200", "post", "/token/introspect")] == 1
    assert twins.stats.in_flight == 0


async def test_a_reload_applies_to_the_next_fast_answer(twins: Twins) -> None:
    before = await twins.same("POST", "/token", **token_request(form(grant_type="client_credentials")))
    assert before.status == 200
    text = config().replace("client_credentials]", "]")
    await twins.prepare(lambda stack: stack.reload(text))
    after = await twins.same("POST", "/token", **token_request(form(grant_type="client_credentials")))
    assert after.status == 400 and json.loads(after.body)["error"] == "unsupported_grant_type"


async def test_requests_with_authproxy_headers_go_through_the_apps_stripping(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The app drops an authproxy connector's headers on every path but its callback before any code
    sees them (appliance/web/upstream_edge.py); the fast path leaves such requests to it."""
    seeded = SeededSecrets()
    monkeypatch.setattr(appliance.ids, "secrets", seeded)
    text = config().replace("enablePasswordDB: true",
                            "connectors:\n  - type: authproxy\n    id: proxy\n    name: Proxy\n"
                            "enablePasswordDB: true")
    fast = await make_stack(text)
    slow = await make_stack(text, key_set=await fast.storage.get_keys())
    twins = Twins(fast, slow, seeded, caplog)
    try:
        token = await access_token(twins)
        plain = await twins.same("GET", "/userinfo", [("Authorization", f"Bearer {token}")])
        spoofed = await twins.same("GET", "/userinfo", [("Authorization", f"Bearer {token}"),
                                                        ("X-Remote-User", "admin")], answered=False)
        assert spoofed.body == plain.body
        await twins.same("POST", "/token", [("Content-Type", FORM), basic(), ("x-remote-group", "admins")],
                         body(b"grant_type=nope"), answered=False)
    finally:
        await fast.close()
        await slow.close()


async def test_rate_limited_token_requests_are_answered_alike(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The token endpoint's limits (per client address, derived the same way on both paths) answer 429
    with Retry-After through the app's error rendering."""
    seeded = SeededSecrets()
    monkeypatch.setattr(appliance.ids, "secrets", seeded)
    text = config() + "security:\n  rateLimits:\n    token:\n      perIP: {requestsPerMinute: 1, burst: 2}\n"
    fast = await make_stack(text)
    slow = await make_stack(text, key_set=await fast.storage.get_keys())
    twins = Twins(fast, slow, seeded, caplog)
    try:
        statuses = []
        for _ in range(3):
            answer = await twins.same("POST", "/token",
                                      **token_request(form(grant_type="client_credentials")))
            statuses.append(answer.status)
        assert statuses == [200, 200, 429]
        assert answer.header(b"retry-after") is not None
        assert json.loads(answer.body)["error"] == "invalid_request"
    finally:
        await fast.close()
        await slow.close()
