"""Each connector type's config schema (the console's form) against its parser, for every type.

The parsers take their key names from the schemas; these tests check the rest from the outside:
the keys each parser's readers accept are exactly the schema's (at every level), a misspelt key
is refused, the required keys are required, each key's kind is the kind the parser reads, a
parser's problems name the schema's key paths, and a secret never shows in a connector's repr.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

import pytest

from appliance.admin.reload import close_connector
from appliance.connectors import ldap_config, saml, social_config, upstream_config
from appliance.connectors.config_schema import Key, Schema, problems_of
from appliance.connectors.registry import BUILTIN_TYPES, default_registry
from appliance.connectors.schemas import SCHEMAS

TYPES = sorted(BUILTIN_TYPES)
STRICT = [t for t in TYPES if SCHEMAS[t].strict]
# Keys required only together with others (the schema says so in their help), for a valid config.
CONDITIONAL = {"saml": {"insecureSkipSignatureValidation": True}, "microsoft": {"clientSecret": "x-secret"}}
# A key the parser reads only when another key is absent.
ONLY_WITHOUT = {("saml", "ca"): "insecureSkipSignatureValidation",
                ("saml", "caData"): "insecureSkipSignatureValidation"}
WRONG: dict[str, Any] = {"string": ["a", "list"], "secret": ["a", "list"], "duration": ["a", "list"],
                         "bool": "maybe", "int": "many", "strings": 42, "choice": "no-such-choice",
                         "map": 42, "object": 42, "objects": 42}


def sample(key: Key, full: bool = True) -> Any:
    """A value of the key's kind (its example when it has one); objects filled with every key."""
    if key.kind == "object":
        return {k.name: sample(k) for k in key.keys} if full else {}
    if key.kind == "objects":
        return [{k.name: sample(k) for k in key.keys}]
    if key.example is not None:
        return copy.deepcopy(key.example)
    return {"string": "value", "secret": "s3cret-value", "duration": "5m", "bool": True, "int": 1,
            "strings": ["one"], "choice": key.choices[0] if key.choices else "", "map": {"k": "v"}}[key.kind]


def full_config(schema: Schema) -> dict[str, Any]:
    return {k.name: sample(k) for k in schema.keys}


