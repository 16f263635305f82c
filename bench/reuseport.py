"""Runs `portico` with its listening sockets marked SO_REUSEPORT, so several processes share one port.

Portico has no worker option yet. The benchmark's "one worker per core" figures start one of these per
core, on one shared database. `appliance.web.server.REUSE_PORT` is the adapter's switch for exactly this
(with either web.server); it is not a setting, since two Porticos on one port are otherwise a mistake.
"""

from __future__ import annotations

import sys

import appliance.web.server
from appliance.cli.main import main

appliance.web.server.REUSE_PORT = True

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
