"""The data side of the connector forms (no UI here): widget ids of key paths, text <-> config values,
and a form's answers back into a nested config. The schema is what `GET /v1/connector-types` serves."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["FieldError", "collect", "describe", "error_id", "field_id", "from_text", "items_at", "keys_at",
           "list_at", "lookup", "placeholder", "plain_path", "shown", "shown_paths", "to_text"]

Key = Mapping[str, Any]  # one key of a schema, as the API serves it (see appliance.connectors.config_schema)
_EMPTY: tuple[Any, ...] = (None, "", [], {}, False)


class FieldError(ValueError):
    """What a person typed cannot be a value of this kind (the message says what to write)."""


def field_id(path: str) -> str:
    """The DOM id of the input for a key path: "groupSearch.userMatchers[0].userAttr" ->
    "f-groupSearch--userMatchers-0--userAttr"."""
    return "f-" + path.replace(".", "--").replace("[", "-").replace("]", "")


def error_id(path: str) -> str:
    return "e-" + field_id(path)[2:]


def shown(key: Key, value: Any) -> bool:
    """Legacy keys are offered only when a stored config still has them (so they can be cleared)."""
    return not key.get("legacy") or value not in _EMPTY


def to_text(kind: str, value: Any) -> str:
    if value is None:
        return ""
    if kind == "strings":
        return ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)
    if kind == "map" and isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def from_text(kind: str, text: str) -> Any:
    """The config value of what was typed; None leaves the key out (as an absent key in a file)."""
    if kind == "secret":  # passwords may start or end with spaces
        return text or None
    text = text.strip()
    if not text:
        return None
    if kind == "strings":
        return [part.strip() for part in text.split(",") if part.strip()] or None
    if kind == "int":
        if not re.fullmatch(r"[+-]?\d+", text):
            raise FieldError(f"{text!r} is not a whole number")
        return int(text)
    if kind == "map":
        out: dict[str, str] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, value = part.partition("=")
            if not sep or not name.strip():
                raise FieldError(f"write key=value pairs separated by commas, not {part!r}")
            out[name.strip()] = value.strip()
        return out
    return text


def placeholder(key: Key, secret_set: bool = False) -> str:
    if key["kind"] == "secret" and secret_set:
        return "unchanged (type to replace)"
    example = key.get("example")
    if example not in (None, "", [], {}):
        return "e.g. " + to_text(key["kind"], example)
    if key.get("default"):
        return f"default: {key['default']}"
    return ""


def describe(path: str, key: Key) -> str:
    """The hint line for a focused field: its path, what it is, its default, why it is legacy."""
    parts = [f"{path}: {key.get('help') or key['kind']}"]
    if key.get("required"):
        parts.append("required")
    if key.get("default"):
        parts.append(f"default {key['default']}")
    if key.get("choices"):
        parts.append("one of " + ", ".join(key["choices"]))
    if key.get("legacy"):
        parts.append(f"legacy: {key['legacy']}")
    return " · ".join(parts)


def items_at(config: Mapping[str, Any], path: str) -> list[Any]:
    """The list at a dotted path with indexes ("claimModifications.newGroupFromClaims"), or []."""
    node: Any = config
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        if part.startswith("["):
            index = int(part[1:-1])
            node = node[index] if isinstance(node, list) and index < len(node) else None
        else:
            node = lookup(node, part) if isinstance(node, Mapping) else None
    return node if isinstance(node, list) else []


def lookup(node: Mapping[str, Any], name: str) -> Any:
    """`node[name]`, the name matched case-insensitively as the parsers match keys."""
    if name in node:
        return node[name]
    return next((v for k, v in node.items() if str(k).lower() == name.lower()), None)


Reader = Callable[[str, Key], Any]
Counter = Callable[[str], int]


def collect(keys: list[Key], original: Mapping[str, Any] | None, read: Reader, count: Counter,
            prefix: str = "", keep_empty_items: bool = False) -> dict[str, Any]:
    """A form's answers as a nested config. `read(path, key)` gives a field's value (None: leave it
    out), `count(path)` how many entries a list of objects shows; keys the form does not offer
    (unknown to this console, or an opaque block) keep their value from `original`. With
    `keep_empty_items`, empty entries of lists stay (while the form is being edited)."""
    original = original if isinstance(original, Mapping) else {}
    names = {str(k["name"]).lower() for k in keys}
    out: dict[str, Any] = {k: copy.deepcopy(v) for k, v in original.items() if str(k).lower() not in names}
    for key in keys:
        name, kind, path = key["name"], key["kind"], prefix + key["name"]
        before = lookup(original, name)
        if kind == "object" and not key.get("keys"):
            value = copy.deepcopy(before)  # an opaque block (kerberos): shown, kept as it is
        elif kind == "object":
            value = collect(key["keys"], before if isinstance(before, Mapping) else None, read, count,
                            path + ".", keep_empty_items) or None
        elif kind == "objects":
            olds = before if isinstance(before, list) else []
            entries = [collect(key["keys"], olds[i] if i < len(olds) else None, read, count, f"{path}[{i}].",
                               keep_empty_items) for i in range(count(path))]
            value = [e for e in entries if e or keep_empty_items] or None
        else:
            value = read(path, key)
        if value is not None:
            out[name] = value
    return out


def shown_paths(keys: list[Key], value: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The paths of the fields a form shows (for the width of its label column)."""
    out: list[str] = []
    for key in keys:
        current = lookup(value, key["name"])
        if not shown(key, current):
            continue
        path = prefix + key["name"]
        if key["kind"] == "object":
            inner = current if isinstance(current, Mapping) else {}
            out += shown_paths(key.get("keys") or [], inner, path + ".")
        elif key["kind"] == "objects":
            entries = current if isinstance(current, list) else []
            for i, entry in enumerate(entries or [{}]):
                out += shown_paths(key.get("keys") or [], entry if isinstance(entry, Mapping) else {},
                              f"{path}[{i}].")
        else:
            out.append(path + (" *" if key.get("required") else ""))
    return out


def plain_path(path: str) -> str:
    """A path without list indexes: "orgs[1].teams" -> "orgs.teams"."""
    out, depth = [], 0
    for char in path:
        depth += char == "["
        if not depth:
            out.append(char)
        depth -= char == "]"
    return "".join(out)


def list_at(config: dict[str, Any], path: str) -> list[Any]:
    """The list at `path` in `config`, created (with the objects on the way) when missing."""
    *parents, leaf = path.rsplit(".", 1) if "." in path else ["", path]
    node: Any = config
    if parents and parents[0]:
        for part in parents[0].split("."):
            name, _, index = part.partition("[")
            child = lookup(node, name)
            if index:
                node = child[int(index.rstrip("]"))]
                continue
            if not isinstance(child, dict):
                child = {}
                node[name] = child
            node = child
    found = lookup(node, leaf)
    if not isinstance(found, list):
        found = []
        node[leaf] = found
    return found


def keys_at(keys: list[Key], path: str) -> list[Key]:
    """The keys of the object (or list entry) at `path` ("claimModifications.newGroupFromClaims")."""
    for part in plain_path(path).split("."):
        match = next((k for k in keys if k["name"] == part), None)
        keys = list(match.get("keys") or []) if match else []
    return keys
