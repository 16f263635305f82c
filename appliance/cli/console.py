"""`portico tui` and `portico init`: start the Textual console (imported only when asked for)."""

from __future__ import annotations


def run_console(command: str, socket: str | None, output: str) -> int:
    from appliance.tui.app import run

    return run(command, socket, output)
