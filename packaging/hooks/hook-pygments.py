"""PyInstaller hook for Pygments, replacing the stock one that bundles all ~600 lexers (~4 MB of code).

Pygments reaches Portico only through rich and textual: rich.syntax highlights Python in tracebacks and
textual shows CSS errors; the console's text areas have no language. Lexers load by name from
pygments.lexers._mapping, so the ones that can be asked for are listed; every style stays (small, and
picked by name from themes).
"""

from __future__ import annotations

from PyInstaller.utils.hooks import collect_submodules  # type: ignore[import-untyped]

hiddenimports = [
    *collect_submodules("pygments.styles"),
    "pygments.formatters",
    "pygments.lexers.python",  # tracebacks (rich.traceback guesses the lexer from "*.py")
    "pygments.lexers.special",  # "text": the fallback lexer
    "pygments.lexers.css",  # textual's stylesheet errors
    "pygments.lexers.data",  # json / yaml
]
