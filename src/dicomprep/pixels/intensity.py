"""Stored pixel values to output values: modality LUT, VOI, scaling, MONOCHROME1 inversion.

docs/configuration.md: voi.  Each transform is a small pure function over NumPy arrays.  For the
usual 8- and 16-bit stored data the whole chain is evaluated once over every possible
stored value, giving a lookup table (:func:`gray_lut`) that maps a frame with a single
``np.take`` — much cheaper than float arithmetic over millions of pixels.

VOI functions return values normalised to ``[0, 1]``; :func:`scale_to_output` turns them
into the output type's full range.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
from pydicom import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi

from dicomprep.core.errors import DicomError, ErrorType
from dicomprep.formats.luts import check_lut_sequence

LINEAR, LINEAR_EXACT, SIGMOID = "LINEAR", "LINEAR_EXACT", "SIGMOID"


@dataclass(frozen=True)
class FrameIntensity:
    """What governs one frame's intensities (from the top level or functional groups).

    ``modality_lut`` and ``voi_lut`` are datasets holding a Modality LUT Sequence or a
    VOI LUT Sequence; ``window`` is (center, width, function).
    """

    slope: float = 1.0
    intercept: float = 0.0
    modality_lut: Dataset | None = field(default=None, compare=False)
    window: tuple[float, float, str] | None = None
    voi_lut: Dataset | None = field(default=None, compare=False)

    def cache_key(self) -> tuple:
        """Frames with equal keys share one lookup table."""
        return (self.slope, self.intercept, id(self.modality_lut), self.window, id(self.voi_lut))


# -- modality LUT ---------------------------------------------------------------


def rescale(values: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """Rescale Slope/Intercept: ``values * slope + intercept`` in float64."""
    return values.astype(np.float64) * slope + intercept


def stored_value_range(bits_stored: int, signed: bool) -> tuple[float, float]:
    """(lowest, highest) stored value of ``bits_stored``-bit samples, two's complement when
    ``signed``."""
    if signed:
        return -float(2 ** (bits_stored - 1)), float(2 ** (bits_stored - 1) - 1)
    return 0.0, float(2**bits_stored - 1)


def rescaled_range(
    stored_range: tuple[float, float], slope: float, intercept: float
) -> tuple[float, float]:
    """(slope * low + intercept, slope * high + intercept) in float64: infinite where the
    product overflows (no warning)."""
    with np.errstate(over="ignore", invalid="ignore"):
        ends = np.array(stored_range, dtype=np.float64) * slope + intercept
    return float(ends[0]), float(ends[1])


# -- non-finite samples -------------------------------------------------------------

#: The pixel element float frames come from, by their type's size in bytes.
FLOAT_PIXEL_ELEMENTS = {4: "Float Pixel Data", 8: "Double Float Pixel Data"}


def non_finite_counts(frame: np.ndarray) -> tuple[int, int]:
    """(NaN samples, infinite samples) of a frame; (0, 0) for integer frames.

    One pass of ``np.isfinite`` when every sample is finite (the usual case: 0.6 ms for a
    2048 x 2048 float32 frame, 1.3 ms for float64); the two counts only when one is not.
    """
    if frame.dtype.kind != "f" or np.isfinite(frame).all():
        return 0, 0
    return int(np.count_nonzero(np.isnan(frame))), int(np.count_nonzero(np.isinf(frame)))


def check_finite(frame: np.ndarray, index: int) -> np.ndarray:
    """``frame`` (frame ``index`` of its image) when every sample is a finite number;
    else DicomError (decode, NonFinitePixels) counting the NaN and infinite samples: a NaN
    has no grey level, and one infinite sample would stretch a min-max window so that
    every other pixel comes out 0."""
    nan, inf = non_finite_counts(frame)
    if nan or inf:
        element = FLOAT_PIXEL_ELEMENTS.get(frame.dtype.itemsize, "Pixel Data")
        raise DicomError(
            "decode",
            f"{element} holds {nan} NaN and {inf} infinite samples in frame {index}",
            ErrorType.NON_FINITE_PIXELS,
        )
    return frame


def finite_frames(frames: Iterable[np.ndarray], indices: Iterable[int]) -> Iterator[np.ndarray]:
    """``frames`` (frames ``indices`` of an image), each passed through :func:`check_finite`."""
    for index, frame in zip(indices, frames, strict=False):
        yield check_finite(frame, index)


def modality_values(values: np.ndarray, frame: FrameIntensity) -> np.ndarray:
    """Stored values to modality values (Modality LUT Sequence, else rescale), float64."""
    if frame.modality_lut is not None:
        check_lut_sequence(frame.modality_lut, "ModalityLUTSequence")
        stored = np.rint(values).astype(np.int64) if values.dtype.kind == "f" else values
        return apply_modality_lut(stored, frame.modality_lut).astype(np.float64)
    return rescale(values, frame.slope, frame.intercept)


# -- VOI ------------------------------------------------------------------------


def window_linear(x: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM LINEAR window (PS3.3 C.11.2.1.2.1) normalised to [0, 1]."""
    width = max(width, 1.0)
    if width == 1.0:
        return (x > center - 0.5).astype(np.float64)
    y = (x - (center - 0.5)) / (width - 1.0) + 0.5
    return np.clip(y, 0.0, 1.0)


def window_linear_exact(x: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM LINEAR_EXACT window (PS3.3 C.11.2.1.3.2) normalised to [0, 1]."""
    width = max(width, np.finfo(np.float64).tiny)
    return np.clip((x - center) / width + 0.5, 0.0, 1.0)


def window_sigmoid(x: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM SIGMOID window (PS3.3 C.11.2.1.3.1), in (0, 1)."""
    width = max(width, np.finfo(np.float64).tiny)
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))


_WINDOWS = {LINEAR: window_linear, LINEAR_EXACT: window_linear_exact, SIGMOID: window_sigmoid}


def apply_window(x: np.ndarray, center: float, width: float, function: str = LINEAR) -> np.ndarray:
    """Window ``x`` with the named VOI LUT Function (unknown names fall back to LINEAR)."""
    return _WINDOWS.get(function.upper() if function else LINEAR, window_linear)(x, center, width)


def apply_voi_lut_sequence(x: np.ndarray, holder: Dataset) -> np.ndarray:
    """Map modality values through the first VOI LUT Sequence item, normalised to [0, 1]
    (DicomError, InvalidVOILUT, when its LUT Data does not hold what its descriptor says)."""
    check_lut_sequence(holder, "VOILUTSequence")
    item = holder.VOILUTSequence[0]
    bits = int(item.LUTDescriptor[2])
    values = np.rint(x).astype(np.int64)
    mapped = apply_voi(values, holder).astype(np.float64)
    return np.clip(mapped / float(2**bits - 1), 0.0, 1.0)


