"""PyInstaller hook for Portico: every appliance module and every packaged data file.

The connector registry imports its modules by name (importlib), which static analysis cannot follow, so
every submodule is named here; templates, static files, themes, the default config and the console's
stylesheet are read from the package folder at run time.
"""

from __future__ import annotations

from PyInstaller.utils.hooks import collect_data_files, collect_submodules  # type: ignore[import-untyped]

hiddenimports = collect_submodules("appliance")
datas = collect_data_files("appliance", excludes=["**/py.typed", "**/__pycache__"])
