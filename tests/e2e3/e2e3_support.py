"""Helpers of the e2e3 tests: the configs of the IdP under test and its upstream, the back-channel
logout listener, and the runner of rp/flows.mjs (which reuses tests/e2e/rp's node_modules)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from e2e_support import (
    ADMIN_EMAIL,
    ADMIN_GROUPS,
    ADMIN_USER_ID,
    ADMIN_USERNAME,
    admin_password_hash,
)

HERE = Path(__file__).resolve().parent
FLOWS = HERE / "rp" / "flows.mjs"
LAUNCHER = HERE / "serve_with_test_connectors.py"

RP_ID, RP_SECRET = "example-app", "ZXhhbXBsZS1hcHAtc2VjcmV0"
SVC_ID, SVC_SECRET = "svc", "c3ZjLXNlY3JldC12YWx1ZQ"
CI_ID, CI_SECRET = "ci", "Y2ktc2VjcmV0LXZhbHVl"
DEVICE_CLIENT = "kubectl"
ALL_GRANTS = [
    "authorization_code", "refresh_token", "implicit", "password", "client_credentials",
    "urn:ietf:params:oauth:grant-type:device_code", "urn:ietf:params:oauth:grant-type:token-exchange",
]


def _admin() -> dict[str, Any]:
    return {"email": ADMIN_EMAIL, "hash": admin_password_hash(), "username": ADMIN_USERNAME,
            "userID": ADMIN_USER_ID, "groups": ADMIN_GROUPS}


def upstream_config(port: int, db: Path) -> dict[str, Any]:
    """The upstream Portico: a plain server whose ID tokens the IdP under test accepts in exchange."""
    return {
        "issuer": f"http://127.0.0.1:{port}/upstream",
        "storage": {"type": "sqlite3", "config": {"file": str(db)}},
        "web": {"http": f"127.0.0.1:{port}"},
        "oauth2": {"skipApprovalScreen": True, "passwordConnector": "local"},
        "staticClients": [{"id": CI_ID, "secret": CI_SECRET, "name": "CI"}],
        "enablePasswordDB": True,
        "staticPasswords": [_admin()],
    }


def idp_config(
    port: int, db: Path, *, rp_port: int, backchannel: str, upstream_issuer: str
) -> dict[str, Any]:
    """The IdP under test with every grant and response type on."""
    rp = f"http://127.0.0.1:{rp_port}"
    return {
        "issuer": f"http://127.0.0.1:{port}/dex",
        "storage": {"type": "sqlite3", "config": {"file": str(db)}},
        "web": {"http": f"127.0.0.1:{port}"},
        "logger": {"level": "info"},
        "oauth2": {
            "skipApprovalScreen": True,
            "passwordConnector": "local",
            "responseTypes": ["code", "id_token", "code id_token", "id_token token", "code id_token token"],
            "grantTypes": ALL_GRANTS,
        },
        "staticClients": [
            {"id": RP_ID, "secret": RP_SECRET, "name": "Example App", "redirectURIs": [f"{rp}/callback"],
             "postLogoutRedirectURIs": [f"{rp}/bye"], "backchannelLogoutURI": backchannel},
            {"id": DEVICE_CLIENT, "public": True, "name": "kubectl"},
            {"id": SVC_ID, "secret": SVC_SECRET, "name": "Service",
             "clientCredentialsClaims": {"groups": ["robots"]}},
        ],
        "connectors": [{"type": "oidc", "id": "upstream", "name": "Upstream",
                        "config": {"issuer": upstream_issuer}}],
        "enablePasswordDB": True,
        "staticPasswords": [_admin()],
    }


def launcher_command() -> str:
    return f"{sys.executable} {LAUNCHER}"


@dataclass
class FlowRun:
    returncode: int
    result: dict[str, Any] | None
    stdout: str
    stderr: str

    def require(self) -> dict[str, Any]:
        assert self.returncode == 0 and self.result is not None, (
            f"flow failed ({self.returncode}):\nstdout: {self.stdout[-2000:]}\nstderr: {self.stderr[-3000:]}")
        return self.result


def run_flow(flow: str, inputs: dict[str, str], *, artifacts: Path | None = None,
             timeout_s: float = 90.0) -> FlowRun:
    """Runs one flow of rp/flows.mjs; secrets travel in the environment, not argv (visible in ps)."""
    env = dict(os.environ)
    env.update({f"FLOW_{key.upper()}": value for key, value in inputs.items()})
    env["FLOW_TIMEOUT_MS"] = str(int((timeout_s - 5) * 1000))
    if artifacts is not None:
        env["FLOW_ARTIFACTS"] = str(artifacts)
    proc = subprocess.run(["node", str(FLOWS), flow], cwd=FLOWS.parent, env=env, capture_output=True,
                          text=True, timeout=timeout_s, stdin=subprocess.DEVNULL, check=False)
    lines = proc.stdout.strip().splitlines()
    result = json.loads(lines[-1]) if proc.returncode == 0 and lines else None
    return FlowRun(proc.returncode, result, proc.stdout, proc.stderr)
