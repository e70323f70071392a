"""Compressed greyscale frames decoded straight from their codestreams with imagecodecs:
JPEG 2000 and HTJ2K at full or reduced resolution, JPEG-LS and lossless JPEG at full
resolution, on one or several threads.

Frames are read from the file one at a time (``pydicom.encaps.get_frame``) and decoded with
the libraries pydicom's plugins wrap (OpenJPEG, OpenJPH, CharLS) or liblj92 for lossless JPEG
(tested against pydicom's libjpeg on real files), so the values are pydicom's
-- for the files that qualify (:func:`codestream_frames`: unsigned greyscale whose codestream
agrees with the header); everything else is decoded by pydicom.  Decoding directly is faster
(3328 x 2560, 12 bits: JPEG-LS 60 ms and lossless JPEG 60 ms against pydicom's 0.3 s;
lossless HTJ2K with OpenJPH, 25 ms, against OpenJPEG's 0.12 s) and imagecodecs releases the
GIL, so :func:`decode_in_order` decodes the frames of a volume on several threads (Pillow,
which decodes the reduced levels, holds it).

A JPEG 2000 codestream holds its image as a wavelet pyramid: decoding only the first
``levels - r`` resolutions gives the image reduced ``r`` times by two, at a fraction of the
cost (the finer sub-bands are never entropy-decoded).  When the output is much smaller than
the source, the pipeline decodes at the coarsest level that still has at least as many pixels
as the resize needs and resizes from there.

Reduced grid.  With the image origin at 0 (checked in the SIZ marker), reduced pixel ``k`` of
level ``r`` stands for the source pixels ``[k 2^r, (k + 1) 2^r)``; a reduced image has
``ceil(n / 2^r)`` pixels per axis, the last one covering a partial block when ``n`` is not a
multiple of ``2^r``.  :meth:`CodestreamFrames.frames` drops that partial last row and column,
so every reduced pixel is one full ``2^r x 2^r`` block and a box found on the reduced image maps
to source pixels by multiplying by ``2^r``: crop boxes, and the TIFF tags written from them,
stay exact on the source grid.  Resizing the reduced crop (``w_r x h_r`` pixels, source size
``w_r 2^r x h_r 2^r``) to the output size maps source point ``x`` to
``(x - crop_x) * output_w / (w_r 2^r)``, which is what DefaultCropOrigin/Size/Scale say.

What differs from decoding at full resolution and resizing:

- the crop box is a multiple of ``2^r`` source pixels: each side can lie up to ``2^r - 1``
  pixels (less than one output pixel) outside the full-resolution box, and the wavelet's
  low-pass filter spreads an edge by about one reduced pixel, so a side can grow by one more
  block; up to ``2^r - 1`` source rows/columns at the bottom/right edge of an image whose size
  is not a multiple of ``2^r`` are left out;
- with ``crop_max``, reduced pixels next to both a pixel at the output maximum and a zero
  pixel are background too (:func:`reduced_foreground_box`): the low-pass blurs the edges of
  a burned-in label on the background into intermediate values that would otherwise count as
  anatomy;
- where the foreground's edge is ragged (scattered single pixels, as on the edge of a
  collimated radiograph) the low-pass averages those pixels away and the side moves inwards
  by a few blocks (8 and 5 source pixels at level 2 on pydicom's ``RG3_J2KR``);
- a range taken from the data (``voi: auto`` without window or VOI LUT, ``voi: none``) is
  the reduced frame's, whose extremes the low-pass trims slightly;
- the values are the wavelet low-pass (a 5- or 9-tap filter per level) rather than the
  resize filter, and its taps are centred on the first source pixel of each block, so image
  content sits ``(2^r - 1) / 2`` source pixels (less than half an output pixel) from where
  the tags map it.

Decoders, measured on a 3328 x 2560 12-bit image (one core): OpenJPEG through imagecodecs
(``jpeg2k_decode``, 0.44 s) at full resolution, as fast as pylibjpeg-openjpeg and Pillow and,
unlike them, releasing the GIL so frames decode in parallel threads; OpenJPH through
imagecodecs (``htj2k_decode``, 25 ms) for lossless HTJ2K, five times faster than OpenJPEG;
OpenJPEG through Pillow (``Image.reduce``) at reduced levels (0.10 s at level 1, 0.06 s at
level 2 for JPEG 2000; 22 ms / 6 ms for HTJ2K), the only one of them whose reduced output is
clamped to the sample range (OpenJPH wraps undershoots around in uint16).
"""

from __future__ import annotations

import io
import os
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from pydicom import Dataset

from dicomprep.core.errors import DicomError
from dicomprep.formats.codestream_checks import (  # noqa: F401 - the parsers' old home
    CODESTREAM_SYNTAXES,
    HTJ2K_LOSSLESS_SYNTAXES,
    HTJ2K_SYNTAXES,
    JPEG2000_SYNTAXES,
    JPEG_LOSSLESS_SYNTAXES,
    JPEGLS_SYNTAXES,
    Codestream,
    CodestreamError,
    check_frame,
    pixel_value_start,
    read_codestream,
    read_frame_bytes,
    read_frame_header,
    read_jpeg_frame,
)
from dicomprep.formats.decode import ImageInfo
from dicomprep.pixels.crop import (
    Box,
    background_value_max,
    foreground_mask,
    largest_component_mask,
    mask_box,
)