def window_min_max(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """Linear map of [low, high] to [0, 1] (the image's range when nothing else is given)."""
    if high <= low:
        return np.zeros(x.shape, dtype=np.float64)
    return np.clip((x - low) / (high - low), 0.0, 1.0)


def voi_values(
    x: np.ndarray,
    frame: FrameIntensity,
    voi: str | tuple[float, float],
    value_range: tuple[float, float] | None,
) -> np.ndarray:
    """VOI stage: modality values to [0, 1] by the option ``voi`` and the frame's attributes.

    ``value_range`` is the image's (min, max) of modality values (the whole volume's for a
    multi-frame file), used when neither a VOI LUT nor a window is available (``voi='auto'``).
    """
    if isinstance(voi, tuple):
        return window_linear(x, voi[0], voi[1])
    if frame.voi_lut is not None:
        return apply_voi_lut_sequence(x, frame.voi_lut)
    if frame.window is not None:
        return apply_window(x, *frame.window)
    low, high = value_range if value_range is not None else (float(x.min()), float(x.max()))
    return window_min_max(x, low, high)


# -- output type ------------------------------------------------------------------


def output_dtype(bits_stored: int) -> np.dtype:
    """uint8 for sources of up to 8 stored bits, uint16 above."""
    return np.dtype(np.uint8 if bits_stored <= 8 else np.uint16)


def scale_to_output(v: np.ndarray, dtype: np.dtype, invert: bool = False) -> np.ndarray:
    """[0, 1] to the full range of an unsigned integer type; ``invert`` flips MONOCHROME1."""
    if invert:
        v = 1.0 - v
    top = np.iinfo(dtype).max
    return np.rint(np.clip(v, 0.0, 1.0) * top).astype(dtype)


def smallest_integer_dtype(low: float, high: float) -> np.dtype:
    """The smallest of uint8, int16, uint16, int32 holding [low, high] (int16 preferred)."""
    for dtype in (np.uint8, np.int16, np.uint16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return np.dtype(dtype)
    raise ValueError(f"modality values {low}..{high} do not fit a 32-bit integer")


def is_integral(frame: FrameIntensity) -> bool:
    """True when rescale keeps integers integers (so `voi: none` can stay exact)."""
    return frame.modality_lut is not None or (
        float(frame.slope).is_integer() and float(frame.intercept).is_integer()
    )


# -- lookup tables ----------------------------------------------------------------


def lut_domain(dtype: np.dtype) -> np.ndarray | None:
    """Every value of an 8/16-bit stored type, ordered by the unsigned view used to index.

    ``None`` for wider or float types, which are mapped directly.
    """
    dtype = np.dtype(dtype)
    if dtype.kind not in "iu" or dtype.itemsize > 2:
        return None
    unsigned = np.dtype(f"u{dtype.itemsize}")
    return np.arange(2 ** (8 * dtype.itemsize), dtype=np.int64).astype(unsigned).view(dtype)


def lut_index(frame: np.ndarray) -> np.ndarray:
    """The unsigned view of an 8/16-bit frame, to index a table from :func:`lut_domain`."""
    return frame.view(np.dtype(f"u{frame.dtype.itemsize}"))


def gray_values(
    stored: np.ndarray,
    frame: FrameIntensity,
    voi: str | tuple[float, float],
    out_dtype: np.dtype,
    invert: bool,
    value_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """The whole grayscale chain for an array of stored values (or a LUT domain).

    ``value_range`` is the (min, max) of the *modality* values of the image — of the whole
    volume for a multi-frame file, so that equal stored values give equal outputs in every
    frame.  It is the min–max window when no VOI is defined, and the interval MONOCHROME1
    values are reflected in with ``voi: none``.  Without it the values given are the range.
    """
    m = modality_values(stored, frame)
    if voi == "none":
        if invert:
            m = _invert_modality(m, value_range)
        return np.rint(m).astype(out_dtype) if out_dtype.kind in "iu" else m.astype(out_dtype)
    return scale_to_output(voi_values(m, frame, voi, value_range), out_dtype, invert)


def modality_range(stored_range: tuple[float, float], frame: FrameIntensity) -> tuple[float, float]:
    """The (min, max) of modality values for stored values spanning ``stored_range``."""
    ends = modality_values(np.array(stored_range, dtype=np.float64), frame)
    return float(ends.min()), float(ends.max())


def union_range(
    a: tuple[float, float] | None, b: tuple[float, float] | None
) -> tuple[float, float] | None:
    """The smallest interval holding both ranges (None entries are ignored)."""
    if a is None or b is None:
        return b if a is None else a
    return min(a[0], b[0]), max(a[1], b[1])


def _invert_modality(m: np.ndarray, value_range: tuple[float, float] | None) -> np.ndarray:
    """MONOCHROME1 with `voi: none`: reflect modality values within the image's range."""
    low, high = value_range if value_range is not None else (m.min(), m.max())
    return high + low - m


def gray_lut(
    stored_dtype: np.dtype,
    frame: FrameIntensity,
    voi: str | tuple[float, float],
    out_dtype: np.dtype,
    invert: bool,
    value_range: tuple[float, float] | None = None,
) -> np.ndarray | None:
    """A table mapping every stored value to its output value, or None for wide types."""
    domain = lut_domain(stored_dtype)
    if domain is None:
        return None
    return gray_values(domain, frame, voi, out_dtype, invert, value_range)


def apply_lut(frame: np.ndarray, lut: np.ndarray, rows_per_block: int = 64) -> np.ndarray:
    """Map an 8/16-bit frame through a table from :func:`gray_lut`.

    Taken a block of rows at a time: ``np.take`` converts its index array to ``intp``
    first, and a block's conversion stays in the CPU cache (twice as fast as one take).
    ``mode="wrap"`` only because it skips the error path of the bounds check: a table has
    an entry for every index of the type (:func:`lut_domain`), so nothing wraps.
    """
    index = lut_index(frame)
    out = np.empty(index.shape + lut.shape[1:], lut.dtype)
    for start in range(0, index.shape[0], rows_per_block):
        block = slice(start, start + rows_per_block)
        np.take(lut, index[block], axis=0, out=out[block], mode="wrap")
    return out
