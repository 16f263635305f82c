"""A real HTTP listener on 127.0.0.1 that records back-channel logout POSTs (shared by the web and
end-to-end tests)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


@dataclass
class Listener:
    """Where the listener is, the form bodies it received, and an event set on each POST."""

    url: str
    bodies: list[dict[str, list[str]]] = field(default_factory=list)
    received: threading.Event = field(default_factory=threading.Event)


@contextmanager
def backchannel_listener() -> Iterator[Listener]:
    holder: list[Listener] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            holder[0].bodies.append(parse_qs(self.rfile.read(length).decode()))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            holder[0].received.set()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder.append(Listener(f"http://127.0.0.1:{server.server_address[1]}/backchannel"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder[0]
    finally:
        server.shutdown()
        server.server_close()
