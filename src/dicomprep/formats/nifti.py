"""A stack as NIfTI-1 (``.nii.gz``, nibabel) with the affine of its geometry.

The voxel array is ``data[i, j, k]`` with ``i`` the column (x'), ``j`` the row (y') and
``k`` the page, as nibabel and dcm2niix index it; the affine maps it to RAS+ millimetres:
DICOM's LPS patient coordinates with x and y negated (docs/volumes.md).  sform and qform
are both set with code 1 (scanner anatomical).  The file is written atomically and, with
nibabel's deterministic gzip, the same volume gives the same bytes.
"""

from __future__ import annotations

import gzip

import numpy as np

from dicomprep.core.durable import atomic_file
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
    # what nibabel.save writes for a .nii.gz name (level 1, no name, no time), streamed
    with (
        atomic_file(path, sync_folder=False) as tmp,
        open(tmp, "wb") as fh,
        gzip.GzipFile(filename="", mode="wb", fileobj=fh, compresslevel=1, mtime=0) as gz,
    ):
        holder = nib.FileHolder(fileobj=gz)
        image.to_file_map({"image": holder, "header": holder})


class NiftiVolume:
    """A NIfTI volume this code wrote, opened once: its size, the record in its extension
    and chosen pages (only their voxels are read)."""

    def __init__(self, path):
        import nibabel as nib

        self.path = path
        self.image = nib.load(path)
        shape = self.image.shape
        if len(shape) != 3:
            raise ValueError(f"{path}: not a volume of pages (shape {shape})")
        self.width, self.height, self.pages = (int(v) for v in shape)
        self.record = None  # the JSON text of Geometry.record
        for extension in self.image.header.extensions:
            if extension.get_code() == RECORD_EXTENSION_CODE:
                content = bytes(extension.get_content()).split(b"\0", 1)[0]
                self.record = content.decode("utf-8", "replace")

    @property
    def stack(self) -> StackSource | None:
        """The series and slices the volume holds, as recorded."""
        return StackSource.from_description(self.record)

    def geometry(self) -> Geometry:
        """The recorded geometry (ValueError without one)."""
        geometry = Geometry.from_record(self.record)
        if geometry is None:
            raise ValueError(f"{self.path}: no dicomprep geometry record in its extensions")
        return geometry

    def read(self, indices: list[int]) -> np.ndarray:
        """Pages ``indices``, shape (n, rows, columns)."""
        dtype = self.image.get_data_dtype()
        out = np.empty((len(indices), self.height, self.width), dtype=dtype)
        for slot, index in enumerate(indices):
            out[slot] = np.asarray(self.image.dataobj[:, :, index]).T
        return out
