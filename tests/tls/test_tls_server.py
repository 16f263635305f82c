"""The HTTPS listener of a real `portico serve`: TLS versions per config, HSTS on HTTPS only, and the
certificate replaced on disk while the server runs (open connections keep theirs, new ones get the new
one, a broken pair is refused and reported while the old one keeps serving)."""

from __future__ import annotations

import ssl
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from adminutil import wait_for
from tls_support import (
    KeptAlive,
    client_context,
    handshake,
    install,
    make_pair,
    secret_volume,
    start_https,
    stray_key,
)

from appliance.web.tls import DEFAULT_HSTS

pytestmark = pytest.mark.timeout(180)


def _refused(port: int, context: ssl.SSLContext) -> bool:
    try:
        handshake(port, context)
    except (ssl.SSLError, ConnectionResetError):
        return True
    return False


@pytest.mark.parametrize(("web", "accepted", "refused"), [
    ({}, ("1.2", "1.3"), ()),  # Dex's defaults: 1.2 at least, up to 1.3
    ({"tlsMinVersion": "1.3"}, ("1.3",), ("1.2",)),
    ({"tlsMaxVersion": "1.2", "server": "hypercorn"}, ("1.2",), ("1.3",)),
    ({"tlsMinVersion": "1.2", "tlsMaxVersion": "1.2"}, ("1.2",), ("1.3",)),
], ids=["default", "min-1.3", "max-1.2-hypercorn", "only-1.2"])
def test_versions_follow_the_config(tmp_path: Path, web: dict[str, Any], accepted: tuple[str, ...],
                                    refused: tuple[str, ...]) -> None:
    pair = make_pair(tmp_path / "a")
    running = start_https(tmp_path, pair, web=web)
    try:
        for version in accepted:  # a client speaking only this version
            negotiated, fingerprint = handshake(running.https_port, client_context(pair, minimum=version,
                                                                                   maximum=version))
            assert negotiated == f"TLSv{version}" and fingerprint == pair.fingerprint
        for version in refused:
            assert _refused(running.https_port, client_context(pair, minimum=version, maximum=version))
        # The refused ones were refused at the handshake: the server still answers the others.
        answer = httpx.get(f"{running.https}/healthz", verify=client_context(pair), timeout=10)
        assert answer.status_code == 200
    finally:
        running.server.stop()


def test_hsts_on_https_answers_only(tmp_path: Path) -> None:
    pair = make_pair(tmp_path / "a")
    running = start_https(tmp_path, pair)
    try:
        with httpx.Client(verify=client_context(pair), timeout=10) as https:
            for path in ("/healthz", "/.well-known/openid-configuration", "/keys", "/auth", "/nowhere"):
                answer = https.get(f"{running.https}{path}")
                assert answer.headers.get_list("strict-transport-security") == [DEFAULT_HSTS], path
        for path in ("/healthz", "/.well-known/openid-configuration", "/keys", "/auth", "/nowhere"):
            answer = httpx.get(f"{running.server.issuer}{path}", timeout=10)  # the web.http listener
            assert "strict-transport-security" not in answer.headers, path
    finally:
        running.server.stop()


def test_web_headers_override_hsts(tmp_path: Path) -> None:
    pair = make_pair(tmp_path / "a")
    own = "max-age=63072000; includeSubDomains"
    running = start_https(tmp_path, pair, web={"headers": {"Strict-Transport-Security": own}})
    try:
        with httpx.Client(verify=client_context(pair), timeout=10) as https:
            for path in ("/healthz", "/keys", "/auth"):
                answer = https.get(f"{running.https}{path}")
                assert answer.headers.get_list("strict-transport-security") == [own], path
    finally:
        running.server.stop()


def _reports(running: Any, result: str) -> list[dict[str, Any]]:
    return [r for r in running.server.history() if r["trigger"] == "watch" and r["result"] == result]


def _rejection(running: Any, words: str) -> dict[str, Any] | None:
    """The last rejected reload whose first problem says `words` (an in-place write can be seen half
    done first: an empty file is a rejection of its own)."""
    found = [r for r in _reports(running, "rejected") if words in r["problems"][0]["message"]]
    return found[-1] if found else None


