"""Crash safety: logins and token requests against a server on SQLite, SIGKILL in the middle, restart.
Every token a client was answered still validates (signature against /keys, active at introspection,
refresh tokens still refresh), every answered code still redeems, the file passes integrity_check, and
the server serves again."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import KeySet
from load_support import AsyncFlow, Recorder, UnexpectedAnswer, introspect
from process_support import ProcessFlow, sqlite_integrity
from security_support import security_config

WORKERS = 6
KILL_AFTER_S = float(os.environ.get("CRASH_KILL_AFTER_S", "3"))
MIN_ANSWERED = 20


@dataclass
class Chain:
    """One worker's grant: the latest refresh token it was answered, and whether a request that could
    move it on was in flight when the server died (then the latest answered one may be superseded)."""

    refresh_token: str = ""
    in_flight: bool = False
    codes: list[str] = field(default_factory=list)  # answered, never sent back


async def _worker(number: int, issuer: str, recorder: Recorder, chain: Chain, stop: asyncio.Event,
                  enough: asyncio.Event) -> None:
    flow = AsyncFlow(issuer, recorder, timeout=10.0)
    try:
        round_ = 0
        while not stop.is_set():
            round_ += 1
            # Every third round of every other worker logs in with the password form (bcrypt).
            code = await flow.login(password=(number % 2 == 0 and round_ % 3 == 0))
            if round_ % 4 == 0:
                chain.codes.append(code)  # kept back: it must still redeem after the restart
                continue
            chain.in_flight = True
            tokens = await flow.redeem(code)
            chain.refresh_token = tokens["refresh_token"]
            chain.in_flight = False
            for _ in range(2):
                chain.in_flight = True
                tokens = await flow.refresh(chain.refresh_token)
                chain.refresh_token = tokens["refresh_token"]
                chain.in_flight = False
            if len(recorder.answered) >= MIN_ANSWERED:
                enough.set()
    except (httpx.TransportError, UnexpectedAnswer) as exc:
        if not stop.is_set():
            recorder.errors.append(f"worker {number}: {exc!r}")
    finally:
        await flow.close()


async def _load_then_kill(issuer: str, pid: int) -> tuple[Recorder, list[Chain]]:
    recorder = Recorder()
    chains = [Chain() for _ in range(WORKERS)]
    stop, enough = asyncio.Event(), asyncio.Event()
    tasks = [asyncio.create_task(_worker(n, issuer, recorder, chains[n], stop, enough))
             for n in range(WORKERS)]
    # At least KILL_AFTER_S of load, and enough answers to check, however busy the machine is.
    await asyncio.sleep(KILL_AFTER_S)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(enough.wait(), KILL_AFTER_S * 3)
    stop.set()
    os.kill(pid, signal.SIGKILL)  # mid-load: requests are in flight on every worker
    await asyncio.gather(*tasks)
    return recorder, chains


def test_sigkill_mid_load_loses_nothing_answered(portico_launcher: Any, tmp_path: Path) -> None:
    database = tmp_path / "crash.db"
    ports: list[int] = []

    def config(port: int) -> dict[str, Any]:
        # The restart must keep the issuer (and so the port): the tokens name it.
        if not ports:
            ports.append(port)
        return security_config(
            f"http://127.0.0.1:{ports[0]}/dex", {"type": "sqlite3", "config": {"file": str(database)}}
        )

    first = portico_launcher.start(config, name="before-kill")
    recorder, chains = asyncio.run(_load_then_kill(first.issuer, first.proc.pid))
    first.proc.wait(10)
    assert first.proc.returncode == -signal.SIGKILL
    assert not recorder.errors, recorder.errors
    answered = recorder.answered
    assert len(answered) >= MIN_ANSWERED, f"too little load before the kill: {len(answered)} token responses"
    assert sqlite_integrity(database) == "ok"

    started = time.monotonic()
    second = portico_launcher.start(config, name="after-kill")
    restart_s = time.monotonic() - started
    with httpx.Client(timeout=10.0) as http:
        keys = KeySet.import_key_set(http.get(f"{second.issuer}/keys").json())
        now = time.time()
        for body in answered:
            for kind in ("id_token", "access_token"):
                token = jwt.decode(body[kind], keys, algorithms=["RS256"])  # raises on a bad signature
                assert token.claims["iss"] == second.issuer and token.claims["exp"] > now, kind
            assert introspect(http, second.issuer, body["access_token"])["active"] is True
        settled = [chain for chain in chains if chain.refresh_token and not chain.in_flight]
        for chain in settled:
            assert introspect(http, second.issuer, chain.refresh_token)["active"] is True
        codes = [code for chain in chains for code in chain.codes]
    flow = ProcessFlow(second.issuer)
    try:
        for chain in settled:
            refreshed = flow.refresh(chain.refresh_token)
            assert refreshed.status_code == 200, refreshed.text
        for code in codes:
            redeemed = flow.redeem(code)
            assert redeemed.status_code == 200, redeemed.text
        assert flow.tokens()["id_token"]  # and it serves new logins
    finally:
        flow.close()
    assert "Traceback" not in second.stderr_text(), second.stderr_tail()
    assert second.stop() == 0
    assert sqlite_integrity(database) == "ok"
    print(
        f"\ncrash: {len(answered)} token responses, {len(settled)} refresh chains settled, "
        f"{len(codes)} codes kept; restart {restart_s:.2f} s"
    )
