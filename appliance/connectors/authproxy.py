"""The `authproxy` connector: the user named by headers an authenticating reverse proxy sets (Dex's keys).

Trust comes only from the proxy: it must authenticate every request to /callback/{connector id} and
overwrite (never pass through) these headers, and Portico must be reachable only through it. The web
layer reads the headers only on that path and strips them on every other one (`trusted_headers`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from appliance.connectors.base import Identity, Scopes
from appliance.connectors.schemas import AUTHPROXY as SCHEMA
from appliance.connectors.upstream_config import ConfigBlock, check
from appliance.errors import ConnectorError

_KEYS = SCHEMA.names()  # the schema is the one list of keys (schemas.py)


@dataclass(frozen=True)
class AuthProxyConfig:
    """Header names (Dex's defaults) and the groups every user gets."""

    user_id_header: str = "X-Remote-User-Id"
    user_header: str = "X-Remote-User"
    user_name_header: str = "X-Remote-User-Name"
    email_header: str = "X-Remote-User-Email"
    group_header: str = "X-Remote-Group"
    group_separator: str = ","
    static_groups: tuple[str, ...] = ()


def parse_authproxy_config(config: Mapping[str, Any]) -> AuthProxyConfig:
    problems: list[str] = []
    block = ConfigBlock(config, "", _KEYS, problems)
    default = AuthProxyConfig()
    parsed = AuthProxyConfig(
        user_id_header=block.string("userIDHeader") or default.user_id_header,
        user_header=block.string("userHeader") or default.user_header,
        user_name_header=block.string("userNameHeader") or default.user_name_header,
        email_header=block.string("emailHeader") or default.email_header,
        group_header=block.string("groupHeader") or default.group_header,
        group_separator=block.string("groupHeaderSeparator") or default.group_separator,
        static_groups=block.strings("staticGroups"),
    )
    check("authproxy", problems)
    return parsed


class AuthProxyConnector:
    """Sends the browser to /callback/{id}, where the proxy in front has authenticated it."""

    def __init__(self, connector_id: str, config: AuthProxyConfig) -> None:
        self.id = connector_id
        self.config = config

    def __repr__(self) -> str:
        return f"AuthProxyConnector(id={self.id!r}, userHeader={self.config.user_header!r})"

    def trusted_headers(self) -> tuple[str, ...]:
        """The headers this connector believes: the web layer removes them from every other request."""
        c = self.config
        return (c.user_id_header, c.user_header, c.user_name_header, c.email_header, c.group_header)

    async def login_url(self, scopes: Scopes, callback_url: str, state: str) -> str:
        """callback_url + "/" + connector id, with ?state= (as Dex): the path the proxy protects."""
        parts = urlsplit(callback_url)
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "state"]
        query.append(("state", state))
        return urlunsplit(parts._replace(path=parts.path + "/" + self.id, query=urlencode(query)))

    def identity_from_headers(self, headers: Mapping[str, str]) -> Identity:
        """The user the proxy vouched for; ConnectorError when the user header is missing or empty.

        `headers` may be any mapping (case-insensitive or not): names are compared case-insensitively,
        and for a repeated header the first value counts, as Go's Header.Get.
        """
        found: dict[str, str] = {}
        for name, value in headers.items():
            found.setdefault(name.lower(), value.strip())
        c = self.config
        user = found.get(c.user_header.lower(), "")
        if not user:
            raise ConnectorError(f"required HTTP header {c.user_header} is not set")
        header_groups = found.get(c.group_header.lower(), "")
        groups = [g.strip() for g in header_groups.split(c.group_separator)] if header_groups else []
        return Identity(
            user_id=found.get(c.user_id_header.lower()) or user,
            username=user,
            preferred_username=found.get(c.user_name_header.lower()) or user,
            email=found.get(c.email_header.lower()) or user,
            email_verified=True,
            groups=tuple(g for g in [*groups, *c.static_groups] if g),
        )

    async def handle_callback(self, scopes: Scopes, params: Mapping[str, str]) -> Identity:
        """Not usable: the identity is in the request headers, which the query parameters do not carry."""
        raise ConnectorError(f'authproxy connector "{self.id}": the identity comes from the request headers; '
                             "the web layer calls identity_from_headers")


def open_authproxy(connector_id: str, config: Mapping[str, Any]) -> AuthProxyConnector:
    return AuthProxyConnector(connector_id, parse_authproxy_config(config))
