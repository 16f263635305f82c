"""Portico's benchmark harness against node-oidc-provider (bench/README.md): `python -m bench`."""
