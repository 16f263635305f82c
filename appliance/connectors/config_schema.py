"""The shape of a connector's config block, declared once: the parser reads its key names from it, the
admin API serves it as the console's form, and both find a problem's key path with it."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["ConfigProblems", "Key", "Kind", "Login", "Schema", "problems_of"]

# string, secret (never shown back), bool, int, strings (a list of strings), duration (Go-style text),
# choice (one of `choices`), map (string to string), object (nested `keys`), objects (a list of them).
Kind = Literal["string", "secret", "bool", "int", "strings", "duration", "choice", "map", "object", "objects"]
Login = Literal["password", "callback", "saml", "none"]
_CONTAINERS = ("object", "objects")
# A key path as problem messages write it: "host", "userSearch.baseDN", "orgs[1].teams", "rootCAs[0]".
_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\[\d+\])?(?:\.[A-Za-z_][A-Za-z0-9_]*(?:\[\d+\])?)*")
_INDEX = re.compile(r"\[\d+\]")


class ConfigProblems(ValueError):
    """Every problem of one config block; str() is the one-line message the parsers always raised."""

    def __init__(self, prefix: str, problems: Sequence[str]) -> None:
        super().__init__(prefix + "; ".join(problems))
        self.problems = tuple(problems)


def problems_of(exc: BaseException) -> tuple[str, ...]:
    """The separate problems behind a parser's ValueError (one, for parsers that stop at the first)."""
    found = getattr(exc, "problems", None)
    if isinstance(found, tuple) and found:
        return tuple(str(p) for p in found)
    return (str(exc) or type(exc).__name__,)


@dataclass(frozen=True)
class Key:
    """One key of a config block, as Dex spells it."""

    name: str
    kind: Kind = "string"
    help: str = ""
    required: bool = False  # always required (keys required only with others say so in `help`)
    default: str = ""  # what applies when the key is left out, for people ("636", "sub")
    example: Any = None  # a valid value: the form's placeholder, and what the schema tests fill in
    choices: tuple[str, ...] = ()  # kind "choice"; "" (unset) is always allowed
    keys: tuple[Key, ...] = ()  # kinds "object" and "objects"
    tristate: bool = False  # a bool whose absence means something else than false ("detect")
    legacy: str = ""  # accepted for old configs, not offered in a new form: why (ignored, replaced)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name, "kind": self.kind, "help": self.help, "required": self.required,
            "default": self.default, "example": self.example, "choices": list(self.choices),
            "tristate": self.tristate, "legacy": self.legacy,
        }
        if self.kind in _CONTAINERS:
            out["keys"] = [k.as_dict() for k in self.keys]
        return out


@dataclass(frozen=True)
class Schema:
    """A connector type's config block. `strict`: unknown keys are errors (Dex's test connectors
    ignore them). `login` says how users log in through it (the console offers a test login for
    "password")."""

    type: str
    login: Login
    keys: tuple[Key, ...]
    strict: bool = True

    def _level(self, path: str) -> tuple[Key, ...]:
        keys = self.keys
        for part in filter(None, _INDEX.sub("", path).split(".")):
            found = next((k for k in keys if k.name == part and k.kind in _CONTAINERS), None)
            if found is None:
                raise KeyError(f"{self.type}: no object {part!r} in {path!r}")
            keys = found.keys
        return keys

    def names(self, path: str = "") -> tuple[str, ...]:
        """The key names known at `path` ("" for the top, "userSearch", "groupSearch.userMatchers")."""
        return tuple(k.name for k in self._level(path))

    def walk(self, keys: tuple[Key, ...] | None = None, prefix: str = "") -> Iterator[tuple[str, Key]]:
        """Every key with its path; the keys of list items under "name[]"."""
        for key in self.keys if keys is None else keys:
            path = f"{prefix}{key.name}"
            yield path, key
            if key.kind == "object":
                yield from self.walk(key.keys, path + ".")
            elif key.kind == "objects":
                yield from self.walk(key.keys, path + "[].")

    def key(self, path: str) -> Key | None:
        """The key at a path as walk() names it ("orgs[].name"); indexes ("orgs[1].name") match too."""
        wanted = _INDEX.sub("[]", path)
        return next((k for p, k in self.walk() if p == wanted), None)

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, "login": self.login, "strict": self.strict,
                "keys": [k.as_dict() for k in self.keys]}

    # --- secrets ----------------------------------------------------------------------------------

    def secret_paths(self) -> tuple[str, ...]:
        """Dotted paths of the secret keys outside lists (no connector keeps a secret in a list)."""
        return tuple(p for p, k in self.walk() if k.kind == "secret" and "[]" not in p)

    def without_secrets(self, config: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """(the config with every secret value left out, the paths of the secrets that are set)."""
        clean = copy.deepcopy(dict(config))
        present = []
        for path in self.secret_paths():
            if _pop(clean, path) not in (None, ""):
                present.append(path)
        return clean, present

    def keep_secrets(self, new: Mapping[str, Any], old: Mapping[str, Any]) -> dict[str, Any]:
        """`new` with each secret it leaves out (or empty) taken from `old`: a form that never saw
        a secret saves it unchanged."""
        merged = copy.deepcopy(dict(new))
        for path in self.secret_paths():
            if _get(merged, path) in (None, ""):
                kept = _get(old, path)
                if kept not in (None, ""):
                    _put(merged, path, kept)
        return merged

    # --- problems ---------------------------------------------------------------------------------

    def locate(self, problem: str) -> tuple[str, ...]:
        """The key paths a parser's problem message names, as written (with list indexes), in order.

        A list of strings is named with its index ("rootCAs[0]"): that is the key "rootCAs".
        """
        found: list[str] = []
        for token in _PATH.findall(problem):
            path = token
            while path and self.key(path) is None:
                trimmed = re.sub(r"\[\d+\]$", "", path)
                if trimmed == path:
                    path = ""
                    break
                path = trimmed
            if path and path not in found:
                found.append(path)
        return tuple(found)


def _get(config: Mapping[str, Any], path: str) -> Any:
    node: Any = config
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return None
        node = _lookup(node, part)
    return node


def _lookup(node: Mapping[str, Any], name: str) -> Any:
    # Keys match case-insensitively, as the parsers read them (Go's encoding/json).
    if name in node:
        return node[name]
    return next((v for k, v in node.items() if str(k).lower() == name.lower()), None)


def _pop(config: dict[str, Any], path: str) -> Any:
    *parents, leaf = path.split(".")
    node: Any = config
    for part in parents:
        node = _lookup(node, part) if isinstance(node, Mapping) else None
    if not isinstance(node, dict):
        return None
    for name in list(node):
        if str(name).lower() == leaf.lower():
            return node.pop(name)
    return None


def _put(config: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = config
    for part in parents:
        child = _lookup(node, part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[leaf] = value
