"""Which files of a series form a stack, in which order, and what is wrong with a series.

Input: one mapping of header facts per file (:func:`stack_facts` reads them from a pydicom
dataset; the caller adds ``path``), as a list of dicts or a pandas DataFrame with the keys
``path, sop_instance_uid, series_instance_uid, rows, columns, photometric_interpretation,
sop_class_uid, image_orientation (6 floats), image_position (3 floats), instance_number,
pixel_spacing (2 floats)`` and optionally ``number_of_frames``.

Rules (docs/volumes.md):

- Single-frame images of one series that share Rows, Columns, photometric interpretation,
  SOP class and ImageOrientationPatient (every cosine within :data:`ORIENTATION_TOLERANCE`)
  form a group; a group of at least two images (after duplicates are removed) is a stack.
- A stack is ordered by position along the slice normal ``IPP . (row x column cosines)``,
  then InstanceNumber, then SOP Instance UID.
- The second of two slices at the same position (within :data:`SAME_POSITION_MM`) is a
  ``duplicate-position`` record and leaves the stack; the stack goes on.
- A distance between neighbours larger than :data:`GAP_FACTOR` x the median is a ``gap``
  record; spacings that differ from the median by more than :data:`UNEVEN_TOLERANCE_MM` are
  an ``uneven-spacing`` record (the stack's ``uneven_spacing`` flag).  Both stacks go on.
- A series with several groups splits: stacks are named ``{series}-{k}``, k from 1 by
  group size (largest first) then first SOP Instance UID (``split-series`` record); images
  left alone are ``localizer`` (another orientation than the series' largest group) or
  ``mixed-geometry`` (another size, photometric interpretation or SOP class) records and
  stay single files, as do multi-frame files and images without position or orientation.
- Images whose Image Orientation (Patient), Image Position (Patient) or Pixel Spacing is
  present but invalid (:mod:`dicomprep.formats.geometry_tags`) are not stacked with the
  others: per series and error type they form one ``invalid-geometry`` record and one stack
  (named ``{series}-{ErrorType}``, :attr:`Stack.error_type` set) whose conversion fails with
  that type, so that each of them is a failure saying why.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field

import numpy as np

ORIENTATION_TOLERANCE = 1e-4
SAME_POSITION_MM = 1e-3
GAP_FACTOR = 1.5
UNEVEN_TOLERANCE_MM = 1e-2

DUPLICATE_POSITION = "duplicate-position"
GAP = "gap"
UNEVEN_SPACING = "uneven-spacing"
SPLIT_SERIES = "split-series"
LOCALIZER = "localizer"
MIXED_GEOMETRY = "mixed-geometry"
NO_GEOMETRY = "no-geometry"
INVALID_GEOMETRY = "invalid-geometry"

#: Columns of ``series_report.csv`` (one row per :class:`SeriesRecord`).
REPORT_COLUMNS = ["kind", "series_instance_uid", "sop_instance_uids", "paths", "message"]


@dataclass(frozen=True)
class Stack:
    """One stack: its files in slice order and where the slices lie."""

    name: str  # output stem: the SeriesInstanceUID, "-k" appended when the series splits
    series_instance_uid: str
    paths: tuple[str, ...]
    sop_instance_uids: tuple[str, ...]
    positions: tuple[float, ...]  # mm along the slice normal, increasing
    orientation: tuple[float, ...]  # ImageOrientationPatient of the stack
    uneven_spacing: bool = False
    # the ErrorType its images fail with when their geometry is invalid (no positions then)
    error_type: str = ""

    @property
    def spacing(self) -> float:
        """Median distance between neighbouring slices (mm)."""
        return float(np.median(np.diff(self.positions)))


@dataclass(frozen=True)
class SeriesRecord:
    """Something about a series that a user should know (one row of series_report.csv)."""

    kind: str
    series_instance_uid: str
    sop_instance_uids: tuple[str, ...]
    message: str
    paths: tuple[str, ...] = field(default=())

    def to_row(self) -> dict:
        """A series_report.csv row (UIDs and paths joined by spaces)."""
        row = asdict(self)
        row["sop_instance_uids"] = " ".join(self.sop_instance_uids)
        row["paths"] = " ".join(self.paths)
        return {key: row[key] for key in REPORT_COLUMNS}


# -- header facts -------------------------------------------------------------------------


def stack_facts(ds) -> dict:
    """The header facts :func:`form_stacks` needs, from a pydicom dataset (no pixels).

    Missing values are None (such a file stays a single file); the geometry elements are
    kept as found (any count, NaN for an entry that is not a number) so that
    :func:`form_stacks` can say what is wrong with them."""
    from dicomprep.formats.geometry_tags import numbers, raw_pixel_spacing

    number = ds.get("InstanceNumber")
    try:
        instance_number = int(number) if number not in (None, "") else None
    except (TypeError, ValueError):
        instance_number = None
    return {
        "sop_instance_uid": str(ds.get("SOPInstanceUID", "")),
        "series_instance_uid": str(ds.get("SeriesInstanceUID", "")),
        "rows": int(ds.get("Rows") or 0),
        "columns": int(ds.get("Columns") or 0),
        "photometric_interpretation": str(ds.get("PhotometricInterpretation", "")).strip(),
        "sop_class_uid": str(ds.get("SOPClassUID", "")),
        "image_orientation": numbers(ds.get("ImageOrientationPatient")),
        "image_position": numbers(ds.get("ImagePositionPatient")),
        "instance_number": instance_number,
        "pixel_spacing": raw_pixel_spacing(ds)[0],
        "number_of_frames": int(ds.get("NumberOfFrames") or 1),
    }


# -- forming stacks -------------------------------------------------------------------------


def _records(files) -> list[dict]:
    if hasattr(files, "to_dict"):  # a DataFrame
        return files.to_dict("records")
    return [dict(f) for f in files]


def _missing(value) -> bool:
    if value is None:
        return True
    try:
        return bool(np.any(np.isnan(np.asarray(value, dtype=np.float64))))
    except (TypeError, ValueError):
        return True


def slice_normal(orientation) -> np.ndarray:
    """Row direction cosines x column direction cosines."""
    o = np.asarray(orientation, dtype=np.float64)
    return np.cross(o[:3], o[3:])


def _same_kind(a: Mapping, b: Mapping) -> bool:
    keys = ("rows", "columns", "photometric_interpretation", "sop_class_uid")
    if any(a[k] != b[k] for k in keys):
        return False
    oa, ob = np.asarray(a["image_orientation"]), np.asarray(b["image_orientation"])
    return bool(np.all(np.abs(oa - ob) <= ORIENTATION_TOLERANCE))


def _groups(files: list[dict]) -> list[list[dict]]:
    """Files of one series in groups of one geometry (first-come in SOP UID order)."""
    groups: list[list[dict]] = []
    for f in sorted(files, key=lambda f: (f["sop_instance_uid"], str(f["path"]))):
        for group in groups:
            if _same_kind(group[0], f):
                group.append(f)
                break
        else:
            groups.append([f])
    return groups


def _ordered(group: list[dict]) -> tuple[list[dict], list[float]]:
    normal = slice_normal(group[0]["image_orientation"])
    positions = [float(np.dot(f["image_position"], normal)) for f in group]

    def key(i: int):
        n = group[i]["instance_number"]
        n = None if _missing(n) else int(n)
        return (positions[i], n is None, n or 0, group[i]["sop_instance_uid"])

    order = sorted(range(len(group)), key=key)
    return [group[i] for i in order], [positions[i] for i in order]


def _uids(files: Iterable[Mapping]) -> tuple[str, ...]:
    return tuple(str(f["sop_instance_uid"]) for f in files)


def _paths(files: Iterable[Mapping]) -> tuple[str, ...]:
    return tuple(str(f["path"]) for f in files)


def _dedupe(series: str, files: list[dict], positions: list[float], records: list) -> tuple:
    kept, kept_positions = [], []
    for f, p in zip(files, positions, strict=True):
        if kept and abs(p - kept_positions[-1]) <= SAME_POSITION_MM:
            records.append(
                SeriesRecord(
                    DUPLICATE_POSITION,
                    series,
                    _uids([kept[-1], f]),
                    f"slice {f['sop_instance_uid']} lies at the same position ({p:.3f} mm) as "
                    f"{kept[-1]['sop_instance_uid']}; the first is kept",
                    _paths([f]),
                )
            )
            continue
        kept.append(f)
        kept_positions.append(p)
    return kept, kept_positions


def _spacing_records(series: str, files: list[dict], positions: list[float], records: list):
    """Gap and uneven-spacing records of an ordered stack; True when spacing is uneven."""
    steps = np.diff(positions)
    median = float(np.median(steps))
    for i in np.flatnonzero(steps > GAP_FACTOR * median):
        pair = files[i : i + 2]
        records.append(
            SeriesRecord(
                GAP,
                series,
                _uids(pair),
                f"{steps[i]:.3f} mm between slices {pair[0]['sop_instance_uid']} and "
                f"{pair[1]['sop_instance_uid']}, more than {GAP_FACTOR} x the median spacing "
                f"{median:.3f} mm (a missing slice?)",
                _paths(pair),
            )
        )
    uneven = bool(np.any(np.abs(steps - median) > UNEVEN_TOLERANCE_MM))
    if uneven:
        records.append(
            SeriesRecord(
                UNEVEN_SPACING,
                series,
                _uids(files[:1]),
                f"slice spacing varies from {steps.min():.3f} to {steps.max():.3f} mm "
                f"(median {median:.3f} mm); the positions of every slice are kept",
            )
        )
    return uneven


def _left_alone_record(series: str, f: dict, main: dict) -> SeriesRecord:
    oa, ob = np.asarray(f["image_orientation"]), np.asarray(main["image_orientation"])
    if np.any(np.abs(oa - ob) > ORIENTATION_TOLERANCE):
        kind, what = LOCALIZER, "another orientation"
    else:
        kind = MIXED_GEOMETRY
        differs = [
            k
            for k in ("rows", "columns", "photometric_interpretation", "sop_class_uid")
            if f[k] != main[k]
        ]
        what = "another " + ", ".join(differs)
    return SeriesRecord(
        kind,
        series,
        _uids([f]),
        f"image {f['sop_instance_uid']} has {what} than the series' stack; it stays a single file",
        _paths([f]),
    )


def form_stacks(files) -> tuple[list[Stack], list[SeriesRecord]]:
    """Stacks (in series UID then name order) and the records of what did not fit.

    Files not in any stack and not duplicates stay single files (:func:`single_files`)."""
    by_series: dict[str, list[dict]] = {}
    invalid: dict[str, dict[str, list[tuple[dict, str]]]] = {}  # series -> type -> files
    records: list[SeriesRecord] = []
    for f in _records(files):
        series = str(f.get("series_instance_uid") or "")
        frames = f.get("number_of_frames")
        frames = 1 if _missing(frames) else int(frames)
        if not series or frames != 1:
            continue
        problem = _geometry_problem(f)
        if problem is not None:
            invalid.setdefault(series, {}).setdefault(problem[0], []).append((f, problem[1]))
            continue
        if _missing(f.get("image_orientation")) or _missing(f.get("image_position")):
            records.append(
                SeriesRecord(
                    NO_GEOMETRY,
                    series,
                    _uids([f]),
                    f"image {f['sop_instance_uid']} has no ImagePositionPatient or "
                    "ImageOrientationPatient; it stays a single file",
                    _paths([f]),
                )
            )
            continue
        f["image_orientation"] = tuple(float(v) for v in f["image_orientation"])
        f["image_position"] = tuple(float(v) for v in f["image_position"])
        by_series.setdefault(series, []).append(f)

    stacks: list[Stack] = []
    for series in sorted(by_series.keys() | invalid.keys()):
        candidates = []
        for group in _groups(by_series.get(series, [])):
            ordered, positions = _ordered(group)
            ordered, positions = _dedupe(series, ordered, positions, records)
            candidates.append((ordered, positions))
        candidates.sort(key=lambda c: (-len(c[0]), min(_uids(c[0]))))
        stacked = [c for c in candidates if len(c[0]) >= 2]
        if len(stacked) > 1:
            records.append(
                SeriesRecord(
                    SPLIT_SERIES,
                    series,
                    tuple(c[0][0]["sop_instance_uid"] for c in stacked),
                    f"the series holds {len(stacked)} stacks of different geometry "
                    f"({', '.join(str(len(c[0])) for c in stacked)} slices); each is one output",
                )
            )
        for k, (ordered, positions) in enumerate(stacked, start=1):
            uneven = _spacing_records(series, ordered, positions, records)
            stacks.append(
                Stack(
                    name=series if len(stacked) == 1 else f"{series}-{k}",
                    series_instance_uid=series,
                    paths=_paths(ordered),
                    sop_instance_uids=_uids(ordered),
                    positions=tuple(positions),
                    orientation=ordered[0]["image_orientation"],
                    uneven_spacing=uneven,
                )
            )
        if stacked:
            main = stacked[0][0][0]
            for ordered, _ in candidates:
                if len(ordered) < 2:
                    records.extend(_left_alone_record(series, f, main) for f in ordered)
        for error_type, bad in sorted(invalid.get(series, {}).items()):
            stack, record = _invalid_stack(series, str(error_type), bad)
            stacks.append(stack)
            records.append(record)
    return stacks, records


def _values(value) -> tuple[float, ...] | None:
    """A fact's numbers (None when absent: None or a table's NaN)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return tuple(float(v) for v in value)


