"""Upstream identity: one module per connector type."""
