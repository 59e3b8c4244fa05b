"""Checks that several modules make of values users pass in: one home for each rule."""

from __future__ import annotations

from typing import TypeGuard

__all__ = ["has_line_break", "is_number", "is_whole", "whole_number"]


def is_whole(value: object, minimum: int | None = None) -> TypeGuard[int]:
    """Whether *value* is an int (not a bool), and at least *minimum* if given."""
    if isinstance(value, bool) or not isinstance(value, int):
        return False
    return minimum is None or value >= minimum


def is_number(value: object) -> TypeGuard[int | float]:
    """Whether *value* is an int or a float (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def has_line_break(value: str) -> bool:
    """Whether *value* holds CR or LF, which would split an HTTP header in two."""
    return "\r" in value or "\n" in value


def whole_number(value: object) -> int | None:
    """*value* as an int: also from a whole float or a string of digits; else None.

    Servers send error codes and object ids as numbers, floats or strings.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if (text[1:] if text.startswith("-") else text).isdecimal():
            return int(text)
    return None
