"""Synthetic CT slices: int16 stored, known Hounsfield values, one series across slices."""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset

from dicomprep_testdata.datasets import (
    CT_IMAGE_STORAGE,
    derived_uid,
    image_pixel_module,
    new_dataset,
    set_pixels,
)


def ct_slice(
    *,
    rows: int = 128,
    columns: int = 128,
    index: int = 0,
    seed: int = 0,
    study_uid: str | None = None,
    series_uid: str | None = None,
) -> Dataset:
    """An axial CT slice: int16 stored, Rescale Slope 1 / Intercept −1024 (HU = stored − 1024).

    Air outside the body is exactly −1000 HU, a water annulus exactly 0 HU, a bone ring exactly
    +1000 HU, and the inside soft tissue (≈40 HU, noisy) holds a +80 HU lesion whose radius
    grows with ``index``. Window 40/400. Slice ``index`` lies at z = 2.5·index mm.
    """
    study_uid = study_uid or derived_uid("study", seed)
    series_uid = series_uid or derived_uid("ct-series", study_uid, rows, columns)
    sop_uid = derived_uid("ct", series_uid, rows, columns, index, seed)
    n = min(rows, columns)
    yy = np.arange(rows, dtype=np.float32)[:, None] + 0.5 - rows / 2
    xx = np.arange(columns, dtype=np.float32)[None, :] + 0.5 - columns / 2
    r = np.sqrt(yy * yy + xx * xx) / n

    rng = np.random.default_rng([seed, index])
    hu = np.full((rows, columns), -1000, dtype=np.int16)
    hu[r <= 0.45] = 0
    hu[r <= 0.38] = 1000
    inner = r <= 0.33
    tissue = 40 + np.rint(rng.normal(0.0, 8.0, size=(rows, columns))).astype(np.int16)
    hu[inner] = tissue[inner]
    lesion_r = 0.04 + 0.02 * index
    ly = yy / n + 0.10
    lx = xx / n - 0.08
    hu[(np.sqrt(ly * ly + lx * lx) <= lesion_r) & inner] += 80

    ds = new_dataset(CT_IMAGE_STORAGE, study_uid, series_uid, sop_uid)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.Modality = "CT"
    ds.SeriesNumber = 5
    ds.InstanceNumber = index + 1
    ds.BodyPartExamined = "CHEST"
    ds.KVP = 120
    ds.SliceThickness = 2.5
    ds.PixelSpacing = [0.7, 0.7]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [-0.35 * columns, -0.35 * rows, 2.5 * index]
    ds.SliceLocation = 2.5 * index
    ds.PatientPosition = "HFS"
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    image_pixel_module(ds, rows, columns, 16, "MONOCHROME2", signed=True)
    set_pixels(ds, hu.astype(np.int32) + 1024)
    return ds
