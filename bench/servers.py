"""The servers under test: Portico (package, binary, several workers) and oidc-provider, on loopback."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import yaml
from joserfc.jwk import ECKey, KeyParameters, RSAKey

from bench import procs

REPO = Path(__file__).resolve().parent.parent
PEER_DIR = REPO / "bench" / "peer"
BINARY = REPO / "dist" / "portico"
READY_TIMEOUT_S = 60.0
BCRYPT_COST = 10


@dataclass(frozen=True)
class Fixture:
    """What both servers are configured with: the same client, users, password hash and algorithm."""

    alg: str
    users: int
    password: str
    password_hash: str
    client_id: str = "bench"
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    redirect_uri: str = "http://127.0.0.1:9/callback"  # never contacted: the code is read off the redirect

    def user(self, i: int) -> tuple[str, str, str]:
        """(user id, email, username) of user i."""
        return f"user-{i:04d}", f"bench{i}@example.com", f"bench{i}"

    def emails(self) -> list[str]:
        return [self.user(i)[1] for i in range(self.users)]


@dataclass(frozen=True)
class Paths:
    """Where one server's endpoints are (Portico's sit under the issuer's /dex path, as Dex's do)."""

    base: str
    discovery: str
    jwks: str
    token: str
    introspect: str
    userinfo: str
    auth: str


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """One server under test: one or more processes started with `taskset`, measured through /proc."""

    name = ""
    flavor = ""  # "portico" or "peer": which login and prompt conventions apply
    opaque = False  # the peer's view with opaque access tokens (bench/variants.py)

    def __init__(self, workdir: Path, fixture: Fixture, cpus: list[str]) -> None:
        self.workdir = workdir
        self.fixture = fixture
        self.cpus = cpus  # one entry per process: the cores it may run on ("0", "0,1")
        self.port = free_port()
        self.processes: list[subprocess.Popen[bytes]] = []
        self.paths = self._paths()
        self.cold_start_ms = 0.0
        self.first_start_ms = 0.0
        self.idle_rss_mb = 0.0
        self.rss_after_ui_mb = 0.0
        self._ready_base = 0

    def _paths(self) -> Paths:
        raise NotImplementedError

    def commands(self) -> list[list[str]]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Write config files (before the first start)."""

    def version(self) -> str:
        return ""

    def pids(self) -> list[int]:
        found: list[int] = []
        for process in self.processes:
            found.extend(procs.tree(process.pid))
        return found

    def start(self) -> float:
        """Start every process, one after the other; return ms from the first spawn to the first answered
        discovery request."""
        log = (self.workdir / f"{self.name}.log").open("ab")
        self._ready_base = self._ready_count()
        started = time.monotonic()
        for i, command in enumerate(self.commands()):
            pinned = ["taskset", "-c", self.cpus[i % len(self.cpus)], *command] if self.cpus[0] else command
            self.processes.append(
                subprocess.Popen(  # noqa: S603 - the harness's own fixed commands
                    pinned,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.workdir,
                    env=self._env(),
                    start_new_session=True,
                )
            )
            self._wait_ready(started, i)
        log.close()
        return (time.monotonic() - started) * 1000

    def _env(self) -> dict[str, str]:
        return dict(os.environ)

    def _ready_count(self) -> int:
        """How many processes said they are ready (a second worker on a shared port cannot be told
        apart by a request, so its log line is what counts)."""
        return self.log_tail(10**7).count(" ready in ")

    def _wait_ready(self, started: float, index: int) -> None:
        url = self.paths.base + self.paths.discovery
        while True:
            if index and self._ready_count() > self._ready_base + index:
                return
            for process in self.processes:
                if process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {process.returncode}: {self.log_tail()}")
            try:
                if not index and httpx.get(url, timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() - started > READY_TIMEOUT_S:
                raise RuntimeError(
                    f"{self.name} did not answer {url} in {READY_TIMEOUT_S:.0f} s: {self.log_tail()}"
                )
            time.sleep(0.005)

    def launch(self) -> None:
        """Start for the benchmark: a first start, a restart on the same state (the cold start figure:
        the first start of Portico also creates its database and signing key), then the idle RSS, and
        the RSS once a first login page was shown (Portico loads its web framework for that page)."""
        self.prepare()
        self.first_start_ms = self.start()
        self.stop()
        self.cold_start_ms = self.start()
        httpx.get(self.paths.base + self.paths.discovery, timeout=5.0)
        time.sleep(1.0)
        self.idle_rss_mb = procs.rss_mb(self.pids())
        self._login_page()
        time.sleep(1.0)
        self.rss_after_ui_mb = procs.rss_mb(self.pids())

    def _login_page(self) -> None:
        """GET /auth as a browser would, following redirects to the login form (no login)."""
        query = urlencode({"client_id": self.fixture.client_id, "redirect_uri": self.fixture.redirect_uri,
                           "response_type": "code", "scope": "openid email", "state": "rss"})
        page = httpx.get(f"{self.paths.base}{self.paths.auth}?{query}", timeout=30.0, follow_redirects=True)
        if page.status_code != 200 or "password" not in page.text:
            raise RuntimeError(f"{self.name}: no login page at {page.url} ({page.status_code}): "
                               f"{page.text[:300]}")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes = []

    def log_tail(self, size: int = 2000) -> str:
        try:
            return (self.workdir / f"{self.name}.log").read_text(errors="replace")[-size:]
        except OSError:
            return ""


class PorticoServer(Server):
    """Portico from the installed package (`python -m appliance serve`), the built binary, or several
    package processes sharing one port (SO_REUSEPORT, through bench/reuseport.py) and one database."""

    flavor = "portico"

    def __init__(
        self,
        workdir: Path,
        fixture: Fixture,
        cpus: list[str],
        *,
        binary: bool = False,
        workers: int = 1,
        storage: str = "sqlite3",
        server: str = "granian",
        variant: bool = False,
    ) -> None:
        self.binary = binary
        self.workers = workers
        self.storage = storage
        self.server = server  # web.server
        self.variant = variant
        super().__init__(workdir, fixture, cpus)
        self.name = "portico-binary" if binary else ("portico" if workers == 1 else f"portico-{workers}w")
        if variant:  # a second package variant beside "portico", named after its server
            self.name = f"portico-{server}"

    def _paths(self) -> Paths:
        return Paths(
            base=f"http://127.0.0.1:{self.port}",
            discovery="/dex/.well-known/openid-configuration",
            jwks="/dex/keys",
            token="/dex/token",  # noqa: S106 - an endpoint path, not a secret
            introspect="/dex/token/introspect",
            userinfo="/dex/userinfo",
            auth="/dex/auth",
        )

    @property
    def config_path(self) -> Path:
        return self.workdir / f"{self.name}.yaml"

    @property
    def state_dir(self) -> Path:
        return self.workdir / f"{self.name}-state"

    def prepare(self) -> None:
        f = self.fixture
        storage: dict[str, Any] = (
            {"type": "memory"}
            if self.storage == "memory"
            else {"type": "sqlite3", "config": {"file": str(self.state_dir / f"{self.name}.db")}}
        )
        # The database in a folder of its own, as the packaged layout has it (/etc/portico and
        # /var/lib/portico): the config watcher watches the config file's folder, and a database written
        # beside it would wake the watcher's thread on every commit (~3 % of a core under this load).
        self.state_dir.mkdir(exist_ok=True)
        config = {
            "issuer": f"http://127.0.0.1:{self.port}/dex",
            "storage": storage,
            "web": {"http": f"127.0.0.1:{self.port}", "server": self.server},
            "signer": {"type": "local", "config": {"keysRotationPeriod": "6h", "algorithm": f.alg}},
            "oauth2": {
                "skipApprovalScreen": True,
                "grantTypes": ["authorization_code", "refresh_token", "client_credentials"],
            },
            "enablePasswordDB": True,
            "staticPasswords": [
                {
                    "email": email,
                    "hash": f.password_hash,
                    "username": username,
                    "userID": user_id,
                    "groups": ["bench"],
                }
                for user_id, email, username in (f.user(i) for i in range(f.users))
            ],
            # The benchmark measures capacity from one address: per-address rate limits would measure
            # themselves (node-oidc-provider has none by default either).
            "security": {"rateLimits": {"enabled": False}},
            "staticClients": [
                {
                    "id": f.client_id,
                    "name": "Benchmark client",
                    "secret": f.client_secret,
                    "redirectURIs": [f.redirect_uri],
                }
            ],
        }
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def commands(self) -> list[list[str]]:
        if self.binary:
            base = [str(BINARY)]
        elif self.workers > 1:
            base = [sys.executable, str(REPO / "bench" / "reuseport.py")]
        else:
            base = [sys.executable, "-m", "appliance"]
        return [
            [
                *base,
                "serve",
                str(self.config_path),
                "--admin-socket",
                str(self.workdir / f"{self.name}-{i}.sock"),
            ]
            for i in range(self.workers)
        ]

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO)
        return env

    def version(self) -> str:
        command = [str(BINARY)] if self.binary else [sys.executable, "-m", "appliance"]
        try:
            out = subprocess.run(  # noqa: S603 - the harness's own fixed commands
                [*command, "version"], capture_output=True, text=True, timeout=60, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return out.stdout.strip().splitlines()[0] if out.stdout.strip() else ""


def _peer_key(alg: str) -> dict[str, Any]:
    params: KeyParameters = {"kid": "bench-1", "use": "sig", "alg": alg}
    if alg == "ES256":
        return ECKey.generate_key("P-256", parameters=params, private=True).as_dict(private=True)
    return RSAKey.generate_key(2048, parameters=params, private=True).as_dict(private=True)


class PeerServer(Server):
    """node-oidc-provider (bench/peer/peer.mjs), keys made here. Its store is in memory; with `persist`
    (when Portico's is a SQLite file) every change is also appended to a journal file on disk."""

    name = "peer"
    flavor = "peer"

    def __init__(self, workdir: Path, fixture: Fixture, cpus: list[str], *, persist: bool = True) -> None:
        self.persist = persist
        super().__init__(workdir, fixture, cpus)

    def _paths(self) -> Paths:
        return Paths(
            base=f"http://127.0.0.1:{self.port}",
            discovery="/.well-known/openid-configuration",
            jwks="/jwks",
            token="/token",  # noqa: S106 - an endpoint path, not a secret
            introspect="/token/introspection",
            userinfo="/me",
            auth="/auth",
        )

    @property
    def settings_path(self) -> Path:
        return self.workdir / "peer.json"

    def prepare(self) -> None:
        f = self.fixture
        settings = {
            "issuer": f"http://127.0.0.1:{self.port}",
            "port": self.port,
            "alg": f.alg,
            "jwks": {"keys": [_peer_key(f.alg)]},
            "cookieKeys": [secrets.token_urlsafe(32)],
            "dummyHash": f.password_hash,
            "journal": str(self.workdir / "peer-journal.jsonl") if self.persist else "",
            "clients": [
                {
                    "client_id": f.client_id,
                    "client_secret": f.client_secret,
                    "redirect_uris": [f.redirect_uri],
                    "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
                    "response_types": ["code"],
                    "token_endpoint_auth_method": "client_secret_basic",
                    "id_token_signed_response_alg": f.alg,
                }
            ],
            "accounts": {
                user_id: {"email": email, "username": username, "hash": f.password_hash, "groups": ["bench"]}
                for user_id, email, username in (f.user(i) for i in range(f.users))
            },
        }
        self.settings_path.write_text(json.dumps(settings))
        self.settings_path.chmod(0o600)

    profile_dir: Path | None = None  # set: run under `node --cpu-prof`, one profile per process start

    def commands(self) -> list[list[str]]:
        flags = ["--cpu-prof", f"--cpu-prof-dir={self.profile_dir}"] if self.profile_dir else []
        return [["node", *flags, str(PEER_DIR / "peer.mjs"), str(self.settings_path)]]

    def version(self) -> str:
        try:
            package = json.loads((PEER_DIR / "node_modules" / "oidc-provider" / "package.json").read_text())
        except (OSError, ValueError):
            return ""
        return f"oidc-provider {package.get('version', '?')}"
