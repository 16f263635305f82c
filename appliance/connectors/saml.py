"""The `saml` connector: Dex's SAML 2.0 SP (HTTP-POST binding), its config, replay record and SP metadata."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509

from appliance.clock import Clock, SystemClock
from appliance.connectors.base import Identity, SAMLPost, Scopes, UserRefusedError
from appliance.connectors.saml_verify import CLOCK_SKEW, Expectations, VerifiedAssertion, verify_response
from appliance.connectors.saml_xml import (
    MAX_RESPONSE_BYTES,
    SAMLError,
    SAMLGroupsError,
    build_authn_request,
    build_metadata,
    name_id_format,
    saml_id,
)
from appliance.connectors.schemas import SAML as SCHEMA
from appliance.errors import ConnectorError

__all__ = ["MemoryReplayCache", "ReplayCache", "SAMLConfig", "SAMLError", "SAMLGroupsError", "SAMLProvider",
           "open_saml"]

log = logging.getLogger(__name__)

# How long a used assertion ID is remembered when the assertion itself names no end (Dex's auth
# request lifetime: the InResponseTo binding makes it useless after that anyway).
DEFAULT_REPLAY_WINDOW = timedelta(hours=24)

_KEYS = SCHEMA.names()  # the schema is the one list of keys (schemas.py)


class ReplayCache(Protocol):
    """Remembers the assertions already used, so a captured response cannot log in twice."""

    async def claim(self, assertion_id: str, until: datetime) -> bool:
        """True the first time `assertion_id` is seen (it is then remembered until `until`), else False."""
        ...


class MemoryReplayCache:
    """The used-assertion record of one process, in memory, entries dropped once expired.

    Several replicas do not share it: a response replayed to another replica is still refused by
    its InResponseTo binding to a single auth request, but not by this record.
    """

    def __init__(self, clock: Clock, max_entries: int = 100_000) -> None:
        self._clock = clock
        self._max = max_entries
        self._until: dict[str, datetime] = {}
        self._lock = threading.Lock()

    async def claim(self, assertion_id: str, until: datetime) -> bool:
        now = self._clock.now()
        with self._lock:
            seen = self._until.get(assertion_id)
            if seen is not None and seen > now:
                return False
            if len(self._until) >= self._max:
                self._until = {k: v for k, v in self._until.items() if v > now}
                if len(self._until) >= self._max:
                    # Full of live entries: refusing a login is safer than forgetting a used assertion.
                    raise ConnectorError("saml replay record is full")
            self._until[assertion_id] = until
            return True


@dataclass(frozen=True)
class SAMLConfig:
    """A validated `saml` connector config (Dex's keys)."""

    sso_url: str
    redirect_uri: str
    username_attr: str
    email_attr: str
    certs: tuple[x509.Certificate, ...] | None  # None: insecureSkipSignatureValidation
    entity_issuer: str = ""
    sso_issuer: str = ""
    groups_attr: str = ""
    groups_delim: str = ""
    allowed_groups: tuple[str, ...] = ()
    filter_groups: bool = False
    name_id_policy_format: str = ""

    @property
    def audience(self) -> str:
        """The audience the IdP must name: entityIssuer, or redirectURI when it is unset (as Dex)."""
        return self.entity_issuer or self.redirect_uri

    def __repr__(self) -> str:
        return f"SAMLConfig(sso_url={self.sso_url!r}, entity_issuer={self.entity_issuer!r})"


def _string(config: Mapping[str, Any], key: str) -> str:
    value = config.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string")
    return value


def _bool(config: Mapping[str, Any], key: str) -> bool:
    value = config.get(key, False)
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false")
    return value


def _load_certs(config: Mapping[str, Any]) -> tuple[x509.Certificate, ...]:
    ca, ca_data = config.get("ca"), config.get("caData")
    if bool(ca) == bool(ca_data):
        raise ValueError("must provide either 'ca' or 'caData'")
    if ca:
        if not isinstance(ca, str):
            raise ValueError("ca must be a file path")
        try:
            pem = Path(ca).read_bytes()  # once, when the config is opened (as Dex)
        except OSError as exc:
            raise ValueError(f"read ca file {ca!r}: {exc.strerror}") from exc
    else:
        if not isinstance(ca_data, str):
            raise ValueError("caData must be base64-encoded PEM")
        try:
            pem = base64.b64decode(ca_data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("caData is not valid base64") from exc
    try:
        certs = tuple(x509.load_pem_x509_certificates(pem))
    except ValueError as exc:
        raise ValueError("no PEM certificate found in the ca data") from exc
    if not certs:
        raise ValueError("no certificates found in ca data")
    return certs


def parse_config(config: Mapping[str, Any]) -> SAMLConfig:
    """Dex's `saml` config block (keys matched case-insensitively); ValueError names what is wrong."""
    canonical = {key.lower(): key for key in _KEYS}
    normalized: dict[str, Any] = {}
    for key, value in config.items():
        name = canonical.get(str(key).lower())
        if name is None:
            raise ValueError(f"unknown key {key!r}")
        if name in normalized:
            raise ValueError(f"{name} is given twice (keys match case-insensitively)")
        normalized[name] = value
    required = ("ssoURL", "usernameAttr", "emailAttr", "redirectURI")
    missing = [key for key in required if not _string(normalized, key)]
    if missing:
        raise ValueError(f"missing required field{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    insecure = _bool(normalized, "insecureSkipSignatureValidation")
    allowed = normalized.get("allowedGroups") or []
    if not isinstance(allowed, list) or not all(isinstance(g, str) for g in allowed):
        raise ValueError("allowedGroups must be a list of strings")
    result = SAMLConfig(
        sso_url=_string(normalized, "ssoURL"),
        redirect_uri=_string(normalized, "redirectURI"),
        username_attr=_string(normalized, "usernameAttr"),
        email_attr=_string(normalized, "emailAttr"),
        certs=None if insecure else _load_certs(normalized),
        entity_issuer=_string(normalized, "entityIssuer"),
        sso_issuer=_string(normalized, "ssoIssuer"),
        groups_attr=_string(normalized, "groupsAttr"),
        groups_delim=_string(normalized, "groupsDelim"),
        allowed_groups=tuple(allowed),
        filter_groups=_bool(normalized, "filterGroups"),
        name_id_policy_format=name_id_format(_string(normalized, "nameIDPolicyFormat")),
    )
    if result.allowed_groups and not result.groups_attr:
        raise ValueError("allowedGroups needs groupsAttr (no user could ever be in an allowed group)")
    return result


class SAMLProvider:
    """A SAML 2.0 service provider for one IdP: SAMLConnector and RefreshConnector."""

    def __init__(
        self, connector_id: str, config: SAMLConfig, *, clock: Clock | None = None,
        replay: ReplayCache | None = None, skew: timedelta = CLOCK_SKEW,
    ) -> None:
        self.connector_id = connector_id
        self.config = config
        self._clock = clock or SystemClock()
        self._replay = replay or MemoryReplayCache(self._clock)
        self._skew = skew
        if config.certs is None:
            log.warning("saml connector %r: insecureSkipSignatureValidation is on: anyone can forge a login",
                        connector_id)

    def __repr__(self) -> str:
        return f"SAMLProvider({self.connector_id!r})"

    async def post_data(self, scopes: Scopes, request_id: str) -> SAMLPost:
        """The form to post to the IdP; the AuthnRequest ID is derived from `request_id` (see saml_id)."""
        request = build_authn_request(
            request_id=request_id,
            issue_instant=self._clock.now(),
            destination=self.config.sso_url,
            acs_url=self.config.redirect_uri,
            issuer=self.config.entity_issuer,
            name_id_format=self.config.name_id_policy_format,
        )
        return SAMLPost(self.config.sso_url, base64.b64encode(request).decode("ascii"), request_id)

    async def handle_post(self, scopes: Scopes, saml_response: str, in_response_to: str) -> Identity:
        """Verify the IdP's answer to auth request `in_response_to`'s AuthnRequest; SAMLError if refused."""
        xml = _decode(saml_response)
        try:
            request_saml_id = saml_id(in_response_to)
        except ValueError as exc:
            raise SAMLError("in_response_to", "the auth request id is not usable as a SAML ID") from exc
        expect = Expectations(
            in_response_to=request_saml_id,
            acs_url=self.config.redirect_uri,
            audience=self.config.audience,
            sso_issuer=self.config.sso_issuer,
            now=self._clock.now(),
            skew=self._skew,
        )
        # Parsing and RSA verification are CPU work: keep them off the event loop.
        verified = await asyncio.to_thread(verify_response, xml, self.config.certs, expect)
        identity = self._identity(scopes, verified)
        until = expect.now + DEFAULT_REPLAY_WINDOW
        if verified.valid_until is not None:
            until = verified.valid_until + self._skew
        # Keyed by connector too: one record may serve every SAML connector of the process.
        if not await self._replay.claim(f"{self.connector_id}\n{verified.assertion_id}", until):
            raise SAMLError("replayed", f"assertion {verified.assertion_id!r} was already used")
        log.info("saml connector %r: verified assertion for %r with attributes %s",
                 self.connector_id, verified.name_id, sorted(verified.attributes))
        return identity

    def _identity(self, scopes: Scopes, verified: VerifiedAssertion) -> Identity:
        attributes = verified.attributes
        email = _required(attributes, self.config.email_attr)
        username = _required(attributes, self.config.username_attr)
        groups: tuple[str, ...] = ()
        if self.config.groups_attr and (scopes.groups or self.config.allowed_groups):
            groups = self._groups(attributes)
        if self.config.allowed_groups:
            allowed = set(self.config.allowed_groups)
            matching = tuple(g for g in groups if g in allowed)
            if not matching:
                raise SAMLGroupsError(f"{verified.name_id!r} is in none of the allowed groups")
            if self.config.filter_groups:
                groups = matching
        if not scopes.groups:
            groups = ()
        identity = Identity(user_id=verified.name_id, username=username, email=email, email_verified=True,
                            groups=groups)
        return replace(identity, connector_data=_cache(identity))

    def _groups(self, attributes: Mapping[str, Sequence[str]]) -> tuple[str, ...]:
        name = self.config.groups_attr
        if name not in attributes:
            raise SAMLError("attributes", f"no attribute {name!r}; got {sorted(attributes)}")
        values = attributes[name]
        if self.config.groups_delim:
            values = (values[0] if values else "").split(self.config.groups_delim)
        return tuple(g for g in (v.strip() for v in values) if g)

    async def refresh(self, scopes: Scopes, identity: Identity) -> Identity:
        """SAML has no refresh: the identity cached at login (Dex main's cachedIdentity JSON) comes back."""
        if not identity.connector_data:
            raise UserRefusedError("saml: no connector data available for refresh")
        try:
            cached = json.loads(identity.connector_data)
            groups = tuple(str(g) for g in (cached.get("groups") or ()))
            return replace(
                identity,
                user_id=str(cached["userId"]),
                username=str(cached.get("username", "")),
                preferred_username=str(cached.get("preferredUsername", "")),
                email=str(cached.get("email", "")),
                email_verified=bool(cached.get("emailVerified", False)),
                groups=groups if scopes.groups else (),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UserRefusedError("saml: the cached identity is unreadable") from exc

    def metadata_xml(self) -> str:
        """SP metadata for the IdP administrator: entityID, the HTTP-POST ACS at redirectURI, NameIDFormat."""
        return build_metadata(entity_id=self.config.audience, acs_url=self.config.redirect_uri,
                              name_id_format=self.config.name_id_policy_format)


def _decode(saml_response: str) -> bytes:
    if not saml_response:
        raise SAMLError("malformed", "no SAMLResponse was posted")
    if len(saml_response) > MAX_RESPONSE_BYTES * 4 // 3 + 4:
        raise SAMLError("malformed", "the SAMLResponse is too large")
    try:
        # Some IdPs wrap the base64 in lines: drop whitespace, then decode strictly.
        return base64.b64decode("".join(saml_response.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SAMLError("malformed", "the SAMLResponse is not base64") from exc


def _required(attributes: Mapping[str, Sequence[str]], name: str) -> str:
    """The first value of attribute `name` (Dex reads the first); SAMLError when missing or empty."""
    values = attributes.get(name) or ()
    if not values or not values[0]:
        raise SAMLError("attributes", f"no attribute {name!r}; got {sorted(attributes)}")
    return values[0]


def _cache(identity: Identity) -> bytes:
    """Dex's cachedIdentity JSON, so refresh tokens move between Dex and Portico unchanged."""
    data: dict[str, Any] = {
        "userId": identity.user_id,
        "username": identity.username,
        "preferredUsername": identity.preferred_username,
        "email": identity.email,
        "emailVerified": identity.email_verified,
    }
    if identity.groups:
        data["groups"] = list(identity.groups)
    return json.dumps(data, separators=(",", ":")).encode()


def open_saml(
    connector_id: str, config: Mapping[str, Any], *, clock: Clock | None = None,
    replay: ReplayCache | None = None,
) -> SAMLProvider:
    """The `saml` connector factory; ValueError for a bad config.

    Pass the same `replay` record to every reopened instance so a config reload does not forget it.
    """
    return SAMLProvider(connector_id, parse_config(config), clock=clock, replay=replay)
