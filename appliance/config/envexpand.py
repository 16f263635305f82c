"""`$VAR` / `${VAR}` expansion with the exact semantics of Go's os.ExpandEnv, as Dex applies it."""

from __future__ import annotations

from collections.abc import Mapping

# After "$", one of these characters is a whole variable name ("$1", "$$", "$*"), as in a shell.
_SPECIAL = frozenset("*#$@!?-0123456789")


def _is_name_char(c: str) -> bool:
    return c == "_" or (c.isascii() and c.isalnum())


def _shell_name(s: str) -> tuple[str, int]:
    """The variable name at the start of s (the text after a "$") and how many characters it uses.

    A name of "" with a width above 0 is bad syntax ("${", "${}"), which Go drops from the output;
    "" with width 0 means the "$" was not followed by a name and stays as it is.
    """
    if s[0] == "{":
        if len(s) > 2 and s[1] in _SPECIAL and s[2] == "}":
            return s[1], 3
        end = s.find("}", 1)
        if end == -1:
            return "", 1
        if end == 1:
            return "", 2
        return s[1:end], end + 1
    if s[0] in _SPECIAL:
        return s[0], 1
    i = 0
    while i < len(s) and _is_name_char(s[i]):
        i += 1
    return s[:i], i


def expand_env(text: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
    """Expand `$NAME` and `${NAME}` in text from env; unset names become "".

    Returns the expanded text and the names that were referenced but unset, so the caller can warn.
    A "$" at the very end, or followed by a character that cannot start a name, is kept.
    """
    if "$" not in text:
        return text, []
    out: list[str] = []
    unset: list[str] = []
    start = 0
    j = 0
    while j < len(text):
        if text[j] == "$" and j + 1 < len(text):
            out.append(text[start:j])
            name, width = _shell_name(text[j + 1 :])
            if name:
                if name in env:
                    out.append(env[name])
                else:
                    unset.append(name)
            elif width == 0:
                out.append("$")
            j += width
            start = j + 1
        j += 1
    out.append(text[start:])
    return "".join(out), unset
