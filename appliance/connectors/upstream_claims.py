"""Turning an upstream's claims into an Identity exactly as Dex's oidc connector does, groups included."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from appliance.connectors.base import Identity, UserNotInRequiredGroupsError, UserRefusedError
from appliance.errors import ConnectorError


class ClaimError(ConnectorError):
    """The upstream vouched for a user but left out (or mistyped) a claim the mapping needs."""


@dataclass(frozen=True)
class NewGroupFromClaims:
    """claimModifications.newGroupFromClaims[]: one group joined from several string claims."""

    claims: tuple[str, ...]
    delimiter: str = ""
    clear_delimiter: bool = False
    prefix: str = ""


@dataclass(frozen=True)
class ClaimRules:
    """The oidc connector's mapping keys and group rules (Dex's names in the comments)."""

    label: str
    user_id_key: str = ""  # userIDKey; "" means sub
    user_name_key: str = "name"  # userNameKey
    preferred_username_key: str = ""  # claimMapping.preferred_username
    email_key: str = ""  # claimMapping.email
    groups_key: str = ""  # claimMapping.groups
    override: bool = False  # overrideClaimMapping: the mapped key wins over the standard claim
    email_scope: bool = True  # the email scope is requested, so email and email_verified must come
    skip_email_verified: bool = False  # insecureSkipEmailVerified
    enable_groups: bool = False  # insecureEnableGroups
    groups_filter: re.Pattern[str] | None = None  # claimModifications.filterGroupClaims.groupsFilter
    allowed_groups: tuple[str, ...] = ()
    groups_prefix: str = ""  # claimModifications.modifyGroupNames
    groups_suffix: str = ""
    new_groups: tuple[NewGroupFromClaims, ...] = field(default=())


def _string(claims: Mapping[str, Any], key: str) -> str | None:
    value = claims.get(key)
    return value if isinstance(value, str) else None


def map_identity(rules: ClaimRules, claims: Mapping[str, Any], connector_data: bytes | None) -> Identity:
    """The identity, or ClaimError / UserNotInRequiredGroupsError, with Dex's rules and in Dex's order."""
    label = rules.label
    subject = _string(claims, "sub")
    if subject is None:
        raise ClaimError(f'{label}: missing "sub" claim')
    name = _string(claims, rules.user_name_key)
    if name is None:
        raise ClaimError(f'{label}: missing "{rules.user_name_key}" claim')

    preferred = _string(claims, "preferred_username")
    if (preferred is None or rules.override) and rules.preferred_username_key:
        preferred = _string(claims, rules.preferred_username_key)

    email_key = "email"
    email = _string(claims, email_key)
    if (email is None or rules.override) and rules.email_key:
        email_key = rules.email_key
        email = _string(claims, email_key)
    if email is None and rules.email_scope:
        raise ClaimError(f'{label}: missing email claim, not found "{email_key}" key')

    verified = claims.get("email_verified")
    if not isinstance(verified, bool):
        if rules.skip_email_verified:
            verified = True
        elif rules.email_scope:
            raise ClaimError(f'{label}: missing "email_verified" claim')
        else:
            verified = False

    groups: list[str] = []
    if rules.enable_groups or rules.allowed_groups:
        groups = _groups(rules, claims)  # raises when allowedGroups refuses the user
        if not rules.enable_groups:
            groups = []
    if rules.groups_prefix or rules.groups_suffix:
        groups = [rules.groups_prefix + group + rules.groups_suffix for group in groups]
    for rule in rules.new_groups:
        segments = [rule.prefix]
        for claim in rule.claims:
            value = _string(claims, claim)
            if value is None:  # only string claims can be joined, as in Dex
                continue
            segments.append(value.replace(rule.delimiter, "") if rule.clear_delimiter else value)
        if len(segments) > 1:
            groups.append(rule.delimiter.join(segments))

    user_id = subject
    if rules.user_id_key:
        mapped = _string(claims, rules.user_id_key)
        if mapped is None:
            raise ClaimError(f"{label}: not found {rules.user_id_key} claim")
        user_id = mapped
    return Identity(
        user_id=user_id,
        username=name,
        preferred_username=preferred or "",
        email=email or "",
        email_verified=verified,
        groups=tuple(groups),
        connector_data=connector_data,
    )


def _groups(rules: ClaimRules, claims: Mapping[str, Any]) -> list[str]:
    key = "groups"
    value = claims.get(key)
    if (not isinstance(value, list) or rules.override) and rules.groups_key:
        key = rules.groups_key
        value = claims.get(key)
    groups: list[str] = []
    if isinstance(value, str):  # a single group sent as a string
        value = [value]
    if isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                item = item.get("name")
                if not isinstance(item, str):
                    continue
            elif not isinstance(item, str):
                raise ClaimError(f'{rules.label}: malformed "{key}" claim')
            if rules.groups_filter is not None and not rules.groups_filter.search(item):
                continue
            groups.append(item)
    if rules.allowed_groups:
        allowed = set(rules.allowed_groups)
        groups = [group for group in groups if group in allowed]
        if not groups:
            raise UserNotInRequiredGroupsError(f"{rules.label}: user not a member of allowed groups")
    return groups


def groups_from_object(value: Mapping[str, Any], key: str) -> list[str]:
    """The oauth connector's groups: a list of names or of {"name": ...} objects; anything else is none."""
    listed = value.get(key)
    if not isinstance(listed, list):
        return []
    found: list[str] = []
    for item in listed:
        if isinstance(item, dict):
            item = item.get("name")
        if isinstance(item, str):
            found.append(item)
    return found


