"""PyInstaller hook for asyncpg: its Cython modules import each other, which analysis cannot see."""

from __future__ import annotations

from PyInstaller.utils.hooks import collect_submodules  # type: ignore[import-untyped]

hiddenimports = collect_submodules(
    "asyncpg", filter=lambda name: ".tests" not in name and "_testbase" not in name
)
