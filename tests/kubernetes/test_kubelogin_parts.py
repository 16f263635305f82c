"""The credential plugin's parts on their own: the cache (mode, owner, lock, atomic write), the
ExecCredential, scopes and freshness, the plugin process on a cache hit, and ID-token validation against
an issuer whose tokens the test signs itself (to make the bad ones Portico would never issue)."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OctKey, RSAKey
from kube_support import REPO_ROOT

from appliance.clock import SystemClock
from appliance.kubelogin.cache import TokenCache, cache_key, default_cache_dir
from appliance.kubelogin.cli import add_arguments, is_fresh, parse_scopes
from appliance.kubelogin.execcred import exec_credential, requested_api_version
from appliance.kubelogin.provider import LoginError, Provider, Settings, Tokens

ISSUER_PATH = "/dex"
CLIENT = "kubectl"


def _settings(issuer: str = "https://idp.example/dex", client: str = CLIENT) -> Settings:
    return Settings(issuer=issuer, client_id=client, scopes=("openid", "email"))


def _tokens(exp_in: int = 3600, lifetime: int = 3600) -> Tokens:
    now = int(time.time())
    return Tokens(id_token="eyJhbGciOiJSUzI1NiJ9.e30.c2ln", refresh_token="refresh-1", expiry=now + exp_in,
                  issued_at=now + exp_in - lifetime)


# ---------------------------------------------------------------- cache


def test_cache_is_private_and_round_trips(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "portico"
    cache = TokenCache(directory, _settings())
    assert cache.load() is None
    tokens = _tokens()
    old_umask = os.umask(0)  # even with a permissive umask the file is 0600 and the directory 0700
    try:
        cache.store(tokens)
    finally:
        os.umask(old_umask)
    assert cache.path.stat().st_mode & 0o777 == 0o600
    assert directory.stat().st_mode & 0o777 == 0o700
    assert cache.load() == tokens
    assert [p.name for p in directory.iterdir()] == [cache.path.name], "no temporary file is left behind"


def test_cache_keys_apart_issuer_client_and_scopes(tmp_path: Path) -> None:
    base = _settings()
    others = [_settings(issuer="https://other.example/dex"), _settings(client="other"),
              Settings(issuer=base.issuer, client_id=CLIENT, scopes=("openid", "groups"))]
    assert len({cache_key(s) for s in [base, *others]}) == 4
    reordered = Settings(issuer=base.issuer, client_id=CLIENT, scopes=("email", "openid"))
    assert cache_key(reordered) == cache_key(base)
    TokenCache(tmp_path, base).store(_tokens())
    assert TokenCache(tmp_path, others[0]).load() is None


def test_cache_refuses_a_file_others_can_read(tmp_path: Path) -> None:
    warnings = io.StringIO()
    cache = TokenCache(tmp_path, _settings(), warn=warnings)
    cache.store(_tokens())
    cache.path.chmod(0o644)
    assert cache.load() is None
    assert "mode 0600" in warnings.getvalue()
    cache.store(_tokens())  # a new write restores the mode
    assert cache.path.stat().st_mode & 0o777 == 0o600 and cache.load() is not None


def test_cache_does_not_follow_a_symlink(tmp_path: Path) -> None:
    warnings = io.StringIO()
    cache = TokenCache(tmp_path / "c", _settings(), warn=warnings)
    TokenCache(tmp_path, _settings()).store(_tokens())  # a valid entry, reached only through the link
    (tmp_path / "c").mkdir(mode=0o700)
    os.symlink(tmp_path / cache.path.name, cache.path)
    assert cache.load() is None
    assert "ignoring the token cache" in warnings.getvalue()


def test_cache_ignores_garbage(tmp_path: Path) -> None:
    cache = TokenCache(tmp_path, _settings())
    cache.store(_tokens())
    for body in ("not json", "[]", json.dumps({"issuer": _settings().issuer, "client_id": CLIENT})):
        cache.path.write_text(body)
        assert cache.load() is None


def test_lock_serialises_two_holders(tmp_path: Path) -> None:
    """Two kubectl calls at once must not both start a login: the second waits for the first."""
    first, second = TokenCache(tmp_path, _settings()), TokenCache(tmp_path, _settings())
    order: list[str] = []
    entered = threading.Event()

    def hold() -> None:
        with first.locked():
            entered.set()
            time.sleep(0.3)
            order.append("first done")

    thread = threading.Thread(target=hold)
    thread.start()
    entered.wait(5)
    with second.locked():
        order.append("second in")
    thread.join(5)
    assert order == ["first done", "second in"]


def test_default_cache_dir() -> None:
    assert default_cache_dir({"XDG_CACHE_HOME": "/x/cache", "HOME": "/h"}) == Path("/x/cache/portico")
    assert default_cache_dir({"XDG_CACHE_HOME": "relative", "HOME": "/h"}) == Path("/h/.kube/cache/portico")
    assert default_cache_dir({"HOME": "/h"}) == Path("/h/.kube/cache/portico")


# ---------------------------------------------------------------- ExecCredential, scopes, freshness


def test_exec_credential_and_requested_version() -> None:
    cred = exec_credential("tok", 1767225600)
    assert cred == {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                    "status": {"token": "tok", "expirationTimestamp": "2026-01-01T00:00:00Z"}}
    beta = json.dumps({"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential",
                       "spec": {"interactive": False}})
    assert requested_api_version({"KUBERNETES_EXEC_INFO": beta}) == "client.authentication.k8s.io/v1beta1"
    assert requested_api_version({}) == "client.authentication.k8s.io/v1"
    assert requested_api_version({"KUBERNETES_EXEC_INFO": "{"}) == "client.authentication.k8s.io/v1"


def test_scopes_and_freshness() -> None:
    assert parse_scopes("email,groups offline_access") == ("openid", "email", "groups", "offline_access")
    assert parse_scopes("openid openid") == ("openid",)
    now = int(time.time())
    assert is_fresh(_tokens(exp_in=60), now)
    assert not is_fresh(_tokens(exp_in=9), now), "10 s before exp a long-lived token is renewed"
    assert is_fresh(_tokens(exp_in=5, lifetime=8), now), "a short one keeps a quarter of its life"
    assert not is_fresh(_tokens(exp_in=2, lifetime=8), now)


def _plugin(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "KUBERNETES_EXEC"))}
    full_env["PYTHONPATH"] = str(REPO_ROOT)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "appliance.kubelogin", *args], env=full_env,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)


def test_plugin_serves_a_fresh_cached_token_without_the_network(tmp_path: Path) -> None:
    issuer = "http://127.0.0.1:9/dex"  # discard port: nothing answers there
    settings = Settings(issuer=issuer, client_id=CLIENT, scopes=parse_scopes("email"))
    TokenCache(tmp_path, settings).store(_tokens())
    args = ["--issuer", issuer, "--client-id", CLIENT, "--scopes", "email", "--cache-dir", str(tmp_path)]
    done = _plugin(args)
    assert done.returncode == 0, done.stderr
    cred = json.loads(done.stdout)
    assert cred["apiVersion"] == "client.authentication.k8s.io/v1" and cred["kind"] == "ExecCredential"
    assert cred["status"]["token"] == _tokens().id_token
    beta = json.dumps({"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential"})
    done = _plugin(args, {"KUBERNETES_EXEC_INFO": beta})
    assert json.loads(done.stdout)["apiVersion"] == "client.authentication.k8s.io/v1beta1"


def test_plugin_fails_cleanly_when_the_issuer_is_unreachable(tmp_path: Path) -> None:
    issuer = "http://127.0.0.1:9/dex"
    settings = Settings(issuer=issuer, client_id=CLIENT, scopes=parse_scopes("email"))
    TokenCache(tmp_path, settings).store(_tokens(exp_in=-100))
    done = _plugin(["--issuer", issuer, "--client-id", CLIENT, "--scopes", "email", "--cache-dir",
                    str(tmp_path), "--client-secret", "s3cr3t-value"])
    assert done.returncode == 1
    assert done.stdout == "", "nothing on stdout that kubectl could take for a credential"
    assert "cannot reach the discovery document" in done.stderr
    assert "s3cr3t-value" not in done.stderr and "refresh-1" not in done.stderr


# ---------------------------------------------------------------- ID-token validation


class FakeIssuer:
    """An issuer that serves discovery and a JWKS and whose tokens the test signs, good and bad."""

    def __init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig"})
        self.jwks: dict[str, Any] = dict(KeySet([self.key]).as_dict(private=False))
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer = outer.issuer
                docs = {
                    f"{ISSUER_PATH}/.well-known/openid-configuration": {
                        "issuer": issuer, "authorization_endpoint": f"{issuer}/auth",
                        "token_endpoint": f"{issuer}/token", "jwks_uri": f"{issuer}/keys",
                        "id_token_signing_alg_values_supported": ["RS256", "HS256"]},
                    f"{ISSUER_PATH}/keys": outer.jwks,
                }
                body = json.dumps(docs.get(self.path, {})).encode()
                self.send_response(200 if self.path in docs else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}{ISSUER_PATH}"

    def claims(self, **changes: Any) -> dict[str, Any]:
        now = int(time.time())
        base = {"iss": self.issuer, "sub": "user-1", "aud": CLIENT, "iat": now, "exp": now + 600,
                "nonce": "n-1"}
        base.update(changes)
        return {k: v for k, v in base.items() if v is not None}

    def sign(self, claims: dict[str, Any], key: Any = None, alg: str = "RS256") -> str:
        return jwt.encode({"alg": alg, "kid": "k1"}, claims, key or self.key)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_issuer() -> Iterator[FakeIssuer]:
    issuer = FakeIssuer()
    yield issuer
    issuer.stop()


def test_id_token_validation(fake_issuer: FakeIssuer) -> None:
    with httpx.Client(timeout=5) as http:
        provider = Provider(_settings(issuer=fake_issuer.issuer), http, SystemClock())
        good = fake_issuer.sign(fake_issuer.claims())
        assert provider.verify_id_token(good, "n-1")["sub"] == "user-1"
        assert provider.verify_id_token(good, None)["sub"] == "user-1", "refreshes carry no new nonce"
        several = fake_issuer.claims(aud=[CLIENT, "other"], azp=CLIENT)
        assert provider.verify_id_token(fake_issuer.sign(several), None)["azp"] == CLIENT

        other_key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
        bad = {
            "signed by another key": fake_issuer.sign(fake_issuer.claims(), key=other_key),
            "another issuer": fake_issuer.sign(fake_issuer.claims(iss="https://evil.example/dex")),
            "another audience": fake_issuer.sign(fake_issuer.claims(aud="someone-else")),
            "several audiences, azp not us": fake_issuer.sign(fake_issuer.claims(aud=[CLIENT, "x"], azp="x")),
            "expired": fake_issuer.sign(fake_issuer.claims(exp=int(time.time()) - 3600)),
            "no exp": fake_issuer.sign(fake_issuer.claims(exp=None)),
            "wrong nonce": fake_issuer.sign(fake_issuer.claims(nonce="n-2")),
            "HS256 (a shared-secret signature)": fake_issuer.sign(
                fake_issuer.claims(), key=OctKey.generate_key(256), alg="HS256"),
            "ES256 (not offered by discovery)": fake_issuer.sign(
                fake_issuer.claims(), key=ECKey.generate_key("P-256"), alg="ES256"),
            "not a JWT": "not.a.jwt",
        }
        for reason, token in bad.items():
            with pytest.raises(LoginError):
                provider.verify_id_token(token, "n-1")
                pytest.fail(f"accepted an ID token with {reason}")


def test_discovery_must_name_the_issuer(fake_issuer: FakeIssuer) -> None:
    with httpx.Client(timeout=5) as http:
        provider = Provider(_settings(issuer=fake_issuer.issuer + "/"), http, SystemClock())
        with pytest.raises(LoginError, match="names the issuer"):
            provider.endpoints()


def test_options_fit_a_portico_subcommand() -> None:
    """How `portico kubectl-login` is wired: the same options on a subparser, then run(args)."""
    parser = argparse.ArgumentParser(prog="portico")
    sub = parser.add_subparsers(dest="command")
    add_arguments(sub.add_parser("kubectl-login"))
    args = parser.parse_args(["kubectl-login", "--issuer=https://idp.example/dex", "--client-id", "k",
                              "--grant", "device", "--scopes", "groups,email", "--redirect-port", "8000"])
    assert (args.command, args.issuer, args.client_id, args.grant) == (
        "kubectl-login", "https://idp.example/dex", "k", "device")
    assert parse_scopes(args.scopes) == ("openid", "groups", "email") and args.redirect_port == 8000
    assert args.client_secret is None and args.cache_dir is None and not args.open_browser
    with pytest.raises(SystemExit):
        parser.parse_args(["kubectl-login", "--client-id", "k"])  # --issuer is required
    with pytest.raises(SystemExit):
        parser.parse_args(["kubectl-login", "--issuer=x", "--client-id=k", "--grant=password"])


def test_portico_kubectl_login_subcommand(tmp_path: Path) -> None:
    """The documented command, `portico kubectl-login`, runs this plugin (serving a cached token here)."""
    issuer = "http://127.0.0.1:9/dex"
    settings = Settings(issuer=issuer, client_id=CLIENT, scopes=parse_scopes(""))
    TokenCache(tmp_path, settings).store(_tokens())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "KUBERNETES_EXEC"))}
    env["PYTHONPATH"] = str(REPO_ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "appliance", "kubectl-login", "--issuer", issuer, "--client-id", CLIENT,
         "--scopes", "", "--cache-dir", str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)
    assert done.returncode == 0, (
        "`portico kubectl-login` is not wired into appliance/cli/main.py yet (add_arguments + run from "
        f"appliance.kubelogin.cli): {done.stderr}")
    assert json.loads(done.stdout)["status"]["token"] == _tokens().id_token
