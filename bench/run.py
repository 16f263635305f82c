"""The harness: starts both servers on loopback, drives each workload with wrk against one then the
other (back to back, so both see the same machine), measures, and writes bench/results/latest.*."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bcrypt
import httpx

from bench import procs, profile, report, wrk
from bench.flows import Prep
from bench.servers import (
    BCRYPT_COST,
    BINARY,
    PEER_DIR,
    REPO,
    Fixture,
    PeerServer,
    PorticoServer,
    Server,
    free_port,
)
from bench.variants import TOKEN_FORMAT_WORKLOADS, PeerOpaqueView, signature_key
from bench.workloads import BY_NAME, LOGIN_CONNECTIONS, WORKLOADS, Budget, NotSupported, Workload

SERVERS = ("granian", "hypercorn")  # appliance.web.server.SERVERS, without importing the app here
DEFAULT_SERVER = "granian"

QUICK_SECONDS = 2.0
FULL_SECONDS = 10.0
MULTI_WORKLOADS = ("discovery", "client_credentials", "refresh_token", "authorization_code", "userinfo")


class Missing(RuntimeError):
    """A tool the harness needs is not installed."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help=f"{QUICK_SECONDS:.0f} s per workload, short ceilings")
    p.add_argument(
        "--duration",
        type=float,
        help=f"seconds per workload (default {FULL_SECONDS:.0f}, quick {QUICK_SECONDS:.0f})",
    )
    p.add_argument(
        "--rounds",
        type=int,
        help="measure each workload in this many rounds, the servers taking turns, each round a share of "
             "the duration (default 3, quick 1): a ratio from neighbouring rounds is less exposed to a "
             "shared machine's swings than one from two runs a minute apart",
    )
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--threads", type=int, default=1, help="wrk threads (default 1: wrk has one core)")
    p.add_argument(
        "--workloads",
        default=",".join(w.name for w in WORKLOADS),
        help="comma-separated subset of: " + ", ".join(w.name for w in WORKLOADS),
    )
    p.add_argument("--alg", choices=("RS256", "ES256"), default="RS256")
    p.add_argument("--storage", choices=("sqlite3", "memory"), default="sqlite3", help="Portico's storage")
    p.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="Portico workers for the one-per-core round (0 or 1: skip it)",
    )
    p.add_argument("--no-binary", action="store_true", help="skip dist/portico even when it is built")
    p.add_argument("--server", choices=SERVERS, default=DEFAULT_SERVER,
                   help=f"Portico's web.server (default {DEFAULT_SERVER})")
    p.add_argument("--compare-server", choices=SERVERS,
                   help="also measure Portico with this web.server (variant portico-NAME)")
    p.add_argument("--server-cpu", default="0", help="core the servers are pinned to")
    p.add_argument("--wrk-cpu", default="1", help="core wrk is pinned to")
    p.add_argument(
        "--out", help="where latest.json/.md go (default bench/results, quick: bench/results/quick)"
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (configs, logs)")
    p.add_argument("--profile", action="store_true",
                   help="profile under load: py-spy on Portico per workload, node --cpu-prof on the peer "
                        "(for the whole run: profile one workload at a time)")
    return p


def _check_tools() -> None:
    missing = []
    if wrk.wrk_path() is None:
        missing.append("wrk (Debian: apt-get install wrk)")
    if shutil.which("node") is None:
        missing.append("node (Node.js 20 or later)")
    elif not (PEER_DIR / "node_modules" / "oidc-provider").is_dir():
        missing.append("bench/peer/node_modules (run: cd bench/peer && npm ci)")
    if shutil.which("taskset") is None:
        missing.append("taskset (Debian: util-linux)")
    if missing:
        raise Missing("missing: " + "; ".join(missing))


def _pinned(cpu: str, command: list[str]) -> list[str]:
    return ["taskset", "-c", cpu, *command] if cpu else command


def _json_out(command: list[str], timeout: float = 120) -> dict[str, Any]:
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=timeout, cwd=REPO)  # noqa: S603 - the harness's own fixed commands
    data: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return data


def _hello_rps(command: list[str], port: int, args: argparse.Namespace, seconds: float) -> float | None:
    process = subprocess.Popen(  # noqa: S603 - the harness's own fixed commands
        _pinned(args.server_cpu, command),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/hello", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        result = wrk.run(
            f"http://127.0.0.1:{port}",
            wrk.Request("static", "GET", "/hello", 200),
            duration_s=seconds,
            connections=args.connections,
            threads=args.threads,
            cpus=args.wrk_cpu,
        )
        return round(result.rps, 1) if result.errors == 0 else None
    finally:
        process.terminate()
        process.wait(timeout=15)


