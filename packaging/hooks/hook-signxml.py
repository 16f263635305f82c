"""PyInstaller hook for signxml: the XSD schemas it validates SAML documents against are data files.

signxml ships the same hook (signxml/__pyinstaller) but does not register it, so it is repeated here.
"""

from __future__ import annotations

from PyInstaller.utils.hooks import collect_data_files  # type: ignore[import-untyped]

datas = collect_data_files("signxml", excludes=["__pyinstaller"])
