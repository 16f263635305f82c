"""The client's IP address as the limits see it: the peer's, or, from a trusted proxy, the header's.

`web.clientRemoteIP {header, trustedProxies}`: only when the connection comes from one of the trusted
proxies is `header` read. It is read as X-Forwarded-For is written (each proxy appends the address it
saw), from the right: the first address that is not itself a trusted proxy is the client. So a
client that sends its own header gains nothing: its entries sit left of what the proxies appended.
`Forwarded` (RFC 7239) is read through its `for=` parameters. Which peers are trusted is decided by
the same matcher as the request ids' (appliance.telemetry.middleware.TrustedProxies).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Mapping
from typing import Any

from appliance.config.schema import ClientRemoteIP
from appliance.telemetry.middleware import TrustedProxies

__all__ = ["ClientAddress", "peer_of_scope"]

log = logging.getLogger("portico.security")

HeaderLookup = Callable[[str], "str | None"]
_PROXY_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")


def peer_of_scope(scope: Mapping[str, Any]) -> str:
    """The peer address of an ASGI scope ("" when the server gives none, as over a Unix socket)."""
    client = scope.get("client")
    if client:
        return str(client[0])
    return ""


def _address(text: str) -> str:
    """An address written in a header ("1.2.3.4", "1.2.3.4:80", "[::1]:80", '"[::1]"'), or ""."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return ""


def _hops(name: str, value: str) -> list[str]:
    """The addresses a header lists, left (first client) to right (nearest proxy)."""
    if name.lower() != "forwarded":
        return value.split(",")
    hops = []
    for element in value.split(","):
        for pair in element.split(";"):
            key, _, val = pair.partition("=")
            if key.strip().lower() == "for":
                hops.append(val)
    return hops


class ClientAddress:
    """Resolves a request's client address; one per front (it caches the parsed proxy networks)."""

    def __init__(self) -> None:
        self._settings = ClientRemoteIP()
        self._trusted = TrustedProxies(lambda: self._settings.trusted_proxies)
        self._warned = False

    def __call__(self, settings: ClientRemoteIP, peer: str, header: HeaderLookup) -> str:
        self._settings = settings
        if not settings.header or not settings.trusted_proxies:
            self._warn_once(peer, header)
            return peer
        if not self._trusted(peer):
            return peer
        value = header(settings.header)
        if not value:
            return peer
        nearest = peer
        for hop in reversed(_hops(settings.header, value)):
            address = _address(hop)
            if not address:
                return nearest  # a proxy we trust passed on garbage: the client is behind `nearest`
            if not self._trusted(address):
                return address
            nearest = address
        return nearest

    def of_scope(self, settings: ClientRemoteIP, scope: Mapping[str, Any], header: HeaderLookup) -> str:
        """The client address of an ASGI request (`header` looks its headers up by name)."""
        return self(settings, peer_of_scope(scope), header)

    def _warn_once(self, peer: str, header: HeaderLookup) -> None:
        if self._warned:
            return
        found = [name for name in _PROXY_HEADERS if header(name)]
        if found:
            self._warned = True
            log.warning(
                "a request from %s carries %s while web.clientRemoteIP is not configured: if Portico runs "
                "behind a proxy, the brute-force and rate limits count every client behind it as one "
                "address; set web.clientRemoteIP.header and trustedProxies", peer or "an unknown peer",
                ", ".join(found))
