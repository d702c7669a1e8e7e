"""Command-line arguments of the stages, declared once on their option dataclasses.

A stage's options are a frozen dataclass whose fields are made with :func:`option`; the
field's name, type, default and help text define its command-line flag. The stage
commands and ``defslice flow`` build their parsers from these declarations
(:func:`add_options`), turn parsed arguments back into options (:func:`options_from_args`)
and, for a reproducible command line, options into arguments (:func:`options_argv`).
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from defslice import config as cfgmod
from defslice.errors import ConfigError

__all__ = ["DEFAULT_PRESET", "Flag", "add_config_arguments", "add_options", "add_out_argument",
           "config_argv", "config_from_args", "flag_name", "option", "options_argv",
           "options_from_args", "require"]

#: The preset a command runs without ``--preset`` / ``--config``: the slicing paper's layer.
DEFAULT_PRESET = "dat56"


@dataclass(frozen=True)
class Flag:
    """How one option field appears on the command line.

    Members
    -------
    help : str
        Help text; ``(default: ...)`` is appended for options that take a value.
    metavar : str or None
    negate : bool
        A ``bool`` field that defaults to true and is switched off by ``--no-<name>``.
    choices : tuple or None
        The accepted values.
    """

    help: str
    metavar: str | None = None
    negate: bool = False
    choices: tuple | None = None


def option(default: Any, help: str, *, metavar: str | None = None, negate: bool = False,
           choices: tuple | None = None) -> Any:
    """A dataclass field that is also the command-line flag ``--<field-name>``.

    ``bool`` fields are switches (``--name``; with ``negate``, ``--no-name`` for a field
    that defaults to true); ``bool | None`` fields take ``--name`` / ``--no-name`` and
    stay ``None`` (automatic) when neither is given; any other type converts the
    argument (``int``, ``float``, ``str``, ``Path``, optionally ``| None``), limited to
    ``choices`` when given.
    """
    return dataclasses.field(default=default,
                             metadata={"flag": Flag(help, metavar, negate, choices)})


def _flagged(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if "flag" in f.metadata]


def flag_name(f: dataclasses.Field) -> str:
    """``--field-name`` (or ``--no-field-name`` for a negated switch)."""
    name = f.name.replace("_", "-")
    return f"--no-{name}" if f.metadata["flag"].negate else f"--{name}"


def _base_type(hint: Any) -> tuple[Any, bool]:
    """``(type, optional)`` of an annotation ``T`` or ``T | None``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        return rest[0], True
    return hint, False


def add_options(parser: argparse.ArgumentParser, cls: type, only: tuple[str, ...] | None = None,
                defaults: dict[str, Any] | None = None) -> None:
    """Add the flags of the option dataclass ``cls`` (those in ``only``, default all);
    ``defaults`` overrides a field's default for this parser."""
    hints = typing.get_type_hints(cls)
    for f in _flagged(cls):
        if only is not None and f.name not in only:
            continue
        spec: Flag = f.metadata["flag"]
        default = (defaults or {}).get(f.name, f.default)
        base, optional = _base_type(hints[f.name])
        if base is bool:
            action: Any = (argparse.BooleanOptionalAction if optional
                           else "store_false" if spec.negate else "store_true")
            parser.add_argument(flag_name(f), dest=f.name, action=action, default=default,
                                help=spec.help)
            continue
        kwargs: dict[str, Any] = {"type": base, "metavar": spec.metavar,
                                  "choices": spec.choices}
        shown = "" if default is None else f" (default: {default})"
        parser.add_argument(flag_name(f), dest=f.name, default=default,
                            help=spec.help + shown, **kwargs)


def options_from_args(cls: type, args: argparse.Namespace, **fixed: Any) -> Any:
    """An instance of ``cls`` from the parsed flags present in ``args`` (others keep their
    defaults); ``fixed`` sets fields directly."""
    values = {f.name: getattr(args, f.name) for f in _flagged(cls) if hasattr(args, f.name)}
    return cls(**{**values, **fixed})


def options_argv(options: Any, only: tuple[str, ...] | None = None,
                 defaults: dict[str, Any] | None = None) -> list[str]:
    """The flags that reproduce ``options`` (fields in ``only``, default all), leaving
    out those equal to their default (``defaults`` overrides field defaults)."""
    argv: list[str] = []
    for f in _flagged(type(options)):
        if only is not None and f.name not in only:
            continue
        value = getattr(options, f.name)
        if value == (defaults or {}).get(f.name, f.default):
            continue
        name = f.name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag_name(f) if f.metadata["flag"].negate or value
                        else f"--no-{name}")
        else:
            argv += [f"--{name}", str(value)]
    return argv


def require(ok: bool, cls: type, name: str, value: object, allowed: str) -> None:
    """Raise a :class:`~defslice.errors.ConfigError` naming the flag of field ``name`` of
    ``cls`` unless ``ok``."""
    if not ok:
        f = next(f for f in dataclasses.fields(cls) if f.name == name)
        raise ConfigError(flag_name(f) if "flag" in f.metadata else name, value, allowed)


def add_config_arguments(parser: argparse.ArgumentParser,
                         default_preset: str = DEFAULT_PRESET) -> None:
    """Add the ``--preset`` / ``--config`` pair every stage accepts."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--preset", choices=sorted(cfgmod.PRESETS), default=None,
                       help=f"named configuration (default: {default_preset})")
    group.add_argument("--config", type=Path, default=None, help="configuration TOML file")
    parser.set_defaults(default_preset=default_preset)


def config_from_args(args: argparse.Namespace) -> cfgmod.Config:
    """The :class:`~defslice.config.Config` chosen by ``--preset`` / ``--config``."""
    if getattr(args, "config", None) is not None:
        return cfgmod.load(args.config)
    return cfgmod.preset(args.preset or args.default_preset)


def config_argv(args: argparse.Namespace) -> list[str]:
    """The ``--preset`` / ``--config`` arguments that choose the same configuration."""
    if getattr(args, "config", None) is not None:
        return ["--config", str(args.config)]
    return ["--preset", args.preset or args.default_preset]


def add_out_argument(parser: argparse.ArgumentParser, default: str) -> None:
    """Add ``--out DIR``, the folder a stage writes into."""
    parser.add_argument("--out", type=Path, default=Path(default),
                        help=f"output folder (default: {default})")


def add_stage_arguments(parser: argparse.ArgumentParser, options: type, out_default: str,
                        default_preset: str = DEFAULT_PRESET) -> None:
    """The flags of one stage's command: ``--preset`` / ``--config``, ``--out`` and the
    fields of its ``options`` dataclass."""
    add_config_arguments(parser, default_preset)
    add_out_argument(parser, out_default)
    add_options(parser, options)


def stage_inputs(args: argparse.Namespace, options: type) -> tuple[cfgmod.Config, Path, Any]:
    """``(cfg, out, options)`` of a stage's ``run`` from its parsed command line."""
    return config_from_args(args), args.out, options_from_args(options, args)
