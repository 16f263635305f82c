"""`portico` with one more connector type, for the end-to-end tests only: type `oidc` is served by
tests/upstream_portico.py (ID tokens of another real Portico, verified against its /keys), so token
exchange runs against a real upstream. Everything else is the real command line."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from upstream_portico import open_upstream_portico

from appliance.cli.main import main
from appliance.connectors import registry

_builtin = registry.default_registry


def _with_test_types() -> registry.Registry:
    return _builtin().with_types({"oidc": open_upstream_portico})


# `portico serve` looks the function up when it starts, so the replacement is what it calls.
registry.default_registry = _with_test_types

if __name__ == "__main__":
    sys.exit(main())
