"""Upstream OAuth 2.0 tokens and the connector data that keeps them for refresh, in Dex's JSON shapes."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from appliance.connectors.base import UserRefusedError
from appliance.errors import ConnectorError

# Go's x/oauth2 treats a token as expired this long before its expiry (expiryDelta).
EXPIRY_DELTA = timedelta(seconds=10)
_GO_ZERO_TIME = "0001-01-01T00:00:00Z"

# Dex's connectorData {accessToken, refreshToken, expiry}, the fields each connector writes.
ALL_FIELDS = ("accessToken", "refreshToken", "expiry")


@dataclass(frozen=True)
class UpstreamToken:
    """What an upstream token endpoint answered. Tokens stay out of the repr."""

    access_token: str = field(repr=False)
    refresh_token: str = field(default="", repr=False)
    expiry: datetime | None = None  # None: the upstream named no lifetime (it does not expire)
    id_token: str = field(default="", repr=False)

    def usable(self, now: datetime) -> bool:
        """Go's Token.Valid: an access token that has not expired (10 s early)."""
        return bool(self.access_token) and (self.expiry is None or now < self.expiry - EXPIRY_DELTA)

    def with_refresh_token(self, refresh_token: str) -> UpstreamToken:
        return replace(self, refresh_token=refresh_token)


def token_from_response(raw: Mapping[str, Any], now: datetime) -> UpstreamToken:
    """An UpstreamToken from a token endpoint's JSON (RFC 6749 5.1); expires_in becomes an instant."""
    expiry = None
    expires_in = raw.get("expires_in")
    try:
        seconds = int(expires_in) if expires_in not in (None, "") else 0
    except (TypeError, ValueError):
        seconds = 0
    if seconds > 0:
        expiry = now + timedelta(seconds=seconds)

    def string(key: str) -> str:
        value = raw.get(key)
        return value if isinstance(value, str) else ""

    return UpstreamToken(string("access_token"), string("refresh_token"), expiry, string("id_token"))


def go_time(at: datetime | None) -> str:
    """A time as Go's encoding/json writes time.Time (RFC 3339, nanosecond precision trimmed)."""
    if at is None:
        return _GO_ZERO_TIME
    utc = at.astimezone(UTC)
    base = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        base += f".{utc.microsecond:06d}".rstrip("0")
    return base + "Z"


def parse_go_time(value: object) -> datetime | None:
    """The inverse of go_time; Go's zero time (and anything unreadable) is None."""
    if not isinstance(value, str) or not value or value.startswith("0001-01-01"):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def dump_token_data(
    token: UpstreamToken, fields: Sequence[str] = ALL_FIELDS, omit_empty: bool = False
) -> bytes:
    """Dex's connectorData for the token: {"accessToken", "refreshToken", "expiry"} (the fields named)."""
    values: dict[str, str] = {}
    if "accessToken" in fields:
        values["accessToken"] = token.access_token
    if "refreshToken" in fields and (token.refresh_token or not omit_empty):
        values["refreshToken"] = token.refresh_token
    if "expiry" in fields:
        values["expiry"] = go_time(token.expiry)
    return json.dumps(values, separators=(",", ":")).encode()


def _load_object(who: str, data: bytes | None) -> dict[str, Any]:
    if not data:
        raise UserRefusedError(f"{who}: no upstream access token found")
    try:
        value = json.loads(data)
    except ValueError:
        raise UserRefusedError(f"{who}: the stored connector data is not JSON") from None
    if not isinstance(value, dict):
        raise UserRefusedError(f"{who}: the stored connector data is not a JSON object")
    return value


def load_token_data(who: str, data: bytes | None) -> UpstreamToken:
    """The token kept by dump_token_data (or by Dex itself, for tokens issued before a migration)."""
    value = _load_object(who, data)
    access = value.get("accessToken")
    refresh = value.get("refreshToken")
    token = UpstreamToken(
        access if isinstance(access, str) else "",
        refresh if isinstance(refresh, str) else "",
        parse_go_time(value.get("expiry")),
    )
    if not token.access_token and not token.refresh_token:
        raise UserRefusedError(f"{who}: no upstream access token found")
    return token


def dump_oauth2_token(token: UpstreamToken) -> bytes:
    """Go's oauth2.Token as JSON (the openshift connector keeps the whole token this way)."""
    values: dict[str, str] = {"access_token": token.access_token, "token_type": "Bearer"}
    if token.refresh_token:
        values["refresh_token"] = token.refresh_token
    if token.expiry is not None:
        values["expiry"] = go_time(token.expiry)
    return json.dumps(values, separators=(",", ":")).encode()


def load_oauth2_token(who: str, data: bytes | None) -> UpstreamToken:
    value = _load_object(who, data)
    access = value.get("access_token")
    refresh = value.get("refresh_token")
    token = UpstreamToken(
        access if isinstance(access, str) else "",
        refresh if isinstance(refresh, str) else "",
        parse_go_time(value.get("expiry")),
    )
    if not token.access_token and not token.refresh_token:
        raise UserRefusedError(f"{who}: no upstream access token found")
    return token


@contextmanager
def keeping_renewed(data: bytes | None) -> Iterator[None]:
    """After a refresh renewed the upstream token (`data`, as the connector keeps it; None: not renewed),
    a failure of the calls that follow carries it (ConnectorError.connector_data): an upstream that
    rotates its refresh tokens has spent the old one, so the retry must start from the new one."""
    try:
        yield
    except ConnectorError as exc:
        if data is not None and exc.connector_data is None:
            exc.connector_data = data
        raise
