"""Which outputs the QC report shows: a fixed sample per modality, chosen by hash.

The report shows, per modality, the ``n`` converted files whose SOP Instance UIDs have the
smallest SHA-256 (:func:`sample_key`): the same files on every run, spread over the
dataset, with no state to keep.  A shard job knows only its own files, but the first ``n``
of a modality over the whole dataset are among the first ``n`` of that modality in some
shard, so a shard that renders the thumbnails of its own first ``n`` (:func:`first_per_modality`)
has rendered every thumbnail the report is going to need from it.  Pure Python, no
pandas: the shard jobs import it.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable
from types import SimpleNamespace

from dicomprep.options import Options
from dicomprep.pixels.volume import central_index

__all__ = ["NO_MODALITY", "ShardThumbnails", "first_per_modality", "sample_key", "volume_label"]

NO_MODALITY = "(none)"  # the modality of files whose header has none


def sample_key(sop_instance_uid: str) -> tuple[str, str]:
    """The sort key that picks samples: the SHA-256 of the SOP Instance UID (hex), then
    the UID itself (for equal hashes, i.e. the same UID twice)."""
    return hashlib.sha256(sop_instance_uid.encode()).hexdigest(), sop_instance_uid


def first_per_modality(items: Iterable[tuple[str, str]], per_modality: int) -> set[str]:
    """The SOP Instance UIDs among ``items`` (``(modality, sop_instance_uid)`` pairs) that
    come first in :func:`sample_key` order within their modality, ``per_modality`` each."""
    if per_modality <= 0:
        return set()
    by_modality: dict[str, set[str]] = {}
    for modality, uid in items:
        if uid:
            by_modality.setdefault(modality, set()).add(uid)
    chosen: set[str] = set()
    for uids in by_modality.values():
        chosen.update(heapq.nsmallest(per_modality, uids, key=sample_key))
    return chosen


def volume_label(source_frames: int, output_frames: int, options: Options) -> str:
    """How a multi-frame source was handled, for the sample captions ('' for one frame)."""
    if source_frames <= 1:
        return ""
    n = source_frames
    if options.volume == "central-slice":
        return f"volume of {n} frames: central slice (frame {central_index(n) + 1})"
    if options.volume == "max-intensity":
        return f"volume of {n} frames: maximum-intensity projection"
    if options.volume == "interpolate":
        return f"volume of {n} frames: interpolated to {output_frames} frames"
    return f"volume of {n} frames: keep {output_frames} frames"


class ShardThumbnails:
    """What a shard job is handed to draw the QC report's thumbnails of the files it
    converts that the report will show (``run_shard(thumbnails=...)``): :meth:`choose`
    picks them, :meth:`draw` renders one in the worker that converted it, while the file
    is at hand, so the report itself decodes nothing."""

    @staticmethod
    def choose(items: Iterable[tuple[str, str]], per_modality: int) -> set[str]:
        """The SOP Instance UIDs of ``(modality, sop_instance_uid)`` pairs the report
        samples (:func:`first_per_modality`); the drawing code is imported once here,
        before the shard's workers fork, when any is chosen."""
        chosen = first_per_modality(items, per_modality)
        if chosen:
            import dicomprep.report.images  # noqa: F401
        return chosen

    @staticmethod
    def draw(entry: dict, result, output_root, img_dir, options: Options, source=None) -> None:
        """Render the thumbnails of a file just converted (shard list ``entry``, its
        ``result``) into ``img_dir``, the source's from the frame its conversion kept
        (``source``, single-frame files)."""
        from dicomprep.report.images import render_and_record
        from dicomprep.storage.urls import relative_to_root

        row = SimpleNamespace(
            modality=entry.get("modality") or NO_MODALITY,
            study_instance_uid=result.study_instance_uid,
            sop_instance_uid=result.sop_instance_uid,
            path=entry["path"],
            tiff=relative_to_root(result.output, output_root),
            source_frames=1,
            num_frames=result.num_frames,
        )
        render_and_record(row, output_root, img_dir, options, source=source)
