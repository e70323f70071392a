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
import struct
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from pydicom import Dataset
from pydicom.encaps import get_frame

from dicomprep.formats.decode import ImageInfo
from dicomprep.pixels.crop import (
    Box,
    background_value_max,
    foreground_mask,
    largest_component_mask,
    mask_box,
)

JPEG2000_SYNTAXES = frozenset({"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"})
HTJ2K_LOSSLESS_SYNTAXES = frozenset({"1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202"})
HTJ2K_SYNTAXES = HTJ2K_LOSSLESS_SYNTAXES | {"1.2.840.10008.1.2.4.203"}
JPEGLS_SYNTAXES = frozenset({"1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"})
JPEG_LOSSLESS_SYNTAXES = frozenset({"1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"})
CODESTREAM_SYNTAXES = JPEG2000_SYNTAXES | HTJ2K_SYNTAXES | JPEGLS_SYNTAXES | JPEG_LOSSLESS_SYNTAXES

#: Reduced pixels (Chebyshev distance) next to both an output-maximum and a zero pixel that
#: ``crop_max`` treats as background: the 9/7 low-pass spreads an edge by at most 2 reduced
#: pixels.
MAX_EDGE_RADIUS = 2

_SOC, _SIZ, _COD, _COC, _SOT, _SOD, _EOC = 0xFF4F, 0xFF51, 0xFF52, 0xFF53, 0xFF90, 0xFF93, 0xFFD9


class CodestreamError(ValueError):
    """A codestream whose headers cannot be read (the file then goes to pydicom)."""


@dataclass(frozen=True)
class Codestream:
    """Facts of a JPEG 2000 codestream's headers (SIZ, and COD/COC of every header)."""

    width: int
    height: int
    x_origin: int
    y_origin: int
    components: int
    precision: int
    signed: bool
    subsampled: bool
    levels: int  # decomposition levels: the fewest over every COD/COC of the codestream


def read_frame_header(data: bytes, syntax: str) -> Codestream:
    """The headers of one frame's codestream in ``syntax`` (only JPEG 2000 has levels)."""
    if syntax in JPEGLS_SYNTAXES:
        return read_jpeg_frame(data, 0xFFF7)
    if syntax in JPEG_LOSSLESS_SYNTAXES:
        return read_jpeg_frame(data, 0xFFC3)
    return read_codestream(data)


def read_jpeg_frame(data: bytes, sof: int) -> Codestream:
    """Size, components and precision from the ``sof`` marker (SOF55 for JPEG-LS, SOF3 for
    lossless JPEG) of a JPEG stream.  Lossless JPEG with a point transform (SOS ``Al``) is
    refused: it is left to pydicom."""
    if data[:2] != b"\xff\xd8":
        raise CodestreamError("not a JPEG stream (no SOI marker)")
    pos, header = 2, None
    try:
        while pos + 4 <= len(data):
            marker, length = struct.unpack_from(">HH", data, pos)
            if marker == sof:  # Lf, P, Y, X, Nf
                precision, height, width, components = struct.unpack_from(">BHHB", data, pos + 4)
                header = Codestream(width, height, 0, 0, components, precision, False, False, 0)
                if sof != 0xFFC3:
                    return header
            elif marker == 0xFFDA and header is not None:  # SOS: Ns, Ns x 2, Ss, Se, Ah/Al
                point_transform = data[pos + 5 + 2 * data[pos + 4] + 2] & 0x0F
                if point_transform:
                    raise CodestreamError("lossless JPEG with a point transform")
                return header
            elif 0xFFC0 <= marker <= 0xFFCF and marker not in (0xFFC4, 0xFFC8, 0xFFCC):
                raise CodestreamError(f"JPEG frame marker {marker:04X}, not {sof:04X}")
            if marker < 0xFF00:
                break
            pos += 2 + length
    except (struct.error, IndexError) as exc:
        raise CodestreamError(f"truncated JPEG header: {exc}") from exc
    raise CodestreamError(f"JPEG stream without a {sof:04X} marker and scan")


