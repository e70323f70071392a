"""Decoded frames to output values, one header's frames at a time: :class:`IntensityMapper`.

The chain itself (modality LUT, VOI, scaling, MONOCHROME1) is :mod:`dicomprep.pixels.intensity`;
the mapper holds what is fixed per header (the output type, the lookup tables, the value
range of a volume) and maps a frame, or only the part of it inside a crop box: a lookup
table maps each pixel on its own, so the box can be found on the stored values
(:meth:`IntensityMapper.stored_foreground`) and the table applied inside it alone.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from pydicom import Dataset

from dicomprep.formats.decode import ImageInfo, frame_intensity
from dicomprep.options import Options
from dicomprep.pixels.crop import Box, background_value_max, crop
from dicomprep.pixels.intensity import (
    FrameIntensity,
    apply_lut,
    gray_lut,
    gray_values,
    is_integral,
    lut_domain,
    modality_range,
    modality_values,
    output_dtype,
    smallest_integer_dtype,
)


def stored_range(raw: np.ndarray) -> tuple[float, float]:
    """(min, max) of a frame's stored values."""
    return float(raw.min()), float(raw.max())


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


@lru_cache(maxsize=32)
def _shared_table(stored: str, window: tuple, voi, out: str, invert: bool, value_range):
    """:func:`gray_lut` of a frame without LUT sequences (rescale and window only), read-only:
    the files of a run mostly share one, so it is built once, not once per file."""
    slope, intercept, frame_window = window
    frame = FrameIntensity(slope=slope, intercept=intercept, window=frame_window)
    lut = gray_lut(np.dtype(stored), frame, voi, np.dtype(out), invert, value_range)
    lut.flags.writeable = False
    return lut


#: Foreground intervals of the tables seen, by table identity (the table is kept with its
#: interval, so that its identity stays its own).
_INTERVALS: dict[tuple[int, str, bool], tuple[np.ndarray, tuple[int, int] | None]] = {}


def table_interval(lut: np.ndarray, stored_dtype: np.dtype, crop_max: bool):
    """:func:`foreground_interval` of ``lut``, computed once per table."""
    key = (id(lut), np.dtype(stored_dtype).str, crop_max)
    if key not in _INTERVALS:
        if len(_INTERVALS) > 64:
            _INTERVALS.clear()
        _INTERVALS[key] = (lut, foreground_interval(lut, stored_dtype, crop_max))
    return _INTERVALS[key][1]


def foreground_interval(
    lut: np.ndarray, stored_dtype: np.dtype, crop_max: bool
) -> tuple[int, int] | None:
    """(lo, hi) when the stored values whose output is foreground (not 0, and with
    ``crop_max`` not the output type's maximum) are exactly ``lo..hi``; (1, 0) when there
    are none; None when they are not one interval (the mask then needs the mapped frame)."""
    domain = lut_domain(stored_dtype)
    background = lut == 0
    if crop_max:
        background |= lut == background_value_max(lut.dtype)
    values = domain[~background]
    if values.size == 0:
        return 1, 0
    lo, hi = int(values.min()), int(values.max())
    if values.size != hi - lo + 1:  # a background value inside lo..hi
        return None
    return lo, hi


class IntensityMapper:
    """Maps decoded frames of one header to output values, caching lookup tables.

    The output type is fixed per file: uint8/uint16 after VOI; for `voi: none` the
    smallest exact type of the modality values the stored bits allow, narrowed to the
    data's own range (``dtype`` is None until known) when that range would need 32 bits.

    Where the data's range matters (the min–max window of `voi: auto` without a window or
    VOI LUT, MONOCHROME1 reflection and the output type of `voi: none`), a volume uses
    ``volume_range``, the range of every frame found by a first pass before the first frame
    is mapped (:func:`dicomprep.series.render.render`); a single frame uses its own.
    """

    def __init__(self, ds: Dataset, info: ImageInfo, options: Options, luts: dict | None = None):
        """``luts``: a table cache to share with other mappers (the slices of a stack)."""
        self.ds, self.info, self.options = ds, info, options
        self._luts: dict = {} if luts is None else luts
        self._frames: dict[int, FrameIntensity] = {}
        self._last_range: tuple[np.ndarray, tuple[float, float]] | None = None
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

    def _value_range(self, frame: FrameIntensity, raw: np.ndarray) -> tuple[float, float] | None:
        """The modality range mapping ``raw`` depends on (None: it does not); fixes the
        output type of `voi: none` on the first frame that needs it."""
        value_range = None
        if self.needs_range(frame):
            value_range = self.volume_range
            if value_range is None:  # one frame: its own range (computed once per frame)
                if self._last_range is None or self._last_range[0] is not raw:
                    self._last_range = (raw, modality_range(stored_range(raw), frame))
                value_range = self._last_range[1]
        if self.dtype is None:  # `voi: none` whose type depends on the values
            self.set_dtype(smallest_integer_dtype(*value_range))
        return value_range

    def _lut(self, frame: FrameIntensity, raw: np.ndarray, value_range) -> np.ndarray:
        invert, voi = self.info.inverted, self.options.voi
        if frame.modality_lut is None and frame.voi_lut is None:  # shared between files
            window = (frame.slope, frame.intercept, frame.window)
            return _shared_table(raw.dtype.str, window, voi, self.dtype.str, invert, value_range)
        key = (frame.cache_key(), value_range, raw.dtype.str, self.dtype.str, invert, voi)
        lut = self._luts.get(key)
        if lut is None:
            if len(self._luts) > 64:
                self._luts.clear()
            lut = gray_lut(raw.dtype, frame, voi, self.dtype, invert, value_range)
            self._luts[key] = lut
        return lut

    def __call__(self, index: int, raw: np.ndarray) -> np.ndarray:
        """Frame ``index`` (its stored values ``raw``) in output values."""
        return self.region(index, raw, None)

    def region(self, index: int, raw: np.ndarray, box: Box | None) -> np.ndarray:
        """The output values of frame ``index`` inside ``box`` (None: all of it): exactly
        ``self(index, raw)`` cropped, but mapping only the pixels inside."""
        if self.info.photometric == "PALETTE COLOR":
            return raw if box is None else crop(raw, box)  # entries are already output values
        if self.info.is_color:  # float RGB is scaled by the whole frame's maximum
            rgb = color_to_output(raw, self.info.bits_stored)
            return rgb if box is None else crop(rgb, box)
        frame = self.frame(index)
        value_range = self._value_range(frame, raw)
        inside = raw if box is None else crop(raw, box)
        if lut_domain(raw.dtype) is None:
            invert, voi = self.info.inverted, self.options.voi
            return gray_values(inside, frame, voi, self.dtype, invert, value_range)
        return apply_lut(inside, self._lut(frame, raw, value_range))

    def stored_interval(self, index: int, raw: np.ndarray, crop_max: bool):
        """(lo, hi) when frame ``index``'s output is foreground (as
        :func:`dicomprep.pixels.crop.foreground_mask` of ``self(index, raw)`` says) exactly
        where its stored values ``raw`` are within ``lo..hi``: a lookup table maps them and
        its foreground values are one interval.  None otherwise."""
        if self.info.is_color or self.info.photometric == "PALETTE COLOR":
            return None
        if lut_domain(raw.dtype) is None or not raw.dtype.isnative:
            return None
        frame = self.frame(index)
        lut = self._lut(frame, raw, self._value_range(frame, raw))
        return table_interval(lut, raw.dtype, crop_max)
