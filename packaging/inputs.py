"""The build's input digest: what dist/portico was built from, so a build can be reused when nothing changed.

Run as a script it prints the digest; build.sh stores it in dist/portico.stamp and tests/binary loads this
file by path to compare. Contents are hashed rather than modification times compared: files edited while
a build runs, or restored to an older state, still make the next check ask for a new build.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Everything that ends up in the binary or decides how it is built (not packaging/kubernetes and the
# like, which only ship beside it). The venv's libraries are pinned by pyproject.toml; the interpreter's
# version is added below.
INPUTS = ("appliance", "pyproject.toml", "packaging/portico.spec", "packaging/entry.py", "packaging/hooks",
          "packaging/build.sh", "packaging/inputs.py")
_SKIP_PARTS = frozenset({"__pycache__", ".mypy_cache", ".ruff_cache"})
_SKIP_SUFFIXES = (".pyc", ".pyo", ".swp", "~")


def source_files(root: Path = ROOT) -> list[Path]:
    """Every input file, sorted, relative to root."""
    files: list[Path] = []
    for name in INPUTS:
        top = root / name
        candidates = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for path in candidates:
            relative = path.relative_to(root)
            if _SKIP_PARTS.intersection(relative.parts) or path.name.endswith(_SKIP_SUFFIXES):
                continue
            files.append(relative)
    return sorted(files)


def digest(root: Path = ROOT) -> str:
    """sha256 over the interpreter version and every input's path and contents."""
    h = hashlib.sha256()
    h.update(f"python {sys.version_info[:3]}\n".encode())
    for relative in source_files(root):
        h.update(relative.as_posix().encode() + b"\0")
        h.update(hashlib.sha256((root / relative).read_bytes()).digest())
    return h.hexdigest()


if __name__ == "__main__":
    print(digest())
