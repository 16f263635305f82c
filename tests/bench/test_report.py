"""The bench's rounds combined into one record per server (bench/report.py), on made-up measurements."""

from __future__ import annotations

from typing import Any

import pytest

from bench import report


def _round(rps: float, seconds: float, cpu_per_1k: float, p99: float, **extra: Any) -> dict[str, Any]:
    requests = int(rps * seconds)
    return {
        "supported": True, "requests": requests, "duration_s": seconds, "rps": rps, "p50_ms": p99 / 4,
        "p90_ms": p99 / 2, "p99_ms": p99, "max_ms": p99 * 2, "errors": 0, "error_detail": {},
        "cpu_s_per_1k": cpu_per_1k, "cpu_busy": 1.0, "peak_rss_mb": 70.0 + rps / 1000, "prepared": requests,
        "prep_s": 1.0, "load_average_1m": 1.0, "signatures_per_request": 2, "ceiling_rps": 1000.0,
        "of_ceiling": rps / 1000, **extra,
    }


def test_rounds_are_summed_and_their_percentiles_take_the_median() -> None:
    rounds = [_round(800, 4, 1.25, 90), _round(1000, 4, 1.0, 60), _round(900, 2, 1.1, 120)]
    whole = report.combine(rounds)
    assert whole["requests"] == 3200 + 4000 + 1800
    assert whole["rps"] == pytest.approx(9000 / 10)
    assert whole["cpu_s_per_1k"] == pytest.approx((3.2 * 1.25 + 4 * 1.0 + 1.8 * 1.1) / 9.0, abs=1e-4)
    assert whole["p99_ms"] == 90 and whole["max_ms"] == 240
    assert whole["peak_rss_mb"] == 71.0
    assert whole["of_ceiling"] == pytest.approx(0.9)
    assert whole["rounds_rps"] == [800, 1000, 900]


def test_a_failed_or_unsupported_round_is_the_result() -> None:
    failed = {"supported": True, "failed": "wrk: connection refused"}
    assert report.combine([_round(800, 4, 1.0, 50), failed]) is failed
    assert report.combine([_round(800, 4, 1.0, 50)])["rps"] == 800


def test_round_ratios_pair_each_round_with_the_peers() -> None:
    mine = [_round(800, 4, 1.0, 50), _round(1100, 4, 1.0, 50)]
    peer = [_round(1000, 4, 1.0, 50), {"supported": False, "reason": "no"}]
    assert report.round_ratios(mine, peer) == [0.8, None]
