"""Throw-away OpenLDAP servers for tests: a slapd.conf, a test CA and certificates, LDIF data, free ports.

`start_slapd(workdir, ldif)` writes everything under `workdir`, starts Debian's slapd as a plain
foreground process listening on ldap:// (plain and StartTLS) and ldaps:// on 127.0.0.1, loads the
LDIF as the root DN and returns a `Slapd` handle; `Slapd.stop()` kills it (SIGKILL: its data is
thrown away anyway). slapd logs its operations (loglevel `stats`) to `slapd.log`, which tests read
to see what the server was asked, e.g. that no BIND happened. `slapd_fixture` wraps this for pytest:
a missing slapd skips, or fails under CI=true.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ldap3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from ldap3.core.exceptions import LDAPException

SLAPD = os.environ.get("PORTICO_TEST_SLAPD") or shutil.which("slapd") or "/usr/sbin/slapd"
LDAPADD = shutil.which("ldapadd") or "/usr/bin/ldapadd"
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")
SCHEMAS = ("core", "cosine", "inetorgperson", "nis")
SUFFIX = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PW = "admin-secret"  # a throw-away server's root password
READY_TIMEOUT_S = 10.0
# slapd's loglevel: 256 = stats (one line per connection and operation: BIND, SRCH, RESULT ...).
LOGLEVEL = "256"


class SlapdUnavailable(Exception):
    """slapd or ldapadd is missing, or slapd would not start (the message says why)."""


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass
class TestCA:
    """A certificate authority made on the spot; `issue` signs server or client certificates."""

    name: str
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    __test__ = False  # not a test class, whatever pytest thinks of the name

    @classmethod
    def create(cls, name: str = "Portico Test CA") -> TestCA:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(name, key, cert)

    @property
    def pem(self) -> bytes:
        return _pem(self.cert)

    def issue(
        self, common_name: str, *, hosts: tuple[str, ...] = (), client: bool = False
    ) -> tuple[bytes, bytes]:
        """(certificate PEM, private key PEM); `hosts` become DNS or IP subject alternative names."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )
        if hosts:
            names: list[x509.GeneralName] = []
            for host in hosts:
                try:
                    names.append(x509.IPAddress(ipaddress.ip_address(host)))
                except ValueError:
                    names.append(x509.DNSName(host))
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return _pem(builder.sign(self.key, hashes.SHA256())), _key_pem(key)


@dataclass
class Slapd:
    """One running slapd and what tests need to reach it."""

    proc: subprocess.Popen[bytes]
    workdir: Path
    ldap_port: int
    ldaps_port: int
    ca: TestCA
    ca_file: Path
    log_path: Path
    suffix: str = SUFFIX
    root_dn: str = ROOT_DN
    root_pw: str = ROOT_PW
    _admin: ldap3.Connection | None = field(default=None, repr=False)

    @property
    def plain_host(self) -> str:
        """host:port of the ldap:// listener (plain, or StartTLS)."""
        return f"127.0.0.1:{self.ldap_port}"

    @property
    def ldaps_host(self) -> str:
        return f"127.0.0.1:{self.ldaps_port}"

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def admin(self) -> ldap3.Connection:
        """A connection bound as the root DN over plain LDAP, for tests that change the directory."""
        if self._admin is None or self._admin.closed:
            server = ldap3.Server("127.0.0.1", port=self.ldap_port, get_info=ldap3.NONE, connect_timeout=5)
            conn = ldap3.Connection(
                server, self.root_dn, self.root_pw, receive_timeout=5, raise_exceptions=True
            )
            conn.bind()
            self._admin = conn
        return self._admin

    def add(self, dn: str, object_classes: list[str], attributes: dict[str, Any]) -> None:
        self._admin_call("add", dn, object_classes, attributes)

    def modify(self, dn: str, changes: dict[str, list[tuple[str, list[str]]]]) -> None:
        """changes: {attribute: [(ldap3.MODIFY_ADD | MODIFY_DELETE | MODIFY_REPLACE, values)]}."""
        self._admin_call("modify", dn, changes)

    def delete(self, dn: str) -> None:
        self._admin_call("delete", dn)

    def _admin_call(self, name: str, *args: Any) -> None:
        # ldap3's add/modify/delete are untyped; raise_exceptions=True turns a refusal into an error.
        method: Callable[..., object] = getattr(self.admin(), name)
        method(*args)

    def add_ldif(self, ldif: str) -> None:
        """Load LDIF with ldapadd as the root DN (raises with ldapadd's message when it fails)."""
        path = self.workdir / f"add-{time.monotonic_ns()}.ldif"
        path.write_text(ldif)
        done = subprocess.run(
            [LDAPADD, "-x", "-H", f"ldap://{self.plain_host}", "-D", self.root_dn, "-w", self.root_pw,
             "-f", str(path)],
            capture_output=True, timeout=30, check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"ldapadd failed ({done.returncode}): {done.stderr.decode(errors='replace')}")

    def restart(self) -> None:
        """Kill slapd and start it again on the same ports and data (the database survives)."""
        self.stop()
        self.proc = _launch(self.workdir, self.ldap_port, self.ldaps_port, self.log_path)
        why = _wait_for_port(self.proc, self.ldap_port, self.log_path) or _wait_for_port(
            self.proc, self.ldaps_port, self.log_path
        )
        if why is not None:
            raise SlapdUnavailable(why)

    def stop(self) -> None:
        if self._admin is not None:
            try:
                self._admin.unbind()
            except LDAPException:
                pass  # the server may be gone already
            self._admin = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


