"""The benchmark harness cannot rot: bench-quick on a subset, ~2 s per workload, against both servers.

Speeds are not asserted (the machine is shared); the shape of bench/results' JSON is, along with zero
errors and that both Portico and node-oidc-provider answered every workload they support."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SUBSET = ["discovery", "jwks", "client_credentials", "refresh_token", "authorization_code", "userinfo"]
# Being implemented while this harness was written: a 404 / unsupported_grant_type is recorded, not failed.
MAY_BE_MISSING = {"client_credentials", "introspection"}
FIGURES = ("requests", "duration_s", "rps", "p50_ms", "p99_ms", "errors", "cpu_s_per_1k", "peak_rss_mb")

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def _require_tools() -> None:
    missing = [tool for tool in ("wrk", "node", "taskset") if shutil.which(tool) is None]
    if not (REPO / "bench" / "peer" / "node_modules" / "oidc-provider").is_dir():
        missing.append("bench/peer/node_modules (npm ci in bench/peer)")
    if missing:
        reason = "the benchmark needs: " + ", ".join(missing)
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


@pytest.fixture(scope="module")
def run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any], Path]:
    _require_tools()
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        # 16 connections: the refresh pool needs one login (a bcrypt check) per connection.
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--duration",
            "2",
            "--rounds",
            "2",
            "--connections",
            "16",
            "--workers",
            "2",
            "--no-binary",
            "--workloads",
            ",".join(SUBSET),
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=850,
        check=False,
    )
    path = out / "latest.json"
    assert path.is_file(), f"no results (exit {done.returncode}): {done.stderr[-3000:]}"
    return done, json.loads(path.read_text()), out


def test_run_succeeds_and_writes_both_files(
    run: tuple[subprocess.CompletedProcess[str], dict[str, Any], Path],
) -> None:
    done, result, out = run
    assert done.returncode == 0, done.stderr[-3000:]
    table = (out / "latest.md").read_text()
    assert "| workload | req/s |" in table and "| discovery |" in table
    assert result["schema"] == 1 and result["mode"] == "quick"
    assert set(result["workloads"]) == set(SUBSET)


def test_settings_and_ceilings_are_stated(
    run: tuple[subprocess.CompletedProcess[str], dict[str, Any], Path],
) -> None:
    _, result, _ = run
    settings = result["settings"]
    assert settings["algorithm"] == "RS256" and settings["bcrypt_cost"] == 10
    assert settings["connections"] == 16 and settings["duration_s"] == 2
    assert result["machine"]["cores"] >= 1 and result["versions"]["peer"].startswith("oidc-provider ")
    for side in ("python", "node"):
        for name in ("sign", "bcrypt", "hello"):
            assert result["ceilings"][side][name] > 0, (side, name)


def test_both_servers_started(run: tuple[subprocess.CompletedProcess[str], dict[str, Any], Path]) -> None:
    _, result, _ = run
    for name in ("portico", "peer"):
        server = result["servers"][name]
        assert server["cold_start_ms"] > 0 and server["idle_rss_mb"] > 5, server
    assert result["servers"]["portico"]["ratio_to_peer"]["idle_rss_mb"] > 0


def _check_figures(record: dict[str, Any], where: str) -> None:
    assert "failed" not in record, f"{where}: {record.get('failed')}"
    for figure in FIGURES:
        assert record[figure] is not None, f"{where}: {figure} missing"
    assert record["requests"] > 0, f"{where}: no request answered"
    assert record["errors"] == 0, f"{where}: {record['error_detail']}"


def test_every_workload_answered_without_errors(
    run: tuple[subprocess.CompletedProcess[str], dict[str, Any], Path],
) -> None:
    _, result, _ = run
    for name, entry in result["workloads"].items():
        for server in ("portico", "peer"):
            record = entry[server]
            if not record["supported"]:
                assert server == "portico" and name in MAY_BE_MISSING, f"{name} on {server}: {record}"
                assert record["reason"]
                continue
            _check_figures(record, f"{name} on {server}")
        ratio = entry["ratio"]["portico"]
        if entry["portico"]["supported"]:
            assert ratio["rps"] == pytest.approx(entry["portico"]["rps"] / entry["peer"]["rps"], rel=0.01)
            # Two rounds, the servers taking turns: each round's ratio, and the whole from both.
            rounds = [entry[server]["rounds_rps"] for server in ("portico", "peer")]
            assert all(len(values) == 2 for values in rounds), rounds
            assert entry["round_ratios"]["portico"] == pytest.approx(
                [mine / theirs for mine, theirs in zip(*rounds, strict=True)], rel=0.01)
            record = entry["portico"]
            # (each figure rounded to 0.1 on its own, so the whole may pass an equal pair by a hair)
            assert min(rounds[0]) * 0.99 <= record["rps"] <= max(rounds[0]) * 1.01
        else:
            assert ratio is None


def test_one_worker_per_core_round(
    run: tuple[subprocess.CompletedProcess[str], dict[str, Any], Path],
) -> None:
    _, result, _ = run
    multi = result["multi_worker"]
    assert multi["workers"] == 2
    assert "discovery" in multi["workloads"]
    for name, record in multi["workloads"].items():
        if record["supported"]:
            _check_figures(record, f"{name} with 2 workers")
            assert record["vs_single_rps"] > 0


def test_token_workloads_against_both_peer_token_formats(
    run: tuple[subprocess.CompletedProcess[str], dict[str, Any], Path],
) -> None:
    # The probes checked the format: a JWT access token from the peer ("peer", two signatures per grant,
    # as Portico) and an opaque one from its default ("peer-opaque", one signature).
    _, result, out = run
    for name in ("refresh_token", "authorization_code"):
        entry = result["workloads"][name]
        _check_figures(entry["peer-opaque"], f"{name} on peer-opaque")
        assert entry["peer"]["signatures_per_request"] == 2
        assert entry["peer-opaque"]["signatures_per_request"] == 1
        assert entry["ratio_opaque"]["portico"]["rps"] == pytest.approx(
            entry["portico"]["rps"] / entry["peer-opaque"]["rps"], rel=0.01
        )
    for name in ("discovery", "userinfo"):
        assert "peer-opaque" not in result["workloads"][name]
    assert "opaque access tokens (one signature per grant)" in (out / "latest.md").read_text()
