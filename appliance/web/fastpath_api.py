"""The fast path's machine endpoints: POST /token, POST /token/introspect, GET and POST /userinfo, served as
bare ASGI through the same protocol core and answered exactly as the Quart routes answer."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from appliance.errors import ConnectorError, OAuthError
from appliance.oidc.deps import Deps, Snapshot
from appliance.oidc.token import TokenEndpoint
from appliance.telemetry.context import current_request_id
from appliance.web.fastpath_headers import (
    Message,
    Receive,
    Scope,
    Send,
    cors,
    first_headers,
    json_headers,
)
from appliance.web.fastpath_shared import HeaderLookup, MachineCalls, form_values
from appliance.web.headers import oauth_error_headers

__all__ = ["ApiRoutes"]

# The Quart app's logger and lines, so that an error reads the same whichever path answered it.
log = logging.getLogger("portico.web")

ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]
# MachineCalls.token / .introspect: (snapshot, form, Authorization, scope, header lookup) -> the answer
FormCall = Callable[
    [Snapshot, Mapping[str, str], str, Mapping[str, Any], HeaderLookup], Awaitable[dict[str, object]]
]

# The form encodings read here; any other Content-Type (multipart, none, JSON, odd parameters) goes to
# the app, whose parser decides what it means. Compared lowercased.
_FORM_TYPES = frozenset({
    b"application/x-www-form-urlencoded",
    b"application/x-www-form-urlencoded; charset=utf-8",
    b"application/x-www-form-urlencoded;charset=utf-8",
})


class _Replay:
    """A receive callable that hands out the messages already read, then the server's own."""

    def __init__(self, messages: list[Message], receive: Receive) -> None:
        self._messages = messages
        self._receive = receive

    async def __call__(self) -> Message:
        if self._messages:
            return self._messages.pop(0)
        return await self._receive()


class _TimedOut(Exception):
    """The request body did not arrive in time."""


