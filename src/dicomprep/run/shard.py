"""Shards: many files processed by one job, resumable file by file.

A shard list is a small TSV (one input per line: path, key, size, mtime, UIDs and an
estimate of the work) written by planning only when its content changes, so the workflow
reruns exactly the shards whose files changed.  Every file of a study lands in the same
shard, and so does every copy of a SOP Instance UID.  :func:`run_shard` converts the files
of one list and appends one line per finished file to the shard's journal.  A file is
skipped when its journal line has the same fingerprint (key relative to the source root,
size, mtime, options and code) and its TIFF is still there unchanged, so a killed or
repeated shard redoes only what is not done, and a moved source root costs nothing.
Before files are handed to the workers, an *intent* line per file (the output its
conversion will write, and the one its previous record named) is appended and synced: a
shard killed after a worker renamed a TIFF into place but before its record was written
still knows of that TIFF, so a later run removes it if its source is gone.

Copies of one SOP Instance UID are tried in path order: the first that converts is the
image, the others are reported as duplicates, and a copy that fails (truncated, damaged)
does not cost the image.  When the shard ends, its journal is compacted to one record per
listed file, and outputs whose source is gone (deleted, or replaced by a file with
another SOP Instance UID) are removed, so the dataset folder follows the source.

Files are converted in worker processes (``workers`` of them, each file handed to
whichever worker is free, a bounded number in flight; in path order, which reads the disk
sequentially, except that files costing far more than the typical one go first, so that
no large volume is left running alone at the end), so a decoder that crashes or a process
the kernel kills for memory costs that file only: the files in flight when a worker died
are retried alone, each in a fresh process, and a file whose own process dies again is
recorded as failed.  The journal is written by the parent alone.

Errors of the data (decode, transform) are recorded (and journaled, so an unchanged
broken file is not decoded again) and the shard goes on.  Errors of the environment (the
disk is full, the output folder is not writable) make the shard fail after its other
files are done, so the workflow reports it and a rerun retries it.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from dicomprep.core.durable import atomic_write_text, iter_lines, open_for_append
from dicomprep.core.records import DUPLICATE, FAILED, OK, REMOVED, FileResult, write_results
from dicomprep.formats.errors import ErrorType
from dicomprep.formats.uids import is_valid_uid
from dicomprep.options import LIMIT_ERRORS, Options
from dicomprep.pipeline import output_path_for, process_file
from dicomprep.run.processes import worker_pool
from dicomprep.run.removal import removal_refused
from dicomprep.run.shard_list import read_shard_list
from dicomprep.storage.urls import is_url, join_url, relative_to_root

STORAGE_UNAVAILABLE = ErrorType.STORAGE_UNAVAILABLE  # an object unreachable after retries


class ShardEnvironmentError(RuntimeError):
    """Some files could not be written for reasons outside the data (disk, permissions)."""


# -- journal ----------------------------------------------------------------------


def file_fingerprint(entry: dict, options_fingerprint: str) -> str:
    """What a finished output depends on: the source file's key (its path relative to
    the source root), size and mtime (and ETag, for an object), the options and the code."""
    key = f"{entry['key']}\0{entry['size']}\0{entry['mtime_ns']}\0{options_fingerprint}"
    if entry.get("etag"):
        key += f"\0{entry['etag']}"
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def read_journal(path: str | os.PathLike) -> dict[str, dict]:
    """The last complete journal record of each source key.  Torn lines (a crash while
    appending) and damaged bytes are skipped: what they recorded is converted again."""
    return _read_journal(path)[0]


def _read_journal(path: str | os.PathLike) -> tuple[dict[str, dict], int]:
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


def journaled_output(output: str | None, output_root: str | os.PathLike) -> Path | str | None:
    """Where a TIFF the journal names (``output``, relative to the output root) is; a URL
    string for an output root in object storage."""
    if output and is_url(output_root):
        return join_url(str(output_root), output)
    return Path(output_root) / output if output else None


def _still_done(record: dict | None, fingerprint: str, output_root) -> bool:
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


def _known_failure(record: dict | None, fingerprint: str) -> bool:
    """True when the same file, options and code already failed for reasons of the data;
    not a refusal by a safety limit (the limits are not in the fingerprint: a raised one
    may let it through, so it is tried again)."""
    return bool(
        record
        and record.get("fingerprint") == fingerprint
        and record.get("status") != OK
        and (record.get("result") or {}).get("error_type") not in LIMIT_ERRORS
    )


def _is_data_failure(result: FileResult) -> bool:
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


def outputs_named(record: dict) -> list[str]:
    """The outputs (relative) a journal record says may exist: a finished file's, or both
    outputs an intent names."""
    if record.get("intent"):
        previous = record.get("previous")
        named = [record.get("output"), *(previous if isinstance(previous, list) else [])]
        return [o for o in named if o and isinstance(o, str)]
    output = record.get("output")
    return [output] if output and record.get("status") == OK else []


def remove_stale_temporaries(output: Path) -> None:
    """Delete temporaries an interrupted write of ``output`` may have left behind."""
    for stale in output.parent.glob(f".{output.name}.*.tmp"):
        stale.unlink(missing_ok=True)


def remove_shard_temporaries(output_root: str | os.PathLike, entries: list[dict]) -> int:
    """Delete the temporaries that interrupted writes of this shard's outputs left behind,
    listing each study folder once (not once per file); returns how many."""
    from dicomprep.series.volume_file import EXTENSIONS

    names: dict[str, set[str]] = {}
    for entry in entries:
        study, sop = entry["study_instance_uid"], entry["sop_instance_uid"]
        if study and sop:
            names.setdefault(study, set()).add(f"{sop}.tiff")
        if study and entry.get("stack"):  # a slice: its stack's volume, in either format
            stack = entry["stack"]
            names.setdefault(study, set()).update(f"{stack}{s}" for s in EXTENSIONS.values())
    removed = 0
    for study, outputs in names.items():
        try:
            with os.scandir(Path(output_root) / study) as folder:
                stale = [
                    e.path
                    for e in folder
                    if e.name.startswith(".")
                    and e.name.endswith(".tmp")
                    and e.name[1:].rsplit(".", 2)[0] in outputs
                ]
        except OSError:
            continue
        for path in stale:
            Path(path).unlink(missing_ok=True)
            removed += 1
    return removed


# -- running ----------------------------------------------------------------------


@dataclass
class ShardSummary:
    processed: int = 0
    reused: int = 0
    failed: int = 0
    removed: list[str] = field(default_factory=list)


def copy_groups(entries: list[dict]) -> list[list[int]]:
    """Indices of ``entries`` grouped by SOP Instance UID, each group in list (path)
    order; the groups in the order of their first copy."""
    groups: dict[str, list[int]] = {}
    for index, entry in enumerate(entries):
        groups.setdefault(entry["sop_instance_uid"] or f"\0{index}", []).append(index)
    return list(groups.values())


def convert_copies(
    entries: list[dict],
    output_root: str | os.PathLike,
    options: Options,
    workers: int,
    *,
    settled=lambda index: None,
    starting=lambda indices: None,
    log=None,
) -> Iterator[tuple[int, FileResult]]:
    """Convert ``entries`` (shard list entries, in path order) so that each SOP Instance
    UID becomes one image: the first copy that converts.  Yields ``(index, result)`` for
    each conversion, in the order they finish.

    ``settled(index)`` returns the status of an entry that need not be converted (done
    before, or known to fail), or None.  A copy that fails, or is known to, hands over to
    the next copy of its SOP Instance UID in a later round (rounds are rare and small:
    only damaged first copies have them).
    """
    groups = copy_groups(entries)
    position = [0] * len(groups)  # the copy of each group to try next
    while True:
        todo: dict[int, int] = {}  # entry index -> its group
        for g, copies in enumerate(groups):
            while position[g] < len(copies):
                status = settled(copies[position[g]])
                if status is None:
                    todo[copies[position[g]]] = g
                    break
                if status == OK:
                    position[g] = len(copies)  # this copy is the image
                    break
                position[g] += 1  # a copy known to fail: try the next
        if not todo:
            return
        starting(list(todo))
        order = outliers_first(list(todo), [entries[i]["cost"] for i in todo])
        jobs = [(index, entries[index]) for index in order]
        for index, result in convert_in_workers(jobs, output_root, options, workers, log):
            g = todo[index]
            position[g] = len(groups[g]) if result.status == OK else position[g] + 1
            yield index, result


def run_shard(
    shard_list: str | os.PathLike,
    output_root: str | os.PathLike,
    options: Options,
    journal: str | os.PathLike,
    results: str | os.PathLike,
    log=None,
    workers: int = 1,
    keep_orphans: bool = False,
    report_images: str | os.PathLike | None = None,
    samples_per_modality: int = 0,
) -> ShardSummary:
    """Convert the files of one shard list in ``workers`` processes; write their results
    (JSON lines, one per file in list order, then one per removed output) to ``results``.

    With ``report_images`` (the QC report's ``img/`` folder), the files of this shard the
    report may show (its first ``samples_per_modality`` of each modality, see
    :mod:`dicomprep.report.sampling`) get their thumbnails rendered by the worker that
    converts them, while the file is at hand: the report then decodes nothing.
    """
    entries = read_shard_list(shard_list)
    journal = Path(journal)
    done, journal_lines = _read_journal(journal)
    options_fp = options.fingerprint()
    fingerprints = [file_fingerprint(entry, options_fp) for entry in entries]
    remove_shard_temporaries(output_root, entries)
    rows: list[dict | None] = [None] * len(entries)
    kept: dict[str, dict] = {}  # the journal after this run: key -> record
    summary, environment_errors = ShardSummary(), []
    appended = 0  # journal lines this run adds
    stacks = stack_units(entries, output_root, options, fingerprints)
    if report_images is not None and not is_url(output_root):
        mark_report_samples(entries, samples_per_modality, report_images)

    def journal_result(unit: dict, fingerprint: str, result) -> dict | None:
        """Count a conversion's result and journal it (when it is worth keeping)."""
        nonlocal appended
        if result.status == OK:
            summary.processed += 1
        else:
            summary.failed += 1
            if result.stage == "write":
                environment_errors.append(f"{unit['path']}: {result.message}")
        if log is not None:
            print(_log_line(result), file=log, flush=True)
        if result.status != OK and not _is_data_failure(result):
            return None
        record = _journal_record(unit, fingerprint, result, output_root)
        out.write((json.dumps(record, sort_keys=True) + "\n").encode())
        out.flush()
        appended += 1
        kept[unit["key"]] = record
        return record

    def write_intents(units: list[dict]) -> None:
        """Append and sync the intent lines of ``units`` before they are converted."""
        nonlocal appended
        records = [intent_record(u, output_root, done.get(u["key"])) for u in units]
        lines = [json.dumps(r, sort_keys=True) + "\n" for r in records if r is not None]
        if lines:
            out.write("".join(lines).encode())
            out.flush()
            os.fsync(out.fileno())
            appended += len(lines)

    def settled(index: int) -> str | None:
        """The status of a file the journal says is done or known to fail, else None;
        a stack's slice is settled by its stack (its copies are duplicates)."""
        if entries[index]["stack"]:
            return OK
        entry, record = entries[index], done.get(entries[index]["key"])
        if _still_done(record, fingerprints[index], output_root):
            summary.reused += 1
        elif _known_failure(record, fingerprints[index]):
            summary.failed += 1
        else:
            return None
        rows[index] = _row(record["result"], entry, record, reused=True)
        kept[entry["key"]] = record
        return record["status"]

    with open_for_append(journal) as out:
        todo = []
        for name, unit in stacks.items():
            record = done.get(unit["key"])
            if _still_done(record, unit["fingerprint"], output_root) or _known_failure(
                record, unit["fingerprint"]
            ):
                summary.reused += 1
                kept[unit["key"]] = record
                _stack_rows(rows, entries, unit, record["result"], record, reused=True)
            else:
                todo.append((name, unit))
        write_intents([unit for _, unit in todo])
        for name, result in convert_in_workers(todo, output_root, options, workers, log):
            unit = stacks[name]
            record = journal_result(unit, unit["fingerprint"], result)
            _stack_rows(rows, entries, unit, result.to_dict(), record, reused=False)
        converted = convert_copies(
            entries,
            output_root,
            options,
            workers,
            settled=settled,
            starting=lambda indices: write_intents([entries[i] for i in indices]),
            log=log,
        )
        for index, result in converted:
            record = journal_result(entries[index], fingerprints[index], result)
            rows[index] = _row(result.to_dict(), entries[index], record, reused=False)
        os.fsync(out.fileno())
    mark_copies(entries, rows)
    refused = removal_refused(journal.parent.parent)  # {work}/journal/{shard}.jsonl
    removed = remove_orphans(done, kept, output_root, keep=keep_orphans or refused, log=log)
    summary.removed = [row["output"] for row in removed]
    if journal_lines + appended > len(kept):
        compact_journal(journal, kept)  # it holds superseded, torn or orphaned lines
    write_results([row for row in rows if row is not None] + removed, Path(results))
    if environment_errors:
        raise ShardEnvironmentError(
            f"{len(environment_errors)} file(s) could not be written; first: "
            + environment_errors[0]
        )
    return summary


def mark_report_samples(entries: list[dict], per_modality: int, report_images) -> None:
    """Mark the files (not slices of a stack) whose thumbnails the QC report may need:
    the worker that converts one renders them into ``report_images``."""
    from dicomprep.report.sampling import first_per_modality

    files = [e for e in entries if not e["stack"]]
    chosen = first_per_modality(
        ((e.get("modality", ""), e["sop_instance_uid"]) for e in files), per_modality
    )
    for entry in files:
        if entry["sop_instance_uid"] in chosen:
            entry[REPORT_IMAGES] = str(report_images)
    if chosen:
        import dicomprep.report.images  # noqa: F401 - once, before the workers fork


REPORT_IMAGES = "report_images"  # the key of a marked entry: where its thumbnails go


def stack_units(entries: list[dict], output_root, options: Options, fingerprints) -> dict:
    """The stacks of a shard list: for each stack name, one unit of work holding its
    slices in order (``indices`` into ``entries``, ``paths``), its output and a
    fingerprint of every slice (adding, removing or changing one rebuilds the stack)."""
    members: dict[str, list[int]] = {}
    for index, entry in enumerate(entries):
        if entry["stack"]:
            members.setdefault(entry["stack"], []).append(index)
    if not members:
        return {}
    from dicomprep.series.volume_file import stack_output_path

    group_of = {i: group for group in copy_groups(entries) if len(group) > 1 for i in group}
    units = {}
    for name, indices in members.items():
        indices.sort(key=lambda i: entries[i]["slice"])
        head = entries[indices[0]]
        digest = hashlib.sha256(name.encode())
        for i in indices:
            digest.update(fingerprints[i].encode())
        units[name] = {
            "key": f"stack:{name}",
            "path": head["path"],
            "paths": [entries[i]["path"] for i in indices],
            "indices": indices,
            "stack": name,
            "study_instance_uid": head["study_instance_uid"],
            "sop_instance_uid": head["sop_instance_uid"],
            "bucket_key": head.get("bucket_key") or head["study_instance_uid"],
            "cost": sum(entries[i]["cost"] for i in indices),
            "output": stack_output_path(
                output_root, head["study_instance_uid"], name, options.volume_format
            ),
            "fingerprint": digest.hexdigest()[:24],
            # other copies of each slice's image, tried in path order when it is damaged
            "copies": {
                entries[i]["path"]: [entries[j]["path"] for j in group_of[i] if j != i]
                for i in indices
                if i in group_of
            },
            "copy_indices": [j for i in indices for j in group_of.get(i, []) if j != i],
        }
    return units


def _stack_rows(rows, entries, unit: dict, result: dict, record, reused: bool) -> None:
    """One results row per slice of a stack: the stack's outcome, the slice's page and
    position (the manifest keeps the first slice's row, slices.csv all of them); a slice
    left out of the volume gets its own failure."""
    placements = {p["source"]: p for p in result.get("slice_rows") or []}
    left_out = {f["source"]: f for f in result.get("left_out") or []}
    fields = {c: result.get(c) for c in FileResult.__dataclass_fields__}
    # the slices, and the copies that took a damaged slice's place (or were damaged too);
    # copies not needed are left to mark_copies, which makes them duplicates
    tried = placements.keys() | left_out.keys()
    copies = [j for j in unit.get("copy_indices", []) if entries[j]["path"] in tried]
    for index in [*unit["indices"], *copies]:
        entry = entries[index]
        placed = placements.get(entry["path"], {})
        row = _row(fields, entry, record, reused=reused)
        row.update(
            source=entry["path"],
            sop_instance_uid=entry["sop_instance_uid"],
            stack=unit["stack"],
            page=placed.get("page", 0),
            position=placed.get("position", 0.0),
            slices=result.get("slices") or len(unit["indices"]),
        )
        failure = left_out.get(entry["path"])
        if failure is not None:
            row.update(failure, source=entry["path"], status=FAILED, output="", stack="")
        rows[index] = row


def _journal_record(entry: dict, fingerprint: str, result: FileResult, output_root) -> dict:
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


def _row(result: dict, entry: dict, record: dict | None, reused: bool) -> dict:
    """A results row: the file's result (with this run's source path) and what the
    shard knows of it."""
    record = record or {}
    return {
        **result,
        "source": entry["path"],
        "key": entry["key"],
        "series_instance_uid": entry.get("series_instance_uid", ""),
        "stack": "",
        "page": 0,
        "position": 0.0,
        "slices": 1,
        "output_size": record.get("output_size"),
        "output_mtime_ns": record.get("output_mtime_ns"),
        "reused": reused,
    }


def mark_copies(entries: list[dict], rows: list) -> None:
    """Fill in the results of the copies that were not converted: duplicates of the copy
    that was; a failed copy's message names the copy converted instead."""
    for copies in copy_groups(entries):
        winner = next((i for i in copies if rows[i] and rows[i]["status"] == OK), None)
        if winner is None:  # e.g. a stack that failed: its slices' copies stay duplicates
            winner = next((i for i in copies if entries[i].get("stack")), None)
        if winner is None:
            continue
        image = entries[winner]["path"]
        for index in copies:
            if index == winner:
                continue
            if rows[index] is None:
                rows[index] = _row(
                    FileResult(  # the same row a command line run gives
                        source=entries[index]["path"],
                        status=DUPLICATE,
                        stage="discover",
                        error_type=ErrorType.DUPLICATE_SOP_INSTANCE_UID,
                        message=f"same SOP Instance UID as {image}",
                        study_instance_uid=entries[index]["study_instance_uid"],
                        sop_instance_uid=entries[index]["sop_instance_uid"],
                    ).to_dict(),
                    entries[index],
                    None,
                    reused=False,
                )
            elif rows[index]["status"] != OK:
                rows[index]["message"] += f" (the copy {image} was converted instead)"


def remove_orphans(
    before: dict[str, dict],
    after: dict[str, dict],
    output_root: str | os.PathLike,
    keep: bool = False,
    log=None,
) -> list[dict]:
    """Delete the outputs that journal records ``before`` this run point to and no
    record ``after`` it does (their source was deleted, or now holds another image; or an
    intent names them: a run killed while converting may have left them); return a
    results row for each that existed (``keep``: report them, delete nothing)."""
    claimed = {r.get("output") for r in after.values() if r.get("status") == OK}
    removed = []
    for record, output in ((r, o) for r in before.values() for o in outputs_named(r)):
        if output in claimed:
            continue
        claimed.add(output)  # one row per output, even if several records named it
        path = journaled_output(output, output_root)
        if is_url(output_root):  # an object
            from dicomprep.storage.transfer import output_exists, remove_output

            if not output_exists(path):
                continue
            if not keep:
                remove_output(path)
        elif not path.exists():
            continue
        elif not keep:
            path.unlink(missing_ok=True)
        result = record.get("result") or {"study_instance_uid": output.split("/")[0]}
        removed.append(
            {
                "source": record.get("source", ""),
                "key": record.get("key", ""),
                "status": REMOVED,
                "message": "kept (keep_orphans)" if keep else "source gone: output removed",
                "study_instance_uid": result.get("study_instance_uid", ""),
                "sop_instance_uid": result.get("sop_instance_uid", ""),
                "output": str(path),
                "reused": False,
            }
        )
        if log is not None:
            verb = "kept orphan" if keep else "removed"
            print(f"{verb}\t{path}\t(source {record.get('key', '')} is gone)", file=log)
    return removed


def compact_journal(journal: Path, records: dict[str, dict]) -> None:
    """Rewrite the journal with one record per listed file (deleted when none)."""
    if not records:
        journal.unlink(missing_ok=True)
        return
    text = "".join(json.dumps(records[key], sort_keys=True) + "\n" for key in sorted(records))
    atomic_write_text(journal, text)


OUTLIER_COST = 8  # times the median cost of a shard's files


def outliers_first(keys: list, costs: list[int]) -> list:
    """``keys`` in their order, except that those whose cost exceeds
    :data:`OUTLIER_COST` times the median come first (costliest first).

    Path order keeps reads sequential (measured: starting all compressed mammograms
    first was 5 % slower than path order); moving only the outliers, such as
    tomosynthesis volumes among mammograms, still keeps them out of the tail."""
    if not keys:
        return keys
    median = sorted(costs)[len(costs) // 2]
    outliers = [(c, k) for k, c in zip(keys, costs, strict=True) if c > OUTLIER_COST * median]
    front = {k for _, k in outliers}
    ordered = [k for _, k in sorted(outliers, key=lambda pair: -pair[0])]
    return ordered + [k for k in keys if k not in front]


IN_FLIGHT_PER_WORKER = 2  # files handed to the pool ahead of the workers, per worker


def convert_in_workers(
    jobs: list[tuple[int, dict]],
    output_root: str | os.PathLike,
    options: Options,
    workers: int,
    log=None,
) -> Iterator[tuple[int, FileResult]]:
    """Convert the ``(key, shard list entry)`` pairs of ``jobs`` in up to ``workers``
    forked processes; yield ``(key, result)`` in the order the files finish.

    Files go to whichever worker is free, in the order given, with at most
    :data:`IN_FLIGHT_PER_WORKER` per worker handed out ahead, so the parent's work per
    file does not grow with the number of files.  When a worker process dies (a crashing
    decoder, the out-of-memory killer), the files that were in flight are converted
    again one at a time, each in a process of its own (a file whose own process dies is
    recorded as failed), and the rest go on in a fresh pool.
    """
    remaining = deque(jobs)
    entries = dict(jobs)
    suspects: list = []
    while remaining:
        for key, result in _pool_results(remaining, output_root, options, workers):
            if result is None:
                suspects.append(key)
            else:
                yield key, result
    if suspects and log is not None:
        print(f"a worker process died; converting {len(suspects)} file(s) one by one", file=log)
    for key in suspects:
        [(_, result)] = _pool_results(deque([(key, entries[key])]), output_root, options, 1)
        yield key, result if result is not None else _died(entries[key], output_root)


def _pool_results(remaining: deque, output_root, options, workers):
    """``(key, FileResult)`` per job taken from ``remaining``; ``(key, None)`` for the
    jobs in flight when a worker process died, after which it stops taking jobs.

    With fewer files than workers (a shard of a few tomosynthesis volumes), the spare
    cores decode frames inside each file (``decode_threads``): two levels of parallelism
    that together never exceed ``workers``.  Objects in object storage are fetched a few
    files ahead by the parent (:class:`~dicomprep.storage.transfer.Prefetcher`, started
    once the workers are forked, as threads must not be forked)."""
    decode_threads = max(1, workers // max(1, len(remaining)))
    pool = worker_pool(min(workers, len(remaining)))
    window = max(1, workers) * IN_FLIGHT_PER_WORKER
    pending: dict = {}
    broken = False
    prefetcher = None
    try:
        while pending or (remaining and not broken):
            while remaining and not broken and len(pending) < window:
                key, entry = remaining[0]
                if prefetcher is not None:
                    entry = prefetcher.take(key, entry)
                try:
                    future = pool.submit(_convert, entry, output_root, options, decode_threads)
                except BrokenProcessPool:
                    broken = True
                    break
                remaining.popleft()
                pending[future] = key
                if prefetcher is None and remaining and is_url(remaining[0][1]["path"]):
                    from dicomprep.storage.transfer import Prefetcher

                    prefetcher = Prefetcher(window)
                if prefetcher is not None:
                    for later_key, later_entry in itertools.islice(remaining, window):
                        prefetcher.want(later_key, later_entry)
            if not pending:
                break
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                key = pending.pop(future)
                try:
                    yield key, future.result()
                except BrokenProcessPool:
                    broken = True
                    yield key, None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if prefetcher is not None:
            prefetcher.close()


def _died(entry: dict, output_root) -> FileResult:
    """The result of a file (or stack) whose process died; removes what its write left
    behind."""
    study, sop = entry["study_instance_uid"], entry["sop_instance_uid"]
    if "paths" in entry:
        remove_stale_temporaries(Path(entry["output"]))
    elif study and sop:
        remove_stale_temporaries(output_path_for(output_root, study, sop))
    return FileResult(
        source=entry["path"],
        status=FAILED,
        stage="decode",
        error_type=ErrorType.WORKER_DIED,
        message="the process converting this file died (a decoder crash or out of memory)",
        study_instance_uid=entry["study_instance_uid"],
        sop_instance_uid=entry["sop_instance_uid"],
    )


def convert_stack(unit: dict, options: Options):
    """The :class:`~dicomprep.series.volume_file.StackResult` of one stack: its slices
    (``paths``, in order; ``copies`` of them for damaged ones) into one volume at
    ``output``, through local temporaries when the slices or the output are in object
    storage."""
    if is_url(unit["output"]) or any(is_url(p) for p in unit["paths"]):
        from dicomprep.run.remote import convert_stack_entry

        return convert_stack_entry(unit, options)
    from dicomprep.series.volume_file import process_stack

    return process_stack(unit["paths"], unit["output"], options, unit.get("copies"))


def _convert(entry: dict, output_root, options: Options, decode_threads: int = 1) -> FileResult:
    if "paths" in entry:  # a stack: its slices become one volume
        return convert_stack(entry, options)
    if is_url(entry["path"]) or is_url(output_root):  # object storage: fetch / put
        from dicomprep.run.remote import convert_entry

        return convert_entry(entry, output_root, options, decode_threads)
    sample = bool(entry.get(REPORT_IMAGES))
    view: list | None = [] if sample else None
    result = process_file(
        entry["path"], output_root, options, decode_threads=decode_threads, source_view=view
    )
    if sample and result.status == OK:
        render_report_sample(entry, result, output_root, options, view[0] if view else None)
    return result


def render_report_sample(
    entry: dict, result: FileResult, output_root, options: Options, source=None
) -> None:
    """The QC report's thumbnails of a file just converted (see :func:`mark_report_samples`),
    the source's from the frame its conversion kept (``source``, single-frame files).
    A problem here costs only the thumbnails: the report renders them itself then."""
    from types import SimpleNamespace

    from dicomprep.report.images import render_and_record
    from dicomprep.report.sampling import NO_MODALITY

    row = SimpleNamespace(
        modality=entry.get("modality") or NO_MODALITY,
        study_instance_uid=result.study_instance_uid,
        sop_instance_uid=result.sop_instance_uid,
        path=entry["path"],
        tiff=relative_to_root(result.output, output_root),
        source_frames=1,
        num_frames=result.num_frames,
    )
    with contextlib.suppress(Exception):  # the report falls back to rendering it
        render_and_record(row, output_root, entry[REPORT_IMAGES], options, source=source)


def _log_line(result) -> str:
    if hasattr(result, "sources"):  # a stack
        what = f"stack of {len(result.sources)}\t{result.output or result.sources[0]}"
        if result.status == OK:
            return f"ok\t{result.seconds * 1000:.0f} ms\t{what}"
        return f"{result.status}\t{result.stage}\t{result.error_type}: {result.message}\t{what}"
    if result.status == OK:
        return f"ok\t{result.seconds * 1000:.0f} ms\t{result.source}"
    return (
        f"{result.status}\t{result.stage}\t{result.error_type}: {result.message}\t{result.source}"
    )
