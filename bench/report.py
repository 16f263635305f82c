"""The results: ratios Portico / peer, ceilings beside each workload, latest.json and the Markdown table."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

# The figures compared for each workload; for all of them but rps, lower is better.
FIGURES = ("rps", "p50_ms", "p99_ms", "cpu_s_per_1k", "peak_rss_mb")
PERCENTILES = ("p50_ms", "p90_ms", "p99_ms")


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b:
        return None
    return round(a / b, 3)


def ratios(portico: dict[str, Any], peer: dict[str, Any]) -> dict[str, float | None] | None:
    if not (portico.get("supported") and peer.get("supported")) or "rps" not in portico or "rps" not in peer:
        return None
    return {name: ratio(portico.get(name), peer.get(name)) for name in FIGURES}


def combine(records: list[dict[str, Any]]) -> dict[str, Any]:
    """One server's rounds of one workload as one record: requests, CPU and errors summed, req/s over the
    total time, latency percentiles the median of the rounds' (max the largest), peak RSS the highest;
    `rounds_rps` keeps each round's req/s. A round that was not supported or failed is the result."""
    if len(records) == 1:
        return records[0]
    for record in records:
        if not record.get("supported") or "failed" in record:
            return record
    first = records[0]
    requests = sum(int(r["requests"]) for r in records)
    duration = sum(float(r["duration_s"]) for r in records)
    cpu = sum(float(r["cpu_s_per_1k"] or 0) * int(r["requests"]) / 1000 for r in records)
    rps = requests / duration if duration else 0.0
    ceiling_rps = first.get("ceiling_rps")
    return {
        **first,
        "requests": requests,
        "duration_s": round(duration, 2),
        "rps": round(rps, 1),
        **{k: round(statistics.median(float(r[k]) for r in records), 2) for k in PERCENTILES},
        "max_ms": max(float(r["max_ms"]) for r in records),
        "errors": sum(int(r["errors"]) for r in records),
        "error_detail": next((r["error_detail"] for r in records if r.get("error_detail")), {}),
        "cpu_s_per_1k": round(cpu / requests * 1000, 4) if requests else None,
        "cpu_busy": round(cpu / duration, 2) if duration else None,
        "peak_rss_mb": max(float(r["peak_rss_mb"]) for r in records),
        "prepared": sum(int(r["prepared"]) for r in records),
        "prep_s": round(sum(float(r["prep_s"]) for r in records), 1),
        "load_average_1m": max(float(r["load_average_1m"]) for r in records),
        "of_ceiling": round(rps / ceiling_rps, 3) if ceiling_rps else None,
        "rounds_rps": [r["rps"] for r in records],
    }


def round_ratios(mine: list[dict[str, Any]], peer: list[dict[str, Any]]) -> list[float | None]:
    """req/s of each round against the peer's in the same round (measured next to each other)."""
    return [ratio(a.get("rps"), b.get("rps")) if a.get("supported") and b.get("supported") else None
            for a, b in zip(mine, peer, strict=True)]


def ceiling(bound: str, signatures: int, rates: dict[str, float | None]) -> float | None:
    """Requests a second one core could serve if only the bounding cost were paid."""
    if bound == "signing":
        rate = rates.get("sign")
        return rate / signatures if rate and signatures else None
    if bound == "bcrypt":
        return rates.get("bcrypt")
    if bound == "fastpath":
        return rates.get("hello_bare") or rates.get("hello")
    return rates.get("hello")


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _cell(record: dict[str, Any], name: str, digits: int = 0) -> str:
    if not record.get("supported", False):
        return "not supported"
    if "failed" in record:
        return "failed"
    return _fmt(record.get(name), digits)


