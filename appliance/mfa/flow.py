"""The second-factor step of a login: the next factor, TOTP enrolment, and checking a code or a
recovery code (each accepted once), between the connector's login and the session."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from urllib.parse import urlencode

from appliance.config.schema import MFAAuthenticator
from appliance.errors import AlreadyExists, DisplayedError, NotFound
from appliance.ids import new_totp_secret
from appliance.mfa import totp
from appliance.mfa.policy import authenticator, chain_for
from appliance.oidc.deps import Deps, Snapshot
from appliance.oidc.login import load_auth_request
from appliance.store.models import AuthRequest, Client, TOTPSecret, UserMFA, mfa_key

log = logging.getLogger("portico.mfa")
# Login outcomes go to the login logger, whose lines the metrics count (appliance.telemetry.instrument).
login_log = logging.getLogger("portico.oidc.login")

# Wrong codes one login may give before it is dropped (the password has to be given again).
MAX_REQUEST_FAILURES = 5
# Wrong codes in a row, over all of a user's logins, before codes are not even checked for LOCK_FOR.
LOCK_AFTER = 10
LOCK_FOR = timedelta(minutes=15)
STEP_PATH = "/mfa/totp"  # Dex main's path of the TOTP page


class _Blocked(Exception):
    def __init__(self, until: datetime) -> None:
        super().__init__("second factor blocked")
        self.until = until


class _NotEnrolled(Exception):
    pass


def step_mac(auth_req: AuthRequest) -> str:
    """Binds a second-factor URL to its request: the request id alone travelled through upstreams
    (as `state`), so it must not be enough. Another message than the approval's HMAC."""
    mac = hmac.new(auth_req.hmac_key, b"mfa\x00" + auth_req.id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def step_url(snap: Snapshot, auth_req: AuthRequest) -> str:
    query = urlencode({"req": auth_req.id, "hmac": step_mac(auth_req)})
    return f"{snap.issuer.abs_path(STEP_PATH)}?{query}"


async def load_step(deps: Deps, snap: Snapshot, req_id: str, mac: str) -> AuthRequest:
    """The auth request a second-factor URL or form names, if its HMAC is right and a connector has
    vouched for the user (claims are set; logged_in only once every factor is passed)."""
    if not mac:
        raise DisplayedError("Unauthorized", "Unauthorized request", 401)
    auth_req = await load_auth_request(deps, snap, req_id)
    if not hmac.compare_digest(step_mac(auth_req).encode(), mac.encode("utf-8", "replace")):
        raise DisplayedError("Unauthorized", "Unauthorized request", 401)
    if auth_req.claims is None:
        raise DisplayedError("Bad request", "Login process not yet finalized.", 400)
    return auth_req


@dataclass(frozen=True)
class Step:
    """The factor to pass next, as its page shows it."""

    auth_req: AuthRequest
    authenticator: MFAAuthenticator
    enrolling: bool  # no confirmed secret yet: show the QR code
    may_skip: bool  # enrollment: optional, and the user has not enrolled
    secret: str = field(default="", repr=False)  # only while enrolling
    uri: str = field(default="", repr=False)  # otpauth:// for the QR code, only while enrolling
    account: str = ""
    blocked_until: datetime | None = None


async def current_step(deps: Deps, snap: Snapshot, auth_req: AuthRequest) -> Step | None:
    """The next factor of this login, or None when none is left. Enrolment starts here: a user
    without a secret for the authenticator gets one (unconfirmed until a code comes back)."""
    while auth_req.mfa_pending:
        ident = auth_req.mfa_pending[0]
        item = authenticator(snap, ident)
        if item is None:  # taken out of the config since the login started: nothing to ask
            auth_req = await _advance(deps, auth_req, ident, passed=False)
            continue
        secret = await _secret_for(deps, snap, auth_req, item)
        enrolling = not secret.confirmed
        account = _account(auth_req)
        uri = totp.provisioning_uri(secret.secret, account, _issuer(snap, item)) if enrolling else ""
        return Step(
            auth_req=auth_req, authenticator=item, enrolling=enrolling,
            may_skip=enrolling and item.enrollment == "optional",
            secret=secret.secret if enrolling else "", uri=uri, account=account,
            blocked_until=_blocked(secret, deps.clock.now()),
        )
    return None


@dataclass(frozen=True)
class Outcome:
    """What a submitted code did: passed (the request moved on), or not (the page says why)."""

    auth_req: AuthRequest
    passed: bool
    recovery_codes: tuple[str, ...] = field(default=(), repr=False)  # shown once, after enrolment
    used_recovery_code: bool = False
    blocked_until: datetime | None = None


async def submit_code(
    deps: Deps, snap: Snapshot, auth_req: AuthRequest, code: str, client_ip: str = ""
) -> Outcome:
    """Check a TOTP code (or, once enrolled, a recovery code) for the request's next factor. Wrong
    codes count against the request (MAX_REQUEST_FAILURES drops it), the user (LOCK_AFTER) and, in
    the brute-force throttle (security.bruteForce), the account and the client address: the account is
    the one the password form counts (the user's email, else username), so guessing either factor
    locks it. A throttled attempt is answered as a wrong code, without checking it."""
    step = await current_step(deps, snap, auth_req)
    if step is None:
        return Outcome(auth_req, passed=True)
    auth_req, ident = step.auth_req, step.authenticator.id
    if not code.strip():
        return Outcome(auth_req, passed=False)  # an empty form is no guess
    now = deps.clock.now()
    result: dict[str, object] = {}

    def check(old: UserMFA) -> UserMFA:
        # Re-run from the stored value on every compare-and-swap round: decide from `old` only.
        result.clear()
        sec = old.totp.get(ident)
        if sec is None:
            raise _NotEnrolled
        until = _blocked(sec, now)
        if until is not None:
            raise _Blocked(until)
        matched = totp.match(sec.secret, code, now, sec.last_step)
        if matched is not None:
            new = replace(sec, last_step=matched, failures=0, blocked_until=None, confirmed=True)
            if not sec.confirmed:
                codes, digests = totp.new_recovery_codes()
                new = replace(new, recovery=digests)
                result["codes"] = tuple(codes)
            result["passed"] = True
        elif sec.confirmed and (rest := totp.use_recovery_code(code, sec.recovery)) is not None:
            new = replace(sec, recovery=rest, failures=0, blocked_until=None)
            result["passed"] = result["recovery"] = True
        else:
            failures = sec.failures + 1
            if failures >= LOCK_AFTER:
                new = replace(sec, failures=0, blocked_until=now + LOCK_FOR)
                result["blocked"] = now + LOCK_FOR
            else:
                new = replace(sec, failures=failures)
        return replace(old, totp={**old.totp, ident: new})

    assert auth_req.claims is not None
    key = mfa_key(auth_req.claims.user_id, auth_req.connector_id)
    account = auth_req.claims.email or auth_req.claims.username or auth_req.claims.user_id

    async def attempt() -> bool | None:
        await deps.storage.user_mfa.update(key, check)
        return True if result.get("passed") else None  # None: a failure, for the throttle

    try:
        await deps.protection.check_password(
            snap.config.security.brute_force, auth_req.connector_id, account, client_ip, attempt)
    except _Blocked as exc:
        return Outcome(auth_req, passed=False, blocked_until=exc.until)
    except (_NotEnrolled, NotFound):
        # Reset by an administrator while the page was open: start over with a fresh enrolment.
        return Outcome(auth_req, passed=False)
    who = f"connector {auth_req.connector_id}, user {auth_req.claims.user_id}, authenticator {ident}"
    if result.get("passed"):
        how = "a recovery code" if result.get("recovery") else "a TOTP code"
        log.info("second factor passed with %s (%s)", how, who)
        advanced = await _advance(deps, auth_req, ident, passed=True)
        codes = result.get("codes", ())
        assert isinstance(codes, tuple)
        return Outcome(advanced, passed=True, recovery_codes=codes,
                       used_recovery_code=bool(result.get("recovery")))
    login_log.info("failed login attempt: wrong second factor code (user %s, authenticator %s, connector %s)",
                   auth_req.claims.user_id, ident, auth_req.connector_id)
    await record_failed_code(deps, auth_req)
    blocked = result.get("blocked")
    return Outcome(auth_req, passed=False, blocked_until=blocked if isinstance(blocked, datetime) else None)


async def skip(deps: Deps, snap: Snapshot, auth_req: AuthRequest) -> AuthRequest:
    """Go on without enrolling: only where the authenticator's enrollment is optional and the user
    has not enrolled."""
    step = await current_step(deps, snap, auth_req)
    if step is None:
        return auth_req
    if not step.may_skip:
        raise DisplayedError("Bad request", "This second factor cannot be skipped.", 400)
    return await _advance(deps, step.auth_req, step.authenticator.id, passed=True)


async def record_failed_code(deps: Deps, auth_req: AuthRequest) -> None:
    """A wrong code counts against the login; too many end it."""
    def count(old: AuthRequest) -> AuthRequest:
        return replace(old, mfa_failures=old.mfa_failures + 1)

    try:
        updated = await deps.storage.auth_requests.update(auth_req.id, count)
    except NotFound:
        raise DisplayedError("Bad request", "User session error.", 400) from None
    if updated.mfa_failures >= MAX_REQUEST_FAILURES:
        try:
            await deps.storage.auth_requests.delete(auth_req.id)
        except NotFound:
            pass
        raise DisplayedError("Too many attempts", "Too many wrong codes. Start the login again.", 400)


async def password_grant_allowed(
    deps: Deps, snap: Snapshot, client: Client, connector_id: str, user_id: str
) -> bool:
    """May the password grant issue tokens without a second factor? Not when the client's chain
    has a factor this user must pass (a required one, or an optional one they enrolled in), unless
    mfa.allowPasswordGrant says so: the grant has no way to carry a code."""
    if snap.config.mfa.allow_password_grant:
        return True
    chain = chain_for(snap, client, connector_id)
    if not chain:
        return True
    stored = await _user_mfa(deps, user_id, connector_id)
    for ident in chain:
        item = authenticator(snap, ident)
        if item is None:
            continue
        enrolled = stored is not None and ident in stored.totp and stored.totp[ident].confirmed
        if item.enrollment == "required" or enrolled:
            return False
    return True


async def enrolled(deps: Deps, user_id: str, connector_id: str) -> bool:
    """Has the user a confirmed TOTP secret (any authenticator) for this connector?"""
    stored = await _user_mfa(deps, user_id, connector_id)
    return stored is not None and any(sec.confirmed for sec in stored.totp.values())


# ---------------------------------------------------------------- internals


async def _advance(deps: Deps, auth_req: AuthRequest, ident: str, *, passed: bool) -> AuthRequest:
    """The factor `ident` is behind us: the next one is due, or, with none left, the login is done."""

    def step(old: AuthRequest) -> AuthRequest:
        if not old.mfa_pending or old.mfa_pending[0] != ident:
            return old  # a concurrent submit moved it on already
        pending = old.mfa_pending[1:]
        done = (*old.mfa_done, ident) if passed else old.mfa_done
        return replace(old, mfa_pending=pending, mfa_done=done, mfa_failures=0, logged_in=not pending)

    try:
        updated = await deps.storage.auth_requests.update(auth_req.id, step)
    except NotFound:
        raise DisplayedError("Bad request", "User session error.", 400) from None
    if updated.logged_in and not auth_req.logged_in and updated.claims is not None:
        login_log.info("login successful: connector %s, user %s (second factor passed)", updated.connector_id,
                       updated.claims.user_id)
    return updated


async def _user_mfa(deps: Deps, user_id: str, connector_id: str) -> UserMFA | None:
    try:
        return await deps.storage.user_mfa.get(mfa_key(user_id, connector_id))
    except NotFound:
        return None


async def _secret_for(
    deps: Deps, snap: Snapshot, auth_req: AuthRequest, item: MFAAuthenticator
) -> TOTPSecret:
    """The user's secret for `item`, created (unconfirmed) when there is none. An unconfirmed one is
    kept, so that a user who scanned the code and then mistyped is not made to scan again."""
    assert auth_req.claims is not None
    claims, now = auth_req.claims, deps.clock.now()
    key = mfa_key(claims.user_id, auth_req.connector_id)

    def add(old: UserMFA) -> UserMFA:
        if item.id in old.totp:
            return old
        fresh = TOTPSecret(secret=new_totp_secret(), created_at=now)
        return replace(old, totp={**old.totp, item.id: fresh}, email=claims.email or old.email)

    for _ in range(3):
        stored = await _user_mfa(deps, claims.user_id, auth_req.connector_id)
        if stored is not None:
            if item.id in stored.totp:
                return stored.totp[item.id]
            try:
                return (await deps.storage.user_mfa.update(key, add)).totp[item.id]
            except NotFound:
                continue  # reset in between: create it afresh
        try:
            created = add(UserMFA(user_id=claims.user_id, connector_id=auth_req.connector_id))
            await deps.storage.user_mfa.create(created)
            return created.totp[item.id]
        except AlreadyExists:
            continue  # another tab of the same user won the race: use theirs
    raise DisplayedError("Bad request", "User session error.", 400)


def _blocked(secret: TOTPSecret, now: datetime) -> datetime | None:
    return secret.blocked_until if secret.blocked_until is not None and now < secret.blocked_until else None


def _account(auth_req: AuthRequest) -> str:
    claims = auth_req.claims
    if claims is None:
        return ""
    return claims.email or claims.preferred_username or claims.username or claims.user_id


def _issuer(snap: Snapshot, item: MFAAuthenticator) -> str:
    return item.issuer or snap.config.frontend.issuer or "Portico"
