"""Which second factors a login needs: the client's mfaChain (or mfa.defaultMFAChain), filtered by the
authenticators' connectorTypes, as Dex main resolves it."""

from __future__ import annotations

from appliance.config.schema import MFAAuthenticator
from appliance.oidc.deps import Snapshot
from appliance.store.models import BrowserSession, Client


def authenticator(snap: Snapshot, ident: str) -> MFAAuthenticator | None:
    for item in snap.config.mfa.authenticators:
        if item.id == ident:
            return item
    return None


def connector_type(snap: Snapshot, connector_id: str) -> str:
    conn = snap.connectors.get(connector_id)
    return conn.type if conn is not None else ""


def chain_for(snap: Snapshot, client: Client | None, connector_id: str) -> tuple[str, ...]:
    """The authenticator ids a login through `connector_id` for `client` must pass, in order.

    A client's mfaChain replaces the default; an empty one means none. An unknown client (deleted
    during the login) gets the default: leaving a factor out is the unsafe mistake.
    """
    mfa = snap.config.mfa
    if not mfa.authenticators:
        return ()
    source = mfa.default_chain if client is None or client.mfa_chain is None else client.mfa_chain
    kind = connector_type(snap, connector_id)
    chain: list[str] = []
    for ident in source:
        item = authenticator(snap, ident)
        if item is None or ident in chain:
            continue
        if not item.connector_types or kind in item.connector_types:
            chain.append(ident)
    return tuple(chain)


def session_satisfies(snap: Snapshot, client: Client, session: BrowserSession) -> bool:
    """May this SSO session stand in for a login to `client`? Only if its login passed every factor
    the client asks for now (a session from a client without MFA does not open one with it)."""
    return set(chain_for(snap, client, session.connector_id)) <= set(session.mfa)
