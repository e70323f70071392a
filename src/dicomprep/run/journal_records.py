"""Reading a shard's journal: the last record of each source key, and the outputs a record
says may exist.  Kept free of the pipeline so that planning (the head process) reads
journals without importing what converts files."""

from __future__ import annotations

import json
import os

from dicomprep.core.durable import iter_lines
from dicomprep.core.records import OK


def read_journal(path: str | os.PathLike) -> dict[str, dict]:
    """The last complete journal record of each source key.  Torn lines (a crash while
    appending) and damaged bytes are skipped: what they recorded is converted again."""
    return read_journal_counted(path)[0]


def read_journal_counted(path: str | os.PathLike) -> tuple[dict[str, dict], int]:
    """:func:`read_journal` and the number of lines read."""
    records: dict[str, dict] = {}
    lines = 0
    try:
        for lines, line in enumerate(iter_lines(path), start=1):  # noqa: B007
            try:
                record = json.loads(line)
                records[record.get("key") or record["source"]] = record
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
    except FileNotFoundError:
        pass
    return records, lines


def outputs_named(record: dict) -> list[str]:
    """The outputs (relative) a journal record says may exist: a finished file's, or both
    outputs an intent names."""
    if record.get("intent"):
        previous = record.get("previous")
        named = [record.get("output"), *(previous if isinstance(previous, list) else [])]
        return [o for o in named if o and isinstance(o, str)]
    output = record.get("output")
    return [output] if output and isinstance(output, str) and record.get("status") == OK else []
