"""PyInstaller hook for lxml, replacing the stock one that bundles every lxml submodule.

Portico and signxml use lxml.etree only; the stock hook would add objectify, html, html.diff and
isoschematron (~4 MB of shared libraries). lxml.etree's own needs come from the lxml.etree hook.
"""

from __future__ import annotations

hiddenimports = ["lxml.etree", "lxml._elementpath"]
