"""The storage backends of the conformance suite (memory, SQLite file, real PostgreSQL), for the
throttle's storage tests."""

from __future__ import annotations

from conformance.conftest import backend, pg_config, storage

__all__ = ["backend", "pg_config", "storage"]
