"""The connector types Portico knows: type name -> factory. Handed to the server, never imported by oidc.

Factories are named by module and function and imported on first use, so a server that only uses local
passwords never loads ldap3, lxml or signxml (start-up time and memory).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, cast

from appliance.connectors.base import ConnectorFactory
from appliance.connectors.local import LocalConnector, PasswordLookup

# type name -> "module:function" (relative to appliance.connectors)
BUILTIN_TYPES: Mapping[str, str] = MappingProxyType({
    "mockCallback": "mock:open_mock_callback",
    "mockPassword": "mock:open_mock_password",
    "ldap": "ldap:open_ldap",
    "saml": "saml:open_saml",
    "oidc": "oidc:open_oidc",
    "oauth": "oauth:open_oauth",
    "authproxy": "authproxy:open_authproxy",
    "github": "github:open_github",
    "gitlab": "gitlab:open_gitlab",
    "google": "google:open_google",
    "microsoft": "microsoft:open_microsoft",
    "linkedin": "linkedin:open_linkedin",
    "bitbucket-cloud": "bitbucket:open_bitbucket",
    "openshift": "openshift:open_openshift",
    "gitea": "gitea:open_gitea",
    "atlassian-crowd": "crowd:open_crowd",
    "keystone": "keystone:open_keystone",
})


class Registry:
    """Opens connectors by type; implements appliance.oidc.deps.ConnectorFactories.

    Create one per process and keep it across config reloads: it holds what must outlive a snapshot,
    such as the record of SAML assertions already used.
    """

    def __init__(self, factories: Mapping[str, ConnectorFactory | str]) -> None:
        self._specs = MappingProxyType(dict(factories))
        self._loaded: dict[str, ConnectorFactory] = {}
        self._saml_replay: object | None = None

    def types(self) -> list[str]:
        return sorted(self._specs)

    def _factory(self, type_: str) -> ConnectorFactory:
        factory = self._loaded.get(type_)
        if factory is not None:
            return factory
        spec = self._specs[type_]  # KeyError: unknown type
        if isinstance(spec, str):
            module_name, _, function = spec.partition(":")
            module = importlib.import_module(f"appliance.connectors.{module_name}")
            factory = cast(ConnectorFactory, getattr(module, function))
        else:
            factory = spec
        self._loaded[type_] = factory
        return factory

    def open(self, type_: str, connector_id: str, config: Mapping[str, Any]) -> object:
        """A connector of `type_`; KeyError for an unknown type, ValueError for a bad config."""
        factory = self._factory(type_)
        if type_ == "saml" and isinstance(self._specs[type_], str):
            from appliance.clock import SystemClock
            from appliance.connectors.saml import MemoryReplayCache, open_saml

            if self._saml_replay is None:
                self._saml_replay = MemoryReplayCache(SystemClock())
            return open_saml(connector_id, config, replay=cast(MemoryReplayCache, self._saml_replay))
        return factory(connector_id, config)

    def open_local(self, lookup: PasswordLookup) -> object:
        return LocalConnector(lookup)

    def with_types(self, extra: Mapping[str, ConnectorFactory | str]) -> Registry:
        """A registry with more (or replaced) types."""
        return Registry({**self._specs, **extra})


def default_registry() -> Registry:
    return Registry(BUILTIN_TYPES)
