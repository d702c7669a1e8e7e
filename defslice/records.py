"""Typed JSON records: frozen dataclasses that are written and read as JSON documents."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from defslice.errors import DefsliceError
from defslice.reporting import write_json

__all__ = ["Record", "RecordError", "omitted", "sha256_of"]


def omitted() -> Any:
    """A record field that defaults to ``None`` and is left out of the JSON when
    ``None``."""
    return dataclasses.field(default=None, metadata={"omit_none": True})


class RecordError(DefsliceError):
    """A JSON document does not have the shape of the record it is read as."""


def sha256_of(path: str | Path) -> str:
    """SHA-256 of a file's bytes, as 64 hex digits."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _encode(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (tuple, list)):
        return [_encode(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _encode(v) for k, v in value.items()}
    return value


def _decode(hint: Any, value: Any, where: str) -> Any:
    """``value`` (parsed JSON) as the type ``hint``; ``where`` names it in errors."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            raise TypeError(f"{where}: unions other than X | None are not records")
        return _decode(rest[0], value, where)
    if isinstance(hint, type) and issubclass(hint, Record):
        return hint.from_json(value, where)
    if origin in (tuple, list):
        if not isinstance(value, list):
            raise RecordError(f"{where}: expected a list, got {type(value).__name__}")
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(args) != len(value):
                raise RecordError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(_decode(a, v, f"{where}[{i}]")
                         for i, (a, v) in enumerate(zip(args, value, strict=True)))
        item = args[0] if args else Any
        items = [_decode(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping):
        if not isinstance(value, dict):
            raise RecordError(f"{where}: expected an object, got {type(value).__name__}")
        item = args[1] if args else Any
        return {k: _decode(item, v, f"{where}.{k}") for k, v in value.items()}
    return _decode_scalar(hint, value, where)


def _decode_scalar(hint: Any, value: Any, where: str) -> Any:
    if hint is Path:
        if not isinstance(value, str):
            raise RecordError(f"{where}: expected a path string, got {value!r}")
        return Path(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, bool):
        raise RecordError(f"{where}: expected an integer, got {value!r}")
    if isinstance(hint, type) and not isinstance(value, hint):
        raise RecordError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


class Record:
    """Base of the frozen dataclasses that travel as JSON (stage reports and their parts).

    ``to_json`` gives a JSON-ready dict keyed by field name (nested records, tuples and
    paths become objects, lists and strings; a field made with :func:`omitted` is
    left out when ``None``); ``from_json`` rebuilds the record from
    such a dict by the field annotations and refuses unknown or missing keys, so
    ``R.from_json(r.to_json()) == r``.
    """

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON-ready dict."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is None and f.metadata.get("omit_none"):
                continue
            out[f.name] = _encode(value)
        return out

    @classmethod
    def from_json(cls, data: Any, where: str | None = None) -> Self:
        """The record held by ``data`` (a dict as :meth:`to_json` returns it)."""
        where = where or cls.__name__
        if not isinstance(data, dict):
            raise RecordError(f"{where}: expected an object, got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise RecordError(f"{where}: unknown keys {', '.join(unknown)}")
        kwargs: dict[str, Any] = {}
        for name, f in fields.items():
            if name in data:
                kwargs[name] = _decode(hints[name], data[name], f"{where}.{name}")
            elif (f.default is dataclasses.MISSING
                  and f.default_factory is dataclasses.MISSING):
                raise RecordError(f"{where}: missing key {name}")
        return cls(**kwargs)

    def save(self, path: str | Path) -> Path:
        """Write the record as indented JSON (parent folders created); returns the path."""
        return write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """The record in the JSON file ``path``; a missing or malformed file is an error
        naming it."""
        path = Path(path)
        if not path.is_file():
            raise RecordError(f"{path} is missing; run the stage that writes it")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise RecordError(f"{path} is not valid JSON ({exc}); run its stage again") \
                from None
        return cls.from_json(data, str(path))
