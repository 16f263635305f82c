"""Log redaction: tokens, passwords and secrets never reach a log line, whatever code logged them."""

from __future__ import annotations

import logging
import re

__all__ = ["REDACTED", "RedactingFilter", "redact"]

REDACTED = "[redacted]"

# Names whose values are credentials, as they appear in query strings, form bodies, logfmt and reprs.
_NAMES = (
    "password|passwd|secret|client_secret|code|code_verifier|refresh_token|access_token|id_token|token"
    "|device_code|user_code|subject_token|actor_token|assertion|samlresponse|csrf_token|hmac"
)
_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    # Compact JWS (3 parts) and JWE (5 parts): the header is base64url JSON, so it starts with "eyJ".
    (re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*)?"),
     "[redacted-jwt]"),
    # name=value (not status_code=: the name must start the word).
    (re.compile(rf"(?i)(?<![\w-])({_NAMES})=[^\s&\"',;]+"), rf"\1={REDACTED}"),
    # "name": "value" / 'name': 'value' in JSON and dict reprs.
    (re.compile(rf"(?i)([\"'])({_NAMES})\1(\s*:\s*)([\"']).*?(?<!\\)\4"), rf"\1\2\1\3\4{REDACTED}\4"),
    # Authorization header values.
    (re.compile(r"(?i)\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}"), rf"\1 {REDACTED}"),
    # bcrypt hashes (a leaked hash can be cracked offline).
    (re.compile(r"\$2[abxy]?\$\d\d\$[./A-Za-z0-9]{53}"), REDACTED),
)
_EXCEPTIONS = logging.Formatter()


def redact(text: str) -> str:
    """`text` with every credential-looking value replaced by "[redacted]"."""
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """A handler filter: redacts the formatted message, the traceback and the stack of every record.

    The message is formatted here (and `args` dropped) because a secret may sit in an argument.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: the handler reports it, with the raw arguments hidden
            record.msg, record.args = redact(str(record.msg)), None
            return True
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = _EXCEPTIONS.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
