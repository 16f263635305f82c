"""The fuzzers' table of endpoints: every public path and form, the fields each reads, and a valid
request to each that the strategies (fuzz_strategies) break in small ways."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field

from security_support import APP_REDIRECT, DEVICE_GRANT, EXCHANGE_GRANT, SECRETS

Live = dict[str, str]
"""Real values the fuzzers start from: auth_state (an unfinished password login), approval_req (a request
awaiting approval), code (a spent code), refresh/access/id_token (the decoy grant it issued), device_code
and user_code (a pending device login), csrf_cookie (the CSRF cookie the strategies may send) and csrf
(the forms' token for it)."""
Pairs = list[tuple[str, str]]

AUTH_PARAMS = (
    "client_id", "redirect_uri", "response_type", "scope", "state", "nonce", "code_challenge",
    "code_challenge_method", "prompt", "max_age", "id_token_hint", "connector_id", "request", "request_uri",
    "approval_prompt", "login_hint",
)
TOKEN_PARAMS = (
    "grant_type", "code", "redirect_uri", "code_verifier", "refresh_token", "scope", "username", "password",
    "device_code", "subject_token", "subject_token_type", "requested_token_type", "connector_id", "client_id",
    "client_secret", "audience",
)
GRANTS = (
    "authorization_code", "refresh_token", "password", "client_credentials", "implicit", DEVICE_GRANT,
    EXCHANGE_GRANT, "urn:ietf:params:oauth:grant-type:jwt-bearer", "AUTHORIZATION_CODE",
)


def _auth(live: Live) -> Pairs:
    return [("client_id", "app"), ("redirect_uri", APP_REDIRECT), ("response_type", "code"),
            ("scope", "openid email offline_access"), ("state", "st"), ("nonce", "n"),
            ("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"),
            ("code_challenge_method", "S256"), ("connector_id", "local"), ("max_age", "60"),
            ("id_token_hint", live["id_token"])]


def _token(live: Live) -> Pairs:
    return [("grant_type", live["grant"]), ("code", live["code"]), ("redirect_uri", APP_REDIRECT),
            ("code_verifier", "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            ("refresh_token", live["refresh"]),
            ("scope", "openid email"), ("username", "admin@example.com"), ("password", "not-the-password"),
            ("device_code", live["device_code"]), ("subject_token", live["id_token"]),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:id_token"), ("connector_id", "mock"),
            ("client_id", "native")]


def _login(live: Live) -> Pairs:
    return [("state", live["auth_state"]), ("login", "admin@example.com"), ("password", "not-the-password"),
            ("csrf_token", live["csrf"])]


def _approval(live: Live) -> Pairs:
    return [("req", live["approval_req"]), ("hmac", "AAAA"), ("approval", "approve"),
            ("csrf_token", live["csrf"]), ("remember", "on")]


def _logout(live: Live) -> Pairs:
    return [("id_token_hint", live["id_token"]), ("post_logout_redirect_uri", "https://app.example/bye"),
            ("state", "s"), ("client_id", "app"), ("csrf_token", live["csrf"])]


def _none(live: Live) -> Pairs:
    return []


@dataclass(frozen=True)
class Target:
    """One endpoint: its methods, path ({seg}: a free path segment), the fields it reads, a valid request
    to start from, and which stored collections a (valid) request to it may add to."""

    name: str
    methods: tuple[str, ...]
    path: str
    params: tuple[str, ...] = ()
    json: bool = False  # answers, errors too, in JSON
    may_create: frozenset[str] = frozenset()
    template: Callable[[Live], Pairs] = field(default=_none, compare=False)
    segments: tuple[str, ...] = ()  # good values of {seg}
    auth: tuple[str, ...] = ()  # good Authorization values
    query_fields: tuple[str, ...] = ()  # fields that stay in the query on a POST
    grants: tuple[str, ...] = GRANTS  # the grant_type the template starts from
    share: float = 1.0  # of the examples each target gets


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


APP_BASIC = basic("app", SECRETS["app"])
SVC_BASIC = basic("svc", SECRETS["svc"])
_CLIENT_FIELDS = ("token", "token_type_hint", "client_id", "client_secret")
_MOCK_LOGIN = frozenset({"browser_sessions"})
_REVOCATION = frozenset({"revoked_tokens"})  # the spent code replayed revokes its grant

TARGETS: tuple[Target, ...] = (
    Target("discovery", ("GET",), "/.well-known/openid-configuration", json=True),
    Target("keys", ("GET",), "/keys", json=True),
    Target("auth", ("GET", "POST"), "/auth", AUTH_PARAMS, template=_auth),
    Target("auth-connector", ("GET",), "/auth/{seg}", AUTH_PARAMS, may_create=frozenset({"auth_requests"}),
           template=_auth, segments=("local", "mock")),
    Target("auth-login", ("GET", "POST"), "/auth/{seg}/login", ("state", "login", "password", "csrf_token"),
           template=_login, segments=("local",), query_fields=("state",)),
    # The mock connector vouches for anyone who reaches its callback: a state that names the live request
    # of the mock login (approval_req, drawn as any live value) is a real login and starts a session.
    Target("callback", ("GET",), "/callback", ("state", "code", "error", "error_description"),
           may_create=_MOCK_LOGIN, template=lambda live: [("state", live["auth_state"]), ("code", "x")]),
    Target("callback-connector", ("GET",), "/callback/{seg}", ("state", "code", "error"),
           may_create=_MOCK_LOGIN, template=lambda live: [("state", live["auth_state"])],
           segments=("mock", "local")),
    Target("approval", ("GET", "POST"), "/approval", ("req", "hmac", "approval", "csrf_token", "remember"),
           template=_approval),
    Target("mfa-totp", ("GET", "POST"), "/mfa/totp", ("req", "hmac", "code", "action", "csrf_token"),
           template=lambda live: [("req", live["auth_state"]), ("hmac", "AAAA"), ("code", "123456"),
                                  ("action", "verify"), ("csrf_token", live["csrf"])]),
    Target("introspect", ("POST",), "/token/introspect", _CLIENT_FIELDS, json=True, auth=(APP_BASIC,),
           template=lambda live: [("token", live["access"]), ("token_type_hint", "access_token")]),
    Target("userinfo", ("GET", "POST"), "/userinfo", ("access_token", "schema"), json=True,
           template=lambda live: [("access_token", live["access"])]),
    Target("device-code", ("POST",), "/device/code", ("client_id", "client_secret", "scope", "code_challenge",
                                                     "code_challenge_method"), json=True,
           may_create=frozenset({"device_requests", "device_tokens"}),
           template=lambda live: [("client_id", "native"), ("scope", "openid groups"),
                                  ("code_challenge", "abc"), ("code_challenge_method", "S256")]),
    Target("device", ("GET",), "/device", ("user_code",),
           template=lambda live: [("user_code", live["user_code"])]),
    Target("device-verify", ("POST",), "/device/auth/verify_code", ("user_code", "csrf_token"),
           template=lambda live: [("user_code", live["user_code"]), ("csrf_token", live["csrf"])]),
    Target("logout", ("GET", "POST"), "/logout", ("id_token_hint", "post_logout_redirect_uri", "state",
                                                  "client_id", "csrf_token"), template=_logout),
    Target("logout-callback", ("GET",), "/logout/callback", ("state", "error")),
    Target("healthz", ("GET",), "/healthz"),
    Target("static", ("GET",), "/static/{seg}", ("v",), segments=("css/portico.css", "img/favicon.svg")),
    Target("theme", ("GET",), "/theme/{seg}", ("v",), segments=("theme.css",)),
    # Last: these may spend the decoy grant (a replayed code revokes it) that the ones above start from.
    *(Target(f"token {grant}", ("POST",), "/token", TOKEN_PARAMS, json=True, may_create=_REVOCATION,
             template=_token, auth=(APP_BASIC, SVC_BASIC), grants=(grant,), share=0.4)
      for grant in sorted(GRANTS, key=lambda g: g == "authorization_code")),  # the replay of the code last
    Target("revoke", ("POST",), "/token/revoke", _CLIENT_FIELDS, json=True, may_create=_REVOCATION,
           auth=(APP_BASIC,),
           template=lambda live: [("token", live["refresh"]), ("token_type_hint", "refresh_token")]),
    Target("device-callback", ("GET",), "/device/callback", ("state", "code", "error"),
           may_create=_REVOCATION,
           template=lambda live: [("state", live["user_code"]), ("code", live["code"])]),
)
