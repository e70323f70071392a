"""What became of each input: the status and stage names, the per-file and per-stack
results, and the shard results files (JSON lines) that carry them from shard jobs to the
manifest and failures table.

Kept free of the imaging libraries so that collecting a run does not pay for importing
them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from enum import StrEnum

from dicomprep.core.durable import atomic_write_text, iter_lines


class Status(StrEnum):
    """What became of an input (failures.csv's ``status``; ``ok`` rows are the manifest)."""

    OK = "ok"
    SKIPPED = "skipped"  # not DICOM, no pixels, or an entry discovery passes over
    FAILED = "failed"
    DUPLICATE = "duplicate"  # same SOP Instance UID as the copy that was converted
    REMOVED = "removed"  # an output deleted because its source is gone (not a list entry)


class Stage(StrEnum):
    """Where a failure happened (failures.csv's ``stage``)."""

    DISCOVER = "discover"
    READ = "read"
    DECODE = "decode"
    TRANSFORM = "transform"
    WRITE = "write"


OK, SKIPPED, FAILED, DUPLICATE = Status.OK, Status.SKIPPED, Status.FAILED, Status.DUPLICATE
REMOVED = Status.REMOVED


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


@dataclass
class SlicePlacement:
    """Where one source slice went: one row of slices.csv."""

    sop_instance_uid: str
    source: str
    page: int  # the output page nearest to the slice (0 for a projection)
    position: float  # mm along the slice normal


@dataclass
class StackResult:
    """The outcome of one stack (a manifest row with ``slices`` and its slices.csv rows)."""

    sources: list[str]
    status: str = FAILED
    stage: str = ""
    error_type: str = ""
    message: str = ""
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    sop_instance_uid: str = ""  # the first slice's
    output: str = ""
    width: int = 0
    height: int = 0
    channels: int = 0
    num_frames: int = 0
    slices: list[SlicePlacement] = field(default_factory=list)
    geometry: object = None  # the output's formats.geometry.Geometry, when written
    seconds: float = 0.0
    # Slices that could not be read, decoded or mapped, left out of the volume: one
    # failure each ({source, stage, error_type, message}); ``sources`` are the slices kept.
    left_out: list[dict] = field(default_factory=list)
    # Header defects of the kept slices read despite (formats/lenient.py), joined by "; ".
    warnings: str = ""

    def to_dict(self) -> dict:
        """Plain values; ``slices`` is the number of source files, ``slice_rows`` the table."""
        out = asdict(self)
        out.pop("geometry")
        out["slice_rows"] = out.pop("slices")
        out["slices"] = len(self.sources)
        return out


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