#: Reduced pixels (Chebyshev distance) next to both an output-maximum and a zero pixel that
#: ``crop_max`` treats as background: the 9/7 low-pass spreads an edge by at most 2 reduced
#: pixels.
MAX_EDGE_RADIUS = 2

# -- decoding one codestream ---------------------------------------------------------------------


def decode_codestream(
    data: bytes, level: int, syntax: str, header: Codestream, bits_stored: int
) -> np.ndarray:
    """The greyscale image of ``data`` reduced ``level`` times by two, in stored values.

    Level 0 is the full image, decoded through imagecodecs: CharLS for JPEG-LS, liblj92 for
    lossless JPEG, OpenJPH for lossless HTJ2K, OpenJPEG for the rest.  Other levels are decoded
    by OpenJPEG through Pillow, whose 16-bit mode scales samples of ``precision < 16`` bits up
    by ``16 - precision`` bits (undone here), and clamped to ``bits_stored`` bits (the low-pass
    overshoots at sharp edges).
    """
    import imagecodecs

    if level == 0:
        if syntax in JPEGLS_SYNTAXES:
            return imagecodecs.jpegls_decode(data)
        if syntax in JPEG_LOSSLESS_SYNTAXES:
            return imagecodecs.ljpeg_decode(data)
        if syntax in HTJ2K_LOSSLESS_SYNTAXES:
            return imagecodecs.htj2k_decode(data)
        return imagecodecs.jpeg2k_decode(data, numthreads=1)
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image = Image.open(io.BytesIO(data), formats=["JPEG2000"])
        image.reduce = level
        image.load()
    values = np.asarray(image)
    if image.mode.startswith("I;16") and header.precision < 16:
        values = values >> (16 - header.precision)
    top = (1 << bits_stored) - 1
    if header.precision > bits_stored and values.max(initial=0) > top:
        values = np.minimum(values, top)
    return values


