"""In-memory preprocessing: one DICOM file or its bytes to the pixels its TIFF would hold.

:func:`preprocess` runs the same pipeline as :func:`dicomprep.pipeline.process_file`
(``read_header`` then ``render``) and collects the output frames into one array instead
of writing a TIFF, so the result is byte for byte the TIFF's pixels for the same options.

Bytes (or a binary file object) are written to a temporary file in memory-backed storage
(``/dev/shm`` when it has room, else the system temporary folder) because the decoders
read frames by path; the file is removed before :func:`preprocess` returns.  Nothing is
kept between calls and no thread is started, so the function is safe in DataLoader
worker processes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from dicomprep.formats.decode import NoPixelDataError, read_header
from dicomprep.formats.geometry import Geometry
from dicomprep.options import Options
from dicomprep.pipeline import render

__all__ = ["preprocess", "temporary_dicom_path"]

MEMORY_FOLDER = "/dev/shm"


def preprocess(source, options: Options | Mapping | None = None) -> tuple[np.ndarray, Geometry]:
    """The output pixels of one DICOM file, shaped (frames, H, W, C), and their geometry.

    ``source`` is a path, ``bytes``/``bytearray``/``memoryview`` holding a DICOM file, or
    a binary file object (read to its end).  ``options`` are the same
    :class:`~dicomprep.options.Options` that ``process_file`` takes, or a mapping of
    config keys (``{"crop": True, "size": [512, 640]}``); compression has no effect
    here.  The array holds exactly the values, type and frame order the TIFF would hold;
    ``C`` is 1 for greyscale and 3 for RGB.

    Raises :class:`~dicomprep.formats.decode.DicomError` (or its subclasses ``NotDicomError``
    and ``NoPixelDataError``) with the failing stage, as ``process_file`` reports them.
    """
    if isinstance(options, Mapping):
        options = Options.from_mapping(options)
    options = options or Options()
    if isinstance(source, (bytes, bytearray, memoryview)):
        with temporary_dicom_path(source) as path:
            return _preprocess_path(path, options)
    if hasattr(source, "read"):
        with temporary_dicom_path(source.read()) as path:
            return _preprocess_path(path, options)
    return _preprocess_path(os.fspath(source), options)


def _preprocess_path(path: str, options: Options) -> tuple[np.ndarray, Geometry]:
    ds, has_pixels = read_header(path)
    if not has_pixels:
        raise NoPixelDataError("discover", "no pixel data (not an image object)", "NoPixelData")
    rendered = render(path, ds, options)
    return stack_frames(rendered.frames, rendered.num_frames, rendered.shape), rendered.geometry


def stack_frames(frames: Iterator[np.ndarray], count: int, shape: tuple[int, ...]) -> np.ndarray:
    """``count`` frames of ``shape`` (H x W or H x W x C) into one (count, H, W, C) array.

    The array is allocated once, at the type of the first frame, and filled frame by frame.
    """
    out = None
    index = -1
    for index, frame in enumerate(frames):
        if index >= count:
            raise ValueError(f"the pipeline produced more than {count} frames")
        if out is None:
            channels = shape[2] if len(shape) == 3 else 1
            out = np.empty((count, shape[0], shape[1], channels), dtype=frame.dtype)
        out[index] = frame.reshape(out.shape[1:])
    if out is None or index + 1 != count:
        raise ValueError(f"the pipeline produced {index + 1} frames, expected {count}")
    return out


def _folder_with_room(size: int) -> str:
    """``/dev/shm`` when it exists and has twice ``size`` free, else the temporary folder."""
    try:
        if shutil.disk_usage(MEMORY_FOLDER).free > 2 * size:
            return MEMORY_FOLDER
    except OSError:
        pass
    return tempfile.gettempdir()


@contextlib.contextmanager
def temporary_dicom_path(data) -> Iterator[str]:
    """A path to a private temporary file holding ``data``, removed on exit."""
    view = memoryview(data)
    fd, name = tempfile.mkstemp(
        prefix="dicomprep-", suffix=".dcm", dir=_folder_with_room(view.nbytes)
    )
    try:
        with open(fd, "wb", closefd=True) as fh:
            fh.write(view)
        yield name
    finally:
        with contextlib.suppress(OSError):
            Path(name).unlink()
