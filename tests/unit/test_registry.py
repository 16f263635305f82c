"""The connector registry knows every Dex connector type and imports each module only when used."""

from __future__ import annotations

import subprocess
import sys

import pytest

from appliance.connectors.registry import default_registry

DEX_TYPES = (
    "ldap", "saml", "oidc", "oauth", "github", "gitlab", "google", "microsoft", "linkedin",
    "bitbucket-cloud", "openshift", "gitea", "atlassian-crowd", "keystone", "authproxy",
    "mockCallback", "mockPassword",
)


def test_every_dex_connector_type_is_registered() -> None:
    assert set(DEX_TYPES) <= set(default_registry().types())


@pytest.mark.parametrize("type_name", DEX_TYPES)
def test_each_type_resolves_to_a_factory_that_checks_its_config(type_name: str) -> None:
    registry = default_registry()
    if type_name == "mockCallback":
        assert registry.open(type_name, "m", {}) is not None
        return
    with pytest.raises((ValueError, TypeError)):
        registry.open(type_name, "c", {"surelyNotAKey": 1})


def test_unknown_type_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        default_registry().open("nope", "c", {})


def test_connector_modules_are_imported_lazily() -> None:
    code = (
        "import sys; from appliance.connectors.registry import default_registry; default_registry(); "
        "print(sorted(m for m in ('ldap3', 'signxml', 'lxml', 'authlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
