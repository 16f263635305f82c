"""Reading YAML nodes with their line numbers: key matching, typed values and problem collection."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import yaml

from appliance.config.durations import DurationError, parse_duration
from appliance.config.envexpand import expand_env
from appliance.config.schema import Problem

_STR = "tag:yaml.org,2002:str"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_NULL = "tag:yaml.org,2002:null"
_KINDS = {
    _STR: "a string",
    "tag:yaml.org,2002:int": "an integer",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:bool": "a boolean",
    _NULL: "null",
    _TIMESTAMP: "a timestamp",
    "tag:yaml.org,2002:binary": "binary data",
}


def compose(text: str) -> tuple[yaml.Node | None, Problem | None]:
    """Parse text into a node tree (SafeLoader rules), or return the syntax error as a Problem."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader), None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        what = " ".join(part for part in (exc.context, exc.problem) if part)
        return None, Problem("error", "", line, f"invalid YAML: {what or exc}")
    except yaml.YAMLError as exc:
        return None, Problem("error", "", 0, f"invalid YAML: {exc}")


def line_of(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == _NULL


def describe(node: yaml.Node) -> str:
    """What a node holds, for "expected X, got Y" messages."""
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return _KINDS.get(str(node.tag), f"a value tagged {node.tag}")


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def generic(path: str) -> str:
    """The path with list indexes erased, as used by the key tables: staticClients[].name."""
    return re.sub(r"\[\d+\]", "[]", path)


@dataclass
class Fields:
    """One YAML mapping whose keys were matched against the keys valid at its path."""

    path: str
    node: yaml.Node | None  # the mapping, or None when the section is absent
    entries: dict[str, tuple[yaml.Node, yaml.Node]] = field(default_factory=dict)  # canonical key →

    def child(self, key: str) -> str:
        return join(self.path, key)

    def value(self, key: str) -> yaml.Node | None:
        """The value node of key, or None when absent or null (Go's JSON treats null as unset)."""
        entry = self.entries.get(key)
        if entry is None or is_null(entry[1]):
            return None
        return entry[1]

    def has(self, key: str) -> bool:
        return self.value(key) is not None

    @property
    def line(self) -> int:
        return line_of(self.node) if self.node is not None else 0


Where = yaml.Node | Fields | int | None  # a node's line, a mapping's first line, a line number, unknown


class Reader:
    """Walks the node tree, converting values and collecting every problem instead of stopping."""

    def __init__(self, env: Mapping[str, str], not_supported: Mapping[str, str], expand: bool = True):
        self.env = env
        self.expand_enabled = expand
        self.problems: list[Problem] = []
        self.suggested: set[str] = set()  # key paths offered in a "did you mean" so far
        self._not_supported = not_supported
        # A loader instance only lends its constructor (scalar conversion, "<<" merges); it reads nothing.
        self._ctor = yaml.SafeLoader("")
        self._building: set[int] = set()  # collections being converted by raw(), to stop alias cycles
        self._merged: dict[int, set[int]] = {}  # mapping node id -> ids of keys merged in by "<<"

    # problems
    def error(self, path: str, where: Where, message: str) -> None:
        self.problems.append(Problem("error", path, _line(where), message))

    def warning(self, path: str, where: Where, message: str) -> None:
        self.problems.append(Problem("warning", path, _line(where), message))

    def missing(self, path: str, where: Where, message: str) -> None:
        """A required key is absent: an error, unless an unknown key nearby was already suggested
        as its misspelling (one mistake, one error)."""
        if path not in self.suggested:
            self.error(path, where, message)

    def type_error(self, path: str, node: yaml.Node, expected: str, hint: str = "") -> None:
        self.error(path, node, f"expected {expected}, got {describe(node)}{hint}")

    # mappings
    def mapping(self, node: yaml.Node | None, path: str, known: Sequence[str]) -> Fields:
        """Match a mapping's keys case-insensitively (as Go's JSON decoder does) against known.

        Keys that Dex knows but Portico does not support yet draw a warning and are dropped;
        anything else unknown is an error with a suggestion. A wrong type gives empty Fields.
        """
        if node is None or is_null(node):
            return Fields(path, node)
        if not isinstance(node, yaml.MappingNode):
            self.type_error(path, node, "a mapping")
            return Fields(path, None)
        merged = self._flatten(node, path)
        lowered = {k.lower(): k for k in known}
        prefix = generic(path) + "." if path else ""
        unsupported = {
            pattern[len(prefix) :].lower(): pattern[len(prefix) :]
            for pattern in self._not_supported
            if pattern.startswith(prefix) and "." not in pattern[len(prefix) :]
        }
        fields = Fields(path, node)
        first_seen: dict[str, int] = {}
        from_merge: set[str] = set()
        seen_nodes: set[int] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != _STR:
                self.error(path, key_node, f"keys must be strings, got {describe(key_node)}")
                continue
            written = str(key_node.value)
            low = written.lower()
            if id(key_node) in seen_nodes:
                continue  # the same node again: a mapping that merges itself with "<<"
            seen_nodes.add(id(key_node))
            if low in from_merge or (low in first_seen and id(key_node) in merged):
                # YAML merge: a key written in the mapping overrides one merged in with "<<"
                if id(key_node) in merged:
                    continue
                from_merge.discard(low)
            elif low in first_seen:
                self.error(
                    join(path, written),
                    key_node,
                    f"duplicate key (already given on line {first_seen[low]}; keys match case-insensitively)",
                )
                continue
            first_seen[low] = line_of(key_node)
            if id(key_node) in merged:
                from_merge.add(low)
            if low in lowered:
                fields.entries[lowered[low]] = (key_node, value_node)
            elif low in unsupported:
                canonical = unsupported[low]
                reason = self._not_supported[prefix + canonical]
                self.warning(
                    join(path, canonical), key_node, f"not supported by Portico yet, ignored: {reason}"
                )
            else:
                options = [*known, *unsupported.values()]
                guess = closest(written, options)
                if guess:
                    self.suggested.add(join(path, guess))
                self.error(join(path, written), key_node, "unknown key" + suggest(written, options))
        return fields

    def _flatten(self, node: yaml.MappingNode, path: str) -> set[int]:
        """Resolve "<<" merge keys in place; returns the ids of the key nodes that were merged in."""
        if id(node) in self._merged:
            return self._merged[id(node)]
        own = {id(key) for key, _ in node.value}
        try:
            self._ctor.flatten_mapping(node)
        except yaml.MarkedYAMLError as exc:
            self.error(path, node, f"invalid merge key: {exc.problem}")
        except RecursionError:  # "<<" pointing at a mapping that contains it
            self.error(path, node, "invalid merge key: it refers to a mapping that contains it")
        merged = {id(key) for key, _ in node.value if id(key) not in own}
        self._merged[id(node)] = merged
        return merged

    def section(self, parent: Fields, key: str, known: Sequence[str]) -> Fields:
        return self.mapping(parent.value(key), parent.child(key), known)

    def items(self, parent: Fields, key: str) -> list[tuple[str, yaml.Node]]:
        """The elements of a list value with their paths ("connectors[2]")."""
        node = parent.value(key)
        if node is None:
            return []
        if not isinstance(node, yaml.SequenceNode):
            self.type_error(parent.child(key), node, "a list")
            return []
        return [(f"{parent.child(key)}[{i}]", item) for i, item in enumerate(node.value)]

    # scalars
    def string(self, f: Fields, key: str, *, expand: bool = False) -> str | None:
        """A string value; None when absent or wrong. expand: apply $VAR expansion."""
        node = f.value(key)
        if node is None:
            return None
        return self.string_node(node, f.child(key), expand=expand)

    def string_node(self, node: yaml.Node, path: str, *, expand: bool = False) -> str | None:
        if not isinstance(node, yaml.ScalarNode) or node.tag not in (_STR, _TIMESTAMP):
            hint = " (put it in quotes)" if isinstance(node, yaml.ScalarNode) else ""
            self.type_error(path, node, "a string", hint)
            return None
        text = str(node.value)
        return self.expand(path, node, text) if expand else text

    def expand(self, path: str, node: yaml.Node, text: str) -> str:
        if not self.expand_enabled:
            return text
        result, unset = expand_env(text, self.env)
        for name in unset:
            if len(name) == 1 and not _is_name_start(name):
                message = (
                    f'"${name}" is read as the variable "{name}", which is not set, so it becomes "" '
                    "(Dex does the same); set DEX_EXPAND_ENV=false to turn expansion off"
                )
            else:
                message = f"environment variable {name} is not set; ${name} expands to an empty string"
            self.warning(path, node, message)
        return result

    def boolean(self, f: Fields, key: str) -> bool | None:
        node = f.value(key)
        if node is None:
            return None
        if not isinstance(node, yaml.ScalarNode) or node.tag != "tag:yaml.org,2002:bool":
            self.type_error(f.child(key), node, "true or false")
            return None
        return bool(self._ctor.construct_object(node))

    def integer(self, f: Fields, key: str, *, expand: bool = False) -> int | None:
        """An integer; a string of digits is accepted too, since $VAR expansion produces strings."""
        node = f.value(key)
        if node is None:
            return None
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:int":
            return int(self._ctor.construct_object(node))
        if isinstance(node, yaml.ScalarNode) and node.tag == _STR:
            text = self.expand(f.child(key), node, str(node.value)) if expand else str(node.value)
            if text.strip().isdigit():
                return int(text)
            self.error(f.child(key), node, f'expected an integer, got "{text}"')
            return None
        self.type_error(f.child(key), node, "an integer")
        return None

    def strings(self, f: Fields, key: str, *, expand: bool = False) -> tuple[str, ...] | None:
        """A list of strings; None when absent or when any element is wrong."""
        good = True
        out: list[str] = []
        for path, item in self.items(f, key):
            value = self.string_node(item, path, expand=expand)
            if value is None:
                good = False
            else:
                out.append(value)
        if f.value(key) is None or not good or not isinstance(f.value(key), yaml.SequenceNode):
            return None
        return tuple(out)

    def string_map(self, f: Fields, key: str) -> dict[str, str] | None:
        node = f.value(key)
        if node is None:
            return None
        if not isinstance(node, yaml.MappingNode):
            self.type_error(f.child(key), node, "a mapping")
            return None
        out: dict[str, str] = {}
        for key_node, value_node in node.value:
            name = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            value = self.string_node(value_node, join(f.child(key), name))
            if value is not None:
                out[name] = value
        return out

    def duration(self, f: Fields, key: str, *, expand: bool = False) -> timedelta | None:
        """A Go duration string ("5m"); None when absent, empty or wrong (the error is recorded)."""
        node = f.value(key)
        if node is None:
            return None
        if not isinstance(node, yaml.ScalarNode) or node.tag != _STR:
            self.type_error(f.child(key), node, 'a duration string such as "30s", "5m" or "24h"')
            return None
        text = self.expand(f.child(key), node, str(node.value)) if expand else str(node.value)
        if text == "":
            return None  # Dex treats an empty duration as unset
        try:
            value = parse_duration(text)
        except DurationError as exc:
            self.error(f.child(key), node, str(exc))
            return None
        if value < timedelta(0):
            self.error(f.child(key), node, f'duration "{text}" must not be negative')
            return None
        return value

    def raw(self, node: yaml.Node, path: str, *, expand: bool) -> Any:
        """Plain Python data (dict/list/str/int/float/bool/None) for a subtree kept as written.

        expand mirrors Dex's expandEnvInMap: strings in mappings and in lists directly inside a
        mapping are expanded; a list nested in a list is left alone, as Dex leaves it.
        """
        if isinstance(node, yaml.CollectionNode):
            if id(node) in self._building:
                self.error(path, node, "an alias refers to a mapping or list that contains it")
                return None
            self._building.add(id(node))
            try:
                return self._raw_collection(node, path, expand=expand)
            finally:
                self._building.discard(id(node))
        if node.tag in (_STR, _TIMESTAMP):
            text = str(node.value)
            return self.expand(path, node, text) if expand else text
        if node.tag == "tag:yaml.org,2002:binary":
            return str(node.value)
        return self._ctor.construct_object(node)

    def _raw_collection(self, node: yaml.CollectionNode, path: str, *, expand: bool) -> Any:
        if isinstance(node, yaml.MappingNode):
            self._flatten(node, path)
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                name = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
                out[name] = self.raw(value_node, join(path, name), expand=expand)
            return out
        return [
            self.raw(item, f"{path}[{i}]", expand=expand and not isinstance(item, yaml.SequenceNode))
            for i, item in enumerate(node.value)
        ]


def _is_name_start(c: str) -> bool:
    return c == "_" or (c.isascii() and c.isalpha())


def closest(word: str, options: Sequence[str]) -> str:
    """The option closest to word, matched case-insensitively, or "" when none is close."""
    import difflib  # only a misspelt key needs it: not loaded by a server whose config is right

    by_lower = {o.lower(): o for o in options}
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[close[0]] if close else ""


def suggest(word: str, options: Sequence[str]) -> str:
    """' (did you mean "x"?)' for the closest option, or ""."""
    guess = closest(word, options)
    return f' (did you mean "{guess}"?)' if guess else ""


def _line(where: Where) -> int:
    if where is None:
        return 0
    if isinstance(where, int):
        return where
    if isinstance(where, Fields):
        return where.line
    return line_of(where)