def _slapd_conf(workdir: Path, suffix: str) -> str:
    includes = "\n".join(f"include {SCHEMA_DIR / name}.schema" for name in SCHEMAS)
    return f"""{includes}
pidfile {workdir}/slapd.pid
argsfile {workdir}/slapd.args
modulepath {MODULE_DIR}
moduleload back_mdb
TLSCACertificateFile {workdir}/ca.pem
TLSCertificateFile {workdir}/server.pem
TLSCertificateKeyFile {workdir}/server.key
# Ask for a client certificate and check it when one comes, but let clients without one in.
TLSVerifyClient try

database mdb
maxsize 16777216
suffix "{suffix}"
rootdn "{ROOT_DN}"
rootpw {ROOT_PW}
directory {workdir}/db
access to attrs=userPassword by self write by anonymous auth by * none
access to * by * read
"""


def _wait_for_port(proc: subprocess.Popen[bytes], port: int, log_path: Path) -> str | None:
    """None once the port accepts connections; otherwise why not."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:]
            return f"slapd exited with code {proc.returncode}:\n{tail}"
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return None
        time.sleep(0.005)
    return f"slapd did not open port {port} within {READY_TIMEOUT_S:.0f} s"


def _launch(workdir: Path, ldap_port: int, ldaps_port: int, log_path: Path) -> subprocess.Popen[bytes]:
    urls = f"ldap://127.0.0.1:{ldap_port}/ ldaps://127.0.0.1:{ldaps_port}/"
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [SLAPD, "-d", LOGLEVEL, "-h", urls, "-f", str(workdir / "slapd.conf")],
            cwd=workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )


def start_slapd(workdir: Path, ldif: str = "", *, suffix: str = SUFFIX,
                cert_hosts: tuple[str, ...] = ("127.0.0.1", "localhost"), attempts: int = 3) -> Slapd:
    """Start slapd with its files under `workdir` and load `ldif` (which should create `suffix`).

    The server certificate names `cert_hosts` (DNS names or IP addresses).
    """
    for tool in (SLAPD, LDAPADD):
        if not Path(tool).exists():
            raise SlapdUnavailable(f"{tool} is not installed (Debian packages slapd and ldap-utils)")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "db").mkdir(exist_ok=True)
    ca = TestCA.create()
    server_pem, server_key = ca.issue(cert_hosts[0], hosts=cert_hosts)
    (workdir / "ca.pem").write_bytes(ca.pem)
    (workdir / "server.pem").write_bytes(server_pem)
    (workdir / "server.key").write_bytes(server_key)
    (workdir / "server.key").chmod(0o600)
    conf = workdir / "slapd.conf"
    conf.write_text(_slapd_conf(workdir, suffix))
    problem = ""
    for attempt in range(attempts):
        ldap_port, ldaps_port = free_port(), free_port()
        log_path = workdir / f"slapd-{attempt}.log"
        proc = _launch(workdir, ldap_port, ldaps_port, log_path)
        why = _wait_for_port(proc, ldap_port, log_path) or _wait_for_port(proc, ldaps_port, log_path)
        server = Slapd(proc, workdir, ldap_port, ldaps_port, ca, workdir / "ca.pem", log_path, suffix=suffix)
        if why is None:
            try:
                if ldif:
                    server.add_ldif(ldif)
            except BaseException:
                server.stop()
                raise
            return server
        server.stop()
        problem = why
        if "already in use" not in why:  # only a lost race for a port is worth another try
            break
    raise SlapdUnavailable(problem)


def slapd_unavailable(reason: str) -> None:
    """Skip, or fail under CI=true, where a missing real component must never pass silently."""
    if in_ci():
        pytest.fail(f"slapd is required under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def slapd_fixture(workdir: Path, ldif: str, *, cert_hosts: tuple[str, ...] = ("127.0.0.1", "localhost")
                  ) -> Iterator[Slapd]:
    """Body of a pytest fixture: a running slapd for the fixture's scope, stopped afterwards."""
    try:
        server = start_slapd(workdir, ldif, cert_hosts=cert_hosts)
    except SlapdUnavailable as exc:
        slapd_unavailable(str(exc))
        raise  # not reached: skip and fail raise
    try:
        yield server
    finally:
        server.stop()


