"""The `openshift` connector against a fake cluster over TLS: metadata discovery, the user API, groups."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fakes.oauth import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, browse
from fakes.openshift import FakeOpenShift
from fakes.server import FakeServer
from fakes.tls import TLSFiles, make_tls_files

from appliance.connectors.base import Identity, Scopes, UserNotInRequiredGroupsError
from appliance.connectors.openshift import OpenShiftConnector, open_openshift
from appliance.errors import ConnectorError

REDIRECT = "https://portico.example/dex/callback"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeOpenShift, FakeServer, TLSFiles]]:
    files = make_tls_files(tmp_path_factory.mktemp("ocp-tls"))
    fake = FakeOpenShift(REDIRECT)
    server = FakeServer(fake.app, files.cert, files.key).start()
    yield fake, server, files
    server.stop()


@pytest.fixture
def cluster(served: tuple[FakeOpenShift, FakeServer, TLSFiles]) -> FakeOpenShift:
    fake = served[0]
    fake.reset()
    fake.add("kube:admin", "9f3b2c1a-0000-4000-8000-000000000001", ["cluster-admins", "devs"])
    fake.add("dev", "9f3b2c1a-0000-4000-8000-000000000002", ["devs"])
    return fake


def make(served: tuple[FakeOpenShift, FakeServer, TLSFiles], **extra: Any) -> OpenShiftConnector:
    _, server, files = served
    config = {
        "issuer": server.url + "/",
        "clientID": DEFAULT_CLIENT_ID,
        "clientSecret": DEFAULT_CLIENT_SECRET,
        "redirectURI": REDIRECT,
        "rootCA": str(files.ca_pem),
        **extra,
    }
    return open_openshift("openshift", config)


async def login(served: Any, conn: OpenShiftConnector, scopes: Scopes, user: str = "kube:admin") -> Identity:
    url = await conn.login_url(scopes, REDIRECT, "s")
    return await conn.handle_callback(scopes, await browse(url, user, ca_file=str(served[2].ca_pem)))


async def test_login_discovers_endpoints_once(served: Any, cluster: FakeOpenShift) -> None:
    conn = make(served)
    identity = await login(served, conn, Scopes())
    assert identity == Identity(
        user_id="9f3b2c1a-0000-4000-8000-000000000001",
        username="kube:admin",
        preferred_username="kube:admin",
        email="kube:admin",
        groups=("cluster-admins", "devs"),
    )
    await login(served, conn, Scopes(), "dev")
    assert cluster.discoveries == 1
    assert cluster.oauth.authorize_requests[-1]["scope"] == "user:info"


async def test_groups_restrict_login(served: Any, cluster: FakeOpenShift) -> None:
    assert (await login(served, make(served, groups=["cluster-admins"]), Scopes())).user_id
    with pytest.raises(UserNotInRequiredGroupsError):
        await login(served, make(served, groups=["cluster-admins"]), Scopes(), "dev")


async def test_tls_trust(served: Any, cluster: FakeOpenShift) -> None:
    with pytest.raises(ConnectorError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        await make(served, rootCA=None).login_url(Scopes(), REDIRECT, "s")
    insecure = make(served, rootCA=None, insecureCA=True)
    assert (await login(served, insecure, Scopes())).username == "kube:admin"


async def test_user_api_failure(served: Any, cluster: FakeOpenShift) -> None:
    cluster.failure = 503
    with pytest.raises(ConnectorError, match="HTTP 503"):
        await login(served, make(served), Scopes())


async def test_refresh(served: Any, cluster: FakeOpenShift) -> None:
    conn = make(served)
    identity = await login(served, conn, Scopes(offline_access=True))
    assert json.loads(identity.connector_data or b"")["token_type"] == "Bearer"
    cluster.users["kube:admin"]["groups"] = ["devs"]
    refreshed = await conn.refresh(Scopes(offline_access=True), identity)
    assert refreshed.groups == ("devs",) and refreshed.connector_data == identity.connector_data
    cluster.oauth.expire_access_tokens()
    with pytest.raises(ConnectorError, match="HTTP 401"):
        await conn.refresh(Scopes(), identity)


def test_config() -> None:
    with pytest.raises(ValueError, match="issuer: is required"):
        open_openshift("o", {"clientID": "i", "clientSecret": "s", "redirectURI": REDIRECT})
