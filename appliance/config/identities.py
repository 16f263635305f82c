"""The identity sections of the config file: staticClients, staticPasswords and connectors."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from urllib.parse import urlsplit

import yaml

from appliance.config.schema import ConnectorConfig, StaticClient, StaticPassword
from appliance.config.yamlpos import Fields, Reader, suggest

CONNECTOR_TYPES = (
    "ldap",
    "saml",
    "oidc",
    "oauth",
    "github",
    "gitlab",
    "google",
    "microsoft",
    "linkedin",
    "bitbucket-cloud",
    "openshift",
    "gitea",
    "atlassian-crowd",
    "keystone",
    "authproxy",
    "mockCallback",
    "mockPassword",
)
_CONNECTOR_ALIASES = {"samlExperimental": "saml"}  # Dex keeps this old name working
PASSWORD_CONNECTOR_TYPES = ("ldap", "atlassian-crowd", "keystone", "mockPassword", "local")
LOCAL_CONNECTOR_ID = "local"

_CLIENT_KEYS = (
    "id",
    "idEnv",
    "secret",
    "secretEnv",
    "redirectURIs",
    "trustedPeers",
    "public",
    "name",
    "logoURL",
    "allowedConnectors",
    "postLogoutRedirectURIs",
    "backchannelLogoutURI",
    "clientCredentialsClaims",
    "mfaChain",
)
_PASSWORD_KEYS = (
    "email",
    "hash",
    "hashFromEnv",
    "username",
    "userID",
    "groups",
    "name",
    "preferredUsername",
    "emailVerified",
)
# Go's bcrypt.Cost accepts this shape; Python's bcrypt (used to check passwords) knows 2a, 2b and 2y.
_BCRYPT = re.compile(r"^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$")
BCRYPT_MIN_COST, BCRYPT_MAX_COST = 10, 16  # Dex refuses logins outside this range


def read_static_clients(r: Reader, top: Fields, device_callback: str) -> tuple[StaticClient, ...]:
    """staticClients[]; device_callback is the issuer-relative path Dex allows as a redirect URI."""
    clients: list[StaticClient] = []
    seen: dict[str, int] = {}
    for path, node in r.items(top, "staticClients"):
        f = r.mapping(node, path, _CLIENT_KEYS)
        if f.node is None:
            continue
        client_id = _from_value_or_env(r, f, "id", "idEnv")
        public = bool(r.boolean(f, "public"))
        secret = _from_value_or_env(r, f, "secret", "secretEnv")
        if client_id is None and not (f.has("id") or f.has("idEnv")):
            r.missing(f.child("id"), f, "a client needs id (or idEnv)")
        if secret is None and not public and not (f.has("secret") or f.has("secretEnv")):
            r.missing(
                f.child("secret"), f, "a confidential client needs secret (or secretEnv); or set public: true"
            )
        if client_id:
            if client_id in seen:
                r.error(
                    f.child("id"),
                    f.value("id") or f.value("idEnv"),
                    f'duplicate client id "{client_id}" (first used by staticClients[{seen[client_id]}])',
                )
            else:
                seen[client_id] = len(clients)
        name = r.string(f, "name") or ""
        if not name:
            r.warning(f.child("name"), f, "no name: Dex requires one; Portico shows the client id instead")
        redirects = r.strings(f, "redirectURIs") or ()
        for i, uri in enumerate(redirects):
            _check_redirect(
                r, f"{f.child('redirectURIs')}[{i}]", _item(f, "redirectURIs", i), uri, device_callback
            )
        logouts = r.strings(f, "postLogoutRedirectURIs") or ()
        for i, uri in enumerate(logouts):
            _check_redirect(
                r, f"{f.child('postLogoutRedirectURIs')}[{i}]", _item(f, "postLogoutRedirectURIs", i), uri, ""
            )
        backchannel = r.string(f, "backchannelLogoutURI") or ""
        if backchannel:
            _check_redirect(
                r, f.child("backchannelLogoutURI"), f.value("backchannelLogoutURI"), backchannel, ""
            )
        claims = r.section(f, "clientCredentialsClaims", ("groups",))
        clients.append(
            StaticClient(
                id=client_id or "",
                secret=secret or "",
                redirect_uris=redirects,
                trusted_peers=r.strings(f, "trustedPeers") or (),
                public=public,
                name=name,
                logo_url=r.string(f, "logoURL") or "",
                allowed_connectors=r.strings(f, "allowedConnectors") or (),
                post_logout_redirect_uris=logouts,
                backchannel_logout_uri=backchannel,
                client_credentials_groups=r.strings(claims, "groups") or (),
                # Absent: mfa.defaultMFAChain applies; an empty list: no second factor (as Dex).
                mfa_chain=r.strings(f, "mfaChain") if f.has("mfaChain") else None,
            )
        )
    return tuple(clients)


def _from_value_or_env(r: Reader, f: Fields, key: str, env_key: str) -> str | None:
    """key, or the environment variable named by env_key; the two exclude each other (as in Dex)."""
    value = r.string(f, key)
    env_name = r.string(f, env_key)
    if f.has(key) and f.has(env_key):
        r.error(f.child(env_key), f.value(env_key), f"{key} and {env_key} exclude each other; give one")
        return value
    if env_name is not None:
        found = r.env.get(env_name, "")
        if not found:
            r.error(
                f.child(env_key), f.value(env_key), f"environment variable {env_name} is not set or empty"
            )
            return None
        return found
    if value == "":
        r.error(f.child(key), f.value(key), "must not be empty")
        return None
    return value


def _item(f: Fields, key: str, index: int) -> yaml.Node | None:
    node = f.value(key)
    return node.value[index] if isinstance(node, yaml.SequenceNode) else node


def _check_redirect(r: Reader, path: str, node: yaml.Node | None, uri: str, device_callback: str) -> None:
    """Absolute URLs only, except the device-flow callback path that Dex's examples register."""
    if device_callback and uri in (device_callback, "/device/callback"):
        return
    parts = urlsplit(uri)
    if not parts.scheme:
        r.error(path, node, f'"{uri}" is not an absolute URL (it needs a scheme such as https://)')
        return
    if parts.scheme in ("http", "https") and not parts.hostname:
        r.error(path, node, f'"{uri}" has no host')
        return
    if parts.scheme == "http" and not _is_loopback(parts.hostname or ""):
        r.warning(
            path, node, f'"{uri}" uses plain http on a non-loopback host; codes and tokens travel in clear'
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_static_passwords(r: Reader, top: Fields) -> tuple[StaticPassword, ...]:
    passwords: list[StaticPassword] = []
    seen: dict[str, int] = {}
    for path, node in r.items(top, "staticPasswords"):
        f = r.mapping(node, path, _PASSWORD_KEYS)
        if f.node is None:
            continue
        email = r.string(f, "email") or ""
        if not email:
            r.missing(
                f.child("email"), f.value("email") or f, "a static password needs an email (the login name)"
            )
        elif email.lower() in seen:
            r.error(
                f.child("email"),
                f.value("email"),
                f'duplicate email "{email}" (first used by staticPasswords[{seen[email.lower()]}]; '
                "emails match case-insensitively)",
            )
        else:
            seen[email.lower()] = len(passwords)
        hash_text = r.string(f, "hash")
        if not hash_text and f.has("hashFromEnv"):
            env_name = r.string(f, "hashFromEnv")
            hash_text = r.env.get(env_name, "") if env_name else None
            if env_name and not hash_text:
                r.error(
                    f.child("hashFromEnv"),
                    f.value("hashFromEnv"),
                    f"environment variable {env_name} is not set or empty",
                )
                hash_text = None
            where, where_path = f.value("hashFromEnv"), f.child("hashFromEnv")
        else:
            where, where_path = f.value("hash"), f.child("hash")
        decoded = ""
        if hash_text:
            decoded, problem = check_bcrypt(hash_text)
            if problem:
                r.error(where_path, where, problem)
        elif hash_text is not None or not (f.has("hash") or f.has("hashFromEnv")):
            r.missing(
                f.child("hash"), f.value("hash") or f, "no password hash: give hash (bcrypt) or hashFromEnv"
            )
        user_id = r.string(f, "userID") or ""
        if not user_id:
            r.warning(
                f.child("userID"), f, "no userID: the user's tokens get an empty subject; set a fixed UUID"
            )
        verified = r.boolean(f, "emailVerified")
        passwords.append(
            StaticPassword(
                email=email,
                hash=decoded,
                username=r.string(f, "username") or "",
                user_id=user_id,
                groups=r.strings(f, "groups") or (),
                name=r.string(f, "name") or "",
                preferred_username=r.string(f, "preferredUsername") or "",
                email_verified=True if verified is None else verified,
            )
        )
    return tuple(passwords)


def check_bcrypt(text: str) -> tuple[str, str]:
    """(the bcrypt hash, "") or ("", problem). Accepts a bcrypt hash or the base64 of one, as Dex does.

    The problem text never repeats the value: it may be a secret pasted in the wrong place.
    """
    candidate = text
    match = _BCRYPT.match(candidate)
    if match is None:
        try:
            candidate = base64.b64decode(text.strip(), validate=True).decode("ascii")
        except (binascii.Error, ValueError):
            candidate = ""
        match = _BCRYPT.match(candidate)
    if match is None:
        return "", (
            "not a bcrypt hash ($2a$, $2b$ or $2y$ followed by the cost and 53 characters), "
            "nor the base64 of one; make one with: portico hash-password"
        )
    cost = int(match.group(1))
    if not BCRYPT_MIN_COST <= cost <= BCRYPT_MAX_COST:
        return "", (
            f"bcrypt cost {cost} is outside {BCRYPT_MIN_COST}..{BCRYPT_MAX_COST}; "
            "Dex and Portico refuse logins with it"
        )
    return candidate, ""


def read_connectors(r: Reader, top: Fields, enable_password_db: bool) -> tuple[ConnectorConfig, ...]:
    connectors: list[ConnectorConfig] = []
    seen: dict[str, int] = {}
    known_types = (*CONNECTOR_TYPES, *_CONNECTOR_ALIASES)
    for path, node in r.items(top, "connectors"):
        f = r.mapping(node, path, ("type", "id", "name", "config"))
        if f.node is None:
            continue
        values = {key: r.string(f, key) for key in ("type", "id", "name")}
        for key, value in values.items():
            if value == "" or (value is None and not f.has(key)):
                r.missing(f.child(key), f.value(key) or f, f"a connector needs {key}")
        kind = values["type"] or ""
        if kind and kind not in known_types:
            r.error(
                f.child("type"),
                f.value("type"),
                f'unknown connector type "{kind}"' + suggest(kind, known_types),
            )
        elif kind in _CONNECTOR_ALIASES:
            r.warning(
                f.child("type"),
                f.value("type"),
                f'"{kind}" is an old Dex name for "{_CONNECTOR_ALIASES[kind]}"; using that',
            )
            kind = _CONNECTOR_ALIASES[kind]
        connector_id = values["id"] or ""
        if connector_id == LOCAL_CONNECTOR_ID and enable_password_db:
            r.error(
                f.child("id"),
                f.value("id"),
                'the id "local" is taken by the password database (enablePasswordDB)',
            )
        elif connector_id in seen:
            r.error(
                f.child("id"),
                f.value("id"),
                f'duplicate connector id "{connector_id}" (first used by connectors[{seen[connector_id]}])',
            )
        elif connector_id:
            seen[connector_id] = len(connectors)
        config: dict[str, object] = {}
        config_node = f.value("config")
        if config_node is not None:
            if isinstance(config_node, yaml.MappingNode):
                config = r.raw(config_node, f.child("config"), expand=True)
            else:
                r.type_error(f.child("config"), config_node, "a mapping")
        connectors.append(
            ConnectorConfig(type=kind, id=connector_id, name=values["name"] or "", config=config)
        )
    return tuple(connectors)