def markdown(result: dict[str, Any]) -> str:
    s = result["settings"]
    m = result["machine"]
    v = result["versions"]
    c = result["ceilings"]
    py, node = c["python"], c["node"]
    lines = [
        f"Run {result['started']} ({result['mode']}), {m['cpu']}, {m['cores']} cores, "
        f"{m['memory_gb']} GB, kernel {m['kernel']}; load average at start "
        f"{m['load_average_at_start']} (a shared machine).",
        f"{v.get('portico', '')}, Python {v.get('python', '')}, {v.get('peer', '')} on Node "
        f"{v.get('node', '')}, {v.get('wrk', '')}. {s['algorithm']}, bcrypt cost {s['bcrypt_cost']}, "
        f"{s['connections']} connections, {s['wrk_threads']} wrk thread(s), {s['duration_s']} s per "
        f"workload and server{_rounds(s)}; servers pinned to core {s['server_cpus']}, wrk to core "
        f"{s['wrk_cpus']}. Portico "
        f"storage: {s['portico_storage']}; peer: "
        + ("in memory, every change appended to a journal file (bench/peer's adapter)"
           if s.get("peer_storage") == "journal" else "in memory (bench/peer's Map adapter)")
        + f". Password logins use {s.get('login_connections', s['connections'])} connections.",
        "",
        f"Ceilings on one core: signing {s['algorithm']} Python (cryptography) {_fmt(py.get('sign'))}/s, "
        f"node {_fmt(node.get('sign'))}/s; bcrypt Python {_fmt(py.get('bcrypt'), 1)}/s, "
        f"node {_fmt(node.get('bcrypt'), 1)}/s; do-nothing route: Quart on {s.get('server', 'hypercorn')} "
        f"{_fmt(py.get('hello'))}/s"
        + (f", Quart on {s['compare_server']} {_fmt(py.get('hello_compare'))}/s"
           if s.get("compare_server") else "")
        + (f", bare ASGI on {s.get('server')} {_fmt(py.get('hello_bare'))}/s" if py.get("hello_bare") else "")
        + f", node:http {_fmt(node.get('hello'))}/s.",
        "",
    ]
    for variant in result["portico_variants"]:
        lines += [
            f"### {variant} / peer",
            "",
            "| workload | req/s | p50 ms | p99 ms | CPU s / 1k req | peak RSS MB | errors "
            "| ceiling req/s | of ceiling |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for name, entry in result["workloads"].items():
            p, q = entry.get(variant, {}), entry.get("peer", {})
            r = entry.get("ratio", {}).get(variant) or {}

            def both(
                figure: str, digits: int, p: dict[str, Any] = p, q: dict[str, Any] = q, r: dict[str, Any] = r
            ) -> str:
                if (
                    not p.get("supported", False)
                    or not q.get("supported", False)
                    or "failed" in p
                    or "failed" in q
                ):
                    return f"{_cell(p, figure, digits)} / {_cell(q, figure, digits)}"
                mine, theirs = _fmt(p.get(figure), digits), _fmt(q.get(figure), digits)
                return f"{mine} / {theirs} (**{_fmt(r.get(figure), 2)}**)"

            lines.append(
                f"| {name} | {both('rps', 0)} | {both('p50_ms', 1)} | {both('p99_ms', 1)} | "
                f"{both('cpu_s_per_1k', 3)} | {both('peak_rss_mb', 0)} | "
                f"{_cell(p, 'errors')} / {_cell(q, 'errors')} | "
                f"{_fmt(p.get('ceiling_rps'))} / {_fmt(q.get('ceiling_rps'))} | "
                f"{_fmt(p.get('of_ceiling'), 2)} / {_fmt(q.get('of_ceiling'), 2)} |"
            )
        lines.append("")
    lines += _round_lines(result)
    lines += _opaque_lines(result)
    lines += [
        "| server | cold start ms (restart) | first start ms (new state) | idle RSS MB "
        "| RSS MB after a first login page |",
        "|---|---|---|---|---|",
    ]
    for name, server in result["servers"].items():
        if "failed" in server:
            lines.append(f"| {name} | did not start | - | - | - |")
            continue
        lines.append(
            f"| {name} | {_fmt(server['cold_start_ms'])} | {_fmt(server['first_start_ms'])} | "
            f"{_fmt(server['idle_rss_mb'], 1)} | {_fmt(server.get('rss_after_ui_mb'), 1)} |"
        )
    multi = result.get("multi_worker")
    if multi:
        lines += [
            "",
            f"### Portico, {multi['workers']} workers (one per core, SO_REUSEPORT), wrk unpinned",
            "",
            "| workload | req/s | p50 ms | p99 ms | CPU s / 1k req | errors | vs one process | vs peer |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, record in multi["workloads"].items():
            lines.append(
                f"| {name} | {_cell(record, 'rps')} | {_cell(record, 'p50_ms', 1)} | "
                f"{_cell(record, 'p99_ms', 1)} | "
                f"{_cell(record, 'cpu_s_per_1k', 3)} | {_cell(record, 'errors')} | "
                f"{_fmt(record.get('vs_single_rps'), 2)} | {_fmt(record.get('vs_peer_rps'), 2)} |"
            )
    lines += [
        "",
        "Cells are Portico / peer (**ratio Portico / peer**); for req/s higher is better, for the "
        'others lower. "of ceiling" is req/s divided by the ceiling of what bounds the workload '
        "(signatures per request, bcrypt, or the do-nothing route: bare ASGI for what Portico's fast "
        "path answers without signing, i.e. discovery, JWKS, introspection and userinfo).",
    ]
    return "\n".join(lines) + "\n"


def _rounds(settings: dict[str, Any]) -> str:
    rounds = int(settings.get("rounds", 1))
    return f" in {rounds} rounds (the servers take turns)" if rounds > 1 else ""


def _round_lines(result: dict[str, Any]) -> list[str]:
    """req/s ratios round by round, where there were several rounds."""
    variants = result["portico_variants"]
    rows = []
    for name, entry in result["workloads"].items():
        per = entry.get("round_ratios") or {}
        if not any(len(per.get(v) or []) > 1 for v in variants):
            continue
        cells = []
        for variant in variants:
            values = [x for x in per.get(variant) or [] if x is not None]
            cells.append(", ".join(_fmt(x, 2) for x in values)
                         + (f" (median **{_fmt(statistics.median(values), 2)}**)" if values else "-"))
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    if not rows:
        return []
    return [
        "### req/s ratio round by round",
        "",
        "Each round measures every server in turn for a share of the duration; a round's ratio compares "
        "measurements a few seconds apart.",
        "",
        "| workload | " + " | ".join(variants) + " |",
        "|---|" + "---|" * len(variants),
        *rows,
        "",
    ]


def _opaque_lines(result: dict[str, Any]) -> list[str]:
    """The token workloads once more against the peer's default, opaque access tokens."""
    rows = [
        (name, entry) for name, entry in result["workloads"].items() if entry.get("peer-opaque") is not None
    ]
    if not rows:
        return []
    lines = [
        "### Against the peer's default: opaque access tokens (one signature per grant)",
        "",
        "The tables above measure the peer with codes and refresh tokens granted for a resource, so that it "
        "issues a JWT access token beside the ID token, as Portico (and Dex) always do: two signatures per "
        "grant on both sides. Out of the box oidc-provider issues an opaque access token instead (one "
        "signature, one more stored row); the same workloads against that:",
        "",
        "| workload | server | req/s | CPU s / 1k req | errors | req/s ratio | CPU ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, entry in rows:
        theirs = entry["peer-opaque"]
        lines.append(
            f"| {name} | peer-opaque | {_cell(theirs, 'rps')} | {_cell(theirs, 'cpu_s_per_1k', 3)} | "
            f"{_cell(theirs, 'errors')} | | |"
        )
        for variant in result["portico_variants"]:
            r = (entry.get("ratio_opaque") or {}).get(variant) or {}
            mine = entry.get(variant, {})
            lines.append(
                f"| {name} | {variant} | {_cell(mine, 'rps')} | {_cell(mine, 'cpu_s_per_1k', 3)} | "
                f"{_cell(mine, 'errors')} | **{_fmt(r.get('rps'), 2)}** | "
                f"**{_fmt(r.get('cpu_s_per_1k'), 2)}** |"
            )
    return [*lines, ""]


def write(result: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "latest.json", out_dir / "latest.md"
    json_path.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
    md_path.write_text(markdown(result))
    return json_path, md_path
