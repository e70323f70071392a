"""Discovery of objects: a URL source is listed (not walked) and each new or changed
object's header is read with ranged reads, on a bounded pool of threads.

Catalog rows of objects hold the object's URL in ``path``, its key relative to the
source prefix in ``key``, its ``size``, LastModified as ``mtime_ns`` and its ``etag``;
an object with the same key, size, LastModified and ETag as in the last catalog is not
read again.  An object that is gone (404), refused (403) or unreachable after retries
gets a ``missing`` row: it is reported, and read again on the next run.
"""

from __future__ import annotations

import pandas as pd

from dicomprep.core.errors import ErrorType
from dicomprep.run.catalog_rows import DICOM, MISSING, SourceError, header_row
from dicomprep.storage.headers import header_concurrency, map_bounded, read_object_header
from dicomprep.storage.objects import ObjectFacts, list_objects, object_facts
from dicomprep.storage.retry import is_transient
from dicomprep.storage.urls import relative_url


def _frame(objects: list[ObjectFacts], keys: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "path": pd.Series([o.url for o in objects], dtype=str),
            "key": pd.Series(keys, dtype=str),
            "size": pd.Series([o.size for o in objects], dtype="int64"),
            "mtime_ns": pd.Series([o.mtime_ns for o in objects], dtype="int64"),
            "etag": pd.Series([o.etag for o in objects], dtype=str),
        }
    )


def list_source(url: str) -> pd.DataFrame:
    """Path (URL), key, size, mtime_ns and etag of every object of a URL source (a prefix
    read as a folder, or one object, whose key is then its name).

    A URL with no object under it is an error, as a missing folder is (an empty listing
    from a mistyped prefix must not make the run delete every output as an orphan)."""
    try:
        objects = list_objects(url)
    except Exception as exc:  # noqa: BLE001 - refused, unreachable: one line naming it
        raise SourceError(f"cannot list source {url!r}: {type(exc).__name__}: {exc}") from exc
    if not objects:
        raise SourceError(f"source {url!r} holds no objects (or cannot be listed)")
    keys = [relative_url(o.url, url) for o in objects]
    if len(objects) == 1 and keys[0] == objects[0].url:  # the source is this object
        keys = [objects[0].url.rsplit("/", 1)[-1]]
    return _frame(objects, keys)


def list_urls(urls: list[str], concurrency: int | None = None) -> pd.DataFrame:
    """The same columns for object URLs named one by one (in a ``.txt`` list): one HEAD
    request each; the key is the URL itself, size and mtime -1 for an absent object."""

    def facts(url: str) -> ObjectFacts:
        try:
            return object_facts(url)
        except Exception:  # noqa: BLE001 - reported as missing by object_entries
            return ObjectFacts(url=url, size=-1, mtime_ns=-1, etag="")

    objects = list(map_bounded(facts, urls, header_concurrency(concurrency)))
    return _frame(objects, list(urls))


NOT_FOUND, ACCESS_DENIED = ErrorType.NOT_FOUND, ErrorType.ACCESS_DENIED
UNAVAILABLE = ErrorType.STORAGE_UNAVAILABLE


def object_entry(facts: ObjectFacts) -> dict:
    """One catalog row of an object (without its key), from a ranged read of its header."""
    row = {
        "path": facts.url,
        "size": facts.size,
        "mtime_ns": facts.mtime_ns,
        "etag": facts.etag,
        "status": DICOM,
        "reason": "",
        "error_type": "",
    }
    if facts.size < 0:
        return {**row, "status": MISSING, "reason": "object not found", "error_type": NOT_FOUND}
    try:
        header = read_object_header(facts)
    except FileNotFoundError:
        return {**row, "status": MISSING, "reason": "object not found", "error_type": NOT_FOUND}
    except PermissionError:
        return {**row, "status": MISSING, "reason": "access denied", "error_type": ACCESS_DENIED}
    except Exception as exc:  # noqa: BLE001 - classified below
        if is_transient(exc):
            reason = f"storage unreachable after retries ({type(exc).__name__})"
            return {**row, "status": MISSING, "reason": reason, "error_type": UNAVAILABLE}
        return header_row(row, _raise(exc))
    return header_row(row, lambda: header)


def _raise(exc: Exception):
    def read():
        raise exc

    return read


def object_entries(rows: pd.DataFrame, concurrency: int | None = None) -> list[dict]:
    """Catalog rows (without keys) of the objects of ``rows`` (path, size, mtime_ns,
    etag), their headers read on ``concurrency`` threads, in the order of ``rows``."""
    objects = [
        ObjectFacts(url=r.path, size=int(r.size), mtime_ns=int(r.mtime_ns), etag=r.etag)
        for r in rows.itertuples(index=False)
    ]
    return list(map_bounded(object_entry, objects, header_concurrency(concurrency)))