def pillow_can_reduce(width: int, height: int, level: int) -> bool:
    """Whether Pillow decodes a ``width x height`` codestream at ``level``.

    Pillow sizes the reduced image ``floor((n + 2^(level-1)) / 2^level)`` while OpenJPEG
    decodes ``ceil(n / 2^level)`` pixels; when they differ (``0 < n mod 2^level <
    2^(level-1)``) Pillow reports a broken data stream.
    """
    block = 1 << level
    return all((n + block // 2) // block == -(-n // block) for n in (width, height))


# -- the frames of a file --------------------------------------------------------------------------


@dataclass(frozen=True)
class CodestreamFrames:
    """The encapsulated frames of one greyscale file that this module decodes."""

    path: str
    info: ImageInfo
    value_start: int  # file offset of the Pixel Data's first item
    header: Codestream  # of the first frame; every frame is checked against it
    extended_offsets: tuple | None

    def level_for(
        self,
        width: int,
        height: int,
        source_width: int | None = None,
        source_height: int | None = None,
    ) -> int:
        """The coarsest level at which a source region (the whole image by default) still has
        ``width x height`` full blocks: the region resized to that size loses nothing by
        being decoded there.  Never more than the codestream's decomposition levels."""
        source_width = self.info.columns if source_width is None else source_width
        source_height = self.info.rows if source_height is None else source_height
        level = 0
        while (
            level < self.header.levels
            and source_width >> (level + 1) >= width
            and source_height >> (level + 1) >= height
        ):
            level += 1
        while level > 0 and not pillow_can_reduce(self.info.columns, self.info.rows, level):
            level -= 1
        return level

    def frame_bytes(self, indices: Iterable[int]) -> Iterator[bytes]:
        """The codestream of each frame in ``indices``, read from the file one at a time."""
        return read_frame_bytes(
            self.path, self.value_start, indices, self.info.num_frames, self.extended_offsets
        )

    def decode(self, data: bytes, level: int) -> np.ndarray:
        """One frame at ``level``, in the type pydicom gives (uint8/uint16 by BitsAllocated),
        trimmed to the full ``2^level`` blocks of the source."""
        header = read_frame_header(data, self.info.transfer_syntax)
        if (header.width, header.height, header.levels) != (
            self.header.width,
            self.header.height,
            self.header.levels,
        ) or (header.precision, header.signed) != (self.header.precision, self.header.signed):
            raise CodestreamError("the frames' codestreams differ in size, levels or precision")
        if level > 0 and not pillow_can_reduce(header.width, header.height, level):
            raise CodestreamError(f"level {level} cannot be decoded at this size")
        values = decode_codestream(
            data, level, self.info.transfer_syntax, header, self.info.bits_stored
        )
        expected = (
            -(-self.info.rows // (1 << level)),
            -(-self.info.columns // (1 << level)),
        )
        if values.shape != expected:
            raise CodestreamError(f"decoded shape {values.shape}, expected {expected}")
        values = values[: self.info.rows >> level, : self.info.columns >> level]
        dtype = np.dtype(f"u{self.info.bits_allocated // 8}")
        return values.astype(dtype, copy=False) if values.dtype != dtype else values

    def frames(self, indices: Iterable[int], level: int = 0, threads: int = 1) -> Iterator:
        """Frames ``indices`` decoded at ``level`` in that order, on up to ``threads`` threads,
        each frame's header checked against the DICOM header first (:func:`check_frame`)."""
        indices = list(indices)

        def decode(item: tuple[int, bytes]) -> np.ndarray:
            check_frame(item[1], self.info, item[0])
            return self.decode(item[1], level)

        return decode_in_order(
            zip(indices, self.frame_bytes(indices), strict=True), decode, threads
        )


def codestream_frames(
    path: str | os.PathLike, ds: Dataset, info: ImageInfo
) -> CodestreamFrames | None:
    """The frames of ``path`` as codestreams when this module can decode them, else None.

    Only unsigned greyscale files in :data:`CODESTREAM_SYNTAXES` whose first codestream agrees
    with the header (one component, no sub-sampling, origin 0, Rows x Columns, a precision from
    BitsStored up to 16 bits) qualify; everything else goes to pydicom.
    """
    if (
        info.transfer_syntax not in CODESTREAM_SYNTAXES
        or info.samples_per_pixel != 1
        or info.photometric not in ("MONOCHROME1", "MONOCHROME2")
        or info.pixel_representation != 0
        or info.bits_allocated not in (8, 16)
        or getattr(ds, "pixel_element_position", None) is None
    ):
        return None
    offsets = None
    if "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds:
        offsets = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
    try:
        start = pixel_value_start(path, ds.pixel_element_position)
        first = next(read_frame_bytes(path, start, [0], info.num_frames, offsets))
        check_frame(first, info, 0)
        header = read_frame_header(first, info.transfer_syntax)
    except DicomError:
        raise
    except Exception:  # noqa: BLE001 - anything unusual goes to pydicom
        return None
    if (
        header.components != 1
        or header.subsampled
        or header.signed
        or (header.x_origin, header.y_origin) != (0, 0)
        or (header.width, header.height) != (info.columns, info.rows)
        or header.precision > 16
        or header.precision < info.bits_stored
    ):
        return None
    return CodestreamFrames(str(path), info, start, header, offsets)


# -- parallel decoding --------------------------------------------------------------------------

T = TypeVar("T")
R = TypeVar("R")


def decode_in_order(items: Iterable[T], decode: Callable[[T], R], threads: int = 1) -> Iterator[R]:
    """``decode(item)`` for every item, yielded in the items' order.

    With ``threads > 1`` the calls run on that many threads (decoders that release the GIL,
    such as imagecodecs', then use that many cores) and at most ``threads`` items are read
    ahead of the one being yielded: a volume streams through, it is never held whole.
    """
    if threads <= 1:
        yield from map(decode, items)
        return
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="decode")
    pending: deque[Future] = deque()
    try:
        for item in items:
            pending.append(pool.submit(decode, item))
            if len(pending) >= threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# -- crop boxes on the reduced grid -------------------------------------------------------------


def reduced_foreground_box(
    image: np.ndarray, crop_max: bool = False, components: bool = False, level: int = 0
) -> Box | None:
    """The crop box of a frame decoded at ``level``, in that frame's pixels.

    As :func:`dicomprep.pixels.crop.foreground_box`, except that with ``crop_max`` at a
    reduced level the pixels within :data:`MAX_EDGE_RADIUS` of both an output-maximum pixel
    and a zero pixel are background: they are the blurred edges of a burned-in label on the
    background, not anatomy (anatomy that borders a saturated region stays foreground).
    """
    mask = foreground_mask(image, crop_max)
    if crop_max and level > 0:
        at_max = image == background_value_max(image.dtype)
        found = mask_box(at_max)
        if found is not None:  # only around where the maximum pixels are
            r = MAX_EDGE_RADIUS
            x0, y0 = max(found[0] - r, 0), max(found[1] - r, 0)
            x1, y1 = found[2] + r, found[3] + r
            window = image[y0:y1, x0:x1]
            blend = _dilate(at_max[y0:y1, x0:x1], r) & _dilate(window == 0, r)
            mask[y0:y1, x0:x1] &= ~blend
    box = mask_box(mask)
    if box is None or not components:
        return box
    x0, y0, x1, y1 = box
    inner = mask_box(largest_component_mask(mask[y0:y1, x0:x1]))
    return inner[0] + x0, inner[1] + y0, inner[2] + x0, inner[3] + y0


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` grown by ``radius`` pixels in every direction (a square structuring element)."""
    from scipy.ndimage import maximum_filter1d

    grown = maximum_filter1d(mask.view(np.uint8), 2 * radius + 1, axis=0)
    return maximum_filter1d(grown, 2 * radius + 1, axis=1).view(bool)


def source_box(box: Box, level: int) -> Box:
    """A box of the reduced grid of ``level`` in source pixels (full blocks, exact)."""
    return tuple(v << level for v in box)  # type: ignore[return-value]
