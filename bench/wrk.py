"""Running wrk (the load generator, pinned to its own core) with one of bench/lua's scripts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

LUA_DIR = Path(__file__).resolve().parent / "lua"
_MARK = "BENCH_RESULT "


class WrkError(RuntimeError):
    """wrk failed or printed no result line."""


@dataclass(frozen=True)
class Request:
    """What a workload sends: the script (static, pool or rotate) and its fixed parts."""

    script: str
    method: str
    path: str
    expect: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    file: str = ""  # pool and rotate: the prepared lines


@dataclass(frozen=True)
class Result:
    requests: int
    duration_s: float
    errors: int  # socket errors, timeouts, 4xx/5xx and answers with another status than expected
    error_detail: dict[str, int]
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


def wrk_path() -> str | None:
    return shutil.which("wrk")


def version() -> str:
    path = wrk_path()
    if path is None:
        return ""
    out = subprocess.run([path, "-v"], capture_output=True, text=True, check=False)  # noqa: S603 - the harness's own fixed commands
    return (out.stdout + out.stderr).strip().splitlines()[0] if (out.stdout + out.stderr).strip() else ""


def run(
    base: str,
    request: Request,
    *,
    duration_s: float,
    connections: int,
    threads: int,
    cpus: str,
    timeout_s: float = 10.0,
) -> Result:
    path = wrk_path()
    if path is None:
        raise WrkError("wrk is not installed (Debian: apt-get install wrk)")
    env = dict(os.environ)
    env.update(
        {
            "BENCH_LUA_DIR": str(LUA_DIR),
            "BENCH_METHOD": request.method,
            "BENCH_PATH": request.path,
            "BENCH_BODY": request.body,
            "BENCH_HEADERS": "\n".join(f"{k}: {v}" for k, v in request.headers.items()),
            "BENCH_EXPECT": str(request.expect),
            "BENCH_FILE": request.file,
            "BENCH_THREADS": str(threads),
        }
    )
    command = [
        path,
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{max(1, round(duration_s))}s",
        "--timeout",
        f"{timeout_s:.0f}s",
        "-s",
        str(LUA_DIR / f"{request.script}.lua"),
        base + request.path,
    ]
    if cpus:
        command = ["taskset", "-c", cpus, *command]
    out = subprocess.run(  # noqa: S603 - the harness's own fixed commands
        command, capture_output=True, text=True, env=env, timeout=duration_s + 120, check=False
    )
    line = next((x for x in out.stdout.splitlines() if x.startswith(_MARK)), None)
    if out.returncode != 0 or line is None:
        raise WrkError(f"wrk exited with {out.returncode}: {out.stderr.strip()[-800:]} {out.stdout[-800:]}")
    data = json.loads(line[len(_MARK) :])
    detail = {k: int(v) for k, v in data["errors"].items()}
    detail["unexpected_status"] = int(data["unexpected"])
    # wrk counts a 4xx/5xx both as a status error and (through our check) as unexpected: count it once.
    errors = (
        detail["connect"]
        + detail["read"]
        + detail["write"]
        + detail["timeout"]
        + max(detail["status"], detail["unexpected_status"])
    )
    lat = data["latency_us"]
    return Result(
        requests=int(data["requests"]),
        duration_s=data["duration_us"] / 1e6,
        errors=errors,
        error_detail=detail,
        p50_ms=lat["p50"] / 1000,
        p90_ms=lat["p90"] / 1000,
        p99_ms=lat["p99"] / 1000,
        max_ms=lat["max"] / 1000,
    )
