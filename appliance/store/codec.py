"""The JSON codec of stored objects: frozen dataclasses to JSON-able dicts and back, exactly."""

from __future__ import annotations

import binascii
import dataclasses
import json
import types
import typing
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

__all__ = ["dumps", "from_dict", "loads", "to_dict"]

T = TypeVar("T")

# A field converter; None stands for "the value is JSON already", which keeps hot paths free of calls.
_Conv = Callable[[Any], Any] | None

_PLAIN = (str, int, float, bool)
_ONE_MICROSECOND = timedelta(microseconds=1)


@dataclasses.dataclass(frozen=True)
class _ClassInfo:
    cls: type[Any]
    encoders: tuple[tuple[str, _Conv], ...]
    decoders: dict[str, _Conv]


_INFO: dict[type[Any], _ClassInfo] = {}


def to_dict(obj: Any) -> dict[str, Any]:
    """The JSON-able dict of a dataclass instance (every field, defaults included)."""
    info = _info(type(obj))
    return {
        name: getattr(obj, name) if enc is None else enc(getattr(obj, name)) for name, enc in info.encoders
    }


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """The instance of `cls` encoded in `data`.

    Missing keys take the field's default (rows written before a field was added still load);
    unknown keys are ignored (rows written by a newer version still load after a rollback).
    """
    info = _info(cls)
    decoders = info.decoders
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        if name in decoders:
            dec = decoders[name]
            kwargs[name] = value if dec is None or value is None else dec(value)
    return cls(**kwargs)


def dumps(obj: Any) -> str:
    """`obj` as compact JSON text (ASCII only, so NUL and lone surrogates survive any database)."""
    return json.dumps(to_dict(obj), separators=(",", ":"))


def loads(cls: type[T], text: str | bytes) -> T:
    return from_dict(cls, json.loads(text))


def _info(cls: type[Any]) -> _ClassInfo:
    info = _INFO.get(cls)
    if info is None:
        info = _build(cls)
        _INFO[cls] = info
    return info


def _build(cls: type[Any]) -> _ClassInfo:
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    encoders: list[tuple[str, _Conv]] = []
    decoders: dict[str, _Conv] = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = hints[f.name]
        encoders.append((f.name, _encoder(tp)))
        decoders[f.name] = _decoder(tp)
    return _ClassInfo(cls, tuple(encoders), decoders)


def _optional_inner(tp: Any) -> Any | None:
    """X for `X | None` / Optional[X], else None."""
    if typing.get_origin(tp) in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0]
        raise TypeError(f"unsupported union type {tp!r}: only X | None is")
    return None


def _encoder(tp: Any) -> _Conv:
    inner = _optional_inner(tp)
    if inner is not None:
        enc = _encoder(inner)
        if enc is None:
            return None
        return lambda v: None if v is None else enc(v)
    if tp is Any or tp in _PLAIN:
        return None
    if tp is datetime:
        return _enc_datetime
    if tp is bytes:
        return _enc_bytes
    if tp is timedelta:
        return _enc_timedelta
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return to_dict
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple or origin is list:
        item = _encoder(_tuple_item(tp, args) if origin is tuple else args[0])
        return list if item is None else lambda v: [item(x) for x in v]
    if origin is dict:
        _check_str_keys(tp, args)
        value = _encoder(args[1])
        return None if value is None else lambda v: {k: value(x) for k, x in v.items()}
    raise TypeError(f"the store codec cannot encode {tp!r}")


def _decoder(tp: Any) -> _Conv:
    inner = _optional_inner(tp)
    if inner is not None:
        # from_dict and the containers below pass None through before calling a decoder.
        dec = _decoder(inner)
        if dec is None:
            return None
        return lambda v: None if v is None else dec(v)
    if tp is Any or tp in _PLAIN:
        return None
    if tp is datetime:
        return _dec_datetime
    if tp is bytes:
        return binascii.a2b_base64
    if tp is timedelta:
        return _dec_timedelta
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        cls: type[Any] = tp
        return lambda v: from_dict(cls, v)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple:
        item = _decoder(_tuple_item(tp, args))
        return tuple if item is None else lambda v: tuple([item(x) for x in v])
    if origin is list:
        element = _decoder(args[0])
        return list if element is None else lambda v: [element(x) for x in v]
    if origin is dict:
        _check_str_keys(tp, args)
        value = _decoder(args[1])
        return None if value is None else lambda v: {k: value(x) for k, x in v.items()}
    raise TypeError(f"the store codec cannot decode {tp!r}")


def _tuple_item(tp: Any, args: tuple[Any, ...]) -> Any:
    if len(args) == 2 and args[1] is Ellipsis:
        return args[0]
    raise TypeError(f"unsupported tuple type {tp!r}: only tuple[X, ...] is")


def _check_str_keys(tp: Any, args: tuple[Any, ...]) -> None:
    if not args or args[0] is not str:
        raise TypeError(f"unsupported dict type {tp!r}: keys must be str")


def _enc_datetime(v: datetime) -> str:
    if v.tzinfo is None or v.utcoffset() is None:
        # A naive time would come back as UTC and silently shift: refuse it where the bug is.
        raise ValueError("the store keeps timezone-aware datetimes only")
    return v.astimezone(UTC).isoformat(timespec="microseconds")


def _dec_datetime(v: str) -> datetime:
    return datetime.fromisoformat(v)


def _enc_bytes(v: bytes) -> str:
    return binascii.b2a_base64(v, newline=False).decode("ascii")


def _enc_timedelta(v: timedelta) -> int:
    return v // _ONE_MICROSECOND


def _dec_timedelta(v: int) -> timedelta:
    return timedelta(microseconds=v)
