"""The protocol core: OAuth 2.0 / OpenID Connect, framework-free."""