def test_certificate_rotation_keeps_open_connections(tmp_path: Path) -> None:
    first, second = make_pair(tmp_path / "a"), make_pair(tmp_path / "b")
    running = start_https(tmp_path, first)
    both = client_context(first, second)
    kept = KeptAlive(running.https_port, both)
    try:
        status, _, _ = kept.get("/dex/healthz")
        assert status == 200 and kept.fingerprint == first.fingerprint
        install(second, running.cert, running.key)
        wait_for(lambda: handshake(running.https_port, both)[1] == second.fingerprint, timeout=30,
                 what="new connections to get the new certificate")
        # The connection made before the swap goes on, with the certificate it was made with.
        for _ in range(3):
            status, headers, body = kept.get("/dex/healthz")
            assert status == 200 and body and headers["strict-transport-security"] == DEFAULT_HSTS
        assert kept.fingerprint == first.fingerprint
        # A client that trusts only the old certificate's CA can no longer connect.
        assert _refused(running.https_port, client_context(first))
        applied = wait_for(lambda: _reports(running, "applied"), what="the applied reload in the history")
        assert any(change.startswith("TLS certificate for new connections")
                   for change in applied[-1]["changes"]), applied[-1]
        assert applied[-1]["restart_required"] == []
        assert "TLS certificate now served to new connections" in running.server.stderr()
    finally:
        kept.close()
        running.server.stop()


def test_a_kubernetes_secret_swap_is_served(tmp_path: Path) -> None:
    first, second = make_pair(tmp_path / "a"), make_pair(tmp_path / "b")
    volume = tmp_path / "secret"
    running = start_https(tmp_path, None, files=secret_volume(volume, first, "2024_01_01_a"))
    context = client_context(first, second)
    try:
        assert handshake(running.https_port, context)[1] == first.fingerprint
        secret_volume(volume, second, "2024_01_01_b")  # the kubelet's ..data swap
        wait_for(lambda: handshake(running.https_port, context)[1] == second.fingerprint, timeout=30,
                 what="the swapped Secret to be served")
    finally:
        running.server.stop()


def test_broken_pairs_are_refused_and_the_old_certificate_keeps_serving(tmp_path: Path) -> None:
    first, second = make_pair(tmp_path / "a"), make_pair(tmp_path / "b")
    running = start_https(tmp_path, first)
    context = client_context(first, second)
    key_line = next(i for i, line in enumerate(running.server.config_path.read_text().splitlines(), 1)
                    if line.strip().startswith("tlsKey:"))
    try:
        # A key that does not belong to the certificate.
        stray_key(running.key)
        rejected = wait_for(lambda: _rejection(running, "does not match the certificate"), timeout=30,
                            what="a rejected reload")
        problem = rejected["problems"][0]
        assert (problem["path"], problem["line"]) == ("web.tlsKey", key_line), problem
        assert "TLS certificate or key cannot be used" in rejected["message"]
        assert handshake(running.https_port, context)[1] == first.fingerprint
        assert httpx.get(f"{running.https}/healthz", verify=context, timeout=10).status_code == 200
        stderr = running.server.stderr()
        assert "configuration reload (watch) rejected" in stderr
        assert f":{key_line}: error: web.tlsKey: " in stderr
        # An unreadable (missing) key.
        running.key.unlink()
        rejected = wait_for(lambda: _rejection(running, "cannot read"), timeout=30, what="a second rejection")
        assert rejected["problems"][0]["path"] == "web.tlsKey"
        assert handshake(running.https_port, context)[1] == first.fingerprint
        # A good pair again: served, and the reload says so.
        install(second, running.cert, running.key)
        wait_for(lambda: handshake(running.https_port, context)[1] == second.fingerprint, timeout=30,
                 what="the good pair to be served")
        wait_for(lambda: running.server.admin().get("/v1/metrics")["portico_config_last_reload_successful"],
                 what="the last reload to count as successful")
    finally:
        running.server.stop()


def test_a_bad_pair_at_start_is_a_clear_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    from adminutil import REPO_ROOT

    pair = make_pair(tmp_path / "a")
    stray_key(pair.files.key)
    config = {"issuer": "https://127.0.0.1:1/dex", "storage": {"type": "memory"},
              "web": {"https": "127.0.0.1:0", "tlsCert": str(pair.files.cert), "tlsKey": str(pair.files.key)}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "appliance", "serve", str(path), "--no-watch"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 1, done.stderr
    assert "cannot set up the TLS listener https://127.0.0.1:0: web.tlsKey: " in done.stderr
    assert "does not match the certificate" in done.stderr
    assert time.monotonic() - started < 60