def measure_ceilings(args: argparse.Namespace) -> dict[str, dict[str, float | None]]:
    seconds = 0.5 if args.quick else 2.0
    py = [sys.executable, "-m", "bench.ceilings"]
    python = {
        "sign": round(_json_out(_pinned(args.server_cpu, [*py, "sign", args.alg, str(seconds)]))["rate"], 1),
        "bcrypt": round(
            _json_out(_pinned(args.server_cpu, [*py, "bcrypt", str(BCRYPT_COST), str(seconds * 2)]))["rate"],
            2,
        ),
    }
    node_all = _json_out(
        _pinned(args.server_cpu, ["node", str(PEER_DIR / "ceilings.mjs"), str(seconds), str(BCRYPT_COST)])
    )
    node = {"sign": round(node_all[args.alg], 1), "bcrypt": round(node_all["bcrypt"], 2)}
    python["other_alg_sign"] = round(
        _json_out(
            _pinned(args.server_cpu, [*py, "sign", "ES256" if args.alg == "RS256" else "RS256", str(seconds)])
        )["rate"],
        1,
    )
    node["other_alg_sign"] = round(node_all["ES256" if args.alg == "RS256" else "RS256"], 1)
    hello_s = QUICK_SECONDS if args.quick else 5.0
    port = free_port()
    python["hello"] = _hello_rps([*py, "hello", str(port), args.server], port, args, hello_s)
    port = free_port()
    python["hello_bare"] = _hello_rps([*py, "hello", str(port), args.server, "bare"], port, args, hello_s)
    if args.compare_server:
        port = free_port()
        python["hello_compare"] = _hello_rps([*py, "hello", str(port), args.compare_server], port, args,
                                             hello_s)
    port = free_port()
    node["hello"] = _hello_rps(["node", str(PEER_DIR / "hello.mjs"), str(port)], port, args, hello_s)
    return {"python": python, "node": node}


async def measure(
    workload: Workload,
    server: Server,
    prep: Prep,
    budget: Budget,
    args: argparse.Namespace,
    wrk_cpu: str,
    rates: dict[str, float | None],
) -> dict[str, Any]:
    started = time.monotonic()
    try:
        plan = await workload.build(server, prep, budget)
    except NotSupported as exc:
        return {"supported": False, "reason": str(exc)}
    except Exception as exc:  # a broken flow is a result to report, not the end of the run
        return {"supported": True, "failed": f"preparation: {type(exc).__name__}: {exc}"}
    prep_s = time.monotonic() - started
    pids = server.pids()
    procs.reset_peak(pids)
    cpu_before, load = procs.cpu_seconds(pids), os.getloadavg()[0]
    spy = None
    if args.profile and server.flavor == "portico" and len(server.processes) == 1:
        spy_path = budget.workdir / f"profile-{workload.name}-{server.name}.txt"
        spy = (profile.start_pyspy(server.processes[0].pid, budget.duration_s - 0.5, spy_path), spy_path)
    try:
        result = await asyncio.to_thread(
            wrk.run,
            server.paths.base,
            plan.request,
            duration_s=budget.duration_s,
            connections=min(workload.connections or args.connections, args.connections),
            threads=args.threads,
            cpus=wrk_cpu,
        )
    except wrk.WrkError as exc:
        return {"supported": True, "failed": str(exc)}
    cpu = procs.cpu_seconds(pids) - cpu_before
    prep.observed[workload.name] = result.rps
    profiled: dict[str, Any] = {}
    if spy is not None:
        await asyncio.to_thread(spy[0].wait, 60)
        profiled = {"profile": profile.summarize_pyspy(spy[1])} if spy[1].is_file() else {}
    ceiling = report.ceiling(workload.bound, workload.signatures.get(signature_key(server), 0), rates)
    return {
        "supported": True,
        "requests": result.requests,
        "duration_s": round(result.duration_s, 2),
        "rps": round(result.rps, 1),
        "p50_ms": round(result.p50_ms, 2),
        "p90_ms": round(result.p90_ms, 2),
        "p99_ms": round(result.p99_ms, 2),
        "max_ms": round(result.max_ms, 2),
        "errors": result.errors,
        "error_detail": result.error_detail,
        "cpu_s_per_1k": round(cpu / result.requests * 1000, 4) if result.requests else None,
        "cpu_busy": round(cpu / result.duration_s, 2) if result.duration_s else None,
        "peak_rss_mb": round(procs.peak_rss_mb(pids), 1),
        "prepared": plan.prepared,
        "prep_s": round(prep_s, 1),
        "load_average_1m": round(load, 2),
        "signatures_per_request": workload.signatures.get(signature_key(server), 0),
        "ceiling_rps": round(ceiling, 1) if ceiling else None,
        "of_ceiling": round(result.rps / ceiling, 3) if ceiling else None,
        **profiled,
    }


