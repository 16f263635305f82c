"""A real SAML 2.0 IdP for tests (the npm `saml-idp` in tests/saml-idp) and tools to forge responses.

`SamlIdp` runs `saml-idp` as a child process with a key pair made here, drives its own login form
over HTTP (as a browser would, without the JavaScript) and hands back the signed SAMLResponse it
would have posted to the ACS URL. The forging helpers re-sign modified responses with any key, so
tamper tests can present a validly signed document from an attacker or from the IdP itself.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml.signer import XMLSigner

IDP_DIR = Path(__file__).resolve().parent / "saml-idp"
IDP_BIN = IDP_DIR / "node_modules" / ".bin" / "saml-idp"
IDP_CONFIG = IDP_DIR / "idp-config.js"
READY_TIMEOUT_S = 20.0

NS = {
    "md": "urn:oasis:names:tc:SAML:2.0:metadata",
    "samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
}
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
# The user of saml-idp/idp-config.js. The IdP keeps every posted field for later logins, so each
# login posts all of them: a test's own values never leak into the next test.
DEFAULT_USER = {
    "userName": "jane-0001",
    "nameIdFormat": PERSISTENT,
    "email": "jane@example.com",
    "uid": "jane",
    "groups": "admins,developers",
    "groupList": "admins;developers",
}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def unavailable(reason: str) -> None:
    """Skip, or fail under CI=true, where a missing real component must never pass silently."""
    if in_ci():
        pytest.fail(f"the SAML IdP is required under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


@dataclass(frozen=True)
class KeyPair:
    """An RSA key and its self-signed certificate, as PEM."""

    key_pem: bytes
    cert_pem: bytes

    @classmethod
    def generate(cls, common_name: str) -> KeyPair:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .sign(key, hashes.SHA256())
        )
        # saml-idp's own check wants the traditional "BEGIN RSA PRIVATE KEY" form.
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        return cls(key_pem, cert.public_bytes(serialization.Encoding.PEM))


class _FormParser(HTMLParser):
    """Collects every <form> of a page: its action and the values a browser would submit."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []
        self._select: str | None = None
        self._select_first: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append((a.get("action", ""), {}))
        elif not self.forms:
            return
        elif tag == "input" and "name" in a:
            if a.get("type") == "radio" and "checked" not in a:
                return
            self.forms[-1][1][a["name"]] = a.get("value", "")
        elif tag == "select" and "name" in a:
            self._select, self._select_first = a["name"], None
        elif tag == "option" and self._select is not None:
            if "selected" in a:
                self.forms[-1][1][self._select] = a.get("value", "")
            self._select_first = self._select_first or ""

    def handle_data(self, data: str) -> None:
        # An <option> without value= submits its text; the first one is the default choice.
        if self._select is not None and self._select_first == "" and data.strip():
            self._select_first = data.strip()
            self.forms[-1][1].setdefault(self._select, self._select_first)

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None


def parse_forms(page: str) -> list[tuple[str, dict[str, str]]]:
    parser = _FormParser()
    parser.feed(page)
    return parser.forms


@dataclass(frozen=True)
class IdpAnswer:
    """What the IdP's auto-submitting page would post to the ACS URL."""

    acs_url: str
    saml_response: str
    relay_state: str

    def xml(self) -> bytes:
        return base64.b64decode(self.saml_response)


