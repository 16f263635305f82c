"""`portico init`'s output: a commented config.yaml, the kube-apiserver flags and a kubeconfig snippet."""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlsplit

import bcrypt

from appliance.config.load import format_problem, parse_config
from appliance.config.schema import Problem
from appliance.ids import new_secret

__all__ = ["InitAnswers", "kube_apiserver_flags", "kubeconfig_snippet", "render_config", "validate"]


@dataclass(frozen=True)
class InitAnswers:
    issuer: str = "https://auth.example.com/dex"
    listen: str = "0.0.0.0:5556"
    tls_cert: str = ""
    tls_key: str = ""
    storage: str = "sqlite3"  # sqlite3 | postgres
    sqlite_file: str = "/var/lib/portico/portico.db"
    pg_host: str = "localhost"
    pg_database: str = "portico"
    pg_user: str = "portico"
    connector: str = "local"  # local | ldap
    admin_email: str = "admin@example.com"
    admin_password: str = ""
    ldap_host: str = "ldap.example.com:636"
    ldap_bind_dn: str = "cn=portico,dc=example,dc=com"
    ldap_user_base_dn: str = "ou=people,dc=example,dc=com"
    client_id: str = "kubernetes"
    client_redirect_uri: str = "http://localhost:8000"
    client_secret: str = ""


def _q(value: str) -> str:
    """A YAML scalar, quoted (JSON strings are valid YAML)."""
    return json.dumps(value)


def render_config(a: InitAnswers, *, bcrypt_cost: int = 10) -> tuple[str, str]:
    """(config.yaml text, the client secret written into it)."""
    secret = a.client_secret or new_secret()
    tls = bool(a.tls_cert and a.tls_key)
    lines = [
        "# Portico configuration, written by `portico init`. Dex's format: a Dex config.yaml runs unchanged.",
        "# Check it with `portico config check FILE`; the running server reloads it when it changes.",
        "",
        "# The public URL of this identity provider; clients and the API server must reach it exactly so.",
        f"issuer: {_q(a.issuer)}",
        "",
        "storage:",
    ]
    if a.storage == "postgres":
        lines += [
            "  # PostgreSQL, shared by every replica. The password comes from the environment",
            "  # (e.g. /etc/portico/environment under systemd): never write it here.",
            "  type: postgres",
            "  config:",
            f"    host: {_q(a.pg_host)}",
            f"    database: {_q(a.pg_database)}",
            f"    user: {_q(a.pg_user)}",
            "    password: $PORTICO_DB_PASSWORD",
            "    ssl:",
            "      mode: verify-full",
        ]
    else:
        lines += ["  # SQLite: one file, for a single server.", "  type: sqlite3", "  config:",
                  f"    file: {_q(a.sqlite_file)}"]
    lines += ["", "web:"]
    if tls:
        lines += ["  # HTTPS; certificate and key are PEM files readable by the portico user.",
                  f"  https: {_q(a.listen)}", f"  tlsCert: {_q(a.tls_cert)}", f"  tlsKey: {_q(a.tls_key)}"]
    else:
        lines += ["  # Plain HTTP: only behind a TLS-terminating proxy or for a test.",
                  f"  http: {_q(a.listen)}"]
    lines += ["", "oauth2:", "  skipApprovalScreen: true", ""]
    if a.connector == "ldap":
        lines += [
            "connectors:",
            "  # The bind password comes from the environment ($LDAP_BIND_PW), not from this file.",
            "  - type: ldap",
            "    id: ldap",
            "    name: LDAP",
            "    config:",
            f"      host: {_q(a.ldap_host)}",
            f"      bindDN: {_q(a.ldap_bind_dn)}",
            "      bindPW: $LDAP_BIND_PW",
            "      usernamePrompt: Username",
            "      userSearch:",
            f"        baseDN: {_q(a.ldap_user_base_dn)}",
            "        filter: \"(objectClass=person)\"",
            "        username: uid",
            "        idAttr: uid",
            "        emailAttr: mail",
            "        nameAttr: cn",
            "",
        ]
    else:
        password = a.admin_password or new_secret(12)
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(bcrypt_cost)).decode()
        lines += [
            "# The local password database. More users: `portico users add EMAIL` or the console.",
            "enablePasswordDB: true",
            "staticPasswords:",
            f"  - email: {_q(a.admin_email)}",
            f"    hash: {_q(hashed)}",
            f"    username: {_q(a.admin_email.split('@')[0])}",
            f"    userID: {_q(new_secret(12))}",
            "",
        ]
    lines += [
        "staticClients:",
        f"  # {a.client_id}: e.g. kubectl through kubelogin, for the Kubernetes API server.",
        f"  - id: {_q(a.client_id)}",
        f"    name: {_q(a.client_id)}",
        f"    secret: {_q(secret)}",
        "    redirectURIs:",
        f"      - {_q(a.client_redirect_uri)}",
    ]
    return "\n".join(lines) + "\n", secret


def validate(text: str) -> list[Problem]:
    _, problems = parse_config(text, source="<init>", env={"PORTICO_DB_PASSWORD": "x", "LDAP_BIND_PW": "x"})
    return problems


def problems_text(problems: list[Problem]) -> str:
    return "\n".join(format_problem("config.yaml", p) for p in problems)


def kube_apiserver_flags(a: InitAnswers) -> str:
    flags = [
        f"--oidc-issuer-url={a.issuer}",
        f"--oidc-client-id={a.client_id}",
        "--oidc-username-claim=email",
        "--oidc-groups-claim=groups",
    ]
    if urlsplit(a.issuer).scheme == "https":
        # The CA that signed the issuer's certificate, copied to the control plane nodes.
        flags.append("--oidc-ca-file=/etc/kubernetes/pki/portico-ca.crt")
    return "\n".join(flags)


def kubeconfig_snippet(a: InitAnswers, secret: str) -> str:
    return "\n".join([
        "users:",
        "- name: portico",
        "  user:",
        "    exec:",
        "      apiVersion: client.authentication.k8s.io/v1beta1",
        "      command: kubectl",
        "      args:",
        "      - oidc-login",
        "      - get-token",
        f"      - --oidc-issuer-url={a.issuer}",
        f"      - --oidc-client-id={a.client_id}",
        f"      - --oidc-client-secret={secret}",
        "      - --oidc-extra-scope=email",
        "      - --oidc-extra-scope=groups",
        "      interactiveMode: IfAvailable",
    ])
