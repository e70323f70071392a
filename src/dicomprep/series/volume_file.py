"""One stack of single-frame slices through the pixel pipeline as one volume.

:func:`process_stack` is the stack's :func:`dicomprep.pipeline.process_file`: the slices
(in the order :func:`dicomprep.series.stacks.form_stacks` gives) are decoded one at a time
and go through the same stages, as one volume:

- **One VOI for the stack.** ``voi: auto`` uses the *first* slice's VOI LUT or window for
  every slice (a CT series' slices usually share it; per-slice windows would make the
  volume's grey levels inconsistent); without one, the min-max of the modality values of
  every slice, found by a first streamed pass.  ``voi: [c, w]`` applies to all;
  ``voi: none`` keeps modality values (Hounsfield units) exactly, each slice with its own
  Rescale Slope / Intercept, in the smallest integer type that holds the stack's range
  (int16 for CT).
- **One crop box**: the union of the slices' boxes (a first pass when cropping).
- Compressed slices are decoded once and kept for the later passes while they fit in
  :data:`KEEP_DECODED_BYTES`; uncompressed ones are read again (a read costs less).
- **Volume handlers**: ``keep`` streams slice by slice (and with ``spacing: [sx, sy, sz]``
  resamples the slice axis to ``sz`` mm at the slices' physical positions, two slices held);
  ``central-slice`` decodes one slice; ``max-intensity`` keeps a running maximum;
  ``interpolate`` holds two slices; ``laplacian-mip`` holds the running maximum and the
  central slice.  The NIfTI writer holds the finished volume.
- The output is one multi-page TIFF with the usual tags and, on its first page, the
  volume's :class:`~dicomprep.formats.geometry.VolumeGeometry`
  (:func:`dicomprep.formats.tiff.read_geometry`),
  or a ``.nii.gz`` (``volume_format: nifti``).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from pydicom.uid import UID

from dicomprep.core.errors import ErrorType, with_detail
from dicomprep.core.records import FAILED, OK, SlicePlacement, StackResult  # noqa: F401
from dicomprep.formats.codestream_checks import check_frame_limits
from dicomprep.formats.codestreams import codestream_frames
from dicomprep.formats.decode import DicomError, image_info, iter_frames
from dicomprep.formats.failures import failure_of
from dicomprep.formats.geometry import Geometry, StackSource, VolumeGeometry
from dicomprep.formats.geometry_tags import check_header
from dicomprep.formats.lenient import join_warnings
from dicomprep.formats.nifti import stacked, write_nifti
from dicomprep.formats.tiff import write_tiff
from dicomprep.formats.uids import is_valid_uid
from dicomprep.options import Options
from dicomprep.pixels.intensity import finite_frames
from dicomprep.pixels.mapper import IntensityMapper
from dicomprep.series.output_size import check_output_size
from dicomprep.series.render import read_source_header, render, staged
from dicomprep.series.stacks import UNEVEN_TOLERANCE_MM
from dicomprep.storage.urls import is_url, join_url

#: The VOI elements of the first slice that every slice of a stack gets (``voi: auto``).
VOI_KEYWORDS = (
    "WindowCenter",
    "WindowWidth",
    "VOILUTFunction",
    "WindowCenterWidthExplanation",
    "VOILUTSequence",
)
#: Decoded slices of a compressed stack kept between its passes (the value range, the crop
#: box, the output): each slice is decoded once while they fit, up to a 512x512 int16
#: series of 500 slices; beyond that, the rest are decoded again in each pass.
KEEP_DECODED_BYTES = 256 * 2**20
EXTENSIONS = {"tiff": ".tiff", "nifti": ".nii.gz"}


def stack_output_path(root, study_uid: str, name: str, volume_format: str = "tiff") -> str:
    """``{root}/{StudyInstanceUID}/{name}.tiff`` (or ``.nii.gz``); ``name`` is a Stack's,
    ``root`` a folder or a bucket URL."""
    relative = f"{study_uid}/{name}{EXTENSIONS[volume_format]}"
    return join_url(str(root), relative) if is_url(str(root)) else str(Path(root) / relative)


class SliceError(DicomError):
    """Slice ``index`` of a stack could not be read, decoded or mapped (stage, type and
    message are its cause's): the stack goes on without it.  A DicomError, so that it
    passes the pipeline's stage wrappers unchanged."""

    def __init__(self, index: int, cause: BaseException):
        stage, error_type, message = failure_of(cause, "slice")
        super().__init__(stage, message, error_type)
        self.index = index


def process_stack(
    paths_in_order: list[str | os.PathLike],
    output_path: str | os.PathLike,
    options: Options | None = None,
    copies: dict[str, list[str]] | None = None,
) -> StackResult:
    """Convert the slices ``paths_in_order`` (increasing position) into one output.

    A slice that cannot be read, decoded or mapped is replaced by its next copy (another
    file with its SOP Instance UID, from ``copies``: path -> other copies in path order)
    or, without one, left out and the volume made from the others (its spacing then shows
    the gap); each such file has its own failure in ``result.left_out``.  With fewer than
    two slices left the stack fails.  Never raises for bad input: the result's status is
    ``ok`` or ``failed`` with the stage, error type and a one-line message, like
    :func:`dicomprep.pipeline.process_file`."""
    options = options or Options()
    started = time.perf_counter()
    paths = [str(p) for p in paths_in_order]
    untried = {str(k): [str(c) for c in v] for k, v in (copies or {}).items()}
    left_out: list[dict] = []
    while True:
        result = StackResult(sources=list(paths), left_out=left_out)
        try:
            _write_stack(paths, output_path, options, result)
        except SliceError as exc:
            failure = {"stage": exc.stage, "error_type": exc.error_type, "message": str(exc)}
            bad = paths[exc.index]
            left_out.append({"source": bad, **failure})
            alternatives = untried.pop(bad, [])
            if alternatives:  # the next copy of the same image takes the slice's place
                paths[exc.index] = alternatives[0]
                untried[alternatives[0]] = alternatives[1:]
            else:
                paths.pop(exc.index)
            continue
        except Exception as exc:  # noqa: BLE001 - one bad stack must never stop a run
            result.stage, result.error_type, result.message = failure_of(exc, "stack")
        break
    result.seconds = time.perf_counter() - started
    return result


@contextlib.contextmanager
def _failing_slice(index: int) -> Iterator[None]:
    """Errors inside (reading, decoding or mapping slice ``index``) become its
    :class:`SliceError`; running out of memory stays the stack's failure."""
    try:
        yield
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - this slice's failure, not the stack's
        raise SliceError(index, exc) from exc


def _write_stack(paths: list[str], output_path, options: Options, result: StackResult) -> None:
    """The volume of ``paths`` at ``output_path``, its facts filled into ``result``."""
    headers = []
    for index, path in enumerate(paths):
        with _failing_slice(index):
            headers.append(_header(path))
    for ds in headers:  # invalid geometry fails the stack (form_stacks keeps such apart)
        check_header(ds, f"slice {_safe(ds.get('SOPInstanceUID', ''))}")
    if len(paths) < 2:
        why = "; ".join(f"{Path(f['source']).name}: {f['message']}" for f in result.left_out)
        message = f"fewer than two slices left ({why})" if result.left_out else ""
        message = message or "a stack needs at least two slices"
        raise DicomError("transform", message, ErrorType.NOT_A_STACK)
    first = headers[0]
    result.study_instance_uid = _safe(first.get("StudyInstanceUID", ""))
    result.series_instance_uid = _safe(first.get("SeriesInstanceUID", ""))
    result.sop_instance_uid = _safe(first.get("SOPInstanceUID", ""))
    positions, orientation = slice_positions(headers)
    info = image_info(first)  # the output's size is checked before any slice is decoded
    dtype = IntensityMapper(first, info, options).dtype
    check_output_size(info, options, dtype, len(paths), positions)
    rendered = render(StackSlices(paths, headers, positions, options), options)
    page_positions = rendered.page_positions
    volume = _volume_geometry(rendered, first, positions, page_positions, orientation, options)
    geometry = rendered.geometry.with_volume(volume)
    source = StackSource(result.series_instance_uid, result.sop_instance_uid, len(paths))
    if options.volume_format == "nifti":
        if volume is None:
            raise DicomError(
                "transform",
                "NIfTI output needs Pixel Spacing in the slices",
                ErrorType.NO_PIXEL_SPACING,
            )
        pages = stacked(rendered.frames, rendered.num_frames)
        write_nifti(output_path, pages, geometry, stack=source)
    else:
        write_tiff(
            output_path,
            rendered.frames,
            num_frames=rendered.num_frames,
            geometry=geometry,
            compression=options.compression,
            resolution=rendered.resolution(),
            stack=source,
        )
    result.status, result.output, result.geometry = OK, str(output_path), geometry
    result.height, result.width = rendered.shape[:2]
    result.channels = rendered.shape[2] if len(rendered.shape) == 3 else 1
    result.num_frames = rendered.num_frames
    result.warnings = join_warnings(w for ds in headers for w in image_info(ds).warnings)
    result.slices = _placements(headers, paths, positions, geometry, rendered.num_frames)


def _safe(value) -> str:
    return str(value) if is_valid_uid(str(value)) else ""


def _header(path: str):
    ds, has_pixels = read_source_header(path)  # unreadable: a discover failure
    if not has_pixels:
        raise DicomError("decode", f"{path}: no pixel data", ErrorType.NO_PIXEL_DATA)
    if int(ds.get("NumberOfFrames") or 1) != 1:
        raise DicomError(
            "decode", f"{path}: a stack holds single-frame images", ErrorType.MULTI_FRAME
        )
    return ds


def slice_positions(headers) -> tuple[list[float], tuple[float, ...]]:
    """Positions along the first slice's normal and its orientation; the slices must be
    in strictly increasing position order and share the orientation."""
    try:
        orientation = tuple(float(v) for v in headers[0].ImageOrientationPatient)
        ipps = [np.array([float(v) for v in ds.ImagePositionPatient]) for ds in headers]
        others = [tuple(float(v) for v in ds.ImageOrientationPatient) for ds in headers]
    except (AttributeError, TypeError, ValueError) as exc:
        raise DicomError(
            "decode",
            with_detail("a slice lacks a usable position or orientation", exc),
            ErrorType.NO_GEOMETRY,
        ) from exc
    if any(np.max(np.abs(np.subtract(o, orientation))) > 1e-4 for o in others):
        raise DicomError("transform", "the slices differ in orientation", ErrorType.MIXED_GEOMETRY)
    normal = np.cross(orientation[:3], orientation[3:])
    positions = [float(np.dot(p, normal)) for p in ipps]
    if np.any(np.diff(positions) <= 0):
        raise DicomError(
            "transform",
            "slices are not in strictly increasing position order (use form_stacks)",
            ErrorType.SLICE_ORDER,
        )
    return positions, orientation


def _share_voi(headers) -> None:
    """Give every slice the first slice's VOI elements (or none, when it has none)."""
    first = headers[0]
    for ds in headers[1:]:
        for keyword in VOI_KEYWORDS:
            if keyword in ds:
                delattr(ds, keyword)
            if keyword in first:
                setattr(ds, keyword, first[keyword].value)


class StackSlices:
    """The slices of a stack in position order, a
    :class:`~dicomprep.pixels.frames.FrameSource` with one header per slice.

    A slice's failure (reading, decoding, mapping) is its :class:`SliceError`.  Compressed
    slices are kept once decoded while they fit in :data:`KEEP_DECODED_BYTES`.  JPEG 2000 /
    HTJ2K slices are decoded at a reduced wavelet level only when every slice can be.
    """

    def __init__(self, paths, headers, positions, options: Options):
        infos = [image_info(ds) for ds in headers]
        check_frame_limits(infos[0], options.max_frame_pixels, options.max_frames)
        shapes = {(i.rows, i.columns, i.samples_per_pixel, i.photometric) for i in infos}
        if len(shapes) > 1:
            raise DicomError(
                "transform", f"the slices differ in size or colour: {shapes}", ErrorType.MIXED
            )
        if options.voi == "auto":
            _share_voi(headers)
        self.paths, self.positions = paths, positions
        self.headers = list(zip(headers, infos, strict=True))
        self.info, self.count = infos[0], len(paths)
        self._codestreams: list | None = None  # opened when a reduced level may be used
        self._kept: dict[int, np.ndarray] = {}
        self._kept_level: int | None = None
        self._room = 0

    def frame_of(self, index: int) -> tuple[int, int]:
        """(slice ``index``, its only frame)."""
        return index, 0

    def guard(self, index: int) -> contextlib.AbstractContextManager[None]:
        """Errors inside become slice ``index``'s :class:`SliceError`."""
        return _failing_slice(index)

    def decode(self, indices: list[int], level: int) -> Iterator[np.ndarray]:
        """Slices ``indices`` at wavelet ``level`` (0: read in full), one at a time."""
        if level != self._kept_level:  # slices kept are of one level
            compressed = _is_compressed(self.info.transfer_syntax)
            self._kept, self._kept_level = {}, level
            self._room = KEEP_DECODED_BYTES if compressed else 0
        for k in indices:
            yield self._decoded(k, level)

    def _decoded(self, k: int, level: int) -> np.ndarray:
        frame = self._kept.get(k)
        if frame is None:
            ds, info = self.headers[k]
            with _failing_slice(k):
                if level:
                    frames = self._codestreams[k].frames([0], level)
                else:
                    frames = finite_frames(iter_frames(self.paths[k], ds, [0], info), [0])
                frame = next(staged("decode", frames, info.transfer_syntax))
            if frame.nbytes <= self._room:
                self._kept[k], self._room = frame, self._room - frame.nbytes
        return frame

    def level_for(self, width: int, height: int, region_width: int, region_height: int) -> int:
        """The coarsest level every slice allows (0 unless all are reducible codestreams;
        the first slice decides before the others are opened)."""
        sizes = (width, height, region_width, region_height)
        if self._codestreams is None:
            ds, info = self.headers[0]
            first = codestream_frames(self.paths[0], ds, info)
            if first is None or first.level_for(*sizes) == 0:
                return 0
            rest = [
                codestream_frames(path, ds, info)
                for path, (ds, info) in zip(self.paths[1:], self.headers[1:], strict=True)
            ]
            if any(c is None for c in rest):
                return 0
            self._codestreams = [first, *rest]
        return min(c.level_for(*sizes) for c in self._codestreams)


def _is_compressed(transfer_syntax: str) -> bool:
    """Whether frames in this transfer syntax cost a decoder's work (not a plain read)."""
    try:
        return UID(transfer_syntax).is_compressed
    except ValueError:  # not a transfer syntax pydicom knows: assume the costly case
        return True


def _volume_geometry(rendered, first, positions, page_positions, orientation, options):
    """Where the output's pages lie (None without Pixel Spacing)."""
    if rendered.pixel_spacing is None:
        return None
    g = rendered.geometry
    row_mm, column_mm = rendered.pixel_spacing
    o = np.asarray(orientation)
    normal = np.cross(o[:3], o[3:])
    x, y = g.to_source(np.array([0.5, 0.5])) - 0.5  # source pixel indices of output (0, 0)
    ipp = np.array([float(v) for v in first.ImagePositionPatient])
    origin = (
        ipp
        + o[:3] * column_mm * x
        + o[3:] * row_mm * y
        + normal * (page_positions[0] - positions[0])
    )
    steps = np.diff(page_positions) if len(page_positions) > 1 else np.diff(positions)
    spacing_z = float(np.median(steps))
    uneven = bool(
        np.any(np.abs(np.diff(positions) - np.median(np.diff(positions))) > UNEVEN_TOLERANCE_MM)
    )
    return VolumeGeometry(
        orientation=tuple(float(v) for v in orientation),
        origin=tuple(float(v) for v in origin),
        spacing=(column_mm / g.scale_x, row_mm / g.scale_y, spacing_z),
        slice_positions=tuple(positions),
        page_positions=tuple(float(p) for p in page_positions),
        uneven_spacing=uneven,
    )


def _placements(headers, paths, positions, geometry: Geometry, pages: int):
    placements = []
    for k, (ds, path, position) in enumerate(zip(headers, paths, positions, strict=True)):
        page = 0
        if geometry.volume is not None and pages > 1:
            # nearest page; halfway between two pages, the later one
            exact = round(float(geometry.volume.slice_to_page(k)), 3)
            page = int(np.clip(np.floor(exact + 0.5), 0, pages - 1))
        placements.append(
            SlicePlacement(_safe(ds.get("SOPInstanceUID", "")), path, page, float(position))
        )
    return placements
