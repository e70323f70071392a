"""A shard's journal: one JSON line per finished file (or stack) with its fingerprint,
and *intent* lines written before files are handed to the workers.

A file is reused when its journal line has the same fingerprint (key relative to the
source root, size, mtime, options and code) and its output is still there unchanged.
An intent names the output a conversion is about to write and the ones the file's last
record named: a shard killed after a worker renamed a TIFF into place but before its
record was written still knows of that TIFF.  Only the shard's parent process writes
the journal; at the end it is compacted to one record per listed file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from dicomprep.core.durable import atomic_write_text, open_for_append
from dicomprep.core.errors import ErrorType
from dicomprep.core.records import OK, FileResult
from dicomprep.formats.uids import is_valid_uid
from dicomprep.options import LIMIT_ERRORS
from dicomprep.pipeline import output_path_for
from dicomprep.run.journal_records import (  # noqa: F401 - importable from here
    outputs_named,
    read_journal,
    read_journal_counted,
)
from dicomprep.storage.urls import is_url, join_url, relative_to_root

STORAGE_UNAVAILABLE = ErrorType.STORAGE_UNAVAILABLE  # an object unreachable after retries


def file_fingerprint(entry: dict, options_fingerprint: str) -> str:
    """What a finished output depends on: the source file's key (its path relative to
    the source root), size and mtime (and ETag, for an object), the options and the code."""
    key = f"{entry['key']}\0{entry['size']}\0{entry['mtime_ns']}\0{options_fingerprint}"
    if entry.get("etag"):
        key += f"\0{entry['etag']}"
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def journaled_output(output: str | None, output_root: str | os.PathLike) -> Path | str | None:
    """Where a TIFF the journal names (``output``, relative to the output root) is; a URL
    string for an output root in object storage."""
    if output and is_url(output_root):
        return join_url(str(output_root), output)
    return Path(output_root) / output if output else None


def still_done(record: dict | None, fingerprint: str, output_root) -> bool:
    """True when ``record`` converted the same file with the same options and code and
    its output is still there with the size and mtime recorded."""
    if not record or record.get("fingerprint") != fingerprint or record.get("status") != OK:
        return False
    if is_url(output_root):  # an object: same size and LastModified
        from dicomprep.storage.transfer import output_intact

        output = journaled_output(record.get("output"), output_root)
        return output_intact(output, record.get("output_size"), record.get("output_mtime_ns"))
    try:
        st = os.stat(journaled_output(record.get("output"), output_root))
    except (OSError, TypeError):
        return False
    return st.st_size == record.get("output_size") and st.st_mtime_ns == record.get(
        "output_mtime_ns"
    )


def known_failure(record: dict | None, fingerprint: str) -> bool:
    """True when the same file, options and code already failed for reasons of the data;
    not a refusal by a safety limit (the limits are not in the fingerprint: a raised one
    may let it through, so it is tried again)."""
    return bool(
        record
        and record.get("fingerprint") == fingerprint
        and record.get("status") != OK
        and (record.get("result") or {}).get("error_type") not in LIMIT_ERRORS
    )


def is_data_failure(result: FileResult) -> bool:
    """Failures that the same input will always give (worth journaling); not a full disk
    or a process that died (which may go another way next time)."""
    return (
        result.status != OK
        and result.stage != "write"
        and result.error_type not in (ErrorType.WORKER_DIED, STORAGE_UNAVAILABLE)
    )


def intent_record(unit: dict, output_root, previous: dict | None) -> dict | None:
    """The journal line written before ``unit`` (a shard list entry or a stack) is
    converted: the output (relative to the output root) its conversion may leave behind,
    and the outputs ``previous`` (the unit's last record, which the intent supersedes)
    names; None when the unit cannot name an output (its UIDs are not valid)."""
    if "output" in unit:  # a stack: its output path is planned
        relative = relative_to_root(unit["output"], output_root)
    else:
        study, sop = unit["study_instance_uid"], unit["sop_instance_uid"]
        if not (is_valid_uid(study) and is_valid_uid(sop)):
            return None
        relative = output_path_for("", study, sop).as_posix()
    return {
        "key": unit["key"],
        "bucket_key": unit.get("bucket_key") or unit["study_instance_uid"],
        "intent": True,
        "output": relative,
        "previous": outputs_named(previous) if previous else [],
    }


def journal_record(entry: dict, fingerprint: str, result: FileResult, output_root) -> dict:
    """The journal line of a finished unit: its result, and for a converted one the
    output (relative to the output root) with its size and mtime (LastModified)."""
    record = {
        "key": entry["key"],
        "source": entry["path"],
        "bucket_key": entry.get("bucket_key") or entry["study_instance_uid"],
        "fingerprint": fingerprint,
        "status": result.status,
        "result": result.to_dict(),
    }
    if result.status == OK and is_url(result.output):  # an object: its size and LastModified
        from dicomprep.storage.transfer import output_facts

        facts = output_facts(result.output)
        output = relative_to_root(result.output, output_root)
        record.update(output=output, output_size=facts.size, output_mtime_ns=facts.mtime_ns)
    elif result.status == OK:
        st = os.stat(result.output)
        output = relative_to_root(result.output, output_root)
        record.update(output=output, output_size=st.st_size, output_mtime_ns=st.st_mtime_ns)
    return record


def compact_journal(journal: Path, records: dict[str, dict]) -> None:
    """Rewrite the journal with one record per listed file (deleted when none)."""
    if not records:
        journal.unlink(missing_ok=True)
        return
    text = "".join(json.dumps(records[key], sort_keys=True) + "\n" for key in sorted(records))
    atomic_write_text(journal, text)


class JournalWriter:
    """The journal of one shard run, open for appending: what it held before the run
    (``previous``), the records kept after it (``kept``: key -> record) and how many
    lines the run appended.  Use as a context manager; :meth:`close` syncs to disk."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.previous, self.lines_before = read_journal_counted(self.path)
        self.kept: dict[str, dict] = {}
        self.appended = 0
        self._out = open_for_append(self.path)

    def __enter__(self) -> JournalWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Flush and sync what was appended, then close."""
        if not self._out.closed:
            self._out.flush()
            os.fsync(self._out.fileno())
            self._out.close()

    def keep(self, key: str, record: dict) -> None:
        """Carry ``record`` (reused from before) over into the journal after the run."""
        self.kept[key] = record

    def record(self, unit: dict, fingerprint: str, result: FileResult, output_root) -> dict:
        """Append the record of a finished unit and keep it."""
        record = journal_record(unit, fingerprint, result, output_root)
        self._out.write((json.dumps(record, sort_keys=True) + "\n").encode())
        self._out.flush()
        self.appended += 1
        self.kept[unit["key"]] = record
        return record

    def write_intents(self, units: list[dict], output_root) -> None:
        """Append and sync the intent lines of ``units`` before they are converted."""
        records = [intent_record(u, output_root, self.previous.get(u["key"])) for u in units]
        lines = [json.dumps(r, sort_keys=True) + "\n" for r in records if r is not None]
        if lines:
            self._out.write("".join(lines).encode())
            self._out.flush()
            os.fsync(self._out.fileno())
            self.appended += len(lines)

    def compact(self) -> None:
        """Rewrite the journal as :attr:`kept` when it holds superseded, torn or orphaned
        lines (call once closed)."""
        if self.lines_before + self.appended > len(self.kept):
            compact_journal(self.path, self.kept)
