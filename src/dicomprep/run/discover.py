"""Discovery: find the inputs, recognise DICOM by content, and catalog their headers.

The catalog (docs/output-format.md) is a table with one row per input path — its size and mtime, a
``status`` (``dicom`` for files to convert, else the reason it is not converted) and the
header facts users filter on.  Saved as Parquet it is a metadata index that pandas or
DuckDB can query, and the cache that lets a rerun skip headers of unchanged files
(same path, size and mtime).

Only the header is read (parsing stops at the pixel data element).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd

from dicomprep.core.catalog import CATALOG_COLUMNS, INT_COLUMNS, TEXT_COLUMNS
from dicomprep.core.durable import atomic_file
from dicomprep.core.errors import (
    ErrorType,
)
from dicomprep.core.records import DUPLICATE
from dicomprep.run.catalog_rows import (  # noqa: F401 - the catalog's names, kept here
    DICOM,
    HEADER_FIELDS,
    INVALID_UID,
    MISSING,
    NO_PIXELS,
    NOT_DICOM,
    NOT_REUSED,
    REPORT_STATUS,
    UNREADABLE,
    SourceError,
    catalog_entry,
    header_row,
    placement_facts,
)
from dicomprep.run.processes import worker_pool
from dicomprep.run.walk import (
    SourceWalk,
    is_plain_name,
    shown_name,
)
from dicomprep.storage.urls import is_url

# -- finding paths ----------------------------------------------------------------


def iter_source_paths(
    source: str | os.PathLike,
    follow_symlinks: bool = False,
    follow_links_outside_source: bool = False,
) -> Iterator[Path]:
    """Input paths of a source: a file, a folder (recursive) or a ``.txt`` list of paths.

    List files ignore blank lines and ``#`` comments; relative entries are resolved
    against the list's folder; object URLs (``s3://...``) are yielded as strings.
    Folders are walked by :class:`~dicomprep.run.walk.SourceWalk`: in sorted order, each
    real folder once, hidden files (names starting with a dot) skipped, symlinks followed
    only when asked and then only inside the source folder unless
    ``follow_links_outside_source``; only regular files are yielded (what the walk
    passes over is in its ``passed_over``, which :func:`build_catalog` catalogs).
    """
    source = Path(source)
    if source.is_dir():
        walk = SourceWalk(source, follow_symlinks, follow_links_outside_source)
        yield from map(Path, walk)
    elif source.is_file() and source.suffix.lower() == ".txt":
        for line in source.read_text(errors="surrogateescape").splitlines():
            entry = line.strip()
            if not entry or entry.startswith("#"):
                continue
            if is_url(entry):
                yield entry  # an object: listed by URL, never resolved as a path
                continue
            path = Path(entry)
            yield path if path.is_absolute() else source.parent / path
    elif source.exists():
        yield source
    else:
        raise SourceError(f"source {str(source)!r} does not exist")


# -- the catalog ------------------------------------------------------------------


def empty_catalog() -> pd.DataFrame:
    return normalise(pd.DataFrame(columns=CATALOG_COLUMNS))


def normalise(df: pd.DataFrame) -> pd.DataFrame:
    """Catalog column order and types (strings, int64 with 0 for unknown)."""
    df = df.reindex(columns=CATALOG_COLUMNS)
    for column in TEXT_COLUMNS:
        df[column] = df[column].fillna("").astype(str)
    for column in INT_COLUMNS:
        df[column] = pd.to_numeric(df[column], errors="coerce").fillna(0).astype("int64")
    return df.reset_index(drop=True)


def build_catalog(
    source: str | os.PathLike,
    previous: pd.DataFrame | None = None,
    *,
    follow_symlinks: bool = False,
    follow_links_outside_source: bool = False,
    processes: int = 1,
    header_concurrency: int | None = None,
) -> pd.DataFrame:
    """The catalog of ``source``, reusing rows of ``previous`` for unchanged files.

    A file is unchanged when its key (its path relative to the source root, see
    :func:`source_root`), size and mtime equal a previous row's: a moved or renamed
    source root, or the same folder given by a relative instead of an absolute path,
    costs a walk, not a header read per file.  Duplicates (a SOP Instance UID seen at an
    earlier path in sorted order) are marked.

    A URL source (``s3://bucket/prefix``, any fsspec protocol) is listed instead of
    walked, its objects keyed by their key relative to the prefix and known unchanged
    by (key, size, LastModified, ETag); their headers are read with ranged reads on
    ``header_concurrency`` threads (see :mod:`dicomprep.storage`).

    What the walk of a folder passes over (links not followed, loops, links leaving the
    source, dangling links, FIFOs, sockets, devices; see :mod:`dicomprep.run.walk`) has
    one row each, made again on every walk.
    """
    if is_url(source):  # objects: listed, not walked (dicomprep.storage)
        from dicomprep.run.object_discovery import list_source

        found, undecodable, current = set(), [], list_source(str(source))
        passed_over = []
    else:
        root = source_root(source)
        if Path(source).is_dir():
            walk = SourceWalk(source, follow_symlinks, follow_links_outside_source)
            found, passed_over = set(walk), walk.passed_over
        else:
            found, passed_over = {str(p) for p in iter_source_paths(source)}, []
        undecodable = sorted(p for p in found if not is_plain_name(p))
        objects = sorted(p for p in found if is_url(p))  # URLs in a .txt list
        paths = sorted(found.difference(undecodable, objects))
        stats = [_stat(p) for p in paths]
        current = pd.DataFrame(
            {
                "path": pd.Series(paths, dtype=str),
                "key": pd.Series(relative_keys(paths, root), dtype=str),
                "size": pd.Series([s[0] for s in stats], dtype="int64"),
                "mtime_ns": pd.Series([s[1] for s in stats], dtype="int64"),
                "etag": pd.Series([""] * len(paths), dtype=str),
            }
        )
        if objects:
            from dicomprep.run.object_discovery import list_urls

            current = pd.concat([current, list_urls(objects)], ignore_index=True)
    reused = empty_catalog()
    if previous is not None and len(previous):
        unchanged = previous[~previous["status"].isin(NOT_REUSED)].drop(columns="path")
        unchanged = unchanged.drop_duplicates("key", keep="last")
        reused = unchanged.merge(current, on=["key", "size", "mtime_ns", "etag"], how="inner")
    known = set(reused["path"].tolist())  # a set of str: isin on Arrow strings is slow
    fresh = current.loc[[path not in known for path in current["path"].tolist()]]
    remote = fresh["path"].map(is_url).astype(bool)
    entries = list(_map(catalog_entry, fresh.loc[~remote, "path"].tolist(), processes))
    keys = fresh.loc[~remote, "key"].tolist()
    if remote.any():
        from dicomprep.run.object_discovery import object_entries

        entries += object_entries(fresh[remote], header_concurrency)
        keys += fresh.loc[remote, "key"].tolist()
    new_rows = [{**row, "key": key} for row, key in zip(entries, keys, strict=True)]
    new_rows += [_undecodable_name_row(p) for p in undecodable]
    if passed_over:
        keys = relative_keys([p.path for p in passed_over], root)
        new_rows += [p.row(key) for p, key in zip(passed_over, keys, strict=True)]
    parts = [reused] + ([pd.DataFrame(new_rows, columns=CATALOG_COLUMNS)] if new_rows else [])
    catalog = normalise(pd.concat(parts, ignore_index=True))
    catalog = catalog.sort_values("path", kind="stable").reset_index(drop=True)
    return mark_duplicates(catalog)


def _undecodable_name_row(path: str) -> dict:
    """The catalog row of a file whose name is not valid UTF-8 or holds a tab or line
    break: reported, never converted (tables and shard lists hold text), with the bad
    bytes shown as ``\\xNN``."""
    shown = shown_name(path)
    size, mtime_ns = _stat(path)
    return {
        "path": shown,
        "key": shown,
        "size": size,
        "mtime_ns": mtime_ns,
        "status": UNREADABLE,
        "reason": "the file name is not valid UTF-8 or holds a tab or line break; "
        "rename the file to convert it",
        "error_type": ErrorType.INVALID_FILE_NAME,
    }


def source_root(source: str | os.PathLike) -> Path:
    """The folder that keys of a source's files are relative to: the source itself when
    it is a folder, else the folder of the file or of the ``.txt`` list."""
    source = Path(source)
    return source if source.is_dir() else source.parent


def relative_keys(paths, root: str | os.PathLike) -> list[str]:
    """Each file's identity that survives moving the source: its path relative to
    ``root`` (POSIX style), or its absolute path when it lies outside ``root``.  String
    operations only: a million paths in about a second."""
    prefix = os.path.join(os.path.abspath(root), "")
    given = os.path.join(os.path.normpath(root), "")  # as the walk joins paths to it
    keys = []
    for path in paths:
        if path.startswith(given):  # the walk's own paths: already normal below the root
            rest = path[len(given) :]
            if "//" not in rest and "/." not in rest and rest[:1] not in (".", "/", ""):
                keys.append(rest)
                continue
        absolute = os.path.abspath(path)
        keys.append(absolute[len(prefix) :] if absolute.startswith(prefix) else absolute)
    return keys


def _stat(path: str) -> tuple[int, int]:
    """(size, mtime_ns), or (-1, -1) for a path that cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return -1, -1
    return st.st_size, st.st_mtime_ns


def _map(func, items: list, processes: int) -> Iterable:
    if processes <= 1 or len(items) < 64:
        return map(func, items)
    with worker_pool(processes) as pool:
        return list(pool.map(func, items, chunksize=64))


def mark_duplicates(catalog: pd.DataFrame) -> pd.DataFrame:
    """Mark later rows (sorted by path) that repeat a SOP Instance UID as duplicates.

    Rows previously marked duplicate are re-evaluated, so removing the first copy lets
    the next one win.  A duplicate's reason names the first copy; shard jobs still hold
    every copy, so that a first copy that fails to convert does not cost the image.
    Vectorised: about a second for a million rows.
    """
    catalog = catalog.copy()
    was_duplicate = (catalog["status"] == DUPLICATE).to_numpy()
    if was_duplicate.any():
        catalog.loc[was_duplicate, ["status", "reason", "error_type"]] = [DICOM, "", ""]
    candidates = catalog.loc[catalog["status"] == DICOM, ["path", "sop_instance_uid"]]
    if not candidates["path"].is_monotonic_increasing:
        candidates = candidates.sort_values("path", kind="stable")
    later = candidates["sop_instance_uid"].duplicated(keep="first")
    if not later.any():
        return catalog
    repeated = candidates["sop_instance_uid"].isin(candidates.loc[later, "sop_instance_uid"])
    firsts = candidates[repeated & ~later]
    first_path = pd.Series(firsts["path"].to_numpy(), index=firsts["sop_instance_uid"])
    dup = candidates.index[later]
    catalog.loc[dup, "status"] = DUPLICATE
    catalog.loc[dup, "error_type"] = str(ErrorType.DUPLICATE_SOP_INSTANCE_UID)
    catalog.loc[dup, "reason"] = "same SOP Instance UID as " + candidates.loc[
        later, "sop_instance_uid"
    ].map(first_path)
    return catalog


def save_catalog(catalog: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write the catalog as Parquet, atomically."""
    with atomic_file(path, sync_file=False, sync_folder=False) as tmp:
        normalise(catalog).to_parquet(tmp, index=False)


def load_catalog(path: str | os.PathLike) -> pd.DataFrame | None:
    """The saved catalog, or None when there is none, it is unreadable, or it lacks
    columns this version keeps (its headers are then read again, once)."""
    try:
        catalog = pd.read_parquet(path)
    except (OSError, ValueError):
        return None
    if not set(CATALOG_COLUMNS) <= set(catalog.columns):
        return None
    return normalise(catalog)


# -- shards -------------------------------------------------------------------------


def shard_of(key: str, shards: int) -> int:
    """A stable bucket in ``range(shards)`` for a key (a Study Instance UID: every file of
    a study, and so of a series, lands in the same shard, whatever other files exist)."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards
