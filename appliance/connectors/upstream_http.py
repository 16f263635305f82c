"""The HTTP client of the upstream connectors: TLS from rootCAs/insecureSkipVerify, timeouts, errors."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from typing import Any
from urllib.parse import quote_plus

import httpx
from authlib.integrations.httpx_client import AsyncOAuth2Client  # type: ignore[import-untyped]

from appliance.errors import ConnectorError

# Connect fast-fails a down upstream; the rest bounds a slow one, so a login never hangs on it.
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
MAX_JSON_BYTES = 1 << 20


class UpstreamRefusedError(ConnectorError):
    """The upstream answered the login with an OAuth error (access_denied, login_required, ...)."""

    def __init__(self, message: str, error: str) -> None:
        super().__init__(message)
        self.error = error


def _basic_form_encoded(client: Any, method: str, uri: str, headers: dict[str, str],
                        body: str) -> tuple[str, dict[str, str], str]:
    """client_secret_basic as RFC 6749 2.3.1 (and Go's oauth2, which Dex uses) has it.

    The id and secret are form-encoded before base64; authlib's own method skips that step, which
    breaks secrets with characters such as ':' '+' '%' at providers that decode them.
    """
    text = f"{quote_plus(client.client_id, safe='')}:{quote_plus(client.client_secret or '', safe='')}"
    headers["Authorization"] = "Basic " + base64.b64encode(text.encode()).decode()
    return uri, headers, body


class UpstreamHTTP:
    """Makes clients for one upstream; a new client per operation, so none outlives its event loop."""

    def __init__(self, label: str, root_cas: tuple[bytes, ...] = (),
                 insecure_skip_verify: bool = False) -> None:
        self.label = label  # e.g. 'oidc connector "corp"', the start of every error message
        self._root_cas = root_cas
        self._insecure = insecure_skip_verify
        self._context: ssl.SSLContext | None = None

    async def _ssl(self) -> ssl.SSLContext:
        if self._context is None:
            # Loading the system trust store reads files: not on the event loop.
            self._context = await asyncio.to_thread(self._build_context)
        return self._context

    def _build_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        for pem in self._root_cas:
            context.load_verify_locations(cadata=pem.decode("ascii", "replace"))
        if self._insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(verify=await self._ssl(), timeout=TIMEOUT, follow_redirects=True)

    async def oauth_client(self, client_id: str, client_secret: str, auth_method: str,
                           redirect_uri: str = "") -> AsyncOAuth2Client:
        """authlib's async OAuth 2.0 client for the token endpoint (code exchange, refresh)."""
        client = AsyncOAuth2Client(
            client_id=client_id,
            client_secret=client_secret,
            token_endpoint_auth_method=auth_method if client_secret else "none",
            redirect_uri=redirect_uri or None,
            verify=await self._ssl(),
            timeout=TIMEOUT,
        )
        client.register_client_auth_method(("client_secret_basic", _basic_form_encoded))
        return client

    async def get_json(self, url: str, what: str, bearer: str = "") -> dict[str, Any]:
        """GET a JSON object; ConnectorError (naming `what` and the URL) for any failure."""
        headers = {"Accept": "application/json"}
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        async with await self.client() as http:
            try:
                response = await http.get(url, headers=headers)
            except httpx.HTTPError as exc:
                raise self.unreachable(what, url, exc) from exc
        if response.status_code != 200:
            raise ConnectorError(f"{self.label}: {what} at {url} answered HTTP {response.status_code}")
        return self.json_object(response, what, url)

    def json_object(self, response: httpx.Response, what: str, url: str) -> dict[str, Any]:
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in ("application/json", "") and not content_type.endswith("+json"):
            raise ConnectorError(f"{self.label}: {what} at {url} is {content_type}, not JSON")
        if len(response.content) > MAX_JSON_BYTES:
            raise ConnectorError(f"{self.label}: {what} at {url} is too large")
        try:
            value = json.loads(response.content)
        except ValueError as exc:
            raise ConnectorError(f"{self.label}: {what} at {url} is not valid JSON") from exc
        if not isinstance(value, dict):
            raise ConnectorError(f"{self.label}: {what} at {url} is not a JSON object")
        return value

    def unreachable(self, what: str, url: str, exc: Exception) -> ConnectorError:
        reason = str(exc) or type(exc).__name__
        return ConnectorError(f"{self.label}: cannot reach the upstream's {what} at {url}: {reason}")
