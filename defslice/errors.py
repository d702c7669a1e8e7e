"""Error types that every stage raises for bad input.

A :class:`ConfigError` always names the offending field, the value it got and
what would have been accepted, so the command line can print it as one line
and exit non-zero instead of showing a traceback.
"""

from __future__ import annotations


class DefsliceError(Exception):
    """Base class of every error defslice reports to a user."""


class ConfigError(DefsliceError, ValueError):
    """A configuration value is outside its allowed range.

    Arguments
    ---------
    field : str
        Dotted path of the field, e.g. ``"slicing.overlap"``.
    value : object
        The rejected value.
    allowed : str
        Human description of the allowed range, e.g. ``">= 0"``.
    """

    def __init__(self, field: str, value: object, allowed: str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field} = {value!r} is invalid: must be {allowed}")


class InputError(DefsliceError, ValueError):
    """An array handed to the model has the wrong shape, dtype or content."""


class ToolError(DefsliceError, RuntimeError):
    """An external tool (simulator, yosys, nextpnr) is missing or failed."""
