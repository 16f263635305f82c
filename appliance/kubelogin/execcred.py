"""The ExecCredential (client.authentication.k8s.io) that kubectl reads from a credential plugin."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

GROUP = "client.authentication.k8s.io"
API_VERSIONS = (f"{GROUP}/v1", f"{GROUP}/v1beta1")
DEFAULT_API_VERSION = API_VERSIONS[0]
EXEC_INFO_ENV = "KUBERNETES_EXEC_INFO"


def requested_api_version(env: Mapping[str, str]) -> str:
    """The version kubectl asked for in KUBERNETES_EXEC_INFO (it must get the same back), else v1."""
    raw = env.get(EXEC_INFO_ENV, "")
    if not raw:
        return DEFAULT_API_VERSION
    try:
        info = json.loads(raw)
    except ValueError:
        return DEFAULT_API_VERSION
    version = info.get("apiVersion") if isinstance(info, dict) else None
    return version if version in API_VERSIONS else DEFAULT_API_VERSION


def rfc3339(epoch_seconds: int) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def exec_credential(token: str, expiry: int, api_version: str = DEFAULT_API_VERSION) -> dict[str, Any]:
    """kubectl sends `token` as the bearer token and runs the plugin again after `expiry`."""
    return {
        "apiVersion": api_version,
        "kind": "ExecCredential",
        "status": {"token": token, "expirationTimestamp": rfc3339(expiry)},
    }
