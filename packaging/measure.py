"""Measures a built `portico` (size, cold start to the first discovery answer) and writes the report.

Standard library only. The binary runs from a fresh temporary folder with PATH=/usr/bin:/bin, so nothing of
the build's Python environment is reachable. Cold start = from exec to the first 200 answer of
/.well-known/openid-configuration, polled every 5 ms; several runs, the median is the figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def minimal_config(port: int, db: Path) -> str:
    """A config with SQLite in `db` and one public client (JSON is YAML)."""
    return json.dumps({
        "issuer": f"http://127.0.0.1:{port}/dex",
        "storage": {"type": "sqlite3", "config": {"file": str(db)}},
        "web": {"http": f"127.0.0.1:{port}"},
        "staticClients": [{"id": "measure", "name": "measure", "public": True,
                           "redirectURIs": ["http://127.0.0.1:5555/callback"]}],
    })


def clean_env(workdir: Path) -> dict[str, str]:
    """No virtualenv, no PYTHON* variables: only what a host without Python would have."""
    keep = {k: v for k, v in os.environ.items()
            if k in ("HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER", "CI")}
    keep["PATH"] = "/usr/bin:/bin"
    keep["PORTICO_ADMIN_SOCKET"] = str(workdir / "admin.sock")
    return keep


@dataclass(frozen=True)
class ColdStart:
    wall_s: float  # exec -> first 200 discovery answer
    cpu_s: float  # user + system CPU of the whole process tree, start to exit (steady under load)


def _stop(proc: subprocess.Popen[bytes]) -> tuple[int, float]:
    """SIGTERM, then reap with wait4 for the CPU time (children included); (exit code, cpu seconds)."""
    proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage.ru_utime + usage.ru_stime
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    raise RuntimeError("did not stop within 10 s of SIGTERM")


def _first_answer(proc: subprocess.Popen[bytes], url: str, started: float, log: Path) -> float:
    """Seconds from `started` to the first 200 from `url`; RuntimeError if the process dies or times out."""
    while True:
        if proc.poll() is not None or time.monotonic() - started > START_TIMEOUT_S:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"no discovery answer (exit {proc.returncode}):\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (http on loopback)
                if response.status == 200:
                    return time.monotonic() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.005)


def cold_start_once(binary: Path, workdir: Path) -> ColdStart:
    """Starts `binary serve` in `workdir` and waits for the first 200 discovery answer, then stops it
    (SIGTERM must end it with exit code 0)."""
    port = free_port()
    config = workdir / f"measure-{port}.yaml"
    config.write_text(minimal_config(port, workdir / f"measure-{port}.db"))
    url = f"http://127.0.0.1:{port}/dex/.well-known/openid-configuration"
    log = workdir / f"measure-{port}.log"
    env = clean_env(workdir)
    env["PORTICO_ADMIN_SOCKET"] = str(workdir / f"measure-{port}.sock")  # apart from any other server here
    with log.open("wb") as out:
        started = time.monotonic()
        proc = subprocess.Popen([str(binary), "serve", str(config)], cwd=workdir,  # noqa: S603
                                env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    try:
        wall = _first_answer(proc, url, started, log)
    finally:
        if proc.returncode is None:
            code, cpu = _stop(proc)
    if code != 0:
        raise RuntimeError(f"exited {code} after SIGTERM:\n{log.read_text(errors='replace')[-3000:]}")
    return ColdStart(wall, cpu)


def cold_starts(binary: Path, runs: int, *, in_place: bool = False) -> list[ColdStart]:
    """`runs` cold starts, each from its own temporary folder and, unless `in_place` (a onedir build,
    which needs its _internal folder beside it), of a private copy of `binary`."""
    results = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="portico-measure-") as tmp:
            workdir = Path(tmp)
            target = binary
            if not in_place:
                target = workdir / "portico"
                target.write_bytes(binary.read_bytes())
                target.chmod(0o755)
            results.append(cold_start_once(target, workdir))
    return results


def installed_size(binary: Path) -> int:
    """The file's size, or for a onedir build the whole folder's."""
    internal = binary.parent / "_internal"
    if not internal.is_dir():
        return binary.stat().st_size
    return sum(p.stat().st_size for p in binary.parent.rglob("*") if p.is_file() and not p.is_symlink())


def _value(text: str) -> Any:
    """An integer or a boolean when it reads as one, else the text (a commit id stays a string)."""
    if text in ("true", "false"):
        return text == "true"
    return int(text) if text.isdigit() else text


def update_report(path: Path, values: dict[str, Any]) -> dict[str, Any]:
    """Merge `values` into the JSON report at `path` (the smoke test adds its own figures later)."""
    report: dict[str, Any] = {}
    if path.exists():
        try:
            report = json.loads(path.read_text())
        except ValueError:
            report = {}
    report.update(values)
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("binary", type=Path)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--in-place", action="store_true", help="run the binary where it is (onedir)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra fields for the report (mode, commit, ...)")
    args = parser.parse_args()
    size = installed_size(args.binary)
    starts = cold_starts(args.binary.resolve(), args.runs, in_place=args.in_place)
    values: dict[str, Any] = {}
    for item in args.set:
        key, _, text = item.partition("=")
        values[key] = _value(text)
    walls = [round(s.wall_s, 3) for s in starts]
    cpus = [round(s.cpu_s, 3) for s in starts]
    values.update({
        "file": str(args.binary),
        "size_bytes": size,
        "size_mib": round(size / MIB, 2),
        "cold_start_s": statistics.median(walls),
        "cold_start_runs_s": walls,
        "cold_start_cpu_s": statistics.median(cpus),
        "load_average": round(os.getloadavg()[0], 2),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    })
    update_report(args.report, values)
    print(f"size: {size / MIB:.1f} MiB ({size} bytes)")
    print(f"cold start to first discovery answer: median {statistics.median(walls):.3f} s over {len(walls)} "
          f"runs ({', '.join(map(str, walls))}); CPU {statistics.median(cpus):.3f} s; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"report: {args.report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
