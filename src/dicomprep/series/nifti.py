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

from dicomprep.formats.geometry import StackSource, VolumeGeometry

#: The NIfTI extension code of the record of what a volume holds ("comment").
STACK_EXTENSION_CODE = 6


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
    path, pages: np.ndarray, volume: VolumeGeometry, stack: StackSource | None = None
) -> None:
    """Write ``pages`` (pages x rows x columns) at ``path`` (``.nii.gz``) with its affine,
    and ``stack`` (the series and slices it holds) as a JSON comment extension."""
    import nibabel as nib

    image = nib.Nifti1Image(nifti_array(pages), volume.affine_ras())
    if stack is not None:
        extension = nib.nifti1.Nifti1Extension(STACK_EXTENSION_CODE, stack.description().encode())
        image.header.extensions.append(extension)
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


def read_stack_layout(path) -> tuple[int, int, int, StackSource | None]:
    """(width, height, pages, what the volume holds) of a NIfTI volume this code wrote,
    from its header and extensions (the voxels are not read)."""
    import nibabel as nib

    header = nib.load(path).header
    shape = header.get_data_shape()
    if len(shape) != 3:
        raise ValueError(f"{path}: not a volume of pages (shape {shape})")
    stack = None
    for extension in header.extensions:
        if extension.get_code() == STACK_EXTENSION_CODE:
            text = bytes(extension.get_content()).split(b"\0", 1)[0].decode("utf-8", "replace")
            stack = StackSource.from_description(text) or stack
    return int(shape[0]), int(shape[1]), int(shape[2]), stack


def read_central_page(path) -> tuple[np.ndarray, int, int]:
    """(the central page as rows x columns, its index, the number of pages) of a NIfTI
    volume this code wrote; only that page is read from the voxels."""
    import nibabel as nib

    from dicomprep.pixels.volume import central_index

    image = nib.load(path)
    pages = int(image.shape[2]) if len(image.shape) == 3 else 1
    index = central_index(pages)
    page = np.asarray(image.dataobj[:, :, index] if len(image.shape) == 3 else image.dataobj)
    return np.ascontiguousarray(page.T), index, pages
