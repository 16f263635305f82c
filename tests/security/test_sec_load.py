"""A bounded load test against a real server on SQLite: fixed concurrency on /token (refresh and code
exchange) and the login flow (mock callback and password) for SEC_LOAD_SECONDS; no errors, latency
percentiles reported, and the server's RSS does not grow from the first half to the second."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import httpx
from load_support import AsyncFlow, Recorder, UnexpectedAnswer, rss_bytes, summary
from security_support import security_config

SECONDS = float(os.environ.get("SEC_LOAD_SECONDS", "16"))
CONCURRENCY = 8
# RSS may grow this much from the end of the first half to the end of the second: allocator noise and
# SQLite's page cache, not a leak proportional to the requests served.
RSS_TOLERANCE = 8 * 1024 * 1024
RSS_TOLERANCE_FRACTION = 0.05


async def _refresher(flow: AsyncFlow, deadline: float) -> None:
    token = (await flow.redeem(await flow.login()))["refresh_token"]
    while time.monotonic() < deadline:
        token = (await flow.refresh(token))["refresh_token"]


async def _exchanger(flow: AsyncFlow, deadline: float) -> None:
    await flow.login()  # the SSO session: from here /auth answers with a code at once
    while time.monotonic() < deadline:
        await flow.redeem(await flow.login(fresh=False))


async def _login_flow(flow: AsyncFlow, deadline: float, password: bool) -> None:
    while time.monotonic() < deadline:
        await flow.redeem(await flow.login(password=password))


async def _run(issuer: str, pid: int) -> tuple[Recorder, list[int], float]:
    recorder = Recorder()
    started = time.monotonic()
    deadline = started + SECONDS
    kinds = ["refresh", "refresh", "exchange", "exchange", "login", "login", "password", "password"]
    flows = [AsyncFlow(issuer, recorder) for _ in range(CONCURRENCY)]

    async def one(kind: str, flow: AsyncFlow) -> None:
        try:
            if kind == "refresh":
                await _refresher(flow, deadline)
            elif kind == "exchange":
                await _exchanger(flow, deadline)
            else:
                await _login_flow(flow, deadline, password=kind == "password")
        except (httpx.HTTPError, UnexpectedAnswer) as exc:
            recorder.errors.append(f"{kind}: {exc!r}")

    async def sample_rss() -> list[int]:
        samples = []
        for fraction in (0.25, 0.5, 1.0):
            await asyncio.sleep(max(0.0, started + SECONDS * fraction - time.monotonic()))
            samples.append(rss_bytes(pid))
        return samples

    sampler = asyncio.create_task(sample_rss())
    await asyncio.gather(*(one(kind, flow) for kind, flow in zip(kinds, flows, strict=True)))
    samples = await sampler
    for flow in flows:
        await flow.close()
    return recorder, samples, time.monotonic() - started


def test_load_no_errors_and_no_memory_growth(
    portico_launcher: Any, tmp_path: Path, report_figure: Any
) -> None:
    server = portico_launcher.start(
        lambda port: security_config(
            f"http://127.0.0.1:{port}/dex", {"type": "sqlite3", "config": {"file": str(tmp_path / "load.db")}}
        )
    )
    recorder, (warm, middle, end), elapsed = asyncio.run(_run(server.issuer, server.proc.pid))
    stats = summary(recorder, elapsed)
    for operation, line in stats.items():
        report_figure(f"load {operation}", line)
    report_figure(
        "load RSS MiB (quarter, half, end)", f"{warm / 2**20:.1f}, {middle / 2**20:.1f}, {end / 2**20:.1f}"
    )
    print("\n" + "\n".join(f"{op}: {line}" for op, line in stats.items()))
    print(
        f"RSS: {warm / 2**20:.1f} MiB at 1/4, {middle / 2**20:.1f} MiB at 1/2, "
        f"{end / 2**20:.1f} MiB at the end"
    )
    assert not recorder.errors, recorder.errors[:10]
    assert "Traceback" not in server.stderr_text(), server.stderr_tail()
    for operation in ("token_refresh", "token_code", "callback", "password_login"):
        assert len(recorder.latencies.get(operation, [])) >= 5, (operation, stats)
    allowed = max(RSS_TOLERANCE, int(middle * RSS_TOLERANCE_FRACTION))
    assert end - middle <= allowed, (
        f"RSS grew {(end - middle) / 2**20:.1f} MiB in the second half (allowed {allowed / 2**20:.1f} MiB)"
    )
    assert server.stop() == 0
