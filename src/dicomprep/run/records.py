"""What became of each input: status names, the per-file result and the shard results
files (JSON lines) that carry them from shard jobs to the manifest and failures table.

Kept free of the imaging libraries so that collecting a run does not pay for importing
them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from dicomprep.run.durable import atomic_write_text, iter_lines

OK, SKIPPED, FAILED, DUPLICATE = "ok", "skipped", "failed", "duplicate"


@dataclass
class FileResult:
    """The outcome of one input file (one row of the run's records)."""

    source: str
    status: str
    stage: str = ""
    error_type: str = ""
    message: str = ""
    study_instance_uid: str = ""
    sop_instance_uid: str = ""
    output: str = ""
    width: int = 0
    height: int = 0
    channels: int = 0
    num_frames: int = 0
    seconds: float = 0.0
    # Header defects the output was made despite (formats/lenient.py), joined by "; ";
    # empty for a normal file.  The manifest's last column.
    warnings: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


# A shard's results rows: the file's result and what the shard knows of it (its key
# relative to the source root, its series, the output's size and mtime when written).
RESULT_COLUMNS = list(FileResult.__dataclass_fields__) + [
    "key",
    "series_instance_uid",
    "output_size",
    "output_mtime_ns",
    "stack",  # slices of a stack: the stack's output name, the slice's page and position
    "page",
    "position",
    "slices",  # source files in the output (1 for a file)
    "reused",
]
REMOVED = "removed"  # an output deleted because its source is gone (not a list entry)


class DamagedStateFile(ValueError):
    """A state file (shard results, journal) that a crash or a person damaged."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)


def write_results(rows: Iterable[dict], path: str | os.PathLike) -> None:
    """A shard's results (one JSON object per line, :data:`RESULT_COLUMNS`), durably."""
    text = "".join(json.dumps({c: row.get(c) for c in RESULT_COLUMNS}) + "\n" for row in rows)
    atomic_write_text(path, text)


def read_results(path: str | os.PathLike) -> list[dict]:
    """The rows :func:`write_results` wrote; :class:`DamagedStateFile` naming the file
    when a line is not a complete record."""
    rows = []
    for number, line in enumerate(iter_lines(path), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise DamagedStateFile(path, f"line {number} is not a complete record") from None
        if not isinstance(row, dict) or "status" not in row or "source" not in row:
            raise DamagedStateFile(path, f"line {number} is not a result record")
        rows.append(row)
    return rows
