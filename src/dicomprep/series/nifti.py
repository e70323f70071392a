"""A stack as NIfTI-1 (``.nii.gz``, nibabel) with the affine of its geometry.

The voxel array is ``data[i, j, k]`` with ``i`` the column (x'), ``j`` the row (y') and
``k`` the page, as nibabel and dcm2niix index it; the affine maps it to RAS+ millimetres:
DICOM's LPS patient coordinates with x and y negated (docs/volumes.md).  sform and qform
are both set with code 1 (scanner anatomical).  The file is written atomically and, with
nibabel's deterministic gzip, the same volume gives the same bytes.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from dicomprep.formats.geometry import VolumeGeometry


def nifti_array(pages: np.ndarray) -> np.ndarray:
    """(pages, rows, columns) to NIfTI's (columns, rows, pages) order: a view, which for a
    C-ordered volume is Fortran-ordered, the order NIfTI stores (no copy is made)."""
    if pages.ndim != 3:
        raise ValueError(f"NIfTI output needs a grey-level volume, got shape {pages.shape}")
    return pages.transpose(2, 1, 0)


def stacked(frames, count: int) -> np.ndarray:
    """The ``count`` frames of a stream in one (pages, rows, columns) array, filled in place."""
    frames = iter(frames)
    first = next(frames)
    volume = np.empty((count, *first.shape), dtype=first.dtype)
    volume[0] = first
    for index, frame in enumerate(frames, start=1):
        volume[index] = frame
    return volume


def write_nifti(path, pages: np.ndarray, volume: VolumeGeometry) -> None:
    """Write ``pages`` (pages x rows x columns) at ``path`` (``.nii.gz``) with its affine."""
    import nibabel as nib

    image = nib.Nifti1Image(nifti_array(pages), volume.affine_ras())
    image.header.set_xyzt_units("mm")
    image.set_sform(volume.affine_ras(), code=1)
    image.set_qform(volume.affine_ras(), code=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{os.getpid()}.{path.name}")
    try:
        nib.save(image, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
