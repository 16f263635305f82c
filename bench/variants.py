"""The peer as oidc-provider runs by default, for the token workloads: opaque access tokens.

The peer is measured for the code and refresh workloads with codes and refresh tokens granted for its
JWT resource, so that each grant signs two JWTs (ID token and access token), as Portico's do. This view
of the same process measures them once more with oidc-provider's default opaque access token (one
signature per grant), so the report shows both: the same work, and what the peer does out of the box.
"""

from __future__ import annotations

from bench.servers import PeerServer, Server

# The workloads whose work depends on the access token's format.
TOKEN_FORMAT_WORKLOADS = ("refresh_token", "authorization_code")


class PeerOpaqueView(Server):
    """The running peer, prepared without the resource: codes and refresh tokens give opaque access
    tokens. Shares the peer's process; it is neither started nor stopped on its own."""

    name = "peer-opaque"
    flavor = "peer"
    opaque = True

    def __init__(self, peer: PeerServer) -> None:
        self.peer = peer
        self.workdir = peer.workdir
        self.fixture = peer.fixture
        self.cpus = peer.cpus
        self.port = peer.port
        self.paths = peer.paths
        self.processes = []

    def pids(self) -> list[int]:
        return self.peer.pids()


def signature_key(server: Server) -> str:
    """The key of Workload.signatures for this server: its flavor, or the opaque view's own."""
    return "peer-opaque" if server.opaque else server.flavor
