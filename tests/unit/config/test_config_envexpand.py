"""$VAR expansion follows Go's os.ExpandEnv exactly, including its odd corners."""

from __future__ import annotations

import pytest

from appliance.config.envexpand import expand_env

ENV = {"HOST": "db", "PORT": "5432", "EMPTY": "", "A_1": "x", "1": "one"}


@pytest.mark.parametrize(
    ("text", "expected", "unset"),
    [
        ("plain", "plain", []),
        ("$HOST", "db", []),
        ("${HOST}:${PORT}", "db:5432", []),
        ("$HOST:$PORT/x", "db:5432/x", []),
        ("$A_1-y", "x-y", []),
        ("${EMPTY}", "", []),
        ("$MISSING", "", ["MISSING"]),
        ("a${MISSING}b", "ab", ["MISSING"]),
        ("pa$$word", "paword", ["$"]),  # "$$" names the variable "$", as in Go
        ("$1x", "onex", []),  # one digit is a whole special name
        ("cost$", "cost$", []),  # a trailing "$" stays
        ("100$ off", "100$ off", []),  # "$" before a space is not a name: kept
        ("${}x", "x", []),  # bad syntax: Go drops "${}"
        ("${HOST", "HOST", []),  # unterminated: Go drops "${"
        ("${HO ST}", "", ["HO ST"]),  # braces take anything up to "}"
        ("${1}", "one", []),
    ],
)
def test_expand_like_go(text: str, expected: str, unset: list[str]) -> None:
    assert expand_env(text, ENV) == (expected, unset)
