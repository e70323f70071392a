"""A shard's units of work and their results rows: files grouped by SOP Instance UID
(copies of one image, tried in path order), the stacks formed of a series' slices, the
files whose QC thumbnails a worker draws, and the results row of each listed file."""

from __future__ import annotations

import hashlib

from dicomprep.core.errors import ErrorType
from dicomprep.core.records import DUPLICATE, FAILED, OK, FileResult
from dicomprep.options import Options

REPORT_IMAGES = "report_images"  # the key of a marked entry: where its thumbnails go
THUMBNAILS = "thumbnails"  # and what draws them (see mark_report_samples)


def copy_groups(entries: list[dict]) -> list[list[int]]:
    """Indices of ``entries`` grouped by SOP Instance UID, each group in list (path)
    order; the groups in the order of their first copy."""
    groups: dict[str, list[int]] = {}
    for index, entry in enumerate(entries):
        groups.setdefault(entry["sop_instance_uid"] or f"\0{index}", []).append(index)
    return list(groups.values())


def _stack_unit(name: str, indices: list[int], entries, output, fingerprints, group_of):
    """The unit of work of one stack (see :func:`stack_units`)."""
    head = entries[indices[0]]
    digest = hashlib.sha256(name.encode())
    for i in indices:
        digest.update(fingerprints[i].encode())
    return {
        "key": f"stack:{name}",
        "path": head["path"],
        "paths": [entries[i]["path"] for i in indices],
        "indices": indices,
        "stack": name,
        "study_instance_uid": head["study_instance_uid"],
        "sop_instance_uid": head["sop_instance_uid"],
        "bucket_key": head.get("bucket_key") or head["study_instance_uid"],
        "cost": sum(entries[i]["cost"] for i in indices),
        "output": output,
        "fingerprint": digest.hexdigest()[:24],
        # other copies of each slice's image, tried in path order when it is damaged
        "copies": {
            entries[i]["path"]: [entries[j]["path"] for j in group_of[i] if j != i]
            for i in indices
            if i in group_of
        },
        "copy_indices": [j for i in indices for j in group_of.get(i, []) if j != i],
    }


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
        study = entries[indices[0]]["study_instance_uid"]
        output = stack_output_path(output_root, study, name, options.volume_format)
        units[name] = _stack_unit(name, indices, entries, output, fingerprints, group_of)
    return units


def result_row(result: dict, entry: dict, record: dict | None, reused: bool) -> dict:
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


def stack_rows(rows, entries, unit: dict, result: dict, record, reused: bool) -> None:
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
        row = result_row(fields, entry, record, reused=reused)
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


def duplicate_row(entry: dict, image: str) -> dict:
    """The results row of a copy not converted because ``image`` was (the same row a
    command line run gives)."""
    result = FileResult(
        source=entry["path"],
        status=DUPLICATE,
        stage="discover",
        error_type=ErrorType.DUPLICATE_SOP_INSTANCE_UID,
        message=f"same SOP Instance UID as {image}",
        study_instance_uid=entry["study_instance_uid"],
        sop_instance_uid=entry["sop_instance_uid"],
    )
    return result_row(result.to_dict(), entry, None, reused=False)


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
                rows[index] = duplicate_row(entries[index], image)
            elif rows[index]["status"] != OK:
                rows[index]["message"] += f" (the copy {image} was converted instead)"


def mark_report_samples(entries: list[dict], thumbnails, per_modality: int, folder) -> None:
    """Mark the files (not slices of a stack) whose thumbnails the QC report may need,
    as ``thumbnails.choose`` picks them: the worker that converts one has
    ``thumbnails.draw`` render them into ``folder``."""
    files = [e for e in entries if not e["stack"]]
    chosen = thumbnails.choose(
        ((e.get("modality", ""), e["sop_instance_uid"]) for e in files), per_modality
    )
    for entry in files:
        if entry["sop_instance_uid"] in chosen:
            entry[REPORT_IMAGES] = str(folder)
            entry[THUMBNAILS] = thumbnails
