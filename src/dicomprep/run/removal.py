"""The removal guard: how many outputs a run would remove, whether it may, and the lists.

A workflow run removes the outputs whose source is gone (deleted, or now holding another
image; see :func:`dicomprep.run.shard.remove_orphans`).  A mistaken source (an empty
mount, another collection) would make that every output, so planning first works out
what the shards would remove, by the same rule: every output the journals name that no
image of the new plan claims.  More than :data:`REMOVAL_FLOOR` outputs *and* more than
:data:`REMOVAL_FRACTION` of the journaled ones stop the run before any conversion or
removal (like rsync's ``--max-delete``), unless ``allow_removal`` says otherwise:
``true`` (any number) or a number (up to that many).

Files in the work folder: ``would_remove.txt`` lists what a refused run would have removed
(rewritten by each refusal, deleted by the next plan that passes); ``removed.txt`` gets,
for each run that removed outputs, a header line with the time and count and then one
line per output (appended, so it is the history of what left the dataset);
``removal_refused`` exists while the last plan refused, and shard jobs then remove
nothing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from dicomprep.run.journal_records import outputs_named, read_journal

WOULD_REMOVE = "would_remove.txt"
REMOVED = "removed.txt"
REFUSED = "removal_refused"
REMOVAL_FLOOR = 20  # outputs a run may always remove
REMOVAL_FRACTION = 0.1  # of the journaled outputs a run may remove beyond that
EXAMPLES_SHOWN = 3  # outputs named in the refusal message


class RemovalRefused(RuntimeError):
    """The run would remove more outputs than the bound allows; nothing was touched."""


def journal_outputs(journal: str | os.PathLike) -> dict[str, str]:
    """``{output (relative to the output root): source key}`` of every output the last
    record of each key in ``journal`` names: a finished file's output, or both outputs
    an intent names (:func:`~dicomprep.run.journal_records.outputs_named`).  Torn or
    damaged lines are skipped, as the shards skip them."""
    last = read_journal(journal)
    named: dict[str, str] = {}
    for key, record in last.items():
        for output in outputs_named(record):
            named.setdefault(output, str(record.get("source") or key))
    return named


def planned_outputs(images, volume_format: str = "tiff") -> set[str]:
    """The outputs (relative to the output root) the images of a plan claim: each file's
    ``{study}/{sop}.tiff`` and each stack's volume under its first slice's study."""
    claimed = {
        f"{study}/{sop}.tiff"
        for study, sop in zip(
            images["study_instance_uid"].tolist(), images["sop_instance_uid"].tolist(), strict=True
        )
    }
    if "stack" in images.columns:
        heads = images[(images["stack"] != "") & (images["slice"] == 0)]
        extension = VOLUME_EXTENSIONS.get(volume_format, ".tiff")
        claimed.update(
            f"{study}/{name}{extension}"
            for study, name in zip(
                heads["study_instance_uid"].tolist(), heads["stack"].tolist(), strict=True
            )
        )
    return claimed


VOLUME_EXTENSIONS = {"tiff": ".tiff", "nifti": ".nii.gz"}  # series.volume_file.EXTENSIONS


def named_outputs(journals: Iterable[str | os.PathLike]) -> dict[str, str]:
    """``{output: source key}`` of every output the ``journals`` name (see
    :func:`journal_outputs`)."""
    named: dict[str, str] = {}
    for journal in journals:
        for output, key in journal_outputs(journal).items():
            named.setdefault(output, key)
    return named


def would_remove(named: Mapping[str, str], claimed: set[str], output_root=None) -> dict[str, str]:
    """``{output: source key}`` of the outputs the shards would remove: those of
    ``named`` (:func:`named_outputs`) that no image of the plan claims (``claimed``);
    with a local ``output_root``, only those that exist (the shards skip the others)."""
    orphans = {o: k for o, k in named.items() if o not in claimed}
    if output_root is None or "://" in str(output_root):
        return orphans
    return {o: k for o, k in orphans.items() if (Path(output_root) / o).exists()}


def removal_limit(journaled: int, allow: bool | int = False) -> int | None:
    """How many outputs a run may remove of ``journaled`` ones: None for any number
    (``allow`` true), ``allow`` itself when it is a number, else the larger of
    :data:`REMOVAL_FLOOR` and :data:`REMOVAL_FRACTION` of them."""
    if allow is True:
        return None
    if not isinstance(allow, bool) and isinstance(allow, int):
        return max(0, allow)
    return max(REMOVAL_FLOOR, int(REMOVAL_FRACTION * journaled))


def guard_removal(
    work: str | os.PathLike,
    would_remove: Mapping[str, str],
    journaled: int,
    allow: bool | int = False,
) -> None:
    """Raise :class:`RemovalRefused` (after listing them in ``would_remove.txt`` and
    marking the work folder refused) when ``would_remove`` (``{output: source key}``)
    holds more outputs than :func:`removal_limit` allows; else clear the mark."""
    work = Path(work)
    limit = removal_limit(journaled, allow)
    if limit is None or len(would_remove) <= limit:
        (work / REFUSED).unlink(missing_ok=True)
        (work / WOULD_REMOVE).unlink(missing_ok=True)  # a refusal's list, now out of date
        return
    listing = work / WOULD_REMOVE
    lines = [f"{output}\t(source {key})\n" for output, key in sorted(would_remove.items())]
    listing.write_text("".join(lines), encoding="utf-8")
    (work / REFUSED).write_text(f"{len(would_remove)} {time.time_ns()}\n")
    sources = sorted(set(would_remove.values()))
    examples = ", ".join(sources[:EXAMPLES_SHOWN]) + (
        ", ..." if len(sources) > EXAMPLES_SHOWN else ""
    )
    raise RemovalRefused(
        f"this run would remove {len(would_remove)} of the dataset's {journaled} outputs, "
        f"more than the {limit} allowed (their sources are gone or now hold other images, "
        f"e.g. {examples}); all {len(would_remove)} are listed in {listing}. Nothing was "
        f"converted or removed. If that is right, run again with allow_removal: true "
        f"(--config allow_removal=true) or a number"
    )


def guard_shard_removals(
    work: str | os.PathLike,
    journals: Iterable[str | os.PathLike],
    unchanged_files: int,
    claimed: set[str],
    output_root=None,
    allow: bool | int = False,
) -> None:
    """:func:`guard_removal` for a plan whose changed shards have ``journals``: they
    would remove the outputs those name and no image of the plan ``claimed``.  The
    dataset's journaled outputs are those journals' and one per file of the unchanged
    shards (``unchanged_files``; their journals are not read)."""
    named = named_outputs(journals)
    orphans = would_remove(named, claimed, output_root)
    guard_removal(work, orphans, len(named) + unchanged_files, allow)


def removal_refused(work: str | os.PathLike) -> bool:
    """True while the last plan in ``work`` refused its removals (shards then keep all)."""
    return (Path(work) / REFUSED).exists()


def record_removed(work: str | os.PathLike, outputs: Iterable[str], when_ns: int = 0) -> int:
    """Append this run's removed ``outputs`` to ``removed.txt`` under a header line with
    the time the run was planned (``when_ns``, ns since the epoch; now when 0) and their
    count; return the count (nothing is written for none)."""
    outputs = list(outputs)
    if not outputs:
        return 0
    when = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime((when_ns or time.time_ns()) / 1e9))
    text = f"# {when}: {len(outputs)} output(s) removed (source gone)\n"
    text += "".join(f"{output}\n" for output in outputs)
    with open(Path(work) / REMOVED, "a", encoding="utf-8") as listing:
        listing.write(text)
    return len(outputs)
