"""What HTTPS costs: `python tests/tls/measure_https.py [--old-tree DIR] [--seconds N] [--rounds N]`.

Starts `portico serve` pinned to core 0 and drives it with wrk on core 1 (both needed: wrk, taskset):
- plain: web.http on Granian (the default server);
- https: web.https (Hypercorn on Python's ssl, the only HTTPS path since issue 9);
- with --old-tree DIR (a `git archive` of a commit before it, e.g. 7ad949f): the same https config run
  from that tree, where Granian served HTTPS with rustls (for the comparison in docs/security.md).
For each: GET /dex/keys on 32 keep-alive connections, GET /dex/keys with a new connection (and so a
full handshake) per request on 8 connections, and POST /dex/token client_credentials (one RS256
signature per answer) on 16 keep-alive connections. Prints requests/s per server and workload.
Not a test: numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path[:0] = [str(HERE.parent)]

from fakes.tls import make_tls_files  # noqa: E402

TOKEN_LUA = """
wrk.method = "POST"
wrk.body = "grant_type=client_credentials&scope=openid"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic YXBwOmFwcC1zZWNyZXQ="
"""


def config(port: int, https: bool, folder: Path, new: bool) -> dict[str, object]:
    tls = make_tls_files(folder)
    scheme = "https" if https else "http"
    web: dict[str, object] = {"http": f"127.0.0.1:{port}"}
    if https:
        web = {"https": f"127.0.0.1:{port}", "tlsCert": str(tls.cert), "tlsKey": str(tls.key)}
    made: dict[str, object] = {
        "issuer": f"{scheme}://127.0.0.1:{port}/dex", "storage": {"type": "memory"}, "web": web,
        "oauth2": {"grantTypes": ["authorization_code", "client_credentials"]},
        "staticClients": [{"id": "app", "name": "App", "secret": "app-secret",
                           "redirectURIs": ["http://127.0.0.1:5555/cb"]}],
    }
    if new:  # the rate limits of issue 9 would answer most of a benchmark with 429
        made["security"] = {"rateLimits": {"enabled": False}}
    return made


def wrk(url: str, connections: int, seconds: int, *extra: str) -> float:
    command = ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", *extra, url]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        print(f"    ({errors.group(1)} non-2xx answers)", file=sys.stderr)
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(found.group(1)) if found else 0.0


def measure(label: str, tree: Path, https: bool, seconds: int, work: Path, port: int) -> dict[str, float]:
    folder = work / label
    folder.mkdir()
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config(port, https, folder, tree == REPO)))
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = ["taskset", "-c", "0", sys.executable, "-m", "appliance", "serve", str(path), "--no-watch",
               "--admin-socket", str(folder / "admin.sock")]
    with (folder / "err.log").open("wb") as err:
        proc = subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=err)
    base = f"{'https' if https else 'http'}://127.0.0.1:{port}/dex"
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{base}/healthz", verify=False, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        lua = folder / "token.lua"
        lua.write_text(TOKEN_LUA)
        return {
            "keys keep-alive": wrk(f"{base}/keys", 32, seconds),
            "keys new connection": wrk(f"{base}/keys", 8, seconds, "-H", "Connection: close"),
            "token keep-alive": wrk(f"{base}/token", 16, seconds, "-s", str(lua)),
        }
    finally:
        proc.terminate()
        proc.wait(20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-tree", type=Path)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    runs = [("plain (Granian)", REPO, False), ("https (Hypercorn, Python ssl)", REPO, True)]
    if args.old_tree:
        runs.append(("https (old: Granian, rustls)", args.old_tree.resolve(), True))
    results: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as work:
        port = 18600
        for round_ in range(args.rounds):
            for label, tree, https in runs:
                port += 1
                name = f"{round_}-{label.split()[0]}-{port}"
                figures = measure(name, tree, https, args.seconds, Path(work), port)
                results.setdefault(label, []).append(figures)
    for label, rounds in results.items():
        print(label)
        for workload in rounds[0]:
            values = [r[workload] for r in rounds]
            print(f"  {workload:22s} best {max(values):8.0f}/s   all {', '.join(f'{v:.0f}' for v in values)}")


if __name__ == "__main__":
    main()
