"""A stack as NIfTI-1 (``.nii.gz``, nibabel) with the affine of its geometry.

The voxel array is ``data[i, j, k]`` with ``i`` the column (x'), ``j`` the row (y') and
``k`` the page, as nibabel and dcm2niix index it; the affine maps it to RAS+ millimetres:
DICOM's LPS patient coordinates with x and y negated (docs/volumes.md).  sform and qform
are both set with code 1 (scanner anatomical).  The file is written atomically and, with
nibabel's deterministic gzip, the same volume gives the same bytes.
"""

from __future__ import annotations

import contextlib
import gzip
import os
from pathlib import Path

import numpy as np

from dicomprep.formats.geometry import Geometry, StackSource

#: The NIfTI extension code ("comment") of the JSON record of the volume's geometry and
#: the series it holds.
RECORD_EXTENSION_CODE = 6


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


def write_nifti(
    path, pages: np.ndarray, geometry: Geometry, stack: StackSource | None = None
) -> None:
    """Write ``pages`` (pages x rows x columns) at ``path`` (``.nii.gz``) with the affine of
    ``geometry.volume``, and the whole geometry and ``stack`` (the series and slices it
    holds) as a JSON comment extension (:meth:`Geometry.record`)."""
    import nibabel as nib

    volume = geometry.volume
    if volume is None:
        raise ValueError("a NIfTI volume needs the placement of its pages (geometry.volume)")
    image = nib.Nifti1Image(nifti_array(pages), volume.affine_ras())
    record = geometry.record(stack).encode()
    image.header.extensions.append(nib.nifti1.Nifti1Extension(RECORD_EXTENSION_CODE, record))
    image.header.set_xyzt_units("mm")
    image.set_sform(volume.affine_ras(), code=1)
    image.set_qform(volume.affine_ras(), code=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # the name every writer's has
    try:
        # what nibabel.save writes for a .nii.gz name (level 1, no name, no time), streamed
        with open(tmp, "wb") as fh:
            with gzip.GzipFile(filename="", mode="wb", fileobj=fh, compresslevel=1, mtime=0) as gz:
                holder = nib.FileHolder(fileobj=gz)
                image.to_file_map({"image": holder, "header": holder})
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_record(path) -> tuple[tuple[int, int, int], str | None]:
    """((width, height, pages), the JSON record) of a NIfTI volume this code wrote, from
    its header and extensions (the voxels are not read)."""
    import nibabel as nib

    header = nib.load(path).header
    shape = header.get_data_shape()
    if len(shape) != 3:
        raise ValueError(f"{path}: not a volume of pages (shape {shape})")
    text = None
    for extension in header.extensions:
        if extension.get_code() == RECORD_EXTENSION_CODE:
            text = bytes(extension.get_content()).split(b"\0", 1)[0].decode("utf-8", "replace")
    return (int(shape[0]), int(shape[1]), int(shape[2])), text


def read_stack_layout(path) -> tuple[int, int, int, StackSource | None]:
    """(width, height, pages, what the volume holds) of a NIfTI volume this code wrote."""
    size, text = read_record(path)
    return (*size, StackSource.from_description(text))


def read_nifti_geometry(path) -> Geometry:
    """The geometry recorded in a NIfTI volume this code wrote (ValueError without one)."""
    _, text = read_record(path)
    geometry = Geometry.from_record(text)
    if geometry is None:
        raise ValueError(f"{path}: no dicomprep geometry record in its extensions")
    return geometry


def page_count(path) -> int:
    """The number of pages of a NIfTI volume (from its header)."""
    _, _, pages = read_record(path)[0]
    return pages


def read_pages(path, indices: list[int]) -> np.ndarray:
    """Pages ``indices`` of a NIfTI volume, shape (n, rows, columns); only those pages are
    read from the voxels."""
    import nibabel as nib

    image = nib.load(path)
    if len(image.shape) != 3:
        raise ValueError(f"{path}: not a volume of pages (shape {image.shape})")
    width, height = int(image.shape[0]), int(image.shape[1])
    out = np.empty((len(indices), height, width), dtype=image.get_data_dtype())
    for slot, index in enumerate(indices):
        out[slot] = np.asarray(image.dataobj[:, :, index]).T
    return out
