"""An output file's geometry, whichever format holds it: a TIFF keeps it in its tags (and
first page's description), a stack's NIfTI volume in a JSON extension."""

from __future__ import annotations

import os

from dicomprep.formats.geometry import Geometry

NIFTI_SUFFIX = ".nii.gz"


def is_nifti(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a NIfTI volume (``.nii.gz``) rather than a TIFF."""
    return os.fspath(path).endswith(NIFTI_SUFFIX)


def read_output_geometry(path: str | os.PathLike) -> Geometry:
    """The :class:`Geometry` an output records (ValueError when it records none)."""
    if is_nifti(path):
        from dicomprep.formats.nifti import NiftiVolume

        return NiftiVolume(path).geometry()
    from dicomprep.formats.tiff import read_geometry

    return read_geometry(path)
