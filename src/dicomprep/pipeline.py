"""One DICOM file to one TIFF: :func:`process_file`, the function everything else calls.

The stages run in this order — decode, modality LUT, VOI, scale, volume handling,
crop, resize, pad — then the TIFF is written atomically (docs/output-format.md).  The file's
frames (:class:`FileFrames`) go through the one renderer a stack's slices go through too,
:func:`dicomprep.series.render.render`: they stream through the stages one at a time; a
volume whose crop box must cover every frame is read twice (a first pass finds the box)
rather than held in memory.

Errors never escape as exceptions: every outcome is a :class:`FileResult` whose
``status`` is ``ok``, ``skipped`` (not DICOM, no pixel data) or ``failed`` with the
stage, error type and a one-line message.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from pydicom import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian

from dicomprep.core.errors import ErrorType, with_detail
from dicomprep.core.records import FAILED, OK, SKIPPED, FileResult
from dicomprep.formats.codestream_checks import check_frame_limits
from dicomprep.formats.codestreams import CodestreamFrames, codestream_frames
from dicomprep.formats.decode import (
    DicomError,
    ImageInfo,
    NotDicomError,
    check_plausible,
    frame_order,
    image_info,
    iter_frames,
)
from dicomprep.formats.failures import failure_of
from dicomprep.formats.header_checks import check_image_numbers, check_readable_values
from dicomprep.formats.lenient import join_warnings
from dicomprep.formats.tiff import write_tiff
from dicomprep.formats.uids import describe_invalid_uid, is_valid_uid
from dicomprep.options import Options
from dicomprep.pixels.intensity import finite_frames
from dicomprep.pixels.mapper import IntensityMapper
from dicomprep.series.output_size import check_output_size
from dicomprep.series.render import Rendered, read_source_header, staged
from dicomprep.series.render import render as render_frames

__all__ = ["FileFrames", "Rendered", "process_file", "read_source_header", "render"]


def output_path_for(root: str | os.PathLike, study_uid: str, sop_uid: str) -> Path:
    """``{root}/{StudyInstanceUID}/{SOPInstanceUID}.tiff`` (UIDs must be valid)."""
    return Path(root) / study_uid / f"{sop_uid}.tiff"


def dataset_uids(ds: Dataset) -> tuple[str, str]:
    """(StudyInstanceUID, SOPInstanceUID), validated for use in paths."""
    study, sop = str(ds.get("StudyInstanceUID", "")), str(ds.get("SOPInstanceUID", ""))
    for name, value in (("SOPInstanceUID", sop), ("StudyInstanceUID", study)):
        if not is_valid_uid(value):
            kind = ErrorType.INVALID_UID if value else ErrorType.MISSING_UID
            raise DicomError("discover", describe_invalid_uid(name, value), kind)
    return study, sop


def process_file(
    path: str | os.PathLike,
    output_root: str | os.PathLike | None = None,
    options: Options | None = None,
    *,
    output_path: str | os.PathLike | None = None,
    decode_threads: int = 1,
    source_view: list | None = None,
) -> FileResult:
    """Convert one DICOM file; the TIFF goes to ``output_path`` or under ``output_root``.

    ``decode_threads`` decodes the compressed frames of a volume that
    :mod:`dicomprep.formats.codestreams` handles (JPEG 2000, HTJ2K, JPEG-LS, lossless JPEG) on that
    many threads; the output does not depend on it.  Given a ``source_view`` list, a
    converted single-frame file appends ``(frame, (width, height))``: its frame after the
    intensity mapping, before crop and resize, and the source size (the QC report's
    source thumbnail is drawn from it instead of decoding the file again).
    """
    options = options or Options()
    started = time.perf_counter()
    result = FileResult(source=str(path), status=FAILED)
    try:
        ds, has_pixels = read_source_header(path)
        study, sop = str(ds.get("StudyInstanceUID", "")), str(ds.get("SOPInstanceUID", ""))
        result.study_instance_uid, result.sop_instance_uid = _safe_uid(study), _safe_uid(sop)
        if not has_pixels:
            message = "no pixel data (not an image object)"
            raise NotDicomError("discover", message, ErrorType.NO_PIXEL_DATA)
        if output_path is None:
            if output_root is None:
                raise ValueError("give output_root or output_path")
            study, sop = dataset_uids(ds)
            output_path = output_path_for(output_root, study, sop)
        keep = source_view is not None
        rendered = render(path, ds, options, decode_threads=decode_threads, keep_source=keep)
        write_tiff(
            output_path,
            rendered.frames,
            num_frames=rendered.num_frames,
            geometry=rendered.geometry,
            compression=options.compression,
            resolution=rendered.resolution(),
        )
        if source_view is not None and rendered.source is not None:
            source_view.append((rendered.source, rendered.source_size))
        height, width = rendered.shape[:2]
        result.status, result.output = OK, str(output_path)
        result.width, result.height = width, height
        result.channels = rendered.shape[2] if len(rendered.shape) == 3 else 1
        result.num_frames = rendered.num_frames
        result.warnings = join_warnings(rendered.warnings)
    except NotDicomError as exc:
        result.status, result.stage = SKIPPED, exc.stage
        result.error_type, result.message = exc.error_type, str(exc)
    except Exception as exc:  # noqa: BLE001 - one bad file must never stop a run
        result.stage, result.error_type, result.message = failure_of(exc)
    result.seconds = time.perf_counter() - started
    return result


def _safe_uid(value: str) -> str:
    """A UID for reports: the value when valid, else empty (hostile strings stay out)."""
    return value if is_valid_uid(value) else ""


# -- a file's frames -----------------------------------------------------------------


class FileFrames:
    """The frames of one file in position order (:func:`frame_order`), a
    :class:`~dicomprep.pixels.frames.FrameSource` over one header.

    Frames in a JPEG 2000 / HTJ2K / JPEG-LS / lossless JPEG codestream are decoded by
    :mod:`dicomprep.formats.codestreams` (at a reduced wavelet level where it has one, on
    ``decode_threads`` threads), others by :func:`iter_frames`.
    """

    positions = None

    def __init__(self, path, ds: Dataset, info: ImageInfo, decode_threads: int = 1):
        self.path, self.ds, self.info = path, ds, info
        self.order = frame_order(ds, info.num_frames)
        self.count = len(self.order)
        self.headers = [(ds, info)]
        self.codestreams: CodestreamFrames | None = codestream_frames(path, ds, info)
        self.decode_threads = decode_threads

    def frame_of(self, index: int) -> tuple[int, int]:
        """(0, the frame number of the ``index``-th frame by position)."""
        return 0, self.order[index]

    def decode(self, indices: list[int], level: int) -> Iterator[np.ndarray]:
        """Frames ``indices`` (by position) at wavelet ``level``; errors are the file's."""
        numbers = [self.order[i] for i in indices]
        if self.codestreams is None:  # float pixel data comes this way: NaN or inf fail here
            frames = finite_frames(iter_frames(self.path, self.ds, numbers, self.info), numbers)
        else:
            frames = self.codestreams.frames(numbers, level, self.decode_threads)
        return staged("decode", frames, self.info.transfer_syntax)

    def guard(self, index: int) -> contextlib.AbstractContextManager[None]:
        """A frame's failure is the file's: nothing to add."""
        return contextlib.nullcontext()

    def level_for(self, width: int, height: int, region_width: int, region_height: int) -> int:
        """:meth:`CodestreamFrames.level_for` (0 without a codestream)."""
        if self.codestreams is None:
            return 0
        return self.codestreams.level_for(width, height, region_width, region_height)


