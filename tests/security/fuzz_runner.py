"""Running the fuzzer in process: a fresh app, live values to start from, every target's examples
through the Quart test client, then the checks on the stored state and on a grant made before the run."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from fuzz_strategies import FuzzRequest, answer_problems, fuzz_request
from fuzz_targets import Target
from hypothesis import HealthCheck, given, settings
from security_support import (
    APP_REDIRECT,
    PREFIX,
    ErrorLog,
    capture_errors,
    clear_cookies,
    close_harness,
    mock_code,
    open_harness,
    query_of,
    redeem,
    refresh,
    stored_ids,
)
from web_harness import Harness, location, path_and_query

from appliance.oidc.sessions import cookie_name
from appliance.web import csrf

# Examples per endpoint; FUZZ_EXAMPLES raises it for a longer hunt (e.g. 2000).
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "30"))
# FUZZ_STATS=1 prints, per endpoint, the time taken and the statuses seen (how deep the fuzzer got).
STATS: dict[str, dict[int, int]] = {}
TIMES: dict[str, float] = {}
_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]


async def _send(h: Harness, request: FuzzRequest) -> tuple[int, str, str, str | None]:
    path = f"{PREFIX}{request.path}" + (f"?{request.query}" if request.query else "")
    response = await h.client.open(path, method=request.method, headers=dict(request.headers),
                                   data=request.body)
    body = await response.get_data(as_text=True)
    headers = response.headers
    return response.status_code, headers.get("Content-Type", ""), body, headers.get("Location")


async def _live_values(h: Harness, with_session: bool) -> dict[str, str]:
    """Real values for the fuzzer to start from (fuzz_targets.Live); with_session adds the cookie of a
    live SSO session, which the strategies then send with some requests."""
    query = {"client_id": "app", "redirect_uri": APP_REDIRECT, "response_type": "code", "scope": "openid",
             "state": "s"}
    start = await h.client.get(f"{PREFIX}/auth/local", query_string=query)
    assert start.status_code == 302, await h.text(start)
    consent = await h.client.get(f"{PREFIX}/auth/mock", query_string={**query, "prompt": "consent"})
    approval = await h.client.get(path_and_query(location(consent)))
    assert approval.status_code == 303 and "/approval" in location(approval), await h.text(approval)
    clear_cookies(h.client)
    code = await mock_code(h)
    session = next((c.value for c in h.client.cookie_jar or () if c.name == cookie_name(False)), "")
    decoy = await redeem(h, code)
    assert decoy.status_code == 200 and session
    grant = await decoy.get_json()
    device = await h.client.post(f"{PREFIX}/device/code", form={"client_id": "native", "scope": "openid"})
    assert device.status_code == 200
    pending = await device.get_json()
    clear_cookies(h.client)
    live = {"auth_state": query_of(location(start))["state"],
            "approval_req": query_of(location(approval))["req"], "code": code,
            "refresh": grant["refresh_token"], "access": grant["access_token"], "id_token": grant["id_token"],
            "device_code": pending["device_code"], "user_code": pending["user_code"],
            # The forms' token for this CSRF cookie without a session (with the live session's cookie
            # sent too, the token no longer matches: those requests stop at the CSRF check).
            "csrf_cookie": "C" * 43, "csrf": csrf.token_for("C" * 43)}
    return {**live, "session": session} if with_session else live


def run_fuzz(targets: tuple[Target, ...], *, examples: int, with_session: bool = False,
             may_create: frozenset[str] = frozenset()) -> None:
    """Fuzz `targets` against a fresh app, then check the stored state and a grant made before the run.
    `may_create`: collections that valid requests of this run may add to, besides the targets' own."""
    with asyncio.Runner() as runner:
        h = runner.run(open_harness())
        try:
            _fuzz(runner, h, targets, examples, with_session, may_create)
        finally:
            runner.run(close_harness(h))


def _fuzz(runner: asyncio.Runner, h: Harness, targets: tuple[Target, ...], examples: int, with_session: bool,
          may_create: frozenset[str]) -> None:
    # A grant obtained before the run, kept away from the fuzzer: it must work afterwards.
    first = runner.run(redeem(h, runner.run(mock_code(h))))
    assert first.status_code == 200
    grant: dict[str, Any] = runner.run(first.get_json())
    clear_cookies(h.client)  # the fuzzer's browser has no session of its own
    live = runner.run(_live_values(h, with_session))
    before = runner.run(stored_ids(h.storage))
    created = set(may_create)
    with capture_errors() as errors:
        for target in targets:
            created |= target.may_create
            started = time.perf_counter()
            _fuzz_target(runner, h, target, live, errors, examples)
            TIMES[target.name] = time.perf_counter() - started
    if os.environ.get("FUZZ_STATS"):
        for name, codes in STATS.items():
            print(f"{name}: {TIMES[name]:.1f} s, {dict(sorted(codes.items()))}")
    after = runner.run(stored_ids(h.storage))
    # Objects may go (the decoy grant revoked, a device code denied); none may appear, except where a
    # fuzzed request was a valid one that creates (an auth request, a device code, a revocation record).
    appeared = {name: sorted(after[name] - before[name]) for name in before
                if after[name] - before[name] and name not in created}
    assert not appeared, f"fuzzed requests created stored objects: {appeared}"
    # The grant from before still works: its access token at /userinfo, its refresh token at /token.
    bearer = {"Authorization": f"Bearer {grant['access_token']}"}
    assert runner.run(h.client.get(f"{PREFIX}/userinfo", headers=bearer)).status_code == 200
    refreshed = runner.run(refresh(h, grant["refresh_token"]))
    assert refreshed.status_code == 200, runner.run(h.text(refreshed))


def _fuzz_target(runner: asyncio.Runner, h: Harness, target: Target, live: dict[str, str], errors: ErrorLog,
                 examples: int) -> None:
    @settings(max_examples=max(1, int(examples * target.share)), deadline=None, database=None,
              suppress_health_check=_HEALTH)
    @given(request=fuzz_request(target, live))
    def one(request: FuzzRequest) -> None:
        clear_cookies(h.client)
        seen = len(errors.records)
        status, content_type, body, where = runner.run(_send(h, request))
        problems = answer_problems(target, status, content_type, body, where) + errors.problems()[seen:]
        assert not problems, f"{target.name}: {request.describe()}\n -> {status}: {problems}"
        if os.environ.get("FUZZ_STATS"):
            STATS.setdefault(target.name, {}).setdefault(status, 0)
            STATS[target.name][status] += 1

    one()
