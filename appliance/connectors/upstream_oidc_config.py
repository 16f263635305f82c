"""The `oidc` connector's config block: Dex's keys (matched case-insensitively), checked and typed."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from appliance.connectors.schemas import OIDC
from appliance.connectors.upstream_claims import ClaimRules, NewGroupFromClaims
from appliance.connectors.upstream_config import ConfigBlock, check, http_url, read_root_cas, required
from appliance.connectors.upstream_discovery import Overrides

log = logging.getLogger("portico.connectors.oidc")

# The keys of each block come from the schema, the one list the console's form is built from too.
_TOP_KEYS = OIDC.names()
_OVERRIDE_KEYS = OIDC.names("providerDiscoveryOverrides")
_MAPPING_KEYS = OIDC.names("claimMapping")
_MODIFICATION_KEYS = OIDC.names("claimModifications")
_NEW_GROUP_KEYS = OIDC.names("claimModifications.newGroupFromClaims")
_RENAME_KEYS = OIDC.names("claimModifications.modifyGroupNames")
_FILTER_KEYS = OIDC.names("claimModifications.filterGroupClaims")


@dataclass(frozen=True)
class OIDCConfig:
    """A checked `oidc` connector config. The client secret stays out of the repr."""

    issuer: str
    client_id: str
    redirect_uri: str
    client_secret: str = field(default="", repr=False)
    issuer_alias: str = ""
    overrides: Overrides = field(default_factory=Overrides)
    basic_auth_unsupported: bool | None = None
    scopes: tuple[str, ...] = ("openid", "profile", "email")
    root_cas: tuple[bytes, ...] = ()
    insecure_skip_verify: bool = False
    acr_values: tuple[str, ...] = ()
    get_user_info: bool = False
    prompt_type: str = "consent"
    pkce_challenge: str = ""  # "" = the best the upstream advertises (S256, else plain, else none)
    rules: ClaimRules = field(default_factory=lambda: ClaimRules(label="oidc connector"))


def parse_oidc_config(connector_id: str, config: Mapping[str, Any]) -> OIDCConfig:
    """The checked config; ValueError naming every bad key at once."""
    problems: list[str] = []
    top = ConfigBlock(config, "", _TOP_KEYS, problems)
    overrides_block = top.block("providerDiscoveryOverrides", _OVERRIDE_KEYS)
    mapping = top.block("claimMapping", _MAPPING_KEYS)
    modifications = top.block("claimModifications", _MODIFICATION_KEYS)

    issuer = http_url(top, "issuer", needed=True)
    required(top, "clientID", "redirectURI")
    if top.strings("hostedDomains"):
        problems.append("hostedDomains: support for the Hosted domains option had been deprecated and "
                        "removed, consider switching to the Google connector")
    overrides = Overrides(
        token_url=http_url(overrides_block, "tokenURL"),
        auth_url=http_url(overrides_block, "authURL"),
        jwks_url=http_url(overrides_block, "jwksURL"),
        userinfo_url=http_url(overrides_block, "userInfoURL"),
        end_session_url=http_url(overrides_block, "endSessionURL"),
    )
    if overrides != Overrides():
        log.warning("oidc connector %s: providerDiscoveryOverrides are set; they bypass what the upstream "
                    "publishes, so check them carefully", connector_id)

    scopes = ["openid", *(top.strings("scopes") or ("profile", "email"))]
    pkce = top.string("pkceChallenge")
    if pkce not in ("", "S256", "plain"):
        problems.append(f'pkceChallenge must be "S256" or "plain", not {pkce!r}')
    label = f'oidc connector "{connector_id}"'
    renames = modifications.block("modifyGroupNames", _RENAME_KEYS)
    rules = ClaimRules(
        label=label,
        user_id_key=top.string("userIDKey"),
        user_name_key=top.string("userNameKey") or "name",
        preferred_username_key=mapping.string("preferred_username"),
        email_key=mapping.string("email"),
        groups_key=mapping.string("groups"),
        override=top.boolean("overrideClaimMapping"),
        email_scope="email" in scopes,
        skip_email_verified=top.boolean("insecureSkipEmailVerified"),
        enable_groups=top.boolean("insecureEnableGroups"),
        groups_filter=_groups_filter(modifications, problems),
        allowed_groups=top.strings("allowedGroups"),
        groups_prefix=renames.string("prefix"),
        groups_suffix=renames.string("suffix"),
        new_groups=tuple(
            NewGroupFromClaims(claims=entry.strings("claims"), delimiter=entry.string("delimiter"),
                               clear_delimiter=entry.boolean("clearDelimiter"), prefix=entry.string("prefix"))
            for entry in modifications.blocks("newGroupFromClaims", _NEW_GROUP_KEYS)
        ),
    )
    if rules.allowed_groups and not rules.enable_groups:
        # Dex silently lets everyone in here; failing closed is the only safe reading of allowedGroups.
        log.warning("oidc connector %s: allowedGroups is enforced although insecureEnableGroups is off "
                    "(Dex would ignore it); the groups are not passed on", connector_id)
    prompt = top.values.get("promptType", "consent")
    if not isinstance(prompt, str):
        problems.append(f"promptType must be a string, not {type(prompt).__name__}")
        prompt = "consent"
    parsed = OIDCConfig(
        issuer=issuer,
        client_id=top.string("clientID"),
        client_secret=top.string("clientSecret"),
        redirect_uri=http_url(top, "redirectURI"),
        issuer_alias=top.string("issuerAlias"),
        overrides=overrides,
        basic_auth_unsupported=top.optional_boolean("basicAuthUnsupported"),
        scopes=tuple(dict.fromkeys(scopes)),
        root_cas=read_root_cas(top),
        insecure_skip_verify=top.boolean("insecureSkipVerify"),
        acr_values=top.strings("acrValues"),
        get_user_info=top.boolean("getUserInfo"),
        prompt_type=prompt,
        pkce_challenge=pkce,
        rules=rules,
    )
    check("oidc", problems)
    return parsed


def _groups_filter(modifications: ConfigBlock, problems: list[str]) -> re.Pattern[str] | None:
    block = modifications.block("filterGroupClaims", _FILTER_KEYS)
    pattern = block.string("groupsFilter")
    if not pattern:
        return None
    try:
        return re.compile(pattern)
    except re.error as exc:
        # Dex logs and ignores a bad filter, passing every group; an error here fails closed instead.
        problems.append(f"{block.at('groupsFilter')} is not a valid regular expression ({pattern!r}): {exc}")
        return None