def put(config: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """`config` with `value` at `path`; "orgs[].name" puts it into the first entry of orgs."""
    out = copy.deepcopy(config)
    node = out
    parts = path.split(".")
    for part in parts[:-1]:
        if part.endswith("[]"):
            name = part[:-2]
            if not isinstance(node.get(name), list) or not node[name]:
                node[name] = [{}]
            node = node[name][0]
        else:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
    node[parts[-1]] = value
    return out


def drop(config: dict[str, Any], path: str) -> dict[str, Any]:
    out = copy.deepcopy(config)
    *parents, leaf = path.split(".")
    node = out
    for part in parents:
        node = node[part]
    node.pop(leaf, None)
    return out


def minimal(type_: str) -> dict[str, Any]:
    """The required keys (their examples), and what a valid config of the type needs besides."""
    schema = SCHEMAS[type_]
    config: dict[str, Any] = {}
    for path, key in schema.walk():
        if key.required and "[]" not in path:
            config = put(config, path, sample(key))
    return {**config, **CONDITIONAL.get(type_, {})}


async def problems(type_: str, config: dict[str, Any]) -> list[str]:
    """What the registry's opener (the admin API's check, and the config file's) says about `config`."""
    try:
        instance = default_registry().open(type_, "schema-test", config)
    except (ValueError, TypeError) as exc:
        return list(problems_of(exc))
    await close_connector(instance)
    return []


def keys_of(type_: str, *kinds: str) -> Iterator[tuple[str, Key]]:
    for path, key in SCHEMAS[type_].walk():
        if not key.legacy and (not kinds or key.kind in kinds):
            yield path, key


def test_every_connector_type_has_a_schema() -> None:
    assert set(SCHEMAS) == set(BUILTIN_TYPES) == set(default_registry().types())
    assert len(TYPES) == 17
    for type_, schema in SCHEMAS.items():
        assert schema.type == type_
        for path, key in schema.walk():
            assert (key.kind == "choice") == bool(key.choices), f"{type_}.{path}"
            assert key.kind in ("object", "objects") or not key.keys, f"{type_}.{path}"
            assert not (key.required and key.example is None), f"{type_}.{path}: required, needs an example"


@pytest.mark.parametrize("type_", TYPES)
async def test_the_parser_reads_exactly_the_schemas_keys(type_: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every mapping the parser reads, recorded with the key names it accepts: those are the schema's,
    at every level, and the parser reads every level the schema has."""
    seen: dict[str, set[str]] = {}

    def recording(cls: type, path_arg: int) -> None:
        original = cls.__init__  # type: ignore[misc]

        def init(self: Any, *args: Any, **kwargs: Any) -> None:
            path = kwargs.get("path", args[path_arg] if len(args) > path_arg else "")
            known = kwargs.get("known", args[path_arg + 1] if len(args) > path_arg + 1 else ())
            seen.setdefault(re.sub(r"\[\d+\]", "", str(path)), set()).update(known)
            original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__init__", init)

    recording(upstream_config.ConfigBlock, 1)  # (data, path, known, problems)
    recording(ldap_config._Block, 1)  # (data, path, known, problems)

    original_reader = social_config.ConfigReader.__init__

    def reader_init(self: Any, type_name: str, data: object, known: Any, **kwargs: Any) -> None:
        seen.setdefault(re.sub(r"\[\d+\]", "", kwargs.get("path", "")), set()).update(known)
        original_reader(self, type_name, data, known, **kwargs)

    monkeypatch.setattr(social_config.ConfigReader, "__init__", reader_init)

    schema = SCHEMAS[type_]
    said = await problems(type_, full_config(schema))
    assert not [p for p in said if "unknown key" in p], said
    levels = {""} | {p for p, k in schema.walk() if k.kind in ("object", "objects") and k.keys}
    if type_ == "saml":  # reads its one flat block itself, with the schema's names
        assert saml._KEYS == schema.names() and not seen
        return
    if not schema.strict:  # Dex's test connectors read a key or two and ignore the rest
        assert not seen
        return
    assert set(seen) == levels
    for level in levels:
        assert seen[level] == set(schema.names(level)), level


@pytest.mark.parametrize("type_", STRICT)
async def test_a_key_outside_the_schema_is_refused_at_every_level(type_: str) -> None:
    schema = SCHEMAS[type_]
    levels = [""] + [p + ("[]" if k.kind == "objects" else "") for p, k in schema.walk()
                     if k.kind in ("object", "objects") and k.keys]
    for level in levels:
        config = put(full_config(schema), f"{level}.zzNotAKey" if level else "zzNotAKey", "x")
        said = " ".join(await problems(type_, config))
        assert "unknown key" in said and "zzNotAKey" in said, (level, said)


@pytest.mark.parametrize("type_", TYPES)
async def test_the_required_keys_are_required(type_: str) -> None:
    assert await problems(type_, minimal(type_)) == []
    schema = SCHEMAS[type_]
    for path, key in schema.walk():
        if not key.required:
            continue
        if "[]" in path:  # inside a list entry: an entry with every other key
            list_path, _, leaf = path.rpartition("[].")
            entry = {k.name: sample(k) for k in schema.key(list_path).keys if k.name != leaf}  # type: ignore[union-attr]
            config = put(minimal(type_), list_path, [entry])
        else:
            config = drop(minimal(type_), path)
        said = await problems(type_, config)
        where = {p for message in said for p in schema.locate(message)}
        assert re.sub(r"\[\]", "[0]", path) in where, (path, said)


@pytest.mark.parametrize("type_", TYPES)
async def test_each_key_is_read_as_its_kind(type_: str) -> None:
    """A value of the wrong kind is a problem the parser reports at that key (so the form's kind for
    it, a box, a list, a choice, a nested block, is the kind the parser reads)."""
    schema = SCHEMAS[type_]
    for path, key in keys_of(type_):
        config = minimal(type_)
        if (without := ONLY_WITHOUT.get((type_, path))) is not None:
            config.pop(without, None)
        said = await problems(type_, put(config, path, WRONG[key.kind]))
        where = {p for message in said for p in schema.locate(message)}
        assert re.sub(r"\[\]", "[0]", path) in where, (path, key.kind, said)


# How the parsers word a value of the wrong kind.
KIND_PROBLEM = re.compile(r"must be (a string|true or false|a list|a mapping|an attribute name)")


@pytest.mark.parametrize("type_", TYPES)
async def test_a_value_of_the_declared_kind_is_read_as_such(type_: str) -> None:
    """The converse: the form's kind of value is never a kind problem (a file path that does not exist
    may still be one, of another sort)."""
    schema = SCHEMAS[type_]
    for path, key in keys_of(type_):
        config = minimal(type_)
        if (without := ONLY_WITHOUT.get((type_, path))) is not None:
            config.pop(without, None)
        said = await problems(type_, put(config, path, sample(key, full=False)))
        at_key = [m for m in said if re.sub(r"\[\]", "[0]", path) in schema.locate(m)]
        assert not [m for m in at_key if KIND_PROBLEM.search(m)], (path, key.kind, at_key)


@pytest.mark.parametrize("type_", [t for t in TYPES if any(True for _ in keys_of(t, "secret"))])
async def test_a_secret_never_shows_in_the_connectors_repr(type_: str) -> None:
    config = minimal(type_)
    secrets = {path: f"S3cret-{i}-value" for i, (path, _) in enumerate(keys_of(type_, "secret"))}
    for path, value in secrets.items():
        config = put(config, path, value)
    if type_ == "ldap":
        config["bindDN"] = "cn=portico,dc=example,dc=com"
    instance = default_registry().open(type_, "schema-test", config)
    try:
        shown = repr(instance)
        assert not [v for v in secrets.values() if v in shown], shown
    finally:
        await close_connector(instance)


def test_secrets_are_left_out_and_kept() -> None:
    schema = SCHEMAS["ldap"]
    stored = {"host": "h", "bindDN": "cn=x", "BINDPW": "pw", "userSearch": {"baseDN": "b"}}
    shown, present = schema.without_secrets(stored)
    assert shown == {"host": "h", "bindDN": "cn=x", "userSearch": {"baseDN": "b"}} and present == ["bindPW"]
    assert stored["BINDPW"] == "pw"  # the stored config itself is untouched
    assert schema.keep_secrets({"host": "h2"}, stored) == {"host": "h2", "bindPW": "pw"}
    assert schema.keep_secrets({"host": "h2", "bindPW": "new"}, stored) == {"host": "h2", "bindPW": "new"}
    assert schema.keep_secrets({"host": "h2", "bindPW": ""}, stored)["bindPW"] == "pw"
    assert SCHEMAS["oidc"].secret_paths() == ("clientSecret",)


def test_problems_are_located_by_key_path() -> None:
    ldap = SCHEMAS["ldap"]
    assert ldap.locate("bindPW is empty but bindDN is set (a bind without a password is unauthenticated)") \
        == ("bindPW", "bindDN")
    assert ldap.locate('unknown key userSearch.fiter (did you mean "filter"?)') == ()
    assert ldap.locate("groupSearch.userMatchers[1].userAttr must be a string, not int") == (
        "groupSearch.userMatchers[1].userAttr",)
    assert SCHEMAS["oidc"].locate("rootCAs[0] is not in PEM format") == ("rootCAs",)
    assert SCHEMAS["github"].locate("orgs[2].name: is required") == ("orgs[2].name",)
    saml_problem = "missing required fields ssoURL, usernameAttr"
    assert SCHEMAS["saml"].locate(saml_problem) == ("ssoURL", "usernameAttr")
