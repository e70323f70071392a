"""DICOM UID validation: the only strings that ever become folder or file names."""

from __future__ import annotations

import re

_UID = re.compile(r"[0-9]+(\.[0-9]+)*")


def is_valid_uid(value: object) -> bool:
    """True for a DICOM UID: digits and dots, 1–64 characters, no empty component."""
    return isinstance(value, str) and len(value) <= 64 and _UID.fullmatch(value) is not None


def describe_invalid_uid(name: str, value: object) -> str:
    """A one-line reason why ``value`` cannot be used as ``name`` in a path."""
    if value is None or value == "":
        return f"{name} is missing"
    text = repr(str(value))
    if len(text) > 80:
        text = text[:77] + "...'"
    if isinstance(value, str) and len(value) > 64:
        return f"{name} {text} is longer than 64 characters"
    return f"{name} {text} is not a valid DICOM UID (digits and dots only)"
