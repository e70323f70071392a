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
from pathlib import Path

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

    def to_dict(self) -> dict:
        return asdict(self)


RESULT_COLUMNS = list(FileResult.__dataclass_fields__) + ["reused"]


def write_results(rows: Iterable[dict], path: str | os.PathLike) -> None:
    """A shard's results (one JSON object per line, :data:`RESULT_COLUMNS`), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps({c: row.get(c) for c in RESULT_COLUMNS}) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_results(path: str | os.PathLike) -> list[dict]:
    """The rows :func:`write_results` wrote."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