def read_codestream(data: bytes) -> Codestream:
    """The headers of the JPEG 2000 codestream ``data`` (CodestreamError when malformed).

    Reads the main header and the header of every tile-part (their COD/COC may use fewer
    decomposition levels than the main header), jumping over the tile data.
    """
    if len(data) < 4 or struct.unpack_from(">H", data, 0)[0] != _SOC:
        raise CodestreamError("not a JPEG 2000 codestream (no SOC marker)")
    siz: Codestream | None = None
    levels: list[int] = []
    pos = 2
    try:
        while pos + 4 <= len(data):
            marker, length = struct.unpack_from(">HH", data, pos)
            if marker == _SOT:
                psot = struct.unpack_from(">I", data, pos + 6)[0]
                _tile_part_levels(data, pos + 2 + length, levels, siz)
                if psot == 0:
                    break
                pos += psot
                continue
            if marker == _EOC:
                break
            if marker == _SIZ:
                siz = _parse_siz(data, pos)
            elif marker in (_COD, _COC):
                levels.append(_levels_of(data, pos, marker, siz))
            pos += 2 + length
    except struct.error as exc:
        raise CodestreamError(f"truncated codestream header: {exc}") from exc
    if siz is None or not levels:
        raise CodestreamError("codestream without SIZ or COD marker")
    return Codestream(**{**siz.__dict__, "levels": min(levels)})


def _parse_siz(data: bytes, pos: int) -> Codestream:
    xsiz, ysiz, x0, y0 = struct.unpack_from(">IIII", data, pos + 6)
    components = struct.unpack_from(">H", data, pos + 38)[0]
    ssiz, xr, yr = struct.unpack_from(">BBB", data, pos + 40)
    subsampled = any(
        struct.unpack_from(">BB", data, pos + 41 + 3 * c) != (1, 1) for c in range(components)
    )
    return Codestream(
        width=xsiz - x0,
        height=ysiz - y0,
        x_origin=x0,
        y_origin=y0,
        components=components,
        precision=(ssiz & 0x7F) + 1,
        signed=bool(ssiz & 0x80),
        subsampled=subsampled,
        levels=0,
    )


def _levels_of(data: bytes, pos: int, marker: int, siz: Codestream | None) -> int:
    """Decomposition levels of a COD (byte 9) or COC (after the component index) marker."""
    if marker == _COD:
        return data[pos + 9]
    index_bytes = 2 if siz is not None and siz.components >= 257 else 1
    return data[pos + 4 + index_bytes + 1]


def _tile_part_levels(data: bytes, pos: int, levels: list[int], siz: Codestream | None) -> None:
    """Add the levels of COD/COC markers in the tile-part header starting at ``pos``."""
    while pos + 4 <= len(data):
        marker, length = struct.unpack_from(">HH", data, pos)
        if marker == _SOD:
            return
        if marker in (_COD, _COC):
            levels.append(_levels_of(data, pos, marker, siz))
        pos += 2 + length


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
        """Frames ``indices`` decoded at ``level`` in that order, on up to ``threads`` threads."""
        return decode_in_order(self.frame_bytes(indices), lambda d: self.decode(d, level), threads)


def read_frame_bytes(
    path: str | os.PathLike,
    value_start: int,
    indices: Iterable[int],
    num_frames: int,
    extended_offsets: tuple | None = None,
) -> Iterator[bytes]:
    """The codestreams of frames ``indices`` of encapsulated Pixel Data whose items start at
    file offset ``value_start``, read one at a time (``pydicom.encaps.get_frame``)."""
    with open(path, "rb") as f:
        for index in indices:
            f.seek(value_start)
            yield get_frame(
                f, index, number_of_frames=num_frames, extended_offsets=extended_offsets
            )


def _pixel_value_start(path: str | os.PathLike, position: int) -> int:
    """File offset of the first item of encapsulated Pixel Data whose element starts at
    ``position`` (raises CodestreamError when the element is not encapsulated)."""
    with open(path, "rb") as f:
        f.seek(position)
        header = f.read(12)
    if header[:4] != b"\xe0\x7f\x10\x00" or header[8:12] != b"\xff\xff\xff\xff":
        raise CodestreamError("Pixel Data is not encapsulated")
    return position + 12


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
        start = _pixel_value_start(path, ds.pixel_element_position)
        first = next(read_frame_bytes(path, start, [0], info.num_frames, offsets))
        header = read_frame_header(first, info.transfer_syntax)
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
