"""Shards: many files processed in one process, resumable file by file.

A shard list is a small TSV (one input per line: path, size, mtime) written by discovery
only when its content changes, so the workflow reruns exactly the shards whose files
changed.  :func:`run_shard` converts the files of one list and appends one line per
finished file to the shard's journal.  A file is skipped when its journal line has the
same fingerprint (source path, size, mtime, options and code) and its TIFF is still
there unchanged, so a killed or repeated shard redoes only what is not done.

Errors of the data (decode, transform) are recorded and the shard goes on.  Errors of the
environment (the disk is full, the output folder is not writable) make the shard fail
after its other files are done, so the workflow reports it and a rerun retries it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .options import Options
from .pipeline import OK, FileResult, output_path_for, process_file

SHARD_COLUMNS = ["path", "size", "mtime_ns", "study_instance_uid", "sop_instance_uid"]
RESULT_COLUMNS = list(FileResult.__dataclass_fields__) + ["reused"]


class ShardEnvironmentError(RuntimeError):
    """Some files could not be written for reasons outside the data (disk, permissions)."""


# -- shard lists ------------------------------------------------------------------


def shard_list_text(rows: pd.DataFrame) -> str:
    """The TSV text of a shard list (sorted by path, deterministic)."""
    rows = rows.sort_values("path", kind="stable")
    lines = ["\t".join(SHARD_COLUMNS)]
    for r in rows[SHARD_COLUMNS].itertuples(index=False):
        lines.append(
            f"{r.path}\t{r.size}\t{r.mtime_ns}\t{r.study_instance_uid}\t{r.sop_instance_uid}"
        )
    return "\n".join(lines) + "\n"


def write_if_changed(path: Path, text: str) -> bool:
    """Write ``text`` atomically unless the file already holds it; True when written."""
    try:
        if path.read_text() == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return True


def read_shard_list(path: str | os.PathLike) -> list[dict]:
    """The entries of a shard list."""
    lines = Path(path).read_text().splitlines()
    entries = []
    for line in lines[1:]:
        if not line:
            continue
        p, size, mtime, study, sop = line.split("\t")
        entries.append(
            {
                "path": p,
                "size": int(size),
                "mtime_ns": int(mtime),
                "study_instance_uid": study,
                "sop_instance_uid": sop,
            }
        )
    return entries


# -- journal ----------------------------------------------------------------------


def file_fingerprint(entry: dict, options_fingerprint: str) -> str:
    """What a finished output depends on: the source file's identity, options and code."""
    key = f"{entry['path']}\0{entry['size']}\0{entry['mtime_ns']}\0{options_fingerprint}"
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def read_journal(path: Path) -> dict[str, dict]:
    """The last complete journal record of each source path (torn lines are ignored)."""
    records: dict[str, dict] = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    record = json.loads(line)
                    records[record["source"]] = record
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue
    except FileNotFoundError:
        pass
    return records


def _still_done(record: dict | None, fingerprint: str) -> bool:
    if not record or record.get("fingerprint") != fingerprint or record.get("status") != OK:
        return False
    try:
        st = os.stat(record["output"])
    except OSError:
        return False
    return st.st_size == record.get("output_size") and st.st_mtime_ns == record.get(
        "output_mtime_ns"
    )


def remove_stale_temporaries(output: Path) -> None:
    """Delete temporaries an interrupted write of ``output`` may have left behind."""
    for stale in output.parent.glob(f".{output.name}.*.tmp"):
        stale.unlink(missing_ok=True)


# -- running ----------------------------------------------------------------------


@dataclass
class ShardSummary:
    processed: int = 0
    reused: int = 0
    failed: int = 0


def run_shard(
    shard_list: str | os.PathLike,
    output_root: str | os.PathLike,
    options: Options,
    journal: str | os.PathLike,
    results: str | os.PathLike,
    log=None,
) -> ShardSummary:
    """Convert the files of one shard list; write their results table to ``results``."""
    entries = read_shard_list(shard_list)
    journal = Path(journal)
    journal.parent.mkdir(parents=True, exist_ok=True)
    done = read_journal(journal)
    options_fp = options.fingerprint()
    rows, summary, environment_errors = [], ShardSummary(), []
    with open(journal, "a", encoding="utf-8") as out:
        for entry in entries:
            fingerprint = file_fingerprint(entry, options_fp)
            record = done.get(entry["path"])
            if _still_done(record, fingerprint):
                rows.append({**record["result"], "reused": True})
                summary.reused += 1
                continue
            result = _convert(entry, output_root, options)
            rows.append({**result.to_dict(), "reused": False})
            if result.status == OK:
                summary.processed += 1
                st = os.stat(result.output)
                line = {
                    "source": entry["path"],
                    "fingerprint": fingerprint,
                    "status": OK,
                    "output": result.output,
                    "output_size": st.st_size,
                    "output_mtime_ns": st.st_mtime_ns,
                    "result": result.to_dict(),
                }
                out.write(json.dumps(line, sort_keys=True) + "\n")
                out.flush()
            else:
                summary.failed += 1
                if result.stage == "write":
                    environment_errors.append(f"{entry['path']}: {result.message}")
            if log is not None:
                print(_log_line(result), file=log, flush=True)
    write_results(rows, Path(results))
    if environment_errors:
        raise ShardEnvironmentError(
            f"{len(environment_errors)} file(s) could not be written; first: "
            + environment_errors[0]
        )
    return summary


def _convert(entry: dict, output_root, options: Options) -> FileResult:
    study, sop = entry["study_instance_uid"], entry["sop_instance_uid"]
    if study and sop:
        remove_stale_temporaries(output_path_for(output_root, study, sop))
    return process_file(entry["path"], output_root, options)


def _log_line(result: FileResult) -> str:
    if result.status == OK:
        return f"ok\t{result.seconds * 1000:.0f} ms\t{result.source}"
    return (
        f"{result.status}\t{result.stage}\t{result.error_type}: {result.message}\t{result.source}"
    )


def write_results(rows: Iterable[dict], path: Path) -> None:
    """The shard's results table (Parquet), atomically."""
    df = pd.DataFrame(list(rows), columns=RESULT_COLUMNS)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        df.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
