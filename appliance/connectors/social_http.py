"""Talking to social and forge upstreams: TLS trust, the OAuth 2.0 code flow (authlib), JSON APIs, paging."""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import certifi
import httpx
from authlib.integrations.base_client import OAuthError  # type: ignore[import-untyped]
from authlib.integrations.httpx_client import AsyncOAuth2Client  # type: ignore[import-untyped]

from appliance.clock import Clock
from appliance.connectors.base import GrantRevokedError, UserRefusedError
from appliance.connectors.social_token import UpstreamToken, token_from_response
from appliance.errors import ConnectorError

log = logging.getLogger("portico.connectors.social")

# One upstream request may take this long; the login as a whole is bounded by oidc.login.CONNECTOR_TIMEOUT.
REQUEST_TIMEOUT = 15.0
# Paging stops here even if the upstream keeps offering a next page (a loop, or an absurd membership).
MAX_PAGES = 200
# How much of an upstream's error body goes into the (logged, never displayed) error message.
_BODY_SHOWN = 200
_LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')
# A token endpoint's answers to a refresh token that end the grant for good: RFC 6749's invalid_grant,
# and GitHub's own code for a refresh token that is expired, revoked or already used.
_REFRESH_REFUSALS = ("invalid_grant", "bad_refresh_token")


class UpstreamDenied(UserRefusedError):
    """The upstream answered, and its answer refuses this user: consent denied, no verified email,
    a domain or tenant that is not allowed. Not an outage; the user cannot log in this way."""


