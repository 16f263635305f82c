"""The device authorization grant (RFC 8628) on Dex's paths: /device/code, the user-code page's
checks, /device/callback and polling at /token."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from urllib.parse import urlencode

from appliance.errors import AlreadyExists, DisplayedError, NotFound, OAuthError
from appliance.ids import new_secret, new_user_code
from appliance.oidc import scopes as sc
from appliance.oidc.authcode import load_code, redeem_code
from appliance.oidc.authorize import validate_scopes
from appliance.oidc.clientauth import authenticate_client, parse_client_credentials
from appliance.oidc.deps import Deps, Snapshot
from appliance.oidc.discovery import GRANT_DEVICE_CODE
from appliance.oidc.grant import TokenContext
from appliance.oidc.pkce import check_challenge, verify_pkce
from appliance.oidc.urls import DEVICE_CALLBACK_PATH
from appliance.store.models import DeviceRequest, DeviceToken

log = logging.getLogger("portico.oidc.device")

POLL_INTERVAL = 5  # seconds, RFC 8628 3.2's default and Dex's
SLOW_DOWN_STEP = 5  # seconds added on each slow_down (RFC 8628 3.5)
PENDING, COMPLETE, DENIED = "pending", "complete", "denied"


def normalize_user_code(value: str) -> str:
    """What a person typed, as stored: upper case, spaces and dashes ignored, `XXXX-XXXX`."""
    compact = "".join(ch for ch in value.upper() if ch not in " -\t")
    return f"{compact[:4]}-{compact[4:]}" if len(compact) == 8 else compact


async def device_authorize(
    deps: Deps, snap: Snapshot, form: Mapping[str, str], authorization: str = ""
) -> dict[str, object]:
    """POST /device/code (RFC 8628 3.1-3.2): the client (a public one sends only its id) gets a device
    code to poll with and a user code for the person."""
    if GRANT_DEVICE_CODE not in snap.grant_types:
        raise OAuthError("unsupported_grant_type", "The device grant is not enabled.")
    client = await authenticate_client(deps, snap, parse_client_credentials(form, authorization))
    scopes = sc.split_scopes(form.get("scope", "")) or (sc.OPENID,)
    await validate_scopes(deps, snap, client, scopes)
    pkce = check_challenge(form.get("code_challenge", ""), form.get("code_challenge_method", ""),
                           snap.config.oauth2.pkce.code_challenge_methods_supported)
    now = deps.clock.now()
    lifetime: timedelta = snap.config.expiry.device_requests
    device_code = new_secret()
    for _ in range(5):  # 20^8 codes: a collision is rare, two in a row rarer still
        user_code = new_user_code()
        try:
            await deps.storage.device_requests.create(
                DeviceRequest(user_code, device_code, client.id, scopes, now + lifetime)
            )
            break
        except AlreadyExists:
            continue
    else:
        raise OAuthError("server_error", status=500)
    await deps.storage.device_tokens.create(DeviceToken(
        device_code=device_code, status=PENDING, expiry=now + lifetime, last_request_time=now,
        poll_interval=POLL_INTERVAL, pkce=pkce,
        client_id=client.id,
    ))
    verification = snap.issuer.abs_url("/device")
    return {
        "device_code": device_code,
        "user_code": user_code,
        "verification_uri": verification,
        "verification_uri_complete": f"{verification}?{urlencode({'user_code': user_code})}",
        "expires_in": int(lifetime.total_seconds()),
        "interval": POLL_INTERVAL,
    }


async def _live_request(deps: Deps, user_code: str) -> DeviceRequest | None:
    if not user_code:
        return None
    try:
        found = await deps.storage.device_requests.get(normalize_user_code(user_code))
    except NotFound:
        return None
    return found if deps.clock.now() < found.expiry else None


async def verify_user_code(deps: Deps, snap: Snapshot, user_code: str) -> str | None:
    """POST /device/auth/verify_code: where the browser logs in for this code (the authorization
    endpoint, answering to /device/callback with the user code as state), or None for a bad code."""
    found = await _live_request(deps, user_code)
    if found is None:
        log.info("device flow: unknown or expired user code entered")
        return None
    query = urlencode({
        "client_id": found.client_id,
        "scope": " ".join(found.scopes),
        "response_type": "code",
        "redirect_uri": DEVICE_CALLBACK_PATH,
        "state": found.user_code,
    })
    return f"{snap.issuer.abs_path('/auth')}?{query}"


async def _set_status(deps: Deps, device_code: str, status: str, token: str = "") -> None:
    def settle(old: DeviceToken) -> DeviceToken:
        if old.status != PENDING:
            raise DisplayedError("Bad request", "This device code was already used.", 400)
        return replace(old, status=status, token=token)

    try:
        await deps.storage.device_tokens.update(device_code, settle)
    except NotFound:
        raise DisplayedError("Bad request", "The device code has expired.", 400) from None


async def device_callback(deps: Deps, snap: Snapshot, params: Mapping[str, str]) -> str:
    """GET /device/callback: the login finished (or was denied). Redeems the code for the polling
    device and returns the client's display name for the success page."""
    found = await _live_request(deps, params.get("state", ""))
    if found is None:
        raise DisplayedError("Bad request", "The device code is invalid or has expired.", 400)
    if params.get("error"):
        await _set_status(deps, found.device_code, DENIED)
        await _forget(deps, found)
        raise DisplayedError("Access denied", "The device was not connected: access was denied.", 403)
    client = await deps.find_client(snap, found.client_id)
    if client is None:
        raise DisplayedError("Bad request", "Invalid client_id.", 400)
    try:
        code = await load_code(deps, snap, params.get("code", ""), client)
    except OAuthError:
        raise DisplayedError("Bad request", "Invalid or expired code.", 400) from None
    if code.redirect_uri != snap.issuer.abs_path(DEVICE_CALLBACK_PATH):
        raise DisplayedError("Bad request", "Invalid or expired code.", 400)
    body = await redeem_code(deps, snap, client, code)
    await _set_status(deps, found.device_code, COMPLETE, json.dumps(body))
    await _forget(deps, found)
    return client.name or client.id


