"""The second-factor pages: TOTP enrolment (QR code, secret, recovery codes once) and the code check."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from quart import Blueprint, Response, request

from appliance.errors import DisplayedError
from appliance.mfa import totp
from appliance.mfa.flow import STEP_PATH, Step, current_step, load_step, skip, step_mac, step_url, submit_code
from appliance.mfa.qr import qr_data_uri
from appliance.oidc.deps import Deps, Snapshot
from appliance.security.clientip import ClientAddress
from appliance.store.models import AuthRequest
from appliance.web import csrf
from appliance.web.responses import Pages, redirect, request_snapshot

LoggedIn = Callable[[Snapshot, AuthRequest], Awaitable[Response]]

_CSRF_FAILED = DisplayedError(
    "Bad request", "The form has expired or did not come from this site. Go back, reload and try again.", 400,
)
_WRONG = "That code is not valid. Check the code in your authenticator app and try again."


def mfa_routes(deps: Deps, pages: Pages, logged_in: LoggedIn) -> Blueprint:
    """GET/POST /mfa/totp?req=&hmac= (Dex main's path). `logged_in` is what a finished login does next
    (start the SSO session, then consent or the response): the same as after a login without MFA."""
    bp = Blueprint("mfa", __name__)
    addresses = ClientAddress()

    async def show(snap: Snapshot, step: Step, *, error: str = "", status: int = 200) -> Response:
        blocked = _minutes_left(step.blocked_until, deps.clock.now())
        context: dict[str, Any] = {
            "post_url": snap.issuer.abs_path(STEP_PATH), "req": step.auth_req.id,
            "hmac": step_mac(step.auth_req), "error": error, "blocked_minutes": blocked,
            "account": step.account, "may_skip": step.may_skip,
        }
        if step.enrolling:
            return await pages.form_page(
                snap, request, "totp_enrol.html", status, qr=qr_data_uri(step.uri),
                secret=totp.group_secret(step.secret), issuer_label=step.authenticator.issuer
                or snap.config.frontend.issuer, **context,
            )
        return await pages.form_page(snap, request, "totp_verify.html", status, **context)

    async def done(snap: Snapshot, auth_req: AuthRequest, codes: tuple[str, ...] = ()) -> Response:
        """After a factor: the recovery codes (once, right after enrolment), the next factor, or on."""
        if codes:
            return await pages.form_page(
                snap, request, "totp_recovery.html", post_url=snap.issuer.abs_path(STEP_PATH),
                req=auth_req.id, hmac=step_mac(auth_req), codes=list(codes),
            )
        if auth_req.mfa_pending:
            return redirect(step_url(snap, auth_req), 303)
        return await logged_in(snap, auth_req)

    @bp.route(STEP_PATH, methods=["GET", "POST"])
    async def totp_step() -> Response:
        snap = request_snapshot(deps)
        if request.method == "GET":
            auth_req = await load_step(deps, snap, request.args.get("req", ""), request.args.get("hmac", ""))
            step = await current_step(deps, snap, auth_req)
            if step is None:  # every factor passed (a reload of the recovery codes page): offer to go on
                return await pages.form_page(
                    snap, request, "totp_recovery.html", post_url=snap.issuer.abs_path(STEP_PATH),
                    req=auth_req.id, hmac=step_mac(auth_req), codes=[],
                )
            return await show(snap, step)
        client_ip = addresses.of_scope(snap.config.web.client_remote_ip, request.scope, request.headers.get)
        deps.protection.rate_limit(snap.config.security, "login", client_ip)  # as the password form
        form = await request.form
        if not csrf.valid(request, form.get(csrf.FIELD), snap.issuer.secure):
            raise _CSRF_FAILED
        auth_req = await load_step(deps, snap, form.get("req", ""), form.get("hmac", ""))
        action = form.get("action", "verify")
        if action == "continue":
            if auth_req.mfa_pending or not auth_req.logged_in:
                return redirect(step_url(snap, auth_req), 303)
            return await logged_in(snap, auth_req)
        if action == "skip":
            return await done(snap, await skip(deps, snap, auth_req))
        outcome = await submit_code(deps, snap, auth_req, form.get("code", ""), client_ip)
        if outcome.passed:
            return await done(snap, outcome.auth_req, outcome.recovery_codes)
        step = await current_step(deps, snap, outcome.auth_req)
        if step is None:
            return await done(snap, outcome.auth_req)
        if outcome.blocked_until is not None:
            step = replace(step, blocked_until=outcome.blocked_until)
        blocked = step.blocked_until is not None
        return await show(snap, step, error="" if blocked else _WRONG, status=429 if blocked else 400)

    return bp


def _minutes_left(until: datetime | None, now: datetime) -> int:
    if until is None or now >= until:
        return 0
    return max(1, math.ceil((until - now).total_seconds() / 60))
