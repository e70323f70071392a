"""DICOM UID validation: the only strings that ever become folder or file names."""

from __future__ import annotations

import re

_UID = re.compile(r"[0-9]+(\.[0-9]+)*")


def is_valid_uid(value: object) -> bool:
    """True for a DICOM UID: digits and dots, 1–64 characters, no empty component."""
    return isinstance(value, str) and len(value) <= 64 and _UID.fullmatch(value) is not None


def describe_invalid_uid(name: str, value: object) -> str:
    """A one-line reason why ``value`` cannot be used as ``name`` in a path.

    The value itself is never quoted: an invalid UID field may hold anything, including
    identifying text, and reasons end up in reports.
    """
    if value is None or value == "":
        return f"{name} is missing"
    text = str(value)
    if len(text) > 64:
        return f"{name} is not a valid DICOM UID ({len(text)} characters, more than 64)"
    odd = sorted({c for c in text if not (c.isdigit() or c == ".")})
    if odd:
        kinds = "other characters than digits and dots"
        if "/" in odd or ".." in text:
            kinds = "path characters ('/' or '..')"
        elif " " in odd:
            kinds = "spaces"
        return f"{name} is not a valid DICOM UID (it contains {kinds})"
    return f"{name} is not a valid DICOM UID (an empty component between dots)"