async def _forget(deps: Deps, found: DeviceRequest) -> None:
    # The user code is spent: typing it again must not start a second login for the same device.
    try:
        await deps.storage.device_requests.delete(found.user_code)
    except NotFound:
        pass


class _Poll(Exception):
    def __init__(self, error: OAuthError) -> None:
        self.error = error


class DeviceCodeGrant:
    """RFC 8628 3.4-3.5: polling with the device code."""

    grant_type = GRANT_DEVICE_CODE

    async def exchange(self, ctx: TokenContext) -> dict[str, object]:
        device_code = ctx.get("device_code")
        if not device_code:
            raise OAuthError("invalid_request", "Required param: device_code.")
        storage = ctx.deps.storage
        try:
            token = await storage.device_tokens.get(device_code)
        except NotFound:
            raise OAuthError("invalid_grant", "Invalid device code.") from None
        if token.client_id and token.client_id != ctx.client.id:
            raise OAuthError("invalid_grant", "Invalid device code.")
        now = ctx.deps.clock.now()
        if now >= token.expiry:
            raise OAuthError("expired_token", "The device code has expired.")

        def poll(old: DeviceToken) -> DeviceToken:
            if now < old.last_request_time + timedelta(seconds=old.poll_interval):
                # Too soon: the interval grows and the client is told (RFC 8628 3.5).
                raise _Poll(OAuthError("slow_down", "Polling too often."))
            return replace(old, last_request_time=now)

        try:
            token = await storage.device_tokens.update(device_code, poll)
        except _Poll as slow:
            await storage.device_tokens.update(device_code, lambda old: replace(
                old, last_request_time=now, poll_interval=old.poll_interval + SLOW_DOWN_STEP))
            raise slow.error from None
        except NotFound:
            raise OAuthError("invalid_grant", "Invalid device code.") from None
        if token.status == DENIED:
            raise OAuthError("access_denied", "The user denied the request.")
        if token.status != COMPLETE:
            raise OAuthError("authorization_pending", "The user has not finished yet.")
        verify_pkce(ctx.get("code_verifier"), token.pkce)
        # Tokens are handed out once: the stored answer goes with the device code.
        try:
            await storage.device_tokens.delete(device_code)
        except NotFound:
            raise OAuthError("invalid_grant", "Invalid device code.") from None
        body: dict[str, object] = json.loads(token.token)
        return body