class ApiRoutes:
    """The three endpoints as ASGI handlers. Each handles what the Quart route handles the common way
    (a form-encoded body within the app's size limit) and hands anything else to the app before
    reading or deciding anything: other body encodings, bodies over the limit, methods it does not
    serve. Errors carry what the app's error responses carry (appliance/web/headers.py has what both
    add) and are logged with its lines.

    `max_body` and `body_timeout` are the app's MAX_CONTENT_LENGTH and BODY_TIMEOUT: a body over the
    limit goes to the app (which answers 413), one that does not arrive in time is answered 408.
    """

    def __init__(self, app: ASGIApp, deps: Deps, tokens: TokenEndpoint | None, *, max_body: int,
                 body_timeout: float) -> None:
        self.app = app
        self._deps = deps
        self._serve_token = tokens is not None
        self._calls = MachineCalls(deps, tokens or TokenEndpoint())
        self._max_body = max_body
        self._body_timeout = body_timeout

    # --- the endpoints -------------------------------------------------------------------------------

    async def token(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._serve_token:
            await self.app(scope, receive, send)
            return
        await self._form_endpoint(scope, receive, send, self._calls.token)

    async def introspect(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._form_endpoint(scope, receive, send, self._calls.introspect)

    async def _form_endpoint(self, scope: Scope, receive: Receive, send: Send, call: FormCall) -> None:
        """A POST of a form answered in JSON (/token, /token/introspect), errors as the app renders them."""
        snap = self._deps.snapshot
        form_type, authorization, origin, length = first_headers(
            scope["headers"], b"content-type", b"authorization", b"origin", b"content-length")
        body = await self._form_body(scope, receive, send, form_type, length, snap, origin)
        if body is None:
            return
        try:
            form = form_values(_parse(body))
            answer = await call(snap, form, _text(authorization), scope, _lookup(scope))
            payload = json.dumps(answer).encode()
        except Exception as exc:  # rendered as the app's error handler renders it
            await self._error(scope, send, snap, origin, exc)
            return
        await self._json(send, snap, origin, payload)

    async def userinfo(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The token comes in the Authorization header; a body is read only to be dropped, as the app's
        # after_request does with one the route left unread (so the connection stays usable).
        snap = self._deps.snapshot
        authorization, origin, length = first_headers(scope["headers"], b"authorization", b"origin",
                                                      b"content-length")
        if length is not None and length != b"0" and _within(length, self._max_body):
            messages: list[Message] = []
            try:
                await self._receive_body(receive, messages)
            except _TimedOut:
                pass  # the app's drain gives up silently too, and answers
            if messages and messages[-1]["type"] == "http.disconnect":
                return
        try:
            answer = await self._calls.userinfo(snap, _text(authorization), scope, _lookup(scope))
            payload = json.dumps(answer).encode()
        except Exception as exc:
            await self._error(scope, send, snap, origin, exc)
            return
        await self._json(send, snap, origin, payload)

    # --- the request body ----------------------------------------------------------------------------

    async def _form_body(self, scope: Scope, receive: Receive, send: Send, form_type: bytes | None,
                         length: bytes | None, snap: Snapshot, origin: bytes | None) -> bytes | None:
        """The whole body, or None when the request was handed to the app, answered, or abandoned."""
        if form_type is None or form_type.lower() not in _FORM_TYPES or not _within(length, self._max_body):
            await self.app(scope, receive, send)
            return None
        messages: list[Message] = []
        try:
            body = await self._receive_body(receive, messages)
        except _TimedOut:
            # Quart's RequestTimeout, through the app's error handler: 408 {"error": "invalid_request"}.
            await self._json(send, snap, origin, _dumps({"error": "invalid_request"}), 408)
            return None
        if body is None:
            if messages and messages[-1]["type"] == "http.disconnect":
                return None  # the client left: Quart would stop handling the request too
            await self.app(scope, _Replay(messages, receive), send)  # over the limit: the app's 413
            return None
        return body

    async def _receive_body(self, receive: Receive, messages: list[Message]) -> bytes | None:
        """Reads the body into one bytes object, keeping the messages (for a replay to the app). None
        when it grows past the limit or the client disconnects; _TimedOut past the body timeout."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            if task is not None:
                task.cancel()

        timer = loop.call_later(self._body_timeout, expire)
        size = 0
        try:
            while True:
                message = await receive()
                messages.append(message)
                if message["type"] != "http.request":
                    return None
                size += len(message.get("body", b""))
                if size > self._max_body:
                    return None
                if not message.get("more_body", False):
                    break
        except asyncio.CancelledError:
            if not expired or task is None:
                raise
            task.uncancel()
            raise _TimedOut from None
        finally:
            timer.cancel()
        if len(messages) == 1:
            return bytes(messages[0].get("body", b""))
        return b"".join(bytes(m.get("body", b"")) for m in messages)

    # --- answers -------------------------------------------------------------------------------------

    async def _json(self, send: Send, snap: Snapshot, origin: bytes | None, body: bytes, status: int = 200,
                    extra: list[tuple[str, str]] | None = None) -> None:
        """`json_response(answer, status, no_store=True)` of the JSON `body` (json.dumps with its
        defaults), with the `extra` headers set on it, after the app's after_request."""
        headers = json_headers(body, snap, extra or ())
        origin_text = _text(origin)
        if origin_text and snap.config.web.allowed_origins:
            headers += cors(snap, origin_text, False)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _error(self, scope: Scope, send: Send, snap: Snapshot, origin: bytes | None,
                     exc: Exception) -> None:
        """The app's errorhandler for the JSON endpoints, line for line (oauth_error_response and
        json_response of appliance/web/responses.py, without building a Quart response)."""
        rid = current_request_id()
        path = scope["path"]
        if isinstance(exc, OAuthError):
            log.info("[%s] %s: %s %s", rid, path, exc.error, exc.description)
            await self._json(send, snap, origin, _dumps(exc.as_dict()), exc.status, oauth_error_headers(exc))
            return
        if isinstance(exc, ConnectorError):
            log.warning("[%s] %s: connector failed: %s", rid, path, exc)
            await self._json(send, snap, origin, _dumps({"error": "server_error"}), 502)
            return
        log.exception("[%s] %s: internal error", rid, path, exc_info=exc)
        await self._json(send, snap, origin, _dumps({"error": "server_error"}), 500)


def _dumps(answer: Mapping[str, object]) -> bytes:
    return json.dumps(answer).encode()


def _parse(body: bytes) -> list[tuple[str, str]]:
    """Quart's urlencoded form parser: the body must be UTF-8 or the form is empty (its parser is
    silent), then parse_qsl keeping blank values (invalid percent-escapes become U+FFFD)."""
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return []
    return parse_qsl(text, keep_blank_values=True)


def _lookup(scope: Scope) -> HeaderLookup:
    """Quart's `request.headers.get` over the scope's headers: the first value, latin-1, by any case."""
    raw = scope["headers"]

    def header(name: str) -> str | None:
        key = name.lower().encode("latin-1")
        for item, value in raw:
            if item == key:
                return bytes(value).decode("latin-1")
        return None

    return header


def _text(value: bytes | None) -> str:
    """A header value as Quart's request.headers holds it (latin-1), "" when absent."""
    return value.decode("latin-1") if value else ""


def _within(length: bytes | None, limit: int) -> bool:
    """Whether a Content-Length (if any) is a plain number within `limit`; anything else is the app's."""
    if length is None:
        return True
    return length.isdigit() and len(length) <= 12 and int(length) <= limit