@dataclass
class SamlIdp:
    """One running saml-idp process."""

    proc: subprocess.Popen[bytes]
    base_url: str
    issuer: str
    keys: KeyPair
    log_path: Path
    _client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self._client = httpx.Client(base_url=self.base_url, timeout=10.0)

    @property
    def sso_url(self) -> str:
        return f"{self.base_url}/saml/sso"

    def close(self) -> None:
        self._client.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def set_sign_response(self, sign: bool) -> None:
        """Sign the whole Response (and the Assertion), or only the Assertion (the IdP's setting page)."""
        answer = self._client.post("/settings", data={"signResponse": "true" if sign else "false"})
        assert answer.status_code in (200, 302), answer.text[:300]

    def login(
        self, action: str, saml_request: str, relay_state: str, *, sign_response: bool = True,
        **user: str,
    ) -> IdpAnswer:
        """POST the AuthnRequest to the IdP, submit its login form with `user` fields, read its answer."""
        assert action == self.sso_url, f"the connector posts to {action}, the IdP listens at {self.sso_url}"
        self.set_sign_response(sign_response)
        page = self._client.post("/saml/sso", data={"SAMLRequest": saml_request, "RelayState": relay_state})
        assert page.status_code == 200, page.text[:500]
        forms = [f for f in parse_forms(page.text) if f[0] == "/signin"]
        assert forms, "the IdP did not show its login form (did it refuse the AuthnRequest?)"
        fields = dict(forms[0][1])
        assert fields.get("_authnRequest"), "the IdP did not read the AuthnRequest"
        fields.update({**DEFAULT_USER, **user})
        answer = self._client.post("/signin", data=fields)
        assert answer.status_code == 200, answer.text[:500]
        posted = parse_forms(answer.text)
        assert posted and "SAMLResponse" in posted[0][1], answer.text[:500]
        acs_url, values = posted[0]
        return IdpAnswer(acs_url, values["SAMLResponse"], values.get("RelayState", ""))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def run_saml_idp(workdir: Path, *, acs_url: str, audience: str, issuer: str) -> Iterator[SamlIdp]:
    """Start saml-idp on a free port; skip (or fail under CI) when node or the package is missing."""
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed")
    if not IDP_BIN.exists():
        unavailable(f"saml-idp is not installed: run `npm ci` in {IDP_DIR}")
    assert node is not None
    keys = KeyPair.generate("Portico test IdP")
    (workdir / "idp.pem").write_bytes(keys.cert_pem)
    (workdir / "idp-key.pem").write_bytes(keys.key_pem)
    log_path = workdir / "saml-idp.log"
    last = ""
    for _ in range(3):  # a free port can be taken before the IdP binds it
        port = _free_port()
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [node, str(IDP_BIN), "--acsUrl", acs_url, "--audience", audience, "--issuer", issuer,
                 "--cert", str(workdir / "idp.pem"), "--key", str(workdir / "idp-key.pem"),
                 "--host", "127.0.0.1", "--port", str(port), "--configFile", str(IDP_CONFIG)],
                cwd=workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        idp = SamlIdp(proc, f"http://127.0.0.1:{port}", issuer, keys, log_path)
        if _wait_ready(idp):
            try:
                yield idp
            finally:
                idp.close()
            return
        idp.close()
        last = log_path.read_text(errors="replace")[-2000:]
        if "EADDRINUSE" not in last:
            break
    pytest.fail(f"saml-idp did not become ready:\n{last}", pytrace=False)


def _wait_ready(idp: SamlIdp) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if idp.proc.poll() is not None:
            return False
        try:
            if httpx.get(f"{idp.base_url}/metadata", timeout=2.0).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    return False


# --- forging -------------------------------------------------------------------------------------


def parse(xml: bytes) -> etree._Element:
    return etree.fromstring(xml, etree.XMLParser(resolve_entities=False, no_network=True))


def encode(root: etree._Element) -> str:
    return base64.b64encode(etree.tostring(root)).decode()


def strip_signatures(root: etree._Element) -> etree._Element:
    for sig in root.findall(".//ds:Signature", NS):
        parent = sig.getparent()
        assert parent is not None
        parent.remove(sig)
    return root


class _AnyAlgorithmSigner(XMLSigner):
    """signxml's signer without its refusal of SHA-1, to forge what old IdPs send."""

    def check_deprecated_methods(self) -> None:
        return None


def sign(
    element: etree._Element, keys: KeyPair, algorithm: str = "rsa-sha256", digest: str = "sha256"
) -> etree._Element:
    """An enveloped signature over `element` (by its ID), placed after its Issuer as SAML wants."""
    signer = _AnyAlgorithmSigner(
        signature_algorithm=algorithm, digest_algorithm=digest,
        c14n_algorithm="http://www.w3.org/2001/10/xml-exc-c14n#",
    )
    for old in element.findall("ds:Signature", NS):
        element.remove(old)
    placeholder = etree.Element(f"{{{NS['ds']}}}Signature", Id="placeholder")
    issuer = element.find("saml:Issuer", NS)
    (issuer.addnext(placeholder) if issuer is not None else element.insert(0, placeholder))
    signed: etree._Element = signer.sign(
        element, key=keys.key_pem, cert=keys.cert_pem.decode(), reference_uri=element.get("ID")
    )
    return signed


def sign_in_place(root: etree._Element, target: etree._Element, keys: KeyPair) -> etree._Element:
    """Re-sign `target` (a descendant of `root`, or root itself) and put the signed copy in its place."""
    signed = sign(target, keys)
    if target is root:
        return signed
    parent = target.getparent()
    assert parent is not None
    parent.replace(target, signed)
    return root


def assertion_of(root: etree._Element) -> etree._Element:
    return child(root, "saml:Assertion")


def child(element: etree._Element, path: str) -> etree._Element:
    """The element at `path` (SAML prefixes), which the test expects to be there."""
    found = element.find(path, NS)
    assert found is not None, path
    return found


def evil_assertion(signed: etree._Element) -> etree._Element:
    """An unsigned copy of `signed` with another ID, vouching for "admin"."""
    evil = strip_signatures(copy.deepcopy(signed))
    evil.set("ID", "_evil")
    child(evil, ".//saml:NameID").text = "admin"
    return evil


def signing_cert(signed: etree._Element) -> x509.Certificate:
    """The certificate a signed element's KeyInfo carries."""
    der = base64.b64decode(child(signed, ".//ds:X509Certificate").text or "")
    return x509.load_der_x509_certificate(der)
