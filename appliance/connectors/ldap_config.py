"""The `ldap` connector's config block: Dex's keys (matched case-insensitively), checked and typed."""

from __future__ import annotations

import base64
import binascii
import difflib
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from cryptography import x509
from ldap3.core.exceptions import LDAPInvalidFilterError
from ldap3.operation.search import parse_filter

from appliance.connectors.config_schema import ConfigProblems
from appliance.connectors.schemas import LDAP as LDAP_SCHEMA

log = logging.getLogger("portico.connectors.ldap")

# ldap3's own filter parser, used only to reject a bad filter when the config is read (it is untyped).
_parse_filter: Callable[..., object] = parse_filter

Transport = Literal["ldaps", "starttls", "plain"]
Scope = Literal["SUBTREE", "LEVEL"]

# The keys of each block come from the schema, the one list the console's form is built from too.
_TOP_KEYS = LDAP_SCHEMA.names()
_USER_KEYS = LDAP_SCHEMA.names("userSearch")
_GROUP_KEYS = LDAP_SCHEMA.names("groupSearch")
_MATCHER_KEYS = LDAP_SCHEMA.names("groupSearch.userMatchers")
# Keys Dex knows that Portico does not act on: a warning, not an error.
_UNSUPPORTED = {"kerberos": "Kerberos (SPNEGO) single sign-on is not supported; password logins still work"}
# Keys people copy from examples on the web that no Dex version ever read.
_HINTS = {"port": 'the port belongs in host ("ldap.example.com:636"); Dex ignores a separate port key'}


@dataclass(frozen=True)
class UserMatcher:
    """One way to find a user's groups: groups whose `group_attr` holds the user's `user_attr` value."""

    user_attr: str
    group_attr: str
    recursion_group_attr: str = ""


@dataclass(frozen=True)
class LDAPConfig:
    """A checked `ldap` connector config. `bind_pw` stays out of the repr."""

    host: str  # without the port; also the name the server certificate must carry
    port: int
    transport: Transport
    insecure_skip_verify: bool = False
    root_ca_pem: bytes | None = None  # from rootCAData or the rootCA file, already read
    client_cert: str = ""  # file paths, loaded when the TLS context is first built
    client_key: str = ""
    bind_dn: str = ""
    bind_pw: str = field(default="", repr=False)
    username_prompt: str = "Username"
    user_base_dn: str = ""
    user_filter: str = ""
    username_attrs: tuple[str, ...] = ()
    user_scope: Scope = "SUBTREE"
    id_attr: str = ""
    email_attr: str = ""
    name_attr: str = ""
    preferred_username_attr: str = ""
    email_suffix: str = ""
    group_base_dn: str = ""
    group_filter: str = ""
    group_scope: Scope = "SUBTREE"
    group_name_attr: str = ""
    user_matchers: tuple[UserMatcher, ...] = ()

    @property
    def url(self) -> str:
        """Where the directory is, for messages: ldaps://host:636, ldap://host:389 (+StartTLS)."""
        scheme = "ldaps" if self.transport == "ldaps" else "ldap"
        host = f"[{self.host}]" if ":" in self.host else self.host
        suffix = " (StartTLS)" if self.transport == "starttls" else ""
        return f"{scheme}://{host}:{self.port}{suffix}"


