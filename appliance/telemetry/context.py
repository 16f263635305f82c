"""The request id of the request being handled: one contextvar, and the log filter that reads it."""

from __future__ import annotations

import itertools
import logging
import re
import secrets
from contextvars import ContextVar

__all__ = ["NO_REQUEST", "RequestIdFilter", "RequestIds", "current_request_id", "is_sane_request_id",
           "new_request_id", "request_id_var"]

NO_REQUEST = "-"
# An id from a trusted proxy is kept only when it cannot break a log line or a header: printable,
# no spaces or quotes, bounded. UUIDs, nginx's $request_id and our own hex ids all pass.
_SANE = re.compile(r"[A-Za-z0-9._:@+=-]{1,128}")

request_id_var: ContextVar[str] = ContextVar("portico_request_id", default=NO_REQUEST)


def new_request_id() -> str:
    """16 hex digits: unique enough to find one request in a day of logs, short enough to read."""
    return secrets.token_hex(8)


class RequestIds:
    """Request ids for one server: 16 hex digits, a random prefix per instance then a counter.

    Unique within the process for 2**32 requests, and across processes and replicas as far as their
    random prefixes differ; ~10x cheaper than `new_request_id` (no system call per request). Ids are
    labels for logs, not secrets: that they are sequential does not matter.
    """

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(4)
        self._counter = itertools.count(int.from_bytes(secrets.token_bytes(4), "big"))

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._counter) & 0xFFFFFFFF:08x}"


def is_sane_request_id(value: str) -> bool:
    return _SANE.fullmatch(value) is not None


def current_request_id() -> str:
    """The id of the request this code runs for, or "-" outside any request."""
    return request_id_var.get()


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record (a handler filter, so that records of every logger get it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True
