"""Smoke test of the single binary: builds dist/portico (or reuses it) and runs a copy as an operator would.

The copy runs from a temporary folder with PATH=/usr/bin:/bin and no PYTHON* variables, so nothing of
this checkout or its virtualenv can stand in for what the binary should hold. Slow: the build takes
about 2-3 minutes on 2 cores (nothing when packaging/build.sh finds its inputs unchanged); the tests
here are moved to the front of the run (tests/binary/conftest.py) and kept on one xdist worker.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import bcrypt
import httpx
import pytest
from dist_support import (
    BUILD_SH,
    BUILD_TIMEOUT_S,
    DIST_BINARY,
    LIBRARIES,
    REDIRECT_URI,
    REPORT,
    ROOT,
    Installed,
    Server,
    auth_params,
    commands,
    dead_port,
    full_config,
    in_ci,
    measure,
    pty_run,
    redeem,
    self_signed_cert_b64,
    source_modules,
    start_server,
    stop_server,
    write_yaml,
)
from e2e.e2e_support import (
    ADMIN_EMAIL,
    CLIENT_ID,
    FormLogin,
    find_form,
    is_approval_page,
)

from appliance import __version__

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900), pytest.mark.xdist_group("dist-binary")]


# ---------------------------------------------------------------- the binary and how it is run


@pytest.fixture(scope="module")
def built() -> Path:
    """dist/portico, built by packaging/build.sh unless its inputs are unchanged since the last build;
    or the file named by $PORTICO_BINARY (a release artifact, an experiment), used as it is."""
    if os.environ.get("PORTICO_BINARY"):
        return Path(os.environ["PORTICO_BINARY"]).resolve()
    started = time.monotonic()
    # The interpreter running the tests builds: test_version compares against its libraries.
    env = {**os.environ, "PY": sys.executable}
    # Its own process group: on a timeout PyInstaller goes too (it holds build.sh's lock).
    proc = subprocess.Popen(["bash", str(BUILD_SH)], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"packaging/build.sh took over {BUILD_TIMEOUT_S} s:\n{(stdout + stderr)[-6000:]}",
                    pytrace=False)
    output = (stdout + stderr)[-6000:]
    if proc.returncode == 3 and not in_ci():
        pytest.skip(f"PyInstaller is not available:\n{output}")
    if proc.returncode != 0:
        pytest.fail(f"packaging/build.sh failed (exit {proc.returncode}):\n{output}", pytrace=False)
    assert DIST_BINARY.is_file() and os.access(DIST_BINARY, os.X_OK)
    print(f"build.sh took {time.monotonic() - started:.0f} s:\n{stdout[-1500:]}")
    return DIST_BINARY


@pytest.fixture(scope="module")
def installed(built: Path, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    workdir = tmp_path_factory.mktemp("bin")
    binary = workdir / "portico"
    shutil.copy2(built, binary)
    env = measure.clean_env(workdir)
    env.update({"HOME": str(workdir), "LANG": "C.UTF-8", "TERM": "xterm-256color"})
    assert not any(k.startswith(("PYTHON", "VIRTUAL_ENV")) for k in env)
    return Installed(binary, workdir, env)


@pytest.fixture(scope="module")
def saml_idp(tmp_path_factory: pytest.TempPathFactory, installed: Installed) -> Iterator[Any]:
    """The real SAML IdP (tests/saml-idp), when node and its package are here; else None.

    Its ACS URL must be known before it starts, so the server's port is chosen here and handed on.
    """
    import samlutil

    port = measure.free_port()
    if shutil.which("node") is None or not samlutil.IDP_BIN.exists():
        yield port, None
        return
    acs = f"http://127.0.0.1:{port}/dex/callback"
    with samlutil.run_saml_idp(tmp_path_factory.mktemp("saml-idp"), acs_url=acs, audience=acs,
                               issuer="urn:portico-dist:idp") as idp:
        yield port, idp


@pytest.fixture(scope="module")
def server(installed: Installed, saml_idp: Any) -> Iterator[Server]:
    port, idp = saml_idp
    if idp is None:
        saml = {"ssoURL": f"http://127.0.0.1:{dead_port()}/sso", "caData": self_signed_cert_b64(),
                "redirectURI": f"http://127.0.0.1:{port}/dex/callback", "usernameAttr": "uid",
                "emailAttr": "email"}
    else:
        saml = {"ssoURL": idp.sso_url, "caData": base64.b64encode(idp.keys.cert_pem).decode(),
                "redirectURI": f"http://127.0.0.1:{port}/dex/callback", "ssoIssuer": idp.issuer,
                "usernameAttr": "uid", "emailAttr": "email", "groupsAttr": "groups"}
    # The IdP was told this port; if it is taken the retry picks another and the SAML login test fails,
    # which says so (acs_url mismatch) rather than passing by luck.
    running = start_server(installed, lambda p: full_config(p, installed.workdir, saml), "full",
                           first_port=port)
    yield running
    code = stop_server(running)
    assert code == 0, f"serve exited {code} after SIGTERM:\n{running.tail()}"


# ---------------------------------------------------------------- the tests


def test_version_names_commit_and_libraries(installed: Installed) -> None:
    proc = installed.run("version")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"portico {__version__}"
    assert re.fullmatch(r"commit [0-9a-f]{40}(-dirty)?", lines[1]), lines[1]
    for name in LIBRARIES:
        assert f"{name} {metadata.version(name)}" in lines, f"{name} missing from:\n{proc.stdout}"
    assert "not installed" not in proc.stdout


def test_help_lists_the_commands(installed: Installed) -> None:
    assert {"serve", "config", "version", "hash-password"} <= commands(installed)


def test_hash_password_from_stdin(installed: Installed) -> None:
    proc = installed.run("hash-password", stdin="correct horse\n")
    assert proc.returncode == 0, proc.stderr
    hashed = proc.stdout.strip()
    assert hashed.startswith("$2b$10$") and bcrypt.checkpw(b"correct horse", hashed.encode())


def test_config_check_good_and_bad(installed: Installed) -> None:
    good = write_yaml(installed.workdir / "good.yaml", full_config(5556, installed.workdir, {
        "ssoURL": "http://127.0.0.1:1/sso", "caData": self_signed_cert_b64(),
        "redirectURI": "http://127.0.0.1:5556/dex/callback", "usernameAttr": "uid", "emailAttr": "email"}))
    proc = installed.run("config", "check", str(good))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("0 errors"), proc.stdout

    bad = installed.workdir / "bad.yaml"
    bad.write_text(good.read_text().replace("skipApprovalScreen:", "skipAprovalScreen:"))
    line = next(i for i, text in enumerate(bad.read_text().splitlines(), 1) if "skipAprovalScreen" in text)
    proc = installed.run("config", "check", str(bad))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"{bad}:{line}: error: oauth2.skipAprovalScreen: unknown key" in proc.stderr, proc.stderr


def test_cold_start_keys_and_sigterm(installed: Installed) -> None:
    """A fresh start (new SQLite file, new signing key) answers discovery; SIGTERM ends it with 0."""
    runs = [measure.cold_start_once(installed.binary, installed.workdir) for _ in range(3)]
    wall = sorted(r.wall_s for r in runs)[1]
    cpu = sorted(r.cpu_s for r in runs)[1]
    size = installed.binary.stat().st_size
    if not os.environ.get("PORTICO_BINARY"):
        measure.update_report(REPORT, {"smoke_test": {
            "size_bytes": size, "size_mib": round(size / measure.MIB, 2),
            "cold_start_s": round(wall, 3), "cold_start_cpu_s": round(cpu, 3),
            "load_average": round(os.getloadavg()[0], 2),
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}})
    print(f"dist/portico: {size / measure.MIB:.1f} MiB, cold start {wall:.3f} s (CPU {cpu:.3f} s, "
          f"load {os.getloadavg()[0]:.1f})")


def test_discovery_and_keys(server: Server) -> None:
    discovery = httpx.get(f"{server.issuer}/.well-known/openid-configuration").json()
    assert discovery["issuer"] == server.issuer
    keys = httpx.get(discovery["jwks_uri"])
    assert keys.status_code == 200
    assert keys.json()["keys"] and all(k["kty"] == "RSA" for k in keys.json()["keys"])


def test_password_login_code_flow_with_pkce(server: Server) -> None:
    params, verifier = auth_params("local")
    login = FormLogin(server.issuer, REDIRECT_URI)
    try:
        result = login.run(params)
    finally:
        login.close()
    assert result.approval_page, "the approval page should have been shown (skipApprovalScreen: false)"
    claims = redeem(server, result.callback_url, params, verifier)
    assert claims["email"] == ADMIN_EMAIL and claims["groups"] == ["admins", "developers"]


def test_saml_login_verifies_the_signature(server: Server, saml_idp: Any) -> None:
    """signxml's XSD schemas must be inside the binary, or verifying the IdP's response fails."""
    _, idp = saml_idp
    if idp is None:
        reason = "node or tests/saml-idp/node_modules is missing (make node)"
        if in_ci():
            pytest.fail(f"required component missing under CI=true: {reason}", pytrace=False)
        pytest.skip(reason)
    import samlutil

    params, verifier = auth_params("saml")
    login = FormLogin(server.issuer, REDIRECT_URI)
    try:
        page = login.follow_to_page(login.authorize(params))
        not_wired = "/auth/saml: Bad request: Requested resource does not exist"
        if page.status_code == 400 and not_wired in server.tail():
            # SAML logins are wired (oidc/login.py, web/routes_saml.py): a 400 here is a regression.
            pytest.fail("the binary does not start SAML logins (/auth/saml answers 400)", pytrace=False)
        assert page.status_code == 200, f"{page.url}: {page.text[-1500:]}\n{server.tail()}"
        action, fields = samlutil.parse_forms(page.text)[0]
        answer = idp.login(action, fields["SAMLRequest"], fields["RelayState"])
        assert answer.acs_url == f"{server.issuer}/callback"
        response = login.http.post(answer.acs_url, data={"SAMLResponse": answer.saml_response,
                                                         "RelayState": answer.relay_state})
        response = login.follow_to_page(response)
        if response.status_code == 200 and is_approval_page(response.text):
            response = login.follow_to_page(login.submit_approval(response))
        location = response.headers.get("location", "")
        assert location.startswith(REDIRECT_URI), (
            f"{response.status_code}: {response.text[:800]}\n{server.tail()}")
    finally:
        login.close()
    claims = redeem(server, location, params, verifier)
    assert claims["email"] == "jane@example.com"


def test_ldap_login_against_a_dead_server_is_a_clean_error(server: Server) -> None:
    """The ldap connector loads inside the binary (ldap3, pyasn1) and reports the outage, not a crash."""
    params, _ = auth_params("ldap")
    login = FormLogin(server.issuer, REDIRECT_URI)
    try:
        page = login.login_page(params)
        form = find_form(page.text, "password")
        data = {k: v for k, v in form.inputs.items() if form.input_types.get(k) == "hidden"}
        data.update({"login": "jane", "password": "secret"})
        answer = login.http.post(urljoin(str(page.url), form.action or str(page.url)), data=data)
    finally:
        login.close()
    assert answer.status_code in (200, 401, 500, 502, 503), answer.status_code
    log = server.tail()
    assert "ModuleNotFoundError" not in log and "No module named" not in log, log


def test_sighup_reaches_the_server_through_the_bootloader(server: Server) -> None:
    """The one-file binary's PID is PyInstaller's bootloader (systemd's $MAINPID for ExecReload): it must
    hand SIGHUP to the Python process, which reloads and keeps serving."""
    before = server.log.read_text(errors="replace").count("configuration reload (sighup)")
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while server.log.read_text(errors="replace").count("configuration reload (sighup)") == before:
        assert time.monotonic() < deadline, f"no reload logged after SIGHUP:\n{server.tail()}"
        assert server.proc.poll() is None, f"SIGHUP ended the server:\n{server.tail()}"
        time.sleep(0.1)
    assert server.proc.poll() is None
    assert httpx.get(f"{server.issuer}/.well-known/openid-configuration").status_code == 200


def test_admin_cli_lists_the_clients(installed: Installed, server: Server) -> None:
    proc = installed.run("clients", "list", "--socket", str(server.socket))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert CLIENT_ID in proc.stdout


def test_tui_opens_on_a_terminal_and_quits(installed: Installed, server: Server) -> None:
    if "tui" not in commands(installed):
        if in_ci():
            pytest.fail("the binary has no `portico tui` under CI=true", pytrace=False)
        pytest.skip("this build has no `portico tui` yet")
    code, text = pty_run(installed, ["tui", "--socket", str(server.socket)],
                          expect=f"127.0.0.1:{server.port}", keys=b"q")
    assert code == 0, f"portico tui exited {code}:\n{text[-3000:]}"
    assert "Traceback" not in text, text[-3000:]


def test_archive_holds_every_module_and_data_file(built: Path) -> None:
    """Read the binary's own archive: every appliance module (the connector registry imports them by
    name, which PyInstaller cannot see), the packaged pages and assets, signxml's XSD schemas, and the
    dist-info that `portico version` reads."""
    if os.environ.get("PORTICO_BINARY"):
        pytest.skip("$PORTICO_BINARY: not built from this tree")
    from PyInstaller.archive.readers import CArchiveReader  # type: ignore[import-untyped]

    archive = CArchiveReader(str(built))
    files = set(archive.toc)
    modules = set(archive.open_embedded_archive("PYZ.pyz").toc)
    # A file created while the build ran need not be inside: only those older than its start count.
    started = built.stat().st_mtime - json.loads(REPORT.read_text())["build_seconds"] - 5
    package = ROOT / "appliance"
    missing = sorted(source_modules(package, started) - modules)
    assert not missing, f"modules missing from the binary: {missing}"
    assert "appliance._build" in modules
    data = {p.relative_to(ROOT).as_posix() for p in package.rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and p.name != "py.typed"
            and "__pycache__" not in p.parts and p.stat().st_mtime < started}
    assert not sorted(data - files), f"data files missing: {sorted(data - files)}"
    import signxml

    schemas = {f"signxml/schemas/{p.name}" for p in (Path(signxml.__file__).parent / "schemas").glob("*.xsd")}
    assert schemas and schemas <= files, f"signxml schemas missing: {sorted(schemas - files)}"
    for name in LIBRARIES:
        dist = metadata.distribution(name)
        assert any(f.startswith(f"{dist.metadata['Name'].lower()}-") and ".dist-info/" in f
                   for f in (f.lower() for f in files)), f"no dist-info for {name}"


def test_report_holds_the_build_figures(built: Path) -> None:
    """dist/build-report.json: what build.sh measured (size, cold start) for this very file."""
    if os.environ.get("PORTICO_BINARY"):
        pytest.skip("$PORTICO_BINARY: not built here, so no build report")
    report = json.loads(REPORT.read_text())
    assert report["size_bytes"] == built.stat().st_size
    assert report["mode"] == "onefile" and report["cold_start_s"] > 0
    assert report["commit"] != "unknown"