def _versions(servers: list[Server]) -> dict[str, str]:
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False).stdout.strip()  # noqa: S607 - node from PATH, as the peer runs
    found = {"python": platform.python_version(), "node": node, "wrk": wrk.version()}
    for server in servers:
        found["peer" if server.flavor == "peer" else server.name] = server.version()
    return found


def _side(rates: dict[str, dict[str, float | None]], server: Server) -> dict[str, float | None]:
    if server.flavor == "peer":
        return rates["node"]
    python = rates["python"]
    if getattr(server, "variant", False) and "hello_compare" in python:  # the --compare-server variant
        return {**python, "hello": python["hello_compare"], "hello_bare": None}
    return python


async def run_all(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    duration = args.duration or (QUICK_SECONDS if args.quick else FULL_SECONDS)
    rounds = max(1, args.rounds or (1 if args.quick else 3))
    selected = [BY_NAME[name] for name in args.workloads.split(",") if name]
    password = "bench-" + os.urandom(6).hex()
    fixture = Fixture(
        alg=args.alg,
        users=64,
        password=password,
        password_hash=bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_COST)).decode(),
    )
    servers: list[Server] = [PorticoServer(workdir, fixture, [args.server_cpu], storage=args.storage,
                                           server=args.server)]
    if args.compare_server:
        servers.append(PorticoServer(workdir, fixture, [args.server_cpu], storage=args.storage,
                                     server=args.compare_server, variant=True))
    if BINARY.is_file() and not args.no_binary:
        servers.append(PorticoServer(workdir, fixture, [args.server_cpu], binary=True, storage=args.storage,
                                     server=args.server))
    peer = PeerServer(workdir, fixture, [args.server_cpu], persist=args.storage != "memory")
    if args.profile:
        peer.profile_dir = workdir / "peer-profiles"
    servers.append(peer)
    opaque = PeerOpaqueView(peer)
    result: dict[str, Any] = {
        "schema": 1,
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "machine": procs.machine(),
        "versions": _versions(servers),
        "settings": {
            "algorithm": args.alg,
            "bcrypt_cost": BCRYPT_COST,
            "connections": args.connections,
            "wrk_threads": args.threads,
            "duration_s": duration,
            "rounds": rounds,
            "server_cpus": args.server_cpu,
            "wrk_cpus": args.wrk_cpu,
            "portico_storage": args.storage,
            "peer_storage": "journal" if args.storage != "memory" else "memory",
            "server": args.server,
            "compare_server": args.compare_server,
            "users": fixture.users,
            "login_connections": min(LOGIN_CONNECTIONS, args.connections),
            "binary": "measured" if any(getattr(s, "binary", False) for s in servers) else "not built",
        },
        "portico_variants": [s.name for s in servers if s.flavor == "portico"],
    }
    result["ceilings"] = await asyncio.to_thread(measure_ceilings, args)
    budget = Budget(duration, args.connections, workdir)
    round_budget = Budget(duration / rounds, args.connections, workdir)
    preps = {s.name: Prep(s) for s in [*servers, opaque]}
    result["servers"] = {}
    result["workloads"] = {}
    try:
        for server in list(servers):
            try:
                await asyncio.to_thread(server.launch)
            except RuntimeError as exc:
                if not getattr(server, "binary", False):
                    raise
                # A broken build is a finding to report; the package and the peer still get measured.
                server.stop()
                servers.remove(server)
                result["portico_variants"].remove(server.name)
                result["servers"][server.name] = {"failed": str(exc)[-1500:]}
                result["settings"]["binary"] = "built, but did not start"
                continue
            result["servers"][server.name] = {
                "cold_start_ms": round(server.cold_start_ms, 1),
                "first_start_ms": round(server.first_start_ms, 1),
                "idle_rss_mb": round(server.idle_rss_mb, 1),
                "rss_after_ui_mb": round(server.rss_after_ui_mb, 1),
            }
        for workload in selected:
            entry: dict[str, Any] = {
                "title": workload.title,
                "bound": workload.bound,
                "reported_separately": workload.separate,
            }
            measured = [*servers, opaque] if workload.name in TOKEN_FORMAT_WORKLOADS else servers
            runs: dict[str, list[dict[str, Any]]] = {server.name: [] for server in measured}
            for round_ in range(rounds):
                for server in measured:
                    of = f" (round {round_ + 1} of {rounds})" if rounds > 1 else ""
                    print(f"  {workload.name} on {server.name}{of} …", file=sys.stderr, flush=True)
                    runs[server.name].append(await measure(
                        workload,
                        server,
                        preps[server.name],
                        round_budget,
                        args,
                        args.wrk_cpu,
                        _side(result["ceilings"], server),
                    ))
            for server in measured:
                entry[server.name] = report.combine(runs[server.name])
            entry["ratio"] = {
                s.name: report.ratios(entry[s.name], entry["peer"]) for s in servers if s.flavor == "portico"
            }
            entry["round_ratios"] = {
                s.name: report.round_ratios(runs[s.name], runs["peer"])
                for s in servers
                if s.flavor == "portico"
            }
            if opaque.name in entry:
                entry["ratio_opaque"] = {
                    s.name: report.ratios(entry[s.name], entry[opaque.name])
                    for s in servers
                    if s.flavor == "portico"
                }
            result["workloads"][workload.name] = entry
        peer_cold = result["servers"]["peer"]
        for server in servers:
            server_entry = result["servers"][server.name]
            server_entry["ratio_to_peer"] = {
                k: report.ratio(server_entry[k], peer_cold[k]) for k in ("cold_start_ms", "idle_rss_mb")
            }
    finally:
        await preps[opaque.name].aclose()
        for server in servers:
            await preps[server.name].aclose()
            server.stop()
    if peer.profile_dir is not None:
        # The last start's profile covers the whole run: its preparation requests and every workload.
        newest = sorted(peer.profile_dir.glob("*.cpuprofile"), key=lambda path: path.stat().st_mtime)
        if newest:
            result["peer_profile"] = profile.summarize_cpuprofile(newest[-1])
    if args.workers > 1 and not args.profile:
        result["multi_worker"] = await _multi(args, workdir, fixture, budget, selected, result)
    return result


