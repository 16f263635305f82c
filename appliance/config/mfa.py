"""The `mfa` section of the config file (Dex main's shape): second-factor authenticators and chains."""

from __future__ import annotations

import yaml

from appliance.config.schema import MFAAuthenticator, MFAConfig, StaticClient
from appliance.config.yamlpos import Fields, Reader, suggest

MFA_TYPES = ("TOTP", "WebAuthn")  # Dex's names, matched exactly as Dex does
MFA_SUPPORTED = ("TOTP",)
ENROLLMENT_MODES = ("required", "optional")
_AUTHENTICATOR_KEYS = ("id", "type", "config", "connectorTypes")
_TOTP_KEYS = ("issuer", "enrollment")  # enrollment is Portico's own
_WEBAUTHN_KEYS = (
    "rpDisplayName", "rpID", "rpOrigins", "attestationPreference", "userVerification",
    "authenticatorAttachment", "timeout",
)


def read_mfa(
    r: Reader, top: Fields, clients: tuple[StaticClient, ...], connector_types: tuple[str, ...]
) -> MFAConfig:
    """mfa {authenticators, defaultMFAChain, allowPasswordGrant}, and the chains that name them
    (defaultMFAChain, staticClients[].mfaChain): a chain naming an unknown authenticator is an error,
    as in Dex; so is one naming a WebAuthn authenticator, which Portico cannot run yet (starting
    without a factor the administrator asked for would be worse than not starting)."""
    f = r.section(top, "mfa", ("authenticators", "defaultMFAChain", "allowPasswordGrant"))
    authenticators: list[tuple[MFAAuthenticator, str, yaml.Node]] = []
    kinds: dict[str, str] = {}
    for path, node in r.items(f, "authenticators"):
        item = _read_authenticator(r, path, node, kinds, connector_types)
        if item is not None:
            kinds[item.id] = item.type
            if item.type in MFA_SUPPORTED:
                authenticators.append((item, path, node))
    default = r.strings(f, "defaultMFAChain") or ()
    for i, name in enumerate(default):
        _check_reference(r, f"mfa.defaultMFAChain[{i}]", _at(f.value("defaultMFAChain"), i), name, kinds)
    for i, client in enumerate(clients):
        for j, name in enumerate(client.mfa_chain or ()):
            where = _at(_client_key(top, i, "mfaChain"), j)
            _check_reference(r, f"staticClients[{i}].mfaChain[{j}]", where, name, kinds)
    used = set(default) | {name for c in clients for name in c.mfa_chain or ()}
    for item, path, node in authenticators:
        if item.id not in used:
            r.warning(path, node, f'authenticator "{item.id}" is in no chain (defaultMFAChain or a client\'s '
                      "mfaChain), so nobody is asked for it")
    return MFAConfig(
        authenticators=tuple(item for item, _, _ in authenticators),
        default_chain=tuple(name for name in default if kinds.get(name) in MFA_SUPPORTED),
        allow_password_grant=bool(r.boolean(f, "allowPasswordGrant")),
    )


def _read_authenticator(
    r: Reader, path: str, node: yaml.Node, seen: dict[str, str], connector_types: tuple[str, ...]
) -> MFAAuthenticator | None:
    a = r.mapping(node, path, _AUTHENTICATOR_KEYS)
    if a.node is None:
        return None
    ident = r.string(a, "id") or ""
    kind = r.string(a, "type") or ""
    if not ident:
        r.missing(a.child("id"), a, "an authenticator needs an id (chains name it)")
    elif ident in seen:
        r.error(a.child("id"), a.value("id"), f'duplicate authenticator id "{ident}"')
        ident = ""
    if not kind:
        r.missing(a.child("type"), a, "an authenticator needs a type: TOTP")
        return None
    if kind not in MFA_TYPES:
        r.error(a.child("type"), a.value("type"), f'unknown authenticator type "{kind}"; one of TOTP, '
                "WebAuthn" + suggest(kind, MFA_TYPES))
        return None
    types = r.strings(a, "connectorTypes") or ()
    for i, name in enumerate(types):
        if name not in connector_types:
            r.warning(f"{a.child('connectorTypes')}[{i}]", _at(a.value("connectorTypes"), i),
                      f'unknown connector type "{name}"' + suggest(name, connector_types))
    if kind == "WebAuthn":
        r.section(a, "config", _WEBAUTHN_KEYS)
        r.warning(a.child("type"), a.value("type"), "WebAuthn is not supported by Portico yet; "
                  "a chain that names this authenticator is refused")
        if ident:
            seen[ident] = kind
        return None
    c = r.section(a, "config", _TOTP_KEYS)
    enrollment = r.string(c, "enrollment") or "required"
    if enrollment not in ENROLLMENT_MODES:
        r.error(c.child("enrollment"), c.value("enrollment"), f'must be "required" or "optional", '
                f'got "{enrollment}"' + suggest(enrollment, ENROLLMENT_MODES))
        enrollment = "required"
    if not ident:
        return None
    return MFAAuthenticator(id=ident, type=kind, issuer=r.string(c, "issuer") or "", connector_types=types,
                            enrollment=enrollment)


def _check_reference(r: Reader, path: str, node: yaml.Node | None, name: str, kinds: dict[str, str]) -> None:
    if name not in kinds:
        r.error(path, node,
                f'no authenticator has id "{name}" (mfa.authenticators)' + suggest(name, list(kinds)))
    elif kinds[name] not in MFA_SUPPORTED:
        r.error(path, node, f'authenticator "{name}" is {kinds[name]}, which Portico cannot run yet: '
                "remove it from the chain (or keep using Dex for it)")


def _at(node: yaml.Node | None, index: int) -> yaml.Node | None:
    """A list's element, for its line (the list itself when the element is not there)."""
    if isinstance(node, yaml.SequenceNode) and index < len(node.value):
        item: yaml.Node = node.value[index]
        return item
    return node


def _client_key(top: Fields, index: int, key: str) -> yaml.Node | None:
    """staticClients[index].<key> (matched case-insensitively, as the reader does), for a line."""
    clients = top.value("staticClients")
    if not isinstance(clients, yaml.SequenceNode) or index >= len(clients.value):
        return None
    client = clients.value[index]
    if not isinstance(client, yaml.MappingNode):
        return None
    for key_node, value_node in client.value:
        if isinstance(key_node, yaml.ScalarNode) and str(key_node.value).lower() == key.lower():
            found: yaml.Node = value_node
            return found
    return client
