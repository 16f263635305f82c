"""The physical limits beside the workloads, each on one pinned core: JWT signatures per second
(Portico's own signer, appliance.keys, on `cryptography`; node:crypto for the peer), bcrypt cost-10
checks per second, and a do-nothing route on each side's HTTP stack (Portico's own adapter with Granian
or Hypercorn, under Quart or as bare ASGI as the fast path answers; node:http).

`python -m bench.ceilings sign|bcrypt|hello …` runs one measurement in this process (the harness
starts it under `taskset`)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

# A typical Portico ID token's claims (the size matters a little: it is hashed before signing).
CLAIMS: dict[str, Any] = {
    "iss": "http://127.0.0.1:5556/dex",
    "sub": "CgZ1c2VyLTASBWxvY2Fs",
    "aud": "bench",
    "exp": 1795995779,
    "iat": 1795909379,
    "jti": "f4vez4mvgayp3jumjuujhpbkee.pmj2ghyfh2ouekywjt7m3apfim",
    "at_hash": "x" * 22,
    "auth_time": 1795909379,
    "sid": "o6xfqc64vkrd6nlw3pbqpu6yoe",
    "email": "bench0@example.com",
    "email_verified": True,
    "name": "bench0",
    "preferred_username": "bench0",
    "groups": ["bench"],
}
# What the do-nothing routes answer: about the size of a discovery document.
HELLO_BODY = json.dumps({"issuer": "http://127.0.0.1:5556/dex", "padding": "x" * 1400}).encode()


def _rate(step: Any, seconds: float) -> float:
    step()  # warm up (key loading, first-call caches)
    count, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        step()
        count += 1
    return count / elapsed


def sign_rate(alg: str, seconds: float) -> float:
    """Tokens signed per second by Portico's key set (what minting calls), claims to compact JWS."""
    from datetime import UTC, datetime

    from appliance.keys.jwk import generate_signing_jwk
    from appliance.keys.keyset import LoadedKeys
    from appliance.store.models import Keys

    private, public = generate_signing_jwk(alg, "bench")
    keys = LoadedKeys.parse(Keys(signing_key=private, signing_key_pub=public,
                                 next_rotation=datetime(2100, 1, 1, tzinfo=UTC)))
    return _rate(lambda: keys.sign(CLAIMS), seconds)


def bcrypt_rate(cost: int, seconds: float) -> float:
    import bcrypt

    hashed = bcrypt.hashpw(b"bench-password", bcrypt.gensalt(cost))
    return _rate(lambda: bcrypt.checkpw(b"bench-password", hashed), seconds)


async def _bare(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The fast path's floor: fixed bytes from a plain ASGI callable, no framework."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(HELLO_BODY)).encode())]})
    await send({"type": "http.response.body", "body": HELLO_BODY})


def serve_hello(port: int, server: str = "hypercorn", kind: str = "quart") -> None:
    """One route answering fixed bytes (a Quart app, or bare ASGI), served by Portico's adapter."""
    from quart import Quart, Response

    from appliance.web.server import Listener, serve

    app = Quart("hello")

    @app.route("/hello")
    async def hello() -> Response:
        return Response(HELLO_BODY, content_type="application/json")

    async def main() -> None:
        shutdown = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, shutdown.set)
        target = _bare if kind == "bare" else app
        await serve(target, [Listener(f"127.0.0.1:{port}")], shutdown, server=server)

    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())


def main(argv: list[str]) -> int:
    what = argv[0]
    if what == "sign":
        print(json.dumps({"rate": sign_rate(argv[1], float(argv[2]))}))
    elif what == "bcrypt":
        print(json.dumps({"rate": bcrypt_rate(int(argv[1]), float(argv[2]))}))
    elif what == "hello":
        serve_hello(int(argv[1]), *argv[2:4])
    else:
        print(f"unknown measurement {what!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
