"""One renderer for every output: :func:`render` turns a file's frames or a stack's slices
(a :class:`~dicomprep.pixels.frames.FrameSource`) into output frames.

The stages run in this order — decode, intensity mapping (modality LUT, VOI, scale), volume
handling, crop, resize, pad.  Frames stream through them one at a time; where the output
depends on every frame, a first pass finds it before the first frame is produced: the range
of modality values (a min–max window, MONOCHROME1, the type of `voi: none`) and the union
crop box of a volume.  JPEG 2000 / HTJ2K frames are decoded at the coarsest wavelet level
that covers the output, refined when the crop box turns out to need more pixels
(:mod:`dicomprep.formats.codestreams`).

Only what the output needs is computed: where a lookup table maps the stored values, the
crop box is found on the stored values themselves and the table is applied inside the box
alone (:meth:`~dicomprep.pixels.mapper.IntensityMapper.region`).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from pydicom import Dataset
from pydicom.uid import UID

from dicomprep.core.errors import one_line
from dicomprep.formats.codestreams import reduced_foreground_box, source_box
from dicomprep.formats.decode import DicomError, ImageInfo, read_header
from dicomprep.formats.failures import decode_failure, failure_of, os_error_type
from dicomprep.formats.geometry import Geometry
from dicomprep.options import Options, VolumeHandler
from dicomprep.pixels import crop as cropping
from dicomprep.pixels.frames import FrameSource
from dicomprep.pixels.intensity import modality_range, smallest_integer_dtype, union_range
from dicomprep.pixels.mapper import IntensityMapper, stored_range
from dicomprep.pixels.pad import pad, padding_offsets
from dicomprep.pixels.resize import fit_size, reduced_sample_offset, resize
from dicomprep.pixels.volume import (
    central_index,
    interpolate_at,
    interpolate_frames,
    interpolation_positions,
    laplacian_mip,
    max_intensity,
    projected_range,
)
from dicomprep.series.spacing import resample_by_scale, slice_targets, spacing_scale


@dataclass
class Rendered:
    """Output frames (lazy) and what is known about them before they are produced."""

    frames: Iterator[np.ndarray]
    num_frames: int
    shape: tuple[int, ...]
    geometry: Geometry
    pixel_spacing: tuple[float, float] | None
    # A single-frame source's frame after the intensity mapping, before crop and resize
    # (decoded at a reduced resolution when the output allowed it), and the source size;
    # kept only when asked for (render's keep_source).
    source: np.ndarray | None = None
    source_size: tuple[int, int] = (0, 0)
    warnings: tuple[str, ...] = ()  # header defects read despite (formats/lenient.py)
    # Where each output page lies along the slice normal (mm; a stack's), else None.
    page_positions: list[float] | None = None

    def resolution(self) -> tuple[float, float] | None:
        """(x, y) pixels per cm after crop and resize, from Pixel Spacing (mm)."""
        if self.pixel_spacing is None:
            return None
        g = self.geometry
        row_mm, col_mm = self.pixel_spacing
        return 10.0 / col_mm * g.scale_x, 10.0 / row_mm * g.scale_y


def staged(
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
            raise decode_failure(exc, *syntax_words(transfer_syntax)) from exc
        _, error_type, message = failure_of(exc)
        raise DicomError(stage, message, error_type) from exc


def syntax_words(transfer_syntax: str) -> tuple[str, bool]:
    """(the transfer syntax's name, whether its pixel data is compressed frames)."""
    if not transfer_syntax:
        return "", False
    syntax = UID(transfer_syntax)
    if not syntax.is_transfer_syntax:
        return transfer_syntax, True
    return syntax.name, syntax.is_compressed


def read_source_header(path: str | os.PathLike) -> tuple[Dataset, bool]:
    """:func:`read_header`, with the system refusing to read the file named as such
    (stage discover: FileNotFound, AccessDenied, ReadError) rather than as a write."""
    try:
        return read_header(path)
    except OSError as exc:
        reason = exc.strerror or one_line(exc) or "an I/O error"
        message = f"the file cannot be read: {reason}"
        raise DicomError("discover", message, os_error_type(exc)) from exc


# -- levels and boxes ------------------------------------------------------------------


def decode_level(source: FrameSource | None, options: Options, width: int, height: int) -> int:
    """The wavelet level to decode a ``width x height`` source region at (0: full): the
    coarsest that still has the output's pixels, for a ``size`` or a ``spacing``."""
    if source is None or options.decode_resolution != "auto":
        return 0
    if options.spacing is not None:
        pixel_spacing = source.info.pixel_spacing
        if pixel_spacing is None:  # the conversion fails on it; nothing to save
            return 0
        scale_x, scale_y = spacing_scale(pixel_spacing, options.spacing)
        target = Geometry.identity(width, height).with_exact_scale(scale_x, scale_y)
        return source.level_for(target.resized_width, target.resized_height, width, height)
    if options.size is None:
        return 0
    return source.level_for(*fit_size(width, height, *options.size), width, height)


def level_for_box(
    source: FrameSource, options: Options, box: cropping.Box | None, level: int
) -> int:
    """The level the crop ``box`` (in pixels of ``level``; None: the whole image) needs:
    ``level``, or a finer one when the box is too small for the output at ``level``."""
    if not level:
        return 0
    info = source.info
    x0, y0, x1, y1 = source_box(box or (0, 0, info.columns >> level, info.rows >> level), level)
    return min(level, decode_level(source, options, x1 - x0, y1 - y0))


def frame_box(frame: np.ndarray, options: Options, level: int) -> cropping.Box | None:
    """The crop box of one mapped frame decoded at wavelet ``level``, in its pixels."""
    if level > 0:
        return reduced_foreground_box(frame, options.crop_max, options.crop_components, level)
    return cropping.foreground_box(frame, options.crop_max, options.crop_components)


# -- the value range of a volume -------------------------------------------------------


def _shared_dtype(mappers: list[IntensityMapper], value_range, voi) -> np.dtype | None:
    """The one output type of frames from several headers (a stack's slices): with
    `voi: none` float32 when any is float, else the smallest integer type of the range;
    otherwise the widest known.  One header keeps its type, or takes the range's."""
    known = [m.dtype for m in mappers if m.dtype is not None]
    if len(mappers) == 1:
        if known:
            return known[0]
        return smallest_integer_dtype(*value_range) if value_range is not None else None
    if voi == "none":
        floating = any(d.kind == "f" for d in known)
        return np.dtype(np.float32) if floating else smallest_integer_dtype(*value_range)
    return max(known, key=lambda d: d.itemsize) if known else None  # colour: per slice


def volume_value_range(
    source: FrameSource, mappers: list[IntensityMapper], level: int, options: Options
) -> None:
    """First pass over a volume whose mapping depends on its data (or whose headers would
    give different types): one range of modality values over every frame becomes each
    mapper's ``volume_range``, and one output type follows (:func:`_shared_dtype`)."""
    frames = [source.frame_of(i) for i in range(source.count)]
    intensities = [mappers[h].frame(f) for h, f in frames]
    needed = any(mappers[h].needs_range(i) for (h, _), i in zip(frames, intensities, strict=True))
    if not (needed or len({m.dtype for m in mappers}) > 1):
        return
    value_range = None
    decoded = source.decode(list(range(source.count)), level)
    for intensity, raw in zip(intensities, decoded, strict=False):
        value_range = union_range(value_range, modality_range(stored_range(raw), intensity))
    dtype = _shared_dtype(mappers, value_range, options.voi)
    for mapper in mappers:
        mapper.volume_range = value_range
        if dtype is not None:
            mapper.set_dtype(dtype)


# -- the renderer ----------------------------------------------------------------------


class _Frames:
    """Frames of one source mapped by their headers' mappers, whole or inside a box."""

    def __init__(self, source: FrameSource, options: Options, level: int, mappers=None):
        self.source, self.options, self.level = source, options, level
        if mappers is None:
            luts: dict = {}  # headers with the same rescale share their tables
            mappers = []
            for k, (ds, info) in enumerate(source.headers):
                with source.guard(k):  # an unusable rescale is that frame's failure
                    mappers.append(IntensityMapper(ds, info, options, luts))
        self.mappers: list[IntensityMapper] = mappers

    def _each(self, indices, fn: Callable) -> Iterator:
        """``fn(mapper, frame number, stored values)`` of each of frames ``indices``."""
        raws = self.source.decode(list(indices), self.level)
        pairs = zip(indices, raws, strict=False)
        return staged("transform", (self._one(i, raw, fn) for i, raw in pairs))

    def apply(self, index: int, raw: np.ndarray, fn: Callable):
        """``fn(mapper, frame number, raw)`` of frame ``index`` whose stored values are
        ``raw``, its errors named as :meth:`_each` names them."""
        return next(staged("transform", (self._one(index, raw, fn) for _ in range(1))))

    def _one(self, index: int, raw: np.ndarray, fn: Callable):
        header, frame = self.source.frame_of(index)
        with self.source.guard(index):
            return fn(self.mappers[header], frame, raw)

    def mapped(self, indices) -> Iterator[np.ndarray]:
        """Frames ``indices`` in output values."""
        return self._each(indices, lambda mapper, frame, raw: mapper(frame, raw))

    def cropped(self, indices, box: cropping.Box | None) -> Iterator[np.ndarray]:
        """Frames ``indices`` in output values inside ``box`` (None: whole)."""
        return self._each(indices, lambda mapper, frame, raw: mapper.region(frame, raw, box))

    def boxes(self, indices) -> Iterator[cropping.Box | None]:
        """The crop box of each of frames ``indices`` (on the stored values where a table
        maps them; at a reduced level with ``crop_max`` on the mapped frame)."""
        return self._each(indices, self.box)

    def box(self, mapper: IntensityMapper, frame: int, raw: np.ndarray) -> cropping.Box | None:
        """The crop box of frame number ``frame`` of ``mapper``'s header (stored values ``raw``)."""
        options = self.options
        if not (self.level and options.crop_max):  # at a reduced level: label edges
            interval = mapper.stored_interval(frame, raw, options.crop_max)
            if interval is not None and options.crop_components:
                mask = cropping.interval_mask(raw, *interval)
                return cropping.mask_foreground_box(mask, components=True)
            if interval is not None:
                return cropping.interval_box(raw, *interval)
        return frame_box(mapper(frame, raw), options, self.level)


def render(
    source: FrameSource,
    options: Options,
    level: int | None = None,
    mappers: list[IntensityMapper] | None = None,
    keep_source: bool = False,
) -> Rendered:
    """Plan and lazily produce the output frames of ``source``.

    Frames are decoded at wavelet ``level`` (by default the coarsest that covers the output
    size in every frame, refined when the crop box needs more pixels).  ``mappers`` (one
    per header of the source) are made here when not given; ``keep_source`` keeps a single
    frame's whole mapped frame as ``Rendered.source``.
    """
    info, n = source.info, source.count
    if level is None:
        level = decode_level(source, options, info.columns, info.rows)
    frames = _Frames(source, options, level, mappers)
    if n > 1:
        volume_value_range(source, frames.mappers, level, options)
    handler = VolumeHandler(options.volume) if n > 1 else VolumeHandler.KEEP
    if handler.is_projection:
        single = _projection(frames, handler, n)
        box = _box_of(single, options, level)
        pages, positions = iter([single]), _at(source, [central_index(n)])
        count, cropped, kept = 1, False, None
    elif n == 1:
        pages, box, cropped, kept = _single(frames, options, keep_source)
        count, positions = 1, _at(source, [0])
    else:
        box = cropping.union_box(frames.boxes(range(n))) if options.crop else None
        pages, count, positions = _along_axis(frames, handler, box)
        cropped, kept = box is not None, None
    finer = level_for_box(source, options, box, level)
    if finer < level:  # the crop needs more pixels than this level has
        return render(source, options, finer, keep_source=keep_source)
    rendered = _finish(pages, count, info, options, box, level, cropped)
    rendered.warnings, rendered.page_positions = info.warnings, positions
    if kept is not None:
        rendered.source, rendered.source_size = kept, (info.columns, info.rows)
    return rendered


def _at(source: FrameSource, indices: list[int]) -> list[float] | None:
    """The positions of frames ``indices`` (None for a file's frames)."""
    return None if source.positions is None else [source.positions[i] for i in indices]


def _box_of(frame: np.ndarray, options: Options, level: int) -> cropping.Box | None:
    return frame_box(frame, options, level) if options.crop else None


def _projection(frames: _Frames, handler: VolumeHandler, n: int) -> np.ndarray:
    """The one page of ``central-slice``, ``max-intensity`` or ``laplacian-mip``."""
    options = frames.options
    if handler == VolumeHandler.CENTRAL_SLICE:
        return next(frames.mapped([central_index(n)]))
    if handler == VolumeHandler.MAX_INTENSITY:
        return max_intensity(frames.mapped(projected_range(n, options.frames_skipped)))
    return laplacian_mip(frames.mapped(range(n)), n, options.mip_weight, options.frames_skipped)


def _single(frames: _Frames, options: Options, keep_source: bool):
    """(page stream, crop box, whether the page is cropped already, the whole mapped frame
    when kept) of a one-frame source: without ``keep_source`` only the pixels inside the
    box are mapped."""
    raw = next(frames.source.decode([0], frames.level))
    if keep_source or not options.crop:
        whole = frames.apply(0, raw, lambda mapper, frame, r: mapper(frame, r))
        box = _box_of(whole, options, frames.level)
        return iter([whole]), box, False, whole if keep_source else None
    box = frames.apply(0, raw, frames.box)
    inside = frames.apply(0, raw, lambda mapper, frame, r: mapper.region(frame, r, box))
    return iter([inside]), box, box is not None, None


def _along_axis(frames: _Frames, handler: VolumeHandler, box: cropping.Box | None):
    """(cropped page stream, page count, page positions) of ``keep`` and ``interpolate``:
    a stack's slice axis is resampled to ``spacing``'s third value when given."""
    source, options = frames.source, frames.options
    n, positions = source.count, source.positions
    pages = frames.cropped(range(n), box)
    if handler == VolumeHandler.INTERPOLATE:
        targets = None
        if positions is not None:
            steps = interpolation_positions(n, options.target_frames)
            targets = [float(t) for t in np.interp(steps, np.arange(n), positions)]
        return interpolate_frames(pages, n, options.target_frames), options.target_frames, targets
    if positions is not None and options.spacing is not None and len(options.spacing) == 3:
        targets = slice_targets(positions[0], positions[-1], options.spacing[2])
        return interpolate_at(pages, positions, targets), len(targets), [float(t) for t in targets]
    return pages, n, None if positions is None else [float(p) for p in positions]


def _finish(
    frames: Iterator[np.ndarray],
    count: int,
    info: ImageInfo,
    options: Options,
    box: cropping.Box | None,
    level: int = 0,
    cropped: bool = False,
) -> Rendered:
    """Crop (unless ``cropped`` already), resize and pad a stream of mapped frames; the
    geometry follows the first one.

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
        if not cropped:
            frame = cropping.crop(frame, box)
        if geometry.exact_scale is not None:  # per pixel of this frame: 2^level source pixels
            scale_x, scale_y = (s * (1 << level) for s in geometry.exact_scale)
            return resample_by_scale(frame, scale_x, scale_y, *size, options.filter, offset)
        if size != frame.shape[1::-1] or level:
            frame = resize(frame, *size, options.filter, offset)
        return frame

    stream = staged("transform", (transformed(f) for f in frames))
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
