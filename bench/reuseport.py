"""Runs `portico` with its listening socket marked SO_REUSEPORT, so several processes share one port.

Portico has no worker option yet. The benchmark's "one worker per core" figures start one of these per
core, on one shared database. Hypercorn sets SO_REUSEPORT on the sockets it creates exactly when its
config asks for more than one worker; nothing else in `worker_serve` reads that number (it is the
serving loop of one worker), so raising the class default changes only the socket option.
"""

from __future__ import annotations

import sys

import hypercorn.config

from appliance.cli.main import main

hypercorn.config.Config.workers = 2

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
