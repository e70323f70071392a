"""One DICOM file to one TIFF: :func:`process_file`, the function everything else calls.

The stages run in this order — decode, modality LUT, VOI, scale, volume handling,
crop, resize, pad — then the TIFF is written atomically (docs/output-format.md).  Frames stream
through the stages one at a time; a volume whose crop box must cover every frame is
read twice (a first pass finds the box) rather than held in memory.

Errors never escape as exceptions: every outcome is a :class:`FileResult` whose
``status`` is ``ok``, ``skipped`` (not DICOM, no pixel data) or ``failed`` with the
stage, error type and a one-line message.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom import Dataset
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from dicomprep.core.errors import ErrorType, one_line, with_detail
from dicomprep.core.records import FAILED, OK, SKIPPED, FileResult
from dicomprep.formats.codestream_checks import check_frame_limits
from dicomprep.formats.codestreams import (
    CodestreamFrames,
    codestream_frames,
    reduced_foreground_box,
    source_box,
)
from dicomprep.formats.decode import (
    DicomError,
    ImageInfo,
    NotDicomError,
    check_plausible,
    frame_intensity,
    frame_order,
    image_info,
    iter_frames,
    read_header,
)
from dicomprep.formats.failures import decode_failure, failure_of, os_error_type
from dicomprep.formats.geometry import Geometry
from dicomprep.formats.header_checks import check_image_numbers, check_readable_values
from dicomprep.formats.lenient import join_warnings
from dicomprep.formats.tiff import write_tiff
from dicomprep.formats.uids import describe_invalid_uid, is_valid_uid
from dicomprep.options import Options
from dicomprep.pixels import crop as cropping
from dicomprep.pixels.intensity import (
    FrameIntensity,
    apply_lut,
    finite_frames,
    gray_lut,
    gray_values,
    is_integral,
    lut_domain,
    modality_range,
    modality_values,
    output_dtype,
    smallest_integer_dtype,
    union_range,
)
from dicomprep.pixels.pad import pad, padding_offsets
from dicomprep.pixels.resize import fit_size, reduced_sample_offset, resize
from dicomprep.pixels.volume import (
    central_index,
    interpolate_frames,
    laplacian_mip,
    max_intensity,
    projected_range,
)
from dicomprep.series.output_size import check_output_size
from dicomprep.series.spacing import resample_by_scale, spacing_scale


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
        rendered = render(path, ds, options, decode_threads=decode_threads)
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


def read_source_header(path: str | os.PathLike) -> tuple[Dataset, bool]:
    """:func:`read_header`, with the system refusing to read the file named as such
    (stage discover: FileNotFound, AccessDenied, ReadError) rather than as a write."""
    try:
        return read_header(path)
    except OSError as exc:
        reason = exc.strerror or one_line(exc) or "an I/O error"
        message = f"the file cannot be read: {reason}"
        raise DicomError("discover", message, os_error_type(exc)) from exc


def _safe_uid(value: str) -> str:
    """A UID for reports: the value when valid, else empty (hostile strings stay out)."""
    return value if is_valid_uid(value) else ""


# -- rendering ------------------------------------------------------------------


@dataclass
class Rendered:
    """Output frames (lazy) and what is known about them before they are produced."""

    frames: Iterator[np.ndarray]
    num_frames: int
    shape: tuple[int, ...]
    geometry: Geometry
    pixel_spacing: tuple[float, float] | None
    # A single-frame source's frame after the intensity mapping, before crop and resize
    # (decoded at a reduced resolution when the output allowed it), and the source size.
    source: np.ndarray | None = None
    source_size: tuple[int, int] = (0, 0)
    warnings: tuple[str, ...] = ()  # header defects read despite (formats/lenient.py)

    def resolution(self) -> tuple[float, float] | None:
        """(x, y) pixels per cm after crop and resize, from Pixel Spacing (mm)."""
        if self.pixel_spacing is None:
            return None
        g = self.geometry
        row_mm, col_mm = self.pixel_spacing
        return 10.0 / col_mm * g.scale_x, 10.0 / row_mm * g.scale_y


def _staged(
    stage: str, frames: Iterator[np.ndarray], transfer_syntax: str = ""
) -> Iterator[np.ndarray]:
    """Re-raise errors from ``frames`` as DicomError of ``stage``: a decoder's as the
    file's (:func:`decode_failure`: corrupt codestream, short pixel data... of a file in
    ``transfer_syntax``), a transform's as a ProcessingError (:func:`failure_of`)."""
    try:
        yield from frames
    except (DicomError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001
        if stage == "decode":
            raise decode_failure(exc, *_syntax_words(transfer_syntax)) from exc
        _, error_type, message = failure_of(exc)
        raise DicomError(stage, message, error_type) from exc


def _syntax_words(transfer_syntax: str) -> tuple[str, bool]:
    """(the transfer syntax's name, whether its pixel data is compressed frames)."""
    if not transfer_syntax:
        return "", False
    syntax = UID(transfer_syntax)
    if not syntax.is_transfer_syntax:
        return transfer_syntax, True
    return syntax.name, syntax.is_compressed


class _IntensityMapper:
    """Maps decoded frames to output values, caching lookup tables between frames.

    The output type is fixed per file: uint8/uint16 after VOI; for `voi: none` the
    smallest exact type of the modality values the stored bits allow, narrowed to the
    data's own range (``dtype`` is None until known) when that range would need 32 bits.

    Where the data's range matters (the min–max window of `voi: auto` without a window or
    VOI LUT, MONOCHROME1 reflection and the output type of `voi: none`), a multi-frame file
    uses ``volume_range``, the range of every frame found by :func:`_volume_value_range`
    before the first frame is mapped; a single frame uses its own.
    """

    def __init__(self, ds: Dataset, info: ImageInfo, options: Options, luts: dict | None = None):
        """``luts``: a table cache to share with other mappers (the slices of a stack)."""
        self.ds, self.info, self.options = ds, info, options
        self._luts: dict = {} if luts is None else luts
        self._frames: dict[int, FrameIntensity] = {}
        self.dtype: np.dtype | None = self._initial_dtype()
        self.volume_range: tuple[float, float] | None = None  # modality values

    def frame(self, index: int) -> FrameIntensity:
        """:func:`frame_intensity` of frame ``index`` (read from the header once)."""
        frame = self._frames.get(index)
        if frame is None:
            frame = self._frames[index] = frame_intensity(self.ds, index)
        return frame

    def needs_range(self, frame: FrameIntensity) -> bool:
        """Whether mapping ``frame`` depends on the range of the data."""
        if self.info.is_color:
            return False
        voi = self.options.voi
        if voi == "none":
            return self.info.inverted or self.dtype is None
        return voi == "auto" and frame.voi_lut is None and frame.window is None

    def _initial_dtype(self) -> np.dtype | None:
        if self.info.is_color:
            return None
        frame = self.frame(0)  # an unusable rescale fails before anything is decoded
        if self.options.voi != "none":
            return output_dtype(self.info.bits_stored)
        if not is_integral(frame):
            return np.dtype(np.float32)
        bits, signed = self.info.bits_stored, self.info.pixel_representation == 1
        if bits > 16:
            return None  # too many possible values: decided from the data instead
        key = ("initial dtype", frame.cache_key(), bits, signed)  # slices of a stack share it
        if key not in self._luts:
            low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
            values = modality_values(np.arange(low, high + 1, dtype=np.int64), frame)
            candidate = smallest_integer_dtype(float(values.min()), float(values.max()))
            self._luts[key] = candidate if candidate.itemsize <= 2 else None
        return self._luts[key]

    def set_dtype(self, dtype: np.dtype) -> None:
        """Fix the output type."""
        self.dtype = np.dtype(dtype)

    def __call__(self, index: int, raw: np.ndarray) -> np.ndarray:
        if self.info.photometric == "PALETTE COLOR":
            return raw  # palette entries are already output values (8 or 16 bits)
        if self.info.is_color:
            return color_to_output(raw, self.info.bits_stored)
        frame = self.frame(index)
        voi = self.options.voi
        value_range = None
        if self.needs_range(frame):
            value_range = self.volume_range or modality_range(_stored_range(raw), frame)
        if self.dtype is None:  # `voi: none` whose type depends on the values
            self.set_dtype(smallest_integer_dtype(*value_range))
        invert = self.info.inverted
        if lut_domain(raw.dtype) is None:
            return gray_values(raw, frame, voi, self.dtype, invert, value_range)
        key = (frame.cache_key(), value_range, raw.dtype.str, self.dtype.str, invert, voi)
        lut = self._luts.get(key)
        if lut is None:
            if len(self._luts) > 64:
                self._luts.clear()
            lut = gray_lut(raw.dtype, frame, voi, self.dtype, invert, value_range)
            self._luts[key] = lut
        return apply_lut(raw, lut)


def _stored_range(raw: np.ndarray) -> tuple[float, float]:
    return float(raw.min()), float(raw.max())


def _volume_value_range(
    decoded: Callable[[list[int]], Iterator[np.ndarray]],
    ds: Dataset,
    order: list[int],
    mapper: _IntensityMapper,
) -> None:
    """First pass over a volume whose mapping depends on its data: the range of modality
    values over every frame (``decoded`` one at a time) becomes ``mapper.volume_range``,
    and the output type of `voi: none` follows from it."""
    frames = [(i, mapper.frame(i)) for i in order]
    if not any(mapper.needs_range(frame) for _, frame in frames):
        return
    value_range = None
    for (_, frame), raw in zip(frames, decoded(order), strict=False):
        value_range = union_range(value_range, modality_range(_stored_range(raw), frame))
    mapper.volume_range = value_range
    if mapper.dtype is None and value_range is not None:
        mapper.set_dtype(smallest_integer_dtype(*value_range))


def color_to_output(rgb: np.ndarray, bits_stored: int) -> np.ndarray:
    """RGB samples to uint8 (8-bit sources) or uint16 over the full range."""
    if rgb.dtype == np.uint8:
        return rgb
    if rgb.dtype == np.uint16 and bits_stored >= 16:
        return rgb
    top = float(2 ** min(bits_stored, 8 * rgb.dtype.itemsize) - 1)
    if rgb.dtype.kind == "f":
        top = float(rgb.max()) or 1.0
    scaled = np.clip(rgb.astype(np.float64) / top, 0.0, 1.0) * 65535.0
    return np.rint(scaled).astype(np.uint16)


def render(
    path: str | os.PathLike,
    ds: Dataset,
    options: Options,
    decode_threads: int = 1,
    level: int | None = None,
) -> Rendered:
    """Plan and lazily produce the output frames of one file.

    JPEG 2000 / HTJ2K frames are decoded at wavelet ``level`` (frames reduced ``level``
    times by two); by default the coarsest level that covers the output size, refined when
    the crop box turns out to need more pixels (see :mod:`dicomprep.formats.codestreams`).
    """
    try:
        info = image_info(ds)
        if info.transfer_syntax != DeflatedExplicitVRLittleEndian:  # inflates past its size
            check_plausible(info, os.path.getsize(path))
        check_frame_limits(info, options.max_frame_pixels, options.max_frames)
        mapper = _IntensityMapper(ds, info, options)
        check_output_size(info, options, mapper.dtype, info.num_frames)  # before decoding
        order = frame_order(ds, info.num_frames)
        codestreams = codestream_frames(path, ds, info)
    except DicomError:
        raise
    except Exception as exc:  # noqa: BLE001 - malformed header values
        check_image_numbers(ds)  # names the element when it is one of the image's numbers
        check_readable_values(ds)
        message = with_detail("a header value the image needs cannot be used", exc)
        raise DicomError("decode", message, ErrorType.INVALID_HEADER) from exc
    n = len(order)
    if level is None:
        level = _decode_level(codestreams, options, info.columns, info.rows, info.pixel_spacing)

    def decoded(indices: list[int]) -> Iterator[np.ndarray]:
        if codestreams is None:  # float pixel data comes this way: NaN or inf fail here
            frames = finite_frames(iter_frames(path, ds, indices, info), indices)
        else:
            frames = codestreams.frames(indices, level, decode_threads)
        return _staged("decode", frames, info.transfer_syntax)

    def mapped(indices: list[int]) -> Iterator[np.ndarray]:
        raw = decoded(indices)
        return _staged("transform", (mapper(i, f) for i, f in zip(indices, raw, strict=False)))

    handler = options.volume if n > 1 else "keep"
    if n > 1:
        _volume_value_range(decoded, ds, order, mapper)
    if handler == "central-slice":
        single = next(mapped([order[central_index(n)]]))
        sources, count, box = (lambda: iter([single])), 1, _box_of([single], options, level)
    elif handler == "max-intensity":
        kept = [order[i] for i in projected_range(n, options.frames_skipped)]
        single = max_intensity(mapped(kept))
        sources, count, box = (lambda: iter([single])), 1, _box_of([single], options, level)
    elif handler == "laplacian-mip":
        single = laplacian_mip(mapped(order), n, options.mip_weight, options.frames_skipped)
        sources, count, box = (lambda: iter([single])), 1, _box_of([single], options, level)
    else:
        if n == 1:
            single = next(mapped(order))
            sources, box = (lambda: iter([single])), _box_of([single], options, level)
        else:
            box = _volume_prepass(mapped, order, options, level)

            def sources():
                return mapped(order)

        count = options.target_frames if handler == "interpolate" else n

    def frame_stream() -> Iterator[np.ndarray]:
        frames = sources()
        if handler == "interpolate":
            frames = interpolate_frames(frames, n, options.target_frames)
        return frames

    finer = _level_for_box(codestreams, options, box, level, info)
    if finer < level:  # the crop needs more pixels than this level has
        return render(path, ds, options, decode_threads, finer)
    rendered = _finish(frame_stream(), count, info, options, box, level)
    rendered.warnings = info.warnings
    if n == 1:
        rendered.source, rendered.source_size = single, (info.columns, info.rows)
    return rendered


def _decode_level(
    codestreams: CodestreamFrames | None,
    options: Options,
    width: int,
    height: int,
    pixel_spacing: tuple[float, float] | None = None,
) -> int:
    """The wavelet level to decode a ``width x height`` source region at (0: full): the
    coarsest that still has the output's pixels, for a ``size`` or a ``spacing``."""
    if codestreams is None or options.decode_resolution != "auto":
        return 0
    if options.spacing is not None:
        if pixel_spacing is None:  # the conversion fails on it; nothing to save
            return 0
        scale_x, scale_y = spacing_scale(pixel_spacing, options.spacing)
        target = Geometry.identity(width, height).with_exact_scale(scale_x, scale_y)
        return codestreams.level_for(target.resized_width, target.resized_height, width, height)
    if options.size is None:
        return 0
    return codestreams.level_for(*fit_size(width, height, *options.size), width, height)


def _level_for_box(
    codestreams: CodestreamFrames | None,
    options: Options,
    box: cropping.Box | None,
    level: int,
    info: ImageInfo,
) -> int:
    """The level the crop ``box`` (in pixels of ``level``; None: the whole image) needs:
    ``level``, or a finer one when the box is too small for the output at ``level``."""
    if not level:
        return 0
    x0, y0, x1, y1 = source_box(box or (0, 0, info.columns >> level, info.rows >> level), level)
    return min(level, _decode_level(codestreams, options, x1 - x0, y1 - y0, info.pixel_spacing))


def _box_of(frames, options: Options, level: int = 0) -> cropping.Box | None:
    if not options.crop:
        return None
    return cropping.union_box(_frame_box(f, options, level) for f in frames)


def _frame_box(frame: np.ndarray, options: Options, level: int) -> cropping.Box | None:
    """The crop box of one frame decoded at wavelet ``level``, in that frame's pixels."""
    if level > 0:
        return reduced_foreground_box(frame, options.crop_max, options.crop_components, level)
    return cropping.foreground_box(frame, options.crop_max, options.crop_components)


def _volume_prepass(
    mapped: Callable[[list[int]], Iterator[np.ndarray]],
    order: list[int],
    options: Options,
    level: int = 0,
) -> cropping.Box | None:
    """First pass over a volume: the union crop box of its mapped frames."""
    if not options.crop:
        return None
    return cropping.union_box(_frame_box(frame, options, level) for frame in mapped(order))


def _finish(
    frames: Iterator[np.ndarray],
    count: int,
    info: ImageInfo,
    options: Options,
    box: cropping.Box | None,
    level: int = 0,
) -> Rendered:
    """Crop, resize and pad a stream of mapped frames; the geometry follows the first one.

    Frames decoded at wavelet ``level`` are ``2^level`` times smaller than the source: ``box``
    is in their pixels and the geometry in source pixels (``box`` times ``2^level``).
    """
    width, height = info.columns, info.rows
    if box is None:
        box = (0, 0, width >> level, height >> level)
    x0, y0, x1, y1 = source_box(box, level)
    geometry = Geometry.identity(width, height).with_crop(x0, y0, x1 - x0, y1 - y0)
    if options.spacing is not None:  # exact scale: source spacing / target spacing
        geometry = geometry.with_exact_scale(*spacing_scale(info.pixel_spacing, options.spacing))
    elif options.size is not None:
        new_w, new_h = fit_size(geometry.crop_width, geometry.crop_height, *options.size)
        geometry = geometry.with_resize(new_w, new_h)

    # A pixel decoded at a reduced level sits on the first source pixel of its block, not on
    # the block's centre, which the geometry assumes: the resampling puts it there.
    offset = (reduced_sample_offset(level),) * 2

    size = geometry.resized_width, geometry.resized_height

    def transformed(frame: np.ndarray) -> np.ndarray:
        frame = cropping.crop(frame, box)
        if geometry.exact_scale is not None:  # per pixel of this frame: 2^level source pixels
            scale_x, scale_y = (s * (1 << level) for s in geometry.exact_scale)
            return resample_by_scale(frame, scale_x, scale_y, *size, options.filter, offset)
        if size != frame.shape[1::-1] or level:
            frame = resize(frame, *size, options.filter, offset)
        return frame

    stream = _staged("transform", (transformed(f) for f in frames))
    first = next(stream)
    if options.size is not None:
        canvas_w, canvas_h = options.size
        left, top = padding_offsets(first, canvas_w, canvas_h, options.padding)
        geometry = geometry.with_padding(canvas_w, canvas_h, left, top)
        out = (pad(f, canvas_w, canvas_h, left, top) for f in itertools.chain([first], stream))
    else:
        out = itertools.chain([first], stream)
    shape = (geometry.canvas_height, geometry.canvas_width) + first.shape[2:]
    return Rendered(out, count, shape, geometry, info.pixel_spacing)
