"""Attacks the fuzzers found, kept as regression tests: each failed before its fix landed."""

from __future__ import annotations

import pytest
from fuzz_runner import EXAMPLES, run_fuzz
from fuzz_targets import TARGETS
from security_support import APP_REDIRECT, PREFIX, mock_code
from web_harness import Harness


@pytest.mark.parametrize("max_age", ["99999999999999999999", "²", "1" * 400],
                         ids=["20 digits", "superscript two", "400 digits"])
async def test_max_age_with_a_live_session_is_not_a_server_error(sec: Harness, max_age: str) -> None:
    """With an SSO session, /auth turns max_age into a timedelta: a superscript digit (str.isdigit says
    yes, int() says no) or a huge number (timedelta overflows) answers 500 instead of an error for the
    client (appliance/oidc/authorize.py: check_prompt validates with isdigit, _reusable converts)."""
    await mock_code(sec)  # the session
    response = await sec.client.get(f"{PREFIX}/auth", query_string={
        "client_id": "app", "redirect_uri": APP_REDIRECT, "response_type": "code", "scope": "openid",
        "state": "s", "max_age": max_age})
    assert response.status_code < 500, f"max_age={max_age!r} with a session: {response.status_code}"


def test_fuzz_authorization_with_a_live_session() -> None:
    """The fuzzer of test_sec_fuzz on the endpoints that read the SSO session, with a live session
    cookie on half the requests. It hits the max_age crash above only now and then (the test above always
    does), so it lives here until that fix lands, then joins test_sec_fuzz.py. A valid request here logs in
    through the session, so auth codes may appear."""
    targets = tuple(t for t in TARGETS if t.name in ("auth", "auth-connector", "logout"))
    run_fuzz(targets, examples=EXAMPLES * 4, with_session=True, may_create=frozenset({"auth_codes"}))
