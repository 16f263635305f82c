"""The frozen program's entry point: the `portico` command, as `python -m appliance` runs it."""

from __future__ import annotations

from appliance.cli.main import main

raise SystemExit(main())
