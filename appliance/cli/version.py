"""`portico version`: the version, the commit and the key libraries."""

from __future__ import annotations

from appliance import __version__

_LIBRARIES = ("quart", "granian", "hypercorn", "joserfc", "cryptography", "bcrypt", "aiosqlite", "asyncpg",
              "PyYAML")


def _commit() -> str:
    try:
        from appliance import _build  # type: ignore[attr-defined]  # written by the packaging step

        return str(_build.COMMIT)
    except ImportError:
        return "unknown"


def version_text() -> str:
    # Here, not at the top: `portico serve` reads _commit() only, and importlib.metadata costs it ~1 MB.
    import platform
    from importlib import metadata

    lines = [f"portico {__version__}", f"commit {_commit()}", f"python {platform.python_version()}"]
    for name in _LIBRARIES:
        try:
            lines.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            lines.append(f"{name} (not installed)")
    return "\n".join(lines)
