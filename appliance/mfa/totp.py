"""RFC 6238 time-based one-time passwords (SHA-1, 6 digits, 30 s) and the recovery codes beside them."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

import pyotp

from appliance.ids import new_recovery_code

PERIOD = 30  # seconds per time step (RFC 6238 section 4: X = 30)
DIGITS = 6
# Steps accepted either side of the server's one, for clocks that drift (RFC 6238 section 5.2).
DRIFT = 1
RECOVERY_CODES = 10
_RECOVERY_LENGTH = 10
_RECOVERY_LETTERS = frozenset("0123456789abcdefghjkmnpqrstvwxyz")
# Crockford's reading of the letters people confuse with digits.
_RECOVERY_READ = str.maketrans({"i": "1", "l": "1", "o": "0"})


def time_step(now: datetime) -> int:
    """T = floor((unix time - T0) / X), T0 = 0 (RFC 6238 section 4.2)."""
    return int(now.timestamp()) // PERIOD


def code_at(secret: str, step: int) -> str:
    """The code for one time step: HOTP (RFC 4226) with the step as its counter."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD).generate_otp(step)


def _digits(code: str) -> str:
    return "".join(code.split())  # people type "123 456" as the apps show it


def match(secret: str, code: str, now: datetime, last_step: int) -> int | None:
    """The time step `code` is for, within DRIFT steps of `now` and newer than `last_step` (each code
    works once: RFC 6238 section 5.2); None for a wrong, stale or already used code."""
    typed = _digits(code)
    if len(typed) != DIGITS or not typed.isascii() or not typed.isdigit():
        return None
    current = time_step(now)
    for step in range(current + DRIFT, current - DRIFT - 1, -1):  # newest first: the highest step wins
        if step <= last_step or step < 0:
            continue
        if hmac.compare_digest(code_at(secret, step).encode(), typed.encode()):
            return step
    return None


def provisioning_uri(secret: str, account: str, issuer: str) -> str:
    """The otpauth:// URI an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD, name=account or "user",
                      issuer=issuer or None).provisioning_uri()


def group_secret(secret: str) -> str:
    """The secret in groups of four, as people copy it by hand."""
    return " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))


# ---------------------------------------------------------------- recovery codes


def _recovery_text(code: str) -> str:
    return "".join(code.split()).replace("-", "").lower().translate(_RECOVERY_READ)


def looks_like_recovery_code(code: str) -> bool:
    text = _recovery_text(code)
    return len(text) == _RECOVERY_LENGTH and set(text) <= _RECOVERY_LETTERS


def recovery_digest(code: str) -> str:
    """What is stored of a recovery code. A fast hash is enough: the codes are random (50 bits each)
    and the TOTP secret itself has to be stored readable next to them."""
    return hashlib.sha256(_recovery_text(code).encode()).hexdigest()


def new_recovery_codes() -> tuple[list[str], tuple[str, ...]]:
    """RECOVERY_CODES fresh codes to show once, and their digests to store."""
    codes = [new_recovery_code() for _ in range(RECOVERY_CODES)]
    return codes, tuple(recovery_digest(code) for code in codes)


def use_recovery_code(code: str, digests: tuple[str, ...]) -> tuple[str, ...] | None:
    """The digests left once `code` is spent, or None when it is not one of them."""
    if not looks_like_recovery_code(code):
        return None
    wanted = recovery_digest(code).encode()
    found = [d for d in digests if hmac.compare_digest(d.encode(), wanted)]
    if not found:
        return None
    return tuple(d for d in digests if d != found[0])