class _Block:
    """One mapping of the config, read the way Go's encoding/json reads it: keys case-insensitively."""

    def __init__(self, data: object, path: str, known: tuple[str, ...], problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        self.values: dict[str, object] = {}
        if data is None:
            return
        if not isinstance(data, Mapping):
            problems.append(f"{path or 'config'} must be a mapping, not {type(data).__name__}")
            return
        by_lower = {key.lower(): key for key in known}
        for key, value in data.items():
            name = by_lower.get(str(key).lower())
            where = self.at(str(key))
            if name is None:
                hint = _HINTS.get(str(key).lower())
                close = difflib.get_close_matches(str(key), known, n=1)
                problems.append(f"unknown key {where}" + (f": {hint}" if hint else "")
                                + (f' (did you mean "{close[0]}"?)' if close and not hint else ""))
            elif name in self.values:
                problems.append(f"{where} is given twice (keys match case-insensitively)")
            elif value is not None:  # a YAML null leaves the default, as a JSON null does in Go
                self.values[name] = value

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def string(self, key: str, default: str = "") -> str:
        value = self.values.get(key, default)
        if not isinstance(value, str):
            self.problems.append(f"{self.at(key)} must be a string, not {type(value).__name__}")
            return default
        return value

    def boolean(self, key: str) -> bool:
        value = self.values.get(key, False)
        if not isinstance(value, bool):
            self.problems.append(f"{self.at(key)} must be true or false, not {value!r}")
            return False
        return value

    def scope(self, key: str) -> Scope:
        value = self.string(key)
        if value in ("", "sub"):
            return "SUBTREE"
        if value == "one":
            return "LEVEL"
        self.problems.append(f'{self.at(key)} must be "sub" or "one", not {value!r}')
        return "SUBTREE"

    def ldap_filter(self, key: str) -> str:
        value = self.string(key)
        if not value:
            return value
        # Dex pastes the filter into "(&<filter>(uid=...))": without parentheses that is no filter.
        if not (value.startswith("(") and value.endswith(")")):
            self.problems.append(f'{self.at(key)} must be in parentheses, e.g. "(objectClass=person)"')
            return value
        try:
            _parse_filter(value, None, False, False, None, False)  # no schema, no escaping, no checks
        except LDAPInvalidFilterError as exc:
            self.problems.append(f"{self.at(key)} is not a valid LDAP filter ({value!r}): {exc}")
        return value


def _split_host(value: str, default_port: int, problems: list[str]) -> tuple[str, int]:
    if "://" in value:
        problems.append(f"host must be host or host:port, not a URL ({value!r}); the scheme follows "
                        "insecureNoSSL and startTLS")
        return value, default_port
    host, port_text = value, ""
    if value.startswith("["):  # [IPv6] or [IPv6]:port
        inside, _, rest = value[1:].partition("]")
        host, port_text = inside, rest.removeprefix(":")
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        problems.append(f"host has a bad port: {value!r}")
        return host, default_port
    return host, int(port_text)


def _read_root_ca(block: _Block) -> bytes | None:
    data_b64, path = block.string("rootCAData"), block.string("rootCA")
    if data_b64:
        # Dex's rootCAData is a []byte, which Go's JSON reads as standard base64.
        try:
            pem = base64.b64decode(data_b64, validate=True)
        except (binascii.Error, ValueError):
            block.problems.append("rootCAData must be base64 of PEM certificates")
            return None
        where = "rootCAData"
    elif path:
        try:
            with open(path, "rb") as handle:  # a few KB, read once when the connector is opened
                pem = handle.read()
        except OSError as exc:
            block.problems.append(f"rootCA: cannot read {path!r}: {exc.strerror or exc}")
            return None
        where = f"rootCA ({path})"
    else:
        return None
    try:
        x509.load_pem_x509_certificates(pem)
    except ValueError:
        block.problems.append(f"{where}: no PEM certificates found")
        return None
    return pem


def _username_attrs(block: _Block) -> tuple[str, ...]:
    value = block.values.get("username", "")
    if isinstance(value, str):
        return (value,) if value else ()
    if isinstance(value, list) and all(isinstance(item, str) and item for item in value):
        return tuple(value)
    block.problems.append(f"{block.at('username')} must be an attribute name or a list of them")
    return ()


def _matchers(block: _Block, problems: list[str]) -> tuple[UserMatcher, ...]:
    listed = block.values.get("userMatchers", [])
    matchers: list[UserMatcher] = []
    if not isinstance(listed, list):
        problems.append(f"{block.at('userMatchers')} must be a list")
        listed = []
    for index, item in enumerate(listed):
        entry = _Block(item, f"{block.at('userMatchers')}[{index}]", _MATCHER_KEYS, problems)
        matchers.append(UserMatcher(entry.string("userAttr"), entry.string("groupAttr"),
                                    entry.string("recursionGroupAttr")))
    legacy = UserMatcher(block.string("userAttr"), block.string("groupAttr"),
                         block.string("recursionGroupAttr"))
    # Dex: the list wins when its first matcher names a user attribute; else the old single pair.
    if not (matchers and matchers[0].user_attr):
        if legacy.user_attr or legacy.group_attr:
            log.warning('ldap: groupSearch.userAttr/groupAttr are deprecated; use "groupSearch.userMatchers"')
        matchers = [legacy]
    return tuple(m for m in matchers if m.user_attr and m.group_attr)


def parse_config(config: Mapping[str, Any]) -> LDAPConfig:
    """The checked config; ValueError naming every bad key at once."""
    problems: list[str] = []
    top = _Block(config, "", _TOP_KEYS, problems)
    user = _Block(top.values.get("userSearch"), "userSearch", _USER_KEYS, problems)
    group = _Block(top.values.get("groupSearch"), "groupSearch", _GROUP_KEYS, problems)
    for key, why in _UNSUPPORTED.items():
        if key in top.values:
            log.warning("ldap: %s is ignored: %s", key, why)

    no_ssl, start_tls = top.boolean("insecureNoSSL"), top.boolean("startTLS")
    transport: Transport = "plain" if no_ssl else ("starttls" if start_tls else "ldaps")
    # Dex guesses 389 only for insecureNoSSL; StartTLS runs on the plain port, so it gets 389 too.
    default_port = 636 if transport == "ldaps" else 389
    host_value = top.string("host")
    if not host_value:
        problems.append("host is required")
    host, port = _split_host(host_value, default_port, problems)
    root_ca = None if transport == "plain" else _read_root_ca(top)
    client_cert, client_key = top.string("clientCert"), top.string("clientKey")
    if bool(client_cert) != bool(client_key):
        log.warning("ldap: clientCert and clientKey go together; one alone sends no client certificate")
        client_cert = client_key = ""
    for key, path in (("clientCert", client_cert), ("clientKey", client_key)):
        if path and transport != "plain" and not os.path.isfile(path):
            problems.append(f"{key}: no such file {path!r}")
    bind_dn, bind_pw = top.string("bindDN"), top.string("bindPW")
    if bind_dn and not bind_pw:
        problems.append("bindPW is empty but bindDN is set (a bind without a password is unauthenticated)")
    if bind_pw and not bind_dn:
        problems.append("bindPW is set but bindDN is empty")

    parsed = LDAPConfig(
        host=host,
        port=port,
        transport=transport,
        insecure_skip_verify=top.boolean("insecureSkipVerify"),
        root_ca_pem=root_ca,
        client_cert=client_cert,
        client_key=client_key,
        bind_dn=bind_dn,
        bind_pw=bind_pw,
        username_prompt=top.string("usernamePrompt") or "Username",
        user_base_dn=user.string("baseDN"),
        user_filter=user.ldap_filter("filter"),
        username_attrs=_username_attrs(user),
        user_scope=user.scope("scope"),
        id_attr=user.string("idAttr"),
        email_attr=user.string("emailAttr"),
        name_attr=user.string("nameAttr"),
        preferred_username_attr=user.string("preferredUsernameAttr"),
        email_suffix=user.string("emailSuffix"),
        group_base_dn=group.string("baseDN"),
        group_filter=group.ldap_filter("filter"),
        group_scope=group.scope("scope"),
        group_name_attr=group.string("nameAttr"),
        user_matchers=_matchers(group, problems),
    )
    if not parsed.user_base_dn:
        problems.append("userSearch.baseDN is required")
    if not parsed.username_attrs:
        problems.append("userSearch.username is required")
    if problems:
        raise ConfigProblems("", problems)
    _warn_useless(parsed)
    return parsed


def _warn_useless(cfg: LDAPConfig) -> None:
    # Dex accepts these and then refuses every login; say so at start-up rather than at the first login.
    if not cfg.id_attr:
        log.warning("ldap: userSearch.idAttr is empty: every login will fail (set it, e.g. to uid)")
    if not cfg.email_attr and not cfg.email_suffix:
        log.warning("ldap: neither userSearch.emailAttr nor emailSuffix is set: every login will fail")
    if cfg.email_suffix and not cfg.name_attr:
        log.warning("ldap: userSearch.emailSuffix is appended to nameAttr, which is empty")
    if cfg.group_base_dn and not cfg.group_name_attr:
        log.warning("ldap: groupSearch.nameAttr is empty: a login that finds groups will fail")
    if cfg.group_base_dn and not cfg.user_matchers:
        log.warning("ldap: groupSearch has no userMatchers: no groups will be found")
    if cfg.transport == "plain":
        log.warning("ldap: insecureNoSSL is set: passwords cross the network in clear text")
