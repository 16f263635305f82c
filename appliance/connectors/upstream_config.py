"""Reading an upstream connector's config block as Dex (Go's encoding/json) does, and its rootCAs."""

from __future__ import annotations

import base64
import binascii
import difflib
import os
from collections.abc import Mapping, Sequence

from cryptography import x509

from appliance.connectors.config_schema import ConfigProblems


class ConfigBlock:
    """One mapping of a connector config: keys matched case-insensitively, every problem collected.

    Go's JSON decoder matches keys case-insensitively and leaves a field at its zero value for a null;
    unknown keys are errors here (with a suggestion), as everywhere else in Portico's config.
    """

    def __init__(self, data: object, path: str, known: Sequence[str], problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        self.values: dict[str, object] = {}
        if data is None:
            return
        if not isinstance(data, Mapping):
            problems.append(f"{path or 'config'} must be a mapping, not {type(data).__name__}")
            return
        by_lower = {key.lower(): key for key in known}
        for key, value in data.items():
            name = by_lower.get(str(key).lower())
            where = self.at(str(key))
            if name is None:
                close = difflib.get_close_matches(str(key), list(known), n=1)
                problems.append(f"unknown key {where}" + (f' (did you mean "{close[0]}"?)' if close else ""))
            elif name in self.values:
                problems.append(f"{where} is given twice (keys match case-insensitively)")
            elif value is not None:
                self.values[name] = value

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        return key in self.values

    def string(self, key: str, default: str = "") -> str:
        value = self.values.get(key, default)
        if not isinstance(value, str):
            self.problems.append(f"{self.at(key)} must be a string, not {type(value).__name__}")
            return default
        return value

    def boolean(self, key: str) -> bool:
        return self.optional_boolean(key) or False

    def optional_boolean(self, key: str) -> bool | None:
        """None when the key is absent (Dex's *bool), else the value."""
        value = self.values.get(key)
        if value is None or isinstance(value, bool):
            return value
        self.problems.append(f"{self.at(key)} must be true or false, not {value!r}")
        return None

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.values.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.problems.append(f"{self.at(key)} must be a list of strings")
            return ()
        return tuple(value)

    def block(self, key: str, known: Sequence[str]) -> ConfigBlock:
        return ConfigBlock(self.values.get(key), self.at(key), known, self.problems)

    def blocks(self, key: str, known: Sequence[str]) -> list[ConfigBlock]:
        value = self.values.get(key, [])
        if not isinstance(value, list):
            self.problems.append(f"{self.at(key)} must be a list")
            return []
        return [ConfigBlock(item, f"{self.at(key)}[{i}]", known, self.problems)
                for i, item in enumerate(value)]


def check(kind: str, problems: list[str]) -> None:
    """Raise one ValueError naming every problem (the config loader shows them with the connector)."""
    if problems:
        raise ConfigProblems(f"{kind} connector: ", problems)


def required(block: ConfigBlock, *keys: str) -> None:
    for key in keys:
        if not block.string(key):
            block.problems.append(f"{block.at(key)} is required")


def read_root_cas(block: ConfigBlock, key: str = "rootCAs") -> tuple[bytes, ...]:
    """Dex's rootCAs: each entry a file path, else base64 of PEM, else PEM text; checked now.

    The files are a few KB and read once when the connector is opened, as Dex does.
    """
    found: list[bytes] = []
    for index, entry in enumerate(block.strings(key)):
        if not entry:
            continue
        pem = _ca_bytes(entry)
        try:
            x509.load_pem_x509_certificates(pem)
        except ValueError:
            block.problems.append(
                f"{block.at(key)}[{index}] is not in PEM format: give a path to a PEM file, the PEM text, "
                "or base64 of it"
            )
            continue
        found.append(pem)
    return tuple(found)


def _ca_bytes(entry: str) -> bytes:
    if os.path.isfile(entry):
        with open(entry, "rb") as handle:
            return handle.read()
    try:
        return base64.b64decode(entry, validate=True)
    except (binascii.Error, ValueError):
        return entry.encode()


def http_url(block: ConfigBlock, key: str, *, needed: bool = False) -> str:
    """A URL value that must be http(s) when given."""
    value = block.string(key)
    if not value:
        if needed:
            block.problems.append(f"{block.at(key)} is required")
        return ""
    if not value.startswith(("https://", "http://")):
        block.problems.append(f"{block.at(key)} must be an http(s) URL, not {value!r}")
    return value