def go_value_string(value: object) -> str | None:
    """A JSON string or number as Go's fmt "%v" prints it after encoding/json decoded it; else None.

    Dex's oauth connector accepts a numeric user id this way, and Go decodes every JSON number to a
    float64, so 12345678 becomes "1.2345678e+07" there. The same id must come out here, or the `sub`
    of every such user would change when moving from Dex.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    if number != number or number in (float("inf"), float("-inf")):
        return None
    _sign, digit_tuple, exponent = Decimal(repr(abs(number))).normalize().as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple)).lstrip("0") or "0"
    if digits == "0":
        return "-0" if str(number).startswith("-") else "0"
    point = len(digits) + exponent  # where the decimal point sits after the digits' start
    prefix = "-" if number < 0 else ""
    exp10 = point - 1
    if exp10 < -4 or exp10 >= 6:  # strconv's %g with the shortest precision decides at 6 digits
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{prefix}{mantissa}e{'+' if exp10 >= 0 else '-'}{abs(exp10):02d}"
    if point <= 0:
        return f"{prefix}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return prefix + digits + "0" * (point - len(digits))
    return f"{prefix}{digits[:point]}.{digits[point:]}"


def encode_refresh_data(refresh_token: str, id_token: str = "") -> bytes:
    """The oidc connector's connector_data, readable by Dex: {"RefreshToken": base64} (a Go []byte).

    "IDToken" is Portico's addition (Go's decoder ignores it): the upstream's ID token, kept as the
    id_token_hint of an upstream logout.
    """
    data: dict[str, str | None] = {"RefreshToken": base64.b64encode(refresh_token.encode()).decode()
                                   if refresh_token else None}
    if id_token:
        data["IDToken"] = id_token
    return json.dumps(data, separators=(",", ":")).encode()


def decode_refresh_data(connector_data: bytes | None) -> tuple[str, str]:
    """(refresh token, upstream ID token) from connector_data written by Portico or by Dex."""
    if not connector_data:
        return "", ""
    try:
        data = json.loads(connector_data)
        raw = data.get("RefreshToken") if isinstance(data, dict) else None
        refresh = base64.b64decode(raw, validate=True).decode() if isinstance(raw, str) else ""
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise UserRefusedError("oidc: failed to unmarshal connector data") from exc
    id_token = data.get("IDToken")
    return refresh, id_token if isinstance(id_token, str) else ""