class TrustStore:
    """The TLS trust for one upstream: the system CAs (certifi) plus an optional extra CA bundle.

    The SSL context is built on first use, in a thread: loading CA files is blocking disk work.
    """

    def __init__(self, extra_ca_pem: bytes | None = None, insecure_skip_verify: bool = False) -> None:
        self._extra = extra_ca_pem
        self._insecure = insecure_skip_verify
        self._context: ssl.SSLContext | None = None

    def _build(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=certifi.where())
        if self._extra:
            context.load_verify_locations(cadata=self._extra.decode("ascii", "replace"))
        if self._insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def context(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = await asyncio.to_thread(self._build)
        return self._context


def _basic_escaped(client: Any, method: str, uri: str, headers: dict[str, str], body: str) -> Any:
    # RFC 6749 2.3.1 (and Go's x/oauth2, which Dex uses): id and secret are form-encoded before Basic.
    pair = f"{quote(client.client_id, safe='')}:{quote(client.client_secret or '', safe='')}"
    headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
    return uri, headers, body


@dataclass(frozen=True)
class OAuth2App:
    """Portico registered as an OAuth 2.0 client at one upstream."""

    client_id: str
    client_secret: str = field(repr=False)
    auth_url: str
    token_url: str
    redirect_uri: str
    # "auto" (Basic, then the form body if Basic is refused: Go's auto-detection), "client_secret_basic"
    # (form-encoded first, as Go sends it), "client_secret_post", or "none" (client_id only).
    auth_method: str = "auto"
    send_redirect_uri: bool = True  # Bitbucket's app has its callback registered; Dex sends none there

    def login_url(self, scopes: Sequence[str], state: str, extra: Mapping[str, str] | None = None) -> str:
        """The authorization request, its parameters sorted by name as Go's url.Values encodes them."""
        params = {"response_type": "code", "client_id": self.client_id, "state": state}
        if self.send_redirect_uri and self.redirect_uri:
            params["redirect_uri"] = self.redirect_uri
        if scopes:
            params["scope"] = " ".join(scopes)
        params.update(extra or {})
        joiner = "&" if "?" in self.auth_url else "?"
        return self.auth_url + joiner + urlencode(sorted(params.items()))


def check_redirect(who: str, configured: str, callback_url: str) -> None:
    """Dex refuses to start a login whose callback is not the configured redirectURI: say so early."""
    if configured != callback_url:
        raise ConnectorError(
            f"{who}: expected callback URL {callback_url!r} did not match the URL in the config "
            f"{configured!r}"
        )


def callback_code(who: str, params: Mapping[str, str]) -> str:
    """The authorization code of a callback, or the refusal the upstream sent instead."""
    # Both come from the browser's query string: shortened and made printable before they reach a log.
    error = _printable(params.get("error", ""))
    if error:
        description = _printable(params.get("error_description", ""))
        raise UpstreamDenied(f"{who}: {error}: {description}" if description else f"{who}: {error}")
    code = params.get("code", "")
    if not code:
        raise ConnectorError(f"{who}: the callback carries no authorization code")
    return code


def _printable(value: str, limit: int = _BODY_SHOWN) -> str:
    return "".join(ch if ch.isprintable() else "?" for ch in value[:limit])


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _short(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    return text[:_BODY_SHOWN] + ("..." if len(text) > _BODY_SHOWN else "")


class Upstream:
    """One conversation with an upstream API whose failures all become ConnectorError."""

    def __init__(self, who: str, client: httpx.AsyncClient) -> None:
        self.who = who
        self.client = client

    async def request(
        self, method: str, url: str, *, expect: Sequence[int] = (200,), **kwargs: Any
    ) -> httpx.Response:
        path = urlsplit(url).path
        try:
            response = await self.client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise ConnectorError(f"{self.who}: {method} {path}: {type(exc).__name__}: {exc}") from None
        except OAuthError as exc:  # authlib: no usable token to sign the request with
            raise ConnectorError(f"{self.who}: {method} {path}: {exc}") from None
        if response.status_code not in expect:
            raise ConnectorError(
                f"{self.who}: {method} {path}: HTTP {response.status_code}: {_short(response)}"
            )
        return response

    async def json(self, method: str, url: str, *, expect: Sequence[int] = (200,), **kwargs: Any) -> Any:
        response = await self.request(method, url, expect=expect, **kwargs)
        return self.decode(response)

    def decode(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            where = f"{response.request.method} {response.request.url.path}"
            raise ConnectorError(f"{self.who}: {where}: not JSON: {_short(response)}") from None

    def same_origin(self, base: str, next_url: str) -> str:
        """A paging URL the upstream handed back, refused if it points elsewhere: the token goes with it."""
        if _origin(next_url) != _origin(base):
            raise ConnectorError(f"{self.who}: the upstream sent a next-page link to another host")
        return next_url

    def next_link(self, response: httpx.Response) -> str | None:
        """The rel="next" URL of a Link header (GitHub, Gitea, GitLab), or None on the last page."""
        match = _LINK_NEXT.search(response.headers.get("link", ""))
        if not match:
            return None
        return self.same_origin(str(response.request.url), match.group(1))


def maybe_json(response: httpx.Response) -> object:
    """The body as JSON, or None: for error answers, which may well be an HTML page."""
    try:
        return response.json()
    except ValueError:
        return None


def json_list(who: str, value: object, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ConnectorError(f"{who}: {what}: expected a JSON list")
    return value


def json_object(who: str, value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConnectorError(f"{who}: {what}: expected a JSON object")
    return value


def text(value: object) -> str:
    """A JSON string field, "" when absent or of another type (as Go leaves a field it cannot fill)."""
    return value if isinstance(value, str) else ""


@asynccontextmanager
async def plain_upstream(
    who: str, trust: TrustStore, headers: Mapping[str, str] | None = None, **client_kwargs: Any
) -> AsyncIterator[Upstream]:
    """An Upstream over a plain httpx client (APIs that take no OAuth token: Crowd, Keystone)."""
    context = await trust.context()
    async with httpx.AsyncClient(
        verify=context, timeout=REQUEST_TIMEOUT, headers=dict(headers or {}), follow_redirects=False,
        **client_kwargs,
    ) as client:
        yield Upstream(who, client)


class OAuthSession(Upstream):
    """An Upstream that holds an OAuth 2.0 client: it exchanges codes, refreshes, and signs API calls."""

    client: AsyncOAuth2Client

    def __init__(self, who: str, app: OAuth2App, client: AsyncOAuth2Client, clock: Clock) -> None:
        super().__init__(who, client)
        self.app = app
        self.clock = clock

    async def request(
        self, method: str, url: str, *, expect: Sequence[int] = (200,), **kwargs: Any
    ) -> httpx.Response:
        """An API call signed with the user's token. A 401 that the caller did not expect means the
        upstream no longer honours the token (revoked, the account removed or disabled): GrantRevokedError.
        A 403 stays an ordinary failure: it is also how APIs say "rate limited" or "missing scope"."""
        response = await super().request(method, url, expect=(*expect, 401), **kwargs)
        if response.status_code == 401 and 401 not in expect:
            raise GrantRevokedError(
                f"{self.who}: {method} {urlsplit(url).path}: HTTP 401: the upstream refused the user's "
                f"token: {_short(response)}"
            )
        return response

    def use(self, token: UpstreamToken) -> None:
        """Sign the following API calls with `token` (always as Bearer, whatever case the upstream used)."""
        self.client.token = {"access_token": token.access_token, "token_type": "Bearer"}

    async def exchange(self, code: str, **extra: str) -> UpstreamToken:
        """The authorization code for tokens (RFC 6749 4.1.3); the session then signs with them."""
        return await self._token_call(
            "failed to get token", self.client.fetch_token, code=code, grant_type="authorization_code",
            **extra,
        )

    async def refresh(self, refresh_token: str, **extra: str) -> UpstreamToken:
        """A refresh grant (RFC 6749 6); an upstream that sends no new refresh token keeps the old one."""
        token = await self._token_call(
            "failed to refresh token", self.client.refresh_token, refresh_token=refresh_token, **extra
        )
        return token if token.refresh_token else token.with_refresh_token(refresh_token)

    async def fresh(self, token: UpstreamToken, **extra: str) -> tuple[UpstreamToken, bool]:
        """`token`, refreshed first if it has expired (Go's oauth2 token source); True when refreshed."""
        if token.usable(self.clock.now()):
            self.use(token)
            return token, False
        if not token.refresh_token:
            # Nothing can renew it: the user must log in again (invalid_grant), it is no outage.
            raise GrantRevokedError(
                f"{self.who}: the upstream access token expired; no refresh token is kept"
            )
        return await self.refresh(token.refresh_token, **extra), True

    async def _token_call(self, what: str, call: Any, **params: str) -> UpstreamToken:
        try:
            try:
                raw = await call(self.app.token_url, **params)
            except (OAuthError, ValueError) as exc:
                if self.app.auth_method != "auto" or not _client_auth_refused(exc):
                    raise
                # Go's x/oauth2 auto-detection (Dex relies on it): the secret in a Basic header was
                # refused, so it goes in the form body instead.
                self.client.token_endpoint_auth_method = "client_secret_post"  # noqa: S105
                raw = await call(self.app.token_url, **params)
        except OAuthError as exc:
            # The upstream's own refusal (invalid_grant, bad_verification_code...): no secret in it.
            reason = f"{exc.error}: {exc.description or ''}".rstrip(": ")
            # A refresh token the upstream no longer honours ends the grant; it is no outage.
            refused = exc.error in _REFRESH_REFUSALS and "refresh_token" in params
            raise (UpstreamDenied if refused else ConnectorError)(f"{self.who}: {what}: {reason}") from None
        except httpx.HTTPStatusError as exc:
            raise ConnectorError(f"{self.who}: {what}: HTTP {exc.response.status_code}") from None
        except httpx.HTTPError as exc:
            raise ConnectorError(f"{self.who}: {what}: {type(exc).__name__}: {exc}") from None
        except ValueError:  # a 4xx answer that is not JSON
            raise ConnectorError(f"{self.who}: {what}: the token endpoint did not answer JSON") from None
        if not isinstance(raw, Mapping):
            raise ConnectorError(f"{self.who}: {what}: the token endpoint did not answer a JSON object")
        token = token_from_response(raw, self.clock.now())
        if not token.access_token:
            raise ConnectorError(f"{self.who}: {what}: the token response has no access_token")
        self.use(token)
        return token


def _client_auth_refused(exc: Exception) -> bool:
    """Whether a token endpoint's refusal may be about how the client authenticated."""
    if isinstance(exc, OAuthError):
        return exc.error in ("invalid_client", "unauthorized_client", "invalid_request")
    return True  # a 4xx that is not even JSON: an unexpected answer, worth the second style


@asynccontextmanager
async def oauth_session(
    who: str, app: OAuth2App, trust: TrustStore, clock: Clock, headers: Mapping[str, str] | None = None
) -> AsyncIterator[OAuthSession]:
    """An OAuthSession for one login or one refresh; its connections close when it ends."""
    context = await trust.context()
    secret = app.client_secret if app.auth_method != "none" else None
    client = AsyncOAuth2Client(
        client_id=app.client_id,
        client_secret=secret,
        token_endpoint_auth_method="client_secret_basic" if app.auth_method == "auto" else app.auth_method,
        # None leaves redirect_uri out of the code exchange (authlib sends it only when set).
        redirect_uri=(app.redirect_uri or None) if app.send_redirect_uri else None,
        verify=context,
        timeout=REQUEST_TIMEOUT,
        headers=dict(headers or {}),
        follow_redirects=False,
    )
    client.register_client_auth_method(("client_secret_basic", _basic_escaped))
    async with client:
        yield OAuthSession(who, app, client, clock)
