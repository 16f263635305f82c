"""TOTP (RFC 6238) and recovery codes, through Portico's own code path (appliance.mfa.totp)."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from appliance.ids import new_recovery_code, new_totp_secret
from appliance.mfa import totp

# RFC 6238 appendix B: the SHA-1 seed is the ASCII string "12345678901234567890".
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()
# (Unix time, the 8-digit SHA-1 value of the RFC's table). Six digits are its last six: the
# truncation is the same number modulo 10^digits (RFC 4226 section 5.3).
RFC_VECTORS = [
    (59, "94287082"),
    (1111111109, "07081804"),
    (1111111111, "14050471"),
    (1234567890, "89005924"),
    (2000000000, "69279037"),
    (20000000000, "65353130"),
]


def at(unix: int) -> datetime:
    return datetime.fromtimestamp(unix, UTC)


@pytest.mark.parametrize(("unix", "eight"), RFC_VECTORS)
def test_rfc6238_vectors(unix: int, eight: str) -> None:
    step = totp.time_step(at(unix))
    assert step == unix // 30
    assert totp.code_at(RFC_SECRET, step) == eight[-6:]
    # And the check that logins use accepts exactly that code at that time.
    assert totp.match(RFC_SECRET, eight[-6:], at(unix), last_step=0) == step


def test_wrong_and_malformed_codes_are_refused() -> None:
    now = at(1111111111)
    good = totp.code_at(RFC_SECRET, totp.time_step(now))
    wrong = f"{(int(good) + 1) % 1_000_000:06d}"
    for code in (wrong, "", "12345", "1234567", "abcdef", "12345\u0661", good + "0"):
        assert totp.match(RFC_SECRET, code, now, 0) is None, code
    assert totp.match(RFC_SECRET, f"{good[:3]} {good[3:]}", now, 0) == totp.time_step(now)


def test_a_code_is_accepted_once() -> None:
    now = at(1234567890)
    step = totp.time_step(now)
    code = totp.code_at(RFC_SECRET, step)
    assert totp.match(RFC_SECRET, code, now, last_step=0) == step
    # Replayed within its window (same step, or a step later while it is still inside the drift).
    assert totp.match(RFC_SECRET, code, now, last_step=step) is None
    assert totp.match(RFC_SECRET, code, now + timedelta(seconds=30), last_step=step) is None
    # An older code after a newer one was used: refused too (the stored step only goes forward).
    older = totp.code_at(RFC_SECRET, step - 1)
    assert totp.match(RFC_SECRET, older, now, last_step=step) is None
    # The next step's code is still good.
    newer = totp.code_at(RFC_SECRET, step + 1)
    assert totp.match(RFC_SECRET, newer, now + timedelta(seconds=30), last_step=step) == step + 1


def test_one_step_of_drift_either_way_and_no_more() -> None:
    now = at(2000000000)
    step = totp.time_step(now)
    for offset, accepted in ((-2, False), (-1, True), (0, True), (1, True), (2, False)):
        code = totp.code_at(RFC_SECRET, step + offset)
        found = totp.match(RFC_SECRET, code, now, 0)
        assert (found == step + offset) if accepted else found is None, offset


def test_new_secrets_are_160_bit_base32_and_differ() -> None:
    secrets = {new_totp_secret() for _ in range(20)}
    assert len(secrets) == 20
    for secret in secrets:
        assert len(base64.b32decode(secret)) == 20
        assert re.fullmatch(r"[A-Z2-7]{32}", secret)


def test_provisioning_uri_carries_issuer_account_and_parameters() -> None:
    uri = totp.provisioning_uri(RFC_SECRET, "jane@example.com", "Acme SSO")
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert unquote(parts.path) == "/Acme SSO:jane@example.com"
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query["secret"] == RFC_SECRET and query["issuer"] == "Acme SSO"
    assert query.get("digits", "6") == "6" and query.get("period", "30") == "30"


def test_grouped_secret_reads_back() -> None:
    grouped = totp.group_secret(RFC_SECRET)
    assert grouped.split() == [RFC_SECRET[i:i + 4] for i in range(0, 32, 4)]


def test_recovery_codes_single_use_and_forgiving_input() -> None:
    codes, digests = totp.new_recovery_codes()
    assert len(codes) == totp.RECOVERY_CODES == len(set(codes)) == len(digests)
    assert all(re.fullmatch(r"[0-9a-hjkmnp-tv-z]{5}-[0-9a-hjkmnp-tv-z]{5}", c) for c in codes)
    assert not set(digests) & set(codes)  # only digests are kept
    third = codes[2]
    # Typed in capitals, without the hyphen, with spaces: still the same code.
    typed = " " + third.upper().replace("-", " ") + " "
    left = totp.use_recovery_code(typed, digests)
    assert left is not None and len(left) == len(digests) - 1
    assert totp.recovery_digest(third) not in left
    assert totp.use_recovery_code(third, left) is None  # spent
    assert totp.use_recovery_code(codes[3], left) is not None  # the others still work
    assert totp.use_recovery_code("00000-00000", digests) is None
    assert totp.use_recovery_code("123456", digests) is None


def test_recovery_code_reads_confusable_letters_as_digits() -> None:
    code = "1o0zz-zzzzz"  # "o" is no letter of the alphabet: read as 0 (and i, l as 1)
    digests = (totp.recovery_digest("100zz-zzzzz"),)
    assert totp.use_recovery_code(code, digests) == ()
    assert totp.use_recovery_code("I00ZZ-ZZZZZ", digests) == ()


def test_recovery_code_alphabet() -> None:
    seen = "".join(new_recovery_code().replace("-", "") for _ in range(200))
    assert not set(seen) & set("ilou")
    assert len(set(seen)) > 25