def render(
    path: str | os.PathLike,
    ds: Dataset,
    options: Options,
    decode_threads: int = 1,
    level: int | None = None,
    keep_source: bool = False,
) -> Rendered:
    """Plan and lazily produce the output frames of one file (:func:`dicomprep.series.render.render`
    of its :class:`FileFrames`), after the header checks that come before any decoding.

    JPEG 2000 / HTJ2K frames are decoded at wavelet ``level`` (frames reduced ``level``
    times by two); by default the coarsest level that covers the output size, refined when
    the crop box turns out to need more pixels (see :mod:`dicomprep.formats.codestreams`).
    ``keep_source`` keeps a single frame's whole mapped frame as ``Rendered.source``.
    """
    try:
        info = image_info(ds)
        if info.transfer_syntax != DeflatedExplicitVRLittleEndian:  # inflates past its size
            check_plausible(info, os.path.getsize(path))
        check_frame_limits(info, options.max_frame_pixels, options.max_frames)
        mapper = IntensityMapper(ds, info, options)
        check_output_size(info, options, mapper.dtype, info.num_frames)  # before decoding
        source = FileFrames(path, ds, info, decode_threads)
    except DicomError:
        raise
    except Exception as exc:  # noqa: BLE001 - malformed header values
        check_image_numbers(ds)  # names the element when it is one of the image's numbers
        check_readable_values(ds)
        message = with_detail("a header value the image needs cannot be used", exc)
        raise DicomError("decode", message, ErrorType.INVALID_HEADER) from exc
    return render_frames(source, options, level, [mapper], keep_source)
