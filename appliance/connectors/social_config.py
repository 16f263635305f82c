"""Reading a social/forge connector's config block the way Dex (Go's encoding/json) reads it."""

from __future__ import annotations

import base64
import binascii
import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from appliance.connectors.config_schema import ConfigProblems


@dataclass(frozen=True)
class Org:
    """One entry of `orgs` (github, gitea): an organisation and, optionally, the teams allowed in it."""

    name: str
    teams: tuple[str, ...] = ()


class ConfigReader:
    """One mapping of a connector config: keys matched case-insensitively, every problem collected.

    Call `check()` once everything is read: it raises one ValueError naming every bad key.
    """

    def __init__(
        self, type_name: str, data: object, known: Sequence[str], *, path: str = "",
        problems: list[str] | None = None,
    ) -> None:
        self.type_name = type_name
        self.path = path
        self.problems: list[str] = [] if problems is None else problems
        self.values: dict[str, object] = {}
        if data is None:
            return
        if not isinstance(data, Mapping):
            self.problems.append(f"{path or 'config'} must be a mapping, not {type(data).__name__}")
            return
        by_lower = {key.lower(): key for key in known}
        for raw_key, value in data.items():
            key = str(raw_key)
            name = by_lower.get(key.lower())
            if name is None:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f' (did you mean "{close[0]}"?)' if close else ""
                self.problems.append(f"unknown key {self.at(key)}{hint}")
            elif name in self.values:
                self.problems.append(f"{self.at(key)} is given twice (keys match case-insensitively)")
            elif value is not None:  # a YAML null leaves the default, as a JSON null does in Go
                self.values[name] = value

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        return key in self.values

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{self.at(key)}: {message}")

    def string(self, key: str, default: str = "") -> str:
        value = self.values.get(key, default)
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.problem(key, f"must be a string, not {type(value).__name__}")
            return default
        return str(value)

    def required(self, key: str, default: str = "") -> str:
        value = self.string(key, default)
        if not value:
            self.problem(key, "is required")
        return value

    def boolean(self, key: str, default: bool = False) -> bool:
        value = self.values.get(key, default)
        if isinstance(value, bool):
            return value
        # `$VAR` expansion hands strings over; accept the two spellings a boolean can have.
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        self.problem(key, f"must be true or false, not {value!r}")
        return default

    def choice(self, key: str, allowed: Sequence[str], default: str = "") -> str:
        value = self.string(key, default)
        if value not in allowed:
            shown = ", ".join(item for item in allowed if item)
            self.problem(key, f"must be one of {shown} (got {value!r})")
            return default
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.values.get(key, [])
        if isinstance(value, str):  # a single value where a list belongs: Go would refuse it
            self.problem(key, "must be a list of strings")
            return ()
        if not isinstance(value, Sequence) or not all(isinstance(item, str) for item in value):
            self.problem(key, "must be a list of strings")
            return ()
        return tuple(value)

    def string_map(self, key: str) -> dict[str, str]:
        value = self.values.get(key, {})
        if not isinstance(value, Mapping) or not all(isinstance(item, str) for item in value.values()):
            self.problem(key, "must be a mapping of strings to strings")
            return {}
        return {str(name): str(item) for name, item in value.items()}

    def children(self, key: str, known: Sequence[str]) -> list[ConfigReader]:
        """The readers of a list of mappings (e.g. `orgs`), sharing this reader's problem list."""
        value = self.values.get(key, [])
        if not isinstance(value, Sequence) or isinstance(value, str):
            self.problem(key, "must be a list")
            return []
        return [
            ConfigReader(self.type_name, item, known, path=f"{self.at(key)}[{index}]", problems=self.problems)
            for index, item in enumerate(value)
        ]

    def orgs(self, known: Sequence[str], key: str = "orgs") -> tuple[Org, ...]:
        """`orgs` (github, gitea); `known` is the schema's names for an entry ("name", "teams")."""
        found: list[Org] = []
        for child in self.children(key, known):
            name = child.required("name")
            found.append(Org(name, child.strings("teams")))
        return tuple(found)

    def pem_file(self, key: str) -> bytes | None:
        """A CA bundle named by path (Dex's `rootCA`), read and checked now: a typo fails at start-up."""
        path = self.string(key)
        if not path:
            return None
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            self.problem(key, f"cannot read {path}: {exc.strerror or exc}")
            return None
        return self._checked_pem(key, data)

    def pem_data(self, key: str) -> bytes | None:
        """A CA bundle given inline. Go reads a []byte field as base64; plain PEM is accepted as well."""
        text = self.string(key)
        if not text:
            return None
        if "-----BEGIN" in text:
            return self._checked_pem(key, text.encode())
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            self.problem(key, "must be base64 of a PEM bundle (or the PEM text itself)")
            return None
        return self._checked_pem(key, data)

    def _checked_pem(self, key: str, data: bytes) -> bytes | None:
        try:
            x509.load_pem_x509_certificates(data)
        except ValueError:
            self.problem(key, "holds no PEM certificate")
            return None
        return data

    def check(self) -> None:
        """Raise one ValueError listing every problem found so far."""
        if self.problems:
            raise ConfigProblems(f"{self.type_name} connector: ", self.problems)


def read_config(type_name: str, config: Mapping[str, Any] | None, known: Sequence[str]) -> ConfigReader:
    return ConfigReader(type_name, config, known)


def filter_groups(given: Sequence[str], allowed: Sequence[str]) -> tuple[str, ...]:
    """The groups of `given` that `allowed` lists, in `given`'s order (Dex's groups.Filter)."""
    wanted = set(allowed)
    return tuple(group for group in given if group in wanted)


def unique(items: Sequence[str]) -> tuple[str, ...]:
    """`items` without repeats, first occurrence kept."""
    return tuple(dict.fromkeys(items))