# The example directory most LDAP tests share: people, a service account, groups of both styles,
# a nested group, a membership cycle and a user whose uid needs escaping in filters.
PASSWORDS = {
    "jane": "jane-password",
    "john": "john-password",
    "o'brien(test)*": "obrien-password",
    "nomail": "nomail-password",
    "dup1": "dup-password",
    "dup2": "dup-password",
}
SERVICE_DN = f"cn=portico,ou=services,{SUFFIX}"
SERVICE_PW = "service-password"


def _person(uid: str, cn: str, mail: str | None, extra: str = "") -> str:
    mail_line = f"mail: {mail}\n" if mail else ""
    return (
        f"dn: uid={uid},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {cn}\n"
        f"sn: {cn.split()[-1]}\ndisplayName: {cn}\n{mail_line}{extra}userPassword: {PASSWORDS[uid]}\n\n"
    )


EXAMPLE_LDIF = (
    f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n"
    f"dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n"
    f"dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n\n"
    f"dn: ou=services,{SUFFIX}\nobjectClass: organizationalUnit\nou: services\n\n"
    f"dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: portico\n"
    f"userPassword: {SERVICE_PW}\n\n"
    + _person("jane", "Jane Doe", "jane@example.org")
    + _person("john", "John Smith", "john@example.org")
    # Every character of this uid means something in a filter; none of them needs escaping in a DN.
    + _person("o'brien(test)*", "Seán O'Brien", "obrien@example.org")
    + _person("nomail", "No Mail", None)
    + _person("dup1", "Dup One", "shared@example.org")
    + _person("dup2", "Dup Two", "shared@example.org")
    + f"dn: cn=admins,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: admins\n"
    f"member: uid=jane,ou=people,{SUFFIX}\n\n"
    f"dn: cn=developers,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: developers\n"
    f"member: uid=jane,ou=people,{SUFFIX}\nmember: uid=john,ou=people,{SUFFIX}\n\n"
    # engineering contains developers: members of developers are in engineering through recursion.
    f"dn: cn=engineering,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: engineering\n"
    f"member: cn=developers,ou=groups,{SUFFIX}\n\n"
    # A cycle: loop-a contains jane and loop-b, loop-b contains loop-a.
    f"dn: cn=loop-a,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: loop-a\n"
    f"member: uid=jane,ou=people,{SUFFIX}\n\n"
    f"dn: cn=loop-b,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: loop-b\n"
    f"member: cn=loop-a,ou=groups,{SUFFIX}\n\n"
    f"dn: cn=staff,ou=groups,{SUFFIX}\nobjectClass: posixGroup\ncn: staff\ngidNumber: 5000\n"
    "memberUid: jane\nmemberUid: john\nmemberUid: o'brien(test)*\n\n"
    # Only the special user is in writers, by uid and by DN: a filter that let `*` through would
    # put everyone in it.
    f"dn: cn=writers,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: writers\n"
    f"member: uid=o'brien(test)*,ou=people,{SUFFIX}\n\n"
    f"dn: cn=loop-a,ou=groups,{SUFFIX}\nchangetype: modify\nadd: member\n"
    f"member: cn=loop-b,ou=groups,{SUFFIX}\n\n"
)
PEOPLE_DN = f"ou=people,{SUFFIX}"
GROUPS_DN = f"ou=groups,{SUFFIX}"


def connector_config(server: Slapd, transport: str = "ldaps") -> dict[str, Any]:
    """A Dex-style `ldap` connector config for EXAMPLE_LDIF on `server`: `ldaps` (with the test CA),
    `starttls` or `plain`. Both group styles are matched, and nested groups are followed."""
    config: dict[str, Any] = {
        "bindDN": SERVICE_DN,
        "bindPW": SERVICE_PW,
        "userSearch": {
            "baseDN": PEOPLE_DN,
            "filter": "(objectClass=person)",
            "username": "uid",
            "idAttr": "uid",
            "emailAttr": "mail",
            "nameAttr": "cn",
            "preferredUsernameAttr": "uid",
        },
        "groupSearch": {
            "baseDN": GROUPS_DN,
            "filter": "(|(objectClass=posixGroup)(objectClass=groupOfNames))",
            "userMatchers": [
                {"userAttr": "uid", "groupAttr": "memberUid"},
                {"userAttr": "DN", "groupAttr": "member", "recursionGroupAttr": "member"},
            ],
            "nameAttr": "cn",
        },
    }
    if transport == "ldaps":
        config.update(host=server.ldaps_host, rootCA=str(server.ca_file))
    elif transport == "starttls":
        config.update(host=server.plain_host, startTLS=True, rootCA=str(server.ca_file))
    elif transport == "plain":
        config.update(host=server.plain_host, insecureNoSSL=True)
    else:
        raise ValueError(f"unknown transport {transport!r}")
    return config
