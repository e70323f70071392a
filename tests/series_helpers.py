"""Series of real pydicom test slices written with positions set by the test."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import numpy as np
import pydicom
from dicomprep_testdata.synthetic import derived_uid
from pydicom.data import get_testdata_file

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
# rotated 30 degrees about the y axis, then 20 degrees about x: an oblique plane
_A, _B = np.radians(30), np.radians(20)
_ROW = np.array([np.cos(_A), 0.0, -np.sin(_A)])
_COL = np.array([np.sin(_A) * np.sin(_B), np.cos(_B), np.cos(_A) * np.sin(_B)])
OBLIQUE = tuple(float(v) for v in np.concatenate([_ROW, _COL]))


def slice_dataset(base, study, series, k, position, orientation, instance=None):
    """A copy of ``base`` as slice ``k`` of ``series`` at ``position`` (LPS mm)."""
    ds = copy.deepcopy(base)
    sop = derived_uid("slice", series, k)
    ds.SOPInstanceUID = sop
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.InstanceNumber = k + 1 if instance is None else instance
    ds.ImageOrientationPatient = [f"{v:.6f}" for v in orientation]
    ds.ImagePositionPatient = [f"{v:.4f}" for v in position]
    pixels = base.pixel_array
    # each slice distinct: the body shifted by k columns (values stay in range)
    ds.PixelData = np.ascontiguousarray(np.roll(pixels, 3 * k, axis=1)).tobytes()
    for keyword in ("SliceLocation",):
        if keyword in ds:
            delattr(ds, keyword)
    return ds


def write_series(
    folder: Path,
    *,
    source: str = "CT_small.dcm",
    count: int = 12,
    spacing: float = 2.5,
    orientation=AXIAL,
    missing: tuple[int, ...] = (),
    duplicate_of: int | None = None,
    localizer: bool = False,
    seed: int = 0,
    name: str = "s",
) -> dict:
    """Write a series under ``folder`` in shuffled file names; return what was written.

    ``missing`` slice indices are left out, ``duplicate_of`` adds a second slice at that
    slice's position, ``localizer`` adds a sagittal image to the series."""
    base = pydicom.dcmread(get_testdata_file(source))
    study, series = derived_uid("study", name), derived_uid("series", name)
    o = np.asarray(orientation, dtype=float)
    normal = np.cross(o[:3], o[3:])
    origin = np.array([float(v) for v in base.ImagePositionPatient])
    datasets = []
    for k in range(count):
        if k in missing:
            continue
        datasets.append(
            slice_dataset(base, study, series, k, origin + normal * spacing * k, orientation)
        )
    if duplicate_of is not None:
        dup = slice_dataset(
            base, study, series, 1000, origin + normal * spacing * duplicate_of, orientation
        )
        datasets.append(dup)
    if localizer:
        datasets.append(
            slice_dataset(base, study, series, 2000, origin, (0.0, 1.0, 0.0, 0.0, 0.0, -1.0))
        )
    folder.mkdir(parents=True, exist_ok=True)
    order = list(range(len(datasets)))
    random.Random(seed).shuffle(order)
    paths = {}
    for file_index, i in enumerate(order):
        path = folder / f"f{file_index:04d}.dcm"
        datasets[i].save_as(path)
        paths[datasets[i].SOPInstanceUID] = path
    return {"study": study, "series": series, "paths": paths, "datasets": datasets}
