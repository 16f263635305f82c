"""Signing keys, rotation and the JWKS."""
