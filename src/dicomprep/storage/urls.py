"""Telling object storage URLs from local paths, and joining and splitting them.

Kept free of fsspec: everything that only needs to know *whether* a source or output is
remote imports this and nothing else.
"""

from __future__ import annotations

import os
import re
from pathlib import PurePath

# ``scheme://`` as in RFC 3986 (letters, digits, + - .), at least two characters so that
# a Windows drive letter (``C:\\``) is never taken for one.
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]+)://")
LOCAL_PROTOCOLS = {"file", "local"}


def protocol_of(value: str | os.PathLike) -> str:
    """The URL's protocol (``s3``, ``gs``, ``az``, ``https``, ...), '' for a local path."""
    match = _URL.match(os.fspath(value)) if isinstance(value, str | os.PathLike) else None
    return match.group(1).lower() if match else ""


def is_url(value: str | os.PathLike | None) -> bool:
    """True for an object storage (any fsspec protocol) URL; False for local paths and
    ``file://`` URLs, which are read like any local path."""
    if value is None:
        return False
    protocol = protocol_of(value)
    return bool(protocol) and protocol not in LOCAL_PROTOCOLS


def join_url(root: str, relative: str) -> str:
    """``root/relative`` with exactly one slash between them."""
    return f"{root.rstrip('/')}/{relative.lstrip('/')}"


def relative_url(url: str, root: str) -> str:
    """``url`` relative to ``root`` (a prefix of it), POSIX style; ``url`` itself when it
    lies outside ``root``."""
    prefix = root.rstrip("/") + "/"
    return url[len(prefix) :] if url.startswith(prefix) else url


def relative_to_root(output: str | os.PathLike, root: str | os.PathLike) -> str:
    """``output`` (a local path, or an object's URL under a bucket ``root``) relative to
    ``root``, POSIX style: how the journals and results tables name outputs."""
    if is_url(output):
        return relative_url(str(output), str(root))
    return PurePath(os.path.relpath(output, root)).as_posix()


def split_url(url: str) -> tuple[str, str]:
    """(protocol, the rest without ``protocol://``)."""
    protocol = protocol_of(url)
    return protocol, url[len(protocol) + 3 :] if protocol else url
