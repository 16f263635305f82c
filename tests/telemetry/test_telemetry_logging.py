"""Log redaction, the request-id filter and the JSON formatter, on real logging records."""

from __future__ import annotations

import io
import json
import logging

import pytest

from appliance.cli.logjson import JSONFormatter
from appliance.telemetry.context import RequestIdFilter, request_id_var
from appliance.telemetry.redact import RedactingFilter, redact

JWT = ("eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJpc3MiOiJodHRwOi8vMTI3LjAuMC4xL2RleCIsInN1YiI6IkNnIn0"
       ".c2lnbmF0dXJlLWJ5dGVzLWhlcmUtX3g")


@pytest.mark.parametrize(("text", "secret"), [
    (f"token {JWT} rejected", JWT),
    ("POST body: grant_type=authorization_code&code=Zm9vYmFy123&redirect_uri=x", "Zm9vYmFy123"),
    ("client_secret=c2VjcmV0LXZhbHVl&client_id=app", "c2VjcmV0LXZhbHVl"),
    ("refresh_token=ChlrZXktaWQSDHNlY3JldA grant", "ChlrZXktaWQSDHNlY3JldA"),
    ("login form: login=a@b.c password=hunter2!", "hunter2!"),
    ("PASSWORD=Hunter3", "Hunter3"),
    ("form {'password': 'p@ss w0rd', 'login': 'a'}", "p@ss w0rd"),
    ('json {"client_secret": "abc\\"def", "x": 1}', 'abc\\"def'),
    ("Authorization: Bearer mF_9.B5f-4.1JqM", "mF_9.B5f-4.1JqM"),
    ("Authorization: Basic YXBwOmFwcC1zZWNyZXQ=", "YXBwOmFwcC1zZWNyZXQ="),
    ("hash $2b$10$n0A05WKeUhJFXCDsgJvQR.BFPHqjGqQNcOtABwocdjj95ElrzymKS", "n0A05WKeUhJFXCDsgJvQR"),
])
def test_secrets_are_redacted(text: str, secret: str) -> None:
    cleaned = redact(text)
    assert secret not in cleaned
    assert "[redacted" in cleaned


@pytest.mark.parametrize("text", [
    "status_code=200 error_code=invalid_grant",
    "token endpoint: invalid_grant Invalid or expired code parameter.",
    "login successful: connector local, user 08a8684b",
    "listening on http://127.0.0.1:5556",
])
def test_ordinary_text_is_kept(text: str) -> None:
    assert redact(text) == text


def _capture(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("portico.test.telemetry")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, stream


def test_arguments_and_tracebacks_are_redacted_and_ids_attached() -> None:
    logger, stream = _capture(JSONFormatter())
    token = request_id_var.set("abc123")
    try:
        logger.info("token request %s from %s", "code=s3cr3tc0de&client_secret=sh", "app")
        try:
            raise ValueError(f"bad token {JWT}")
        except ValueError:
            logger.exception("failed with password=%s", "hunter2")
    finally:
        request_id_var.reset(token)
    logger.info("outside any request")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    text = stream.getvalue()
    assert "s3cr3tc0de" not in text and "hunter2" not in text and JWT not in text
    assert lines[0]["request_id"] == "abc123" and lines[1]["request_id"] == "abc123"
    assert "ValueError: bad token [redacted-jwt]" in lines[1]["error"]
    assert "request_id" not in lines[2]
    assert lines[2]["msg"] == "outside any request" and lines[2]["level"] == "info"


def test_text_lines_carry_the_request_id() -> None:
    logger, stream = _capture(logging.Formatter("%(levelname)s [%(request_id)s]: %(message)s"))
    token = request_id_var.set("feedface")
    try:
        logger.warning("inside")
    finally:
        request_id_var.reset(token)
    logger.warning("outside")
    assert stream.getvalue().splitlines() == ["WARNING [feedface]: inside", "WARNING [-]: outside"]


def test_a_broken_format_string_still_logs_with_its_arguments_hidden() -> None:
    logger, stream = _capture(logging.Formatter("%(message)s"))
    logger.info("two args %s %s", "password=hunter2")
    assert stream.getvalue() == "two args %s %s\n"
