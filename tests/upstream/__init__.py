"""The upstream OpenID Provider of the oidc/oauth connector tests (a Node sub-project, see op.py)."""
