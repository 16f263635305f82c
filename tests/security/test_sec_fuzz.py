"""Fuzzing every endpoint and form in process (Quart test client): no 5xx, no logged exception, no
reflected markup, no redirect off the registered hosts, and the stored state and a live grant intact."""

from __future__ import annotations

import pytest
from fuzz_runner import EXAMPLES, run_fuzz
from fuzz_targets import TARGETS
from security_support import PREFIX
from web_harness import Harness


def test_fuzz_every_endpoint_in_process() -> None:
    run_fuzz(TARGETS, examples=EXAMPLES)


@pytest.mark.parametrize("size", [64 * 1024 + 1, 1024 * 1024])
async def test_oversized_bodies_are_refused(sec: Harness, size: int) -> None:
    """Bodies past the 64 KiB limit are refused before parsing (413), on forms and on /token."""
    for path in ("/token", "/token/introspect", "/device/code", "/device/auth/verify_code", "/approval",
                 "/logout"):
        response = await sec.client.post(f"{PREFIX}{path}", data=b"a=" + b"x" * size,
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert response.status_code == 413, (path, response.status_code)