async def _multi(
    args: argparse.Namespace,
    workdir: Path,
    fixture: Fixture,
    budget: Budget,
    selected: list[Workload],
    result: dict[str, Any],
) -> dict[str, Any]:
    """Portico with one worker per core on one database; wrk shares the cores (there is no spare one)."""
    server = PorticoServer(
        workdir, fixture, [str(i) for i in range(args.workers)], workers=args.workers, storage=args.storage,
        server=args.server,
    )
    prep = Prep(server)
    out: dict[str, Any] = {"workers": args.workers, "workloads": {}}
    try:
        await asyncio.to_thread(server.launch)
        out["cold_start_ms"] = round(server.cold_start_ms, 1)
        out["idle_rss_mb"] = round(server.idle_rss_mb, 1)
        rates = dict(result["ceilings"]["python"])
        for workload in selected:
            if workload.name not in MULTI_WORKLOADS:
                continue
            print(f"  {workload.name} on {server.name} …", file=sys.stderr, flush=True)
            record = await measure(
                workload,
                server,
                prep,
                budget,
                args,
                "",
                {k: (v * args.workers if isinstance(v, float) else v) for k, v in rates.items()},
            )
            single = result["workloads"].get(workload.name, {})
            record["vs_single_rps"] = report.ratio(record.get("rps"), single.get("portico", {}).get("rps"))
            record["vs_peer_rps"] = report.ratio(record.get("rps"), single.get("peer", {}).get("rps"))
            out["workloads"][workload.name] = record
    finally:
        await prep.aclose()
        server.stop()
    return out


def problems(result: dict[str, Any]) -> list[str]:
    """What makes a run unusable: a failure, an error, or a server that served nothing."""
    found = []
    groups = [(name, entry) for name, entry in result["workloads"].items()]
    if result.get("multi_worker"):
        groups += [
            (f"{name} ({result['multi_worker']['workers']} workers)", {"portico": record})
            for name, record in result["multi_worker"]["workloads"].items()
        ]
    for name, entry in groups:
        for server, record in entry.items():
            if not isinstance(record, dict) or "supported" not in record or not record["supported"]:
                continue
            if "failed" in record:
                found.append(f"{name} on {server}: {record['failed']}")
            elif record["errors"]:
                found.append(f"{name} on {server}: {record['errors']} errors {record['error_detail']}")
            elif not record["requests"]:
                found.append(f"{name} on {server}: no request answered")
    return found


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    unknown = [name for name in args.workloads.split(",") if name and name not in BY_NAME]
    if unknown:
        print(f"unknown workload(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    try:
        _check_tools()
        if args.profile and profile.pyspy_path() is None:
            raise Missing("missing: py-spy (.venv/bin/pip install py-spy) for --profile")
    except Missing as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 3
    workdir = Path(tempfile.mkdtemp(prefix="portico-bench-"))
    try:
        result = asyncio.run(run_all(args, workdir))
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    out = Path(args.out) if args.out else REPO / "bench" / "results" / ("quick" if args.quick else "")
    json_path, md_path = report.write(result, out)
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    bad = problems(result)
    for line in bad:
        print(f"bench: {line}", file=sys.stderr)
    return 1 if bad else 0
