"""Shard lists: the small TSV file per shard that names its inputs.

One line per input (path, its key relative to the source root, size, mtime, UIDs, the
study it is bucketed by, a relative estimate of its work and its modality), sorted by
path.  Every copy of a SOP Instance UID is listed (the shard decides which one becomes
the image).
Planning rewrites a list only when its text changes, so Snakemake reruns
exactly the shards whose files changed.  Kept free of pandas and the imaging libraries:
both the planner and the shard jobs read and write these.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from dicomprep.core.durable import atomic_write_text

if TYPE_CHECKING:
    import pandas as pd

SHARD_COLUMNS = [
    "path",
    "key",
    "size",
    "mtime_ns",
    "study_instance_uid",
    "series_instance_uid",
    "sop_instance_uid",
    "bucket_key",
    "stack",  # the output name of the stack the file is a slice of ('' for a file)
    "slice",  # its index in the stack
    "cost",
    "modality",  # for the QC report's samples (the shard renders their thumbnails)
]


# Sources in object storage add their ETag (after the columns above, so that lists of
# local files keep their text): an object rewritten within LastModified's second is new.
OBJECT_COLUMN = "etag"


def _has_etags(rows: pd.DataFrame) -> bool:
    return OBJECT_COLUMN in rows and bool((rows[OBJECT_COLUMN].fillna("") != "").any())


def shard_list_text(rows: pd.DataFrame) -> str:
    """The TSV text of a shard list (sorted by path, deterministic).

    ``rows`` holds the catalog columns of the shard's files plus ``bucket_key`` and
    ``cost``.
    """
    rows = rows.sort_values("path", kind="stable")
    columns = SHARD_COLUMNS + [OBJECT_COLUMN] * _has_etags(rows)
    values = [rows[c].astype(str).tolist() for c in columns]  # column-wise: fast
    lines = ["\t".join(columns), *("\t".join(fields) for fields in zip(*values, strict=True))]
    return "\n".join(lines) + "\n"


def write_if_changed(path: Path, text: str) -> bool:
    """Write ``text`` atomically unless the file already holds it; True when written."""
    try:
        if path.read_text() == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    atomic_write_text(path, text)
    return True


def read_shard_list(path: str | os.PathLike) -> list[dict]:
    """The entries of a shard list."""
    lines = Path(path).read_text().splitlines()
    header = lines[0].split("\t") if lines else SHARD_COLUMNS
    entries = []
    for line in lines[1:]:
        if not line:
            continue
        entry = dict(zip(header, line.split("\t"), strict=True))
        for column in ("size", "mtime_ns", "cost", "slice"):
            entry[column] = int(entry.get(column) or 0)
        entries.append(entry)
    return entries