def _geometry_problem(f: Mapping):
    """(error type, message) of the first invalid geometry element of a file's facts."""
    from dicomprep.formats.geometry_tags import geometry_problem

    return geometry_problem(
        _values(f.get("image_orientation")),
        _values(f.get("image_position")),
        _values(f.get("pixel_spacing")),
    )


def _invalid_stack(series: str, error_type: str, bad: list) -> tuple[Stack, SeriesRecord]:
    """The failing stack and the record of the images of ``series`` whose geometry is
    invalid with ``error_type`` (``bad``: (facts, message) pairs)."""

    def key(pair):
        n = pair[0]["instance_number"]
        return (_missing(n), 0 if _missing(n) else int(n), pair[0]["sop_instance_uid"])

    bad = sorted(bad, key=key)
    files = [f for f, _ in bad]
    more = f" and {len(files) - 1} more" if len(files) > 1 else ""
    message = (
        f"{bad[0][1]} (image {files[0]['sop_instance_uid']}{more}): these images fail "
        "instead of being stacked without a valid geometry"
    )
    stack = Stack(
        name=f"{series}-{error_type}",
        series_instance_uid=series,
        paths=_paths(files),
        sop_instance_uids=_uids(files),
        positions=(),
        orientation=(),
        error_type=error_type,
    )
    return stack, SeriesRecord(INVALID_GEOMETRY, series, _uids(files), message, _paths(files))


def single_files(files, stacks: list[Stack], records: list[SeriesRecord]) -> list[str]:
    """Paths of the files that stay one output each: in no stack, not a duplicate slice."""
    taken = {p for s in stacks for p in s.paths}
    taken |= {p for r in records if r.kind == DUPLICATE_POSITION for p in r.paths}
    return [str(f["path"]) for f in _records(files) if str(f["path"]) not in taken]
