"""Portico, an OpenID Connect identity provider compatible with Dex."""

__version__ = "0.1.0"
