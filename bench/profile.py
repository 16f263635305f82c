"""Profiles taken under load (`python -m bench --profile`): py-spy for Portico, `node --cpu-prof` for the
peer, each reduced to where the CPU went (signing, database, HTTP server, framework, own code…)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

# First match walking from the innermost frame outwards names the sample's category.
_PY_CATEGORIES = (
    # Portico signs and verifies in appliance/keys/keyset.py, straight on `cryptography`.
    ("signing (keys/cryptography)", ("joserfc", "cryptography", "appliance/keys/keyset.py")),
    ("bcrypt", ("bcrypt",)),
    ("database (aiosqlite/sqlite3)", ("aiosqlite", "sqlite3")),
    ("HTTP server (Granian, Hypercorn/h11)", ("granian", "hypercorn", "h11", "h2")),
    ("framework (Quart/Werkzeug)", ("quart", "werkzeug", "flask", "blinker", "jinja2", "markupsafe")),
    ("Portico (appliance)", ("appliance",)),
    ("event loop, threads", ("asyncio", "uvloop", "selectors", "threading", "concurrent", "queue")),
)
_NODE_CATEGORIES = (
    ("signing (jose, node:crypto)", ("node_modules/jose", "internal/crypto")),
    ("bcrypt", ("node_modules/bcrypt",)),
    ("store (bench adapter)", ("peer.mjs",)),
    ("oidc-provider", ("node_modules/oidc-provider",)),
    ("framework (Koa and middleware)", ("node_modules/koa", "node_modules/@koa", "node_modules/cookies",
                                        "node_modules/keygrip", "node_modules/raw-body")),
    ("HTTP server (node:http)", ("node:_http", "node:net", "node:internal/http", "node:internal/stream",
                                 "node:stream", "node:internal/streams", "node:events")),
)


def pyspy_path() -> str | None:
    venv = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "py-spy"
    return str(venv) if venv.is_file() else shutil.which("py-spy")


def start_pyspy(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    path = pyspy_path()
    if path is None:
        raise RuntimeError("py-spy is not installed (.venv/bin/pip install py-spy)")
    command = [path, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))), "--rate", "250",
               "--format", "raw", "--nonblocking", "--output", str(out)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603 - fixed command


def _category(frames: list[str], table: tuple[tuple[str, tuple[str, ...]], ...]) -> str:
    for frame in reversed(frames):
        for name, needles in table:
            if any(needle in frame for needle in needles):
                return name
    return "other"


def _shares(counter: Counter[str], total: int, limit: int = 0) -> dict[str, float]:
    items = counter.most_common(limit or None)
    return {key: round(count / total, 3) for key, count in items} if total else {}


def summarize_pyspy(path: Path) -> dict[str, Any]:
    """Collapsed stacks ("frame;frame;... count", outermost first) to category and leaf-function shares."""
    categories: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        categories[_category(frames, _PY_CATEGORIES)] += count
        leaves[frames[-1]] += count
    return {"samples": total, "categories": _shares(categories, total),
            "top_self": _shares(leaves, total, 12)}


def summarize_cpuprofile(path: Path) -> dict[str, Any]:
    """A V8 .cpuprofile to the same shares (idle time left out, as py-spy leaves out idle threads)."""
    data = json.loads(path.read_text())
    nodes = {node["id"]: node for node in data["nodes"]}
    parent: dict[int, int] = {}
    for node in data["nodes"]:
        for child in node.get("children", []):
            parent[child] = node["id"]

    def frames(node_id: int) -> list[str]:
        out: list[str] = []
        current: int | None = node_id
        while current is not None:
            frame = nodes[current]["callFrame"]
            name = frame.get("functionName") or "(anonymous)"
            out.append(f"{name} ({frame.get('url', '')}:{frame.get('lineNumber', 0)})")
            current = parent.get(current)
        return list(reversed(out))

    categories: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for node_id, node in nodes.items():
        hits = int(node.get("hitCount", 0))
        name = node["callFrame"].get("functionName", "")
        if not hits or name == "(idle)":
            continue
        stack = frames(node_id)
        total += hits
        category = ("garbage collection" if name == "(garbage collector)"
                    else _category(stack, _NODE_CATEGORIES))
        if category == "other" and name == "(program)":
            category = "V8/native (program)"
        categories[category] += hits
        leaves[stack[-1]] += hits
    return {"samples": total, "categories": _shares(categories, total),
            "top_self": _shares(leaves, total, 12)}
