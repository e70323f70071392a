"""What a shard removes from the dataset folder: the temporaries interrupted writes of
its outputs left behind, and the outputs whose source is gone (deleted, or replaced by a
file with another SOP Instance UID), on disk or in a bucket."""

from __future__ import annotations

import os
from pathlib import Path

from dicomprep.core.records import OK, REMOVED
from dicomprep.run.journal import journaled_output, outputs_named
from dicomprep.storage.urls import is_url


def remove_stale_temporaries(output: Path) -> None:
    """Delete temporaries an interrupted write of ``output`` may have left behind."""
    for stale in output.parent.glob(f".{output.name}.*.tmp"):
        stale.unlink(missing_ok=True)


def shard_output_names(entries: list[dict]) -> dict[str, set[str]]:
    """The output file names of a shard's entries, by study folder: each file's TIFF and
    each stack's volume in either format."""
    from dicomprep.series.volume_file import EXTENSIONS

    names: dict[str, set[str]] = {}
    for entry in entries:
        study, sop = entry["study_instance_uid"], entry["sop_instance_uid"]
        if study and sop:
            names.setdefault(study, set()).add(f"{sop}.tiff")
        if study and entry.get("stack"):  # a slice: its stack's volume, in either format
            stack = entry["stack"]
            names.setdefault(study, set()).update(f"{stack}{s}" for s in EXTENSIONS.values())
    return names


def remove_shard_temporaries(output_root: str | os.PathLike, entries: list[dict]) -> int:
    """Delete the temporaries that interrupted writes of this shard's outputs left behind,
    listing each study folder once (not once per file); returns how many."""
    removed = 0
    for study, outputs in shard_output_names(entries).items():
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


def _output_present(path, output_root, keep: bool) -> bool:
    """Whether the orphan at ``path`` exists; deleted unless ``keep``."""
    if is_url(output_root):  # an object
        from dicomprep.storage.transfer import output_exists, remove_output

        if not output_exists(path):
            return False
        if not keep:
            remove_output(path)
        return True
    if not path.exists():
        return False
    if not keep:
        path.unlink(missing_ok=True)
    return True


def _removed_row(record: dict, output: str, path, keep: bool) -> dict:
    """The results row of an orphan removed (or kept, ``keep``)."""
    result = record.get("result") or {"study_instance_uid": output.split("/")[0]}
    return {
        "source": record.get("source", ""),
        "key": record.get("key", ""),
        "status": REMOVED,
        "message": "kept (keep_orphans)" if keep else "source gone: output removed",
        "study_instance_uid": result.get("study_instance_uid", ""),
        "sop_instance_uid": result.get("sop_instance_uid", ""),
        "output": str(path),
        "reused": False,
    }


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
        if not _output_present(path, output_root, keep):
            continue
        removed.append(_removed_row(record, output, path, keep))
        if log is not None:
            verb = "kept orphan" if keep else "removed"
            print(f"{verb}\t{path}\t(source {record.get('key', '')} is gone)", file=log)
    return removed
