"""The connector types Portico knows: type name -> factory. Handed to the server, never imported by oidc."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from appliance.connectors.base import ConnectorFactory
from appliance.connectors.local import LocalConnector, PasswordLookup
from appliance.connectors.mock import open_mock_callback, open_mock_password


class Registry:
    """Opens connectors by type; implements appliance.oidc.deps.ConnectorFactories."""

    def __init__(self, factories: Mapping[str, ConnectorFactory]) -> None:
        self._factories = MappingProxyType(dict(factories))

    def types(self) -> list[str]:
        return sorted(self._factories)

    def open(self, type_: str, connector_id: str, config: Mapping[str, Any]) -> object:
        """A connector of `type_`; KeyError for an unknown type, ValueError for a bad config."""
        factory = self._factories[type_]
        return factory(connector_id, config)

    def open_local(self, lookup: PasswordLookup) -> object:
        return LocalConnector(lookup)

    def with_types(self, extra: Mapping[str, ConnectorFactory]) -> Registry:
        """A registry with more (or replaced) types, e.g. the LDAP and OIDC connectors of later issues."""
        return Registry({**self._factories, **extra})


DEFAULT_FACTORIES: Mapping[str, ConnectorFactory] = MappingProxyType({
    "mockCallback": open_mock_callback,
    "mockPassword": open_mock_password,
})


def default_registry() -> Registry:
    return Registry(DEFAULT_FACTORIES)
