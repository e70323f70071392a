"""Bounded decoding: the headers of compressed frames, read and checked against the DICOM
header before any decoder sees the frame (docs/limits.md, "Decoding limits").

A decoder sizes its output from the codestream's own header -- a JPEG frame header (SOFn),
JPEG-LS's SOF55 (and its LSE oversize dimensions), a JPEG 2000 / HTJ2K SIZ marker -- not
from Rows and Columns: a 2 KB frame whose SOF claims 65535 x 65535 makes libjpeg allocate
gigabytes.  :func:`check_frame` reads that header (a few hundred bytes of parsing, no
decoding) and refuses a frame that claims a larger image than the DICOM header's (beyond
:data:`SIZE_TOLERANCE`), more components than Samples per Pixel or more bits than Bits
Allocated (ErrorType.CODESTREAM_MISMATCH); a frame whose header cannot be found or parsed
is ErrorType.CORRUPT_CODESTREAM.  An RLE frame's segment table must hold exactly Samples
per Pixel x bytes per sample segments, inside the frame.  Every decoded frame is checked,
on every path (imagecodecs, pydicom's plugins, slices of a stack, reduced resolutions).

:func:`check_frame_limits` refuses, before anything is decoded, a frame beyond
``max_frame_pixels`` and a file beyond ``max_frames`` (the options of the same names).

The parsers here also serve :mod:`dicomprep.formats.codestreams`, which decodes JPEG 2000,
HTJ2K, JPEG-LS and lossless JPEG directly (:func:`read_frame_header`).
"""

from __future__ import annotations

import importlib.util
import os
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydicom import Dataset, dcmread
from pydicom.encaps import get_frame

from dicomprep.core.errors import DicomError, ErrorType

if TYPE_CHECKING:
    from dicomprep.formats.decode import ImageInfo

JPEG2000_SYNTAXES = frozenset({"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"})
HTJ2K_LOSSLESS_SYNTAXES = frozenset({"1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202"})
HTJ2K_SYNTAXES = HTJ2K_LOSSLESS_SYNTAXES | {"1.2.840.10008.1.2.4.203"}
JPEGLS_SYNTAXES = frozenset({"1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"})
JPEG_LOSSLESS_SYNTAXES = frozenset({"1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"})
JPEG_LOSSY_SYNTAXES = frozenset({"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"})
#: The syntaxes :mod:`dicomprep.formats.codestreams` decodes directly.
CODESTREAM_SYNTAXES = JPEG2000_SYNTAXES | HTJ2K_SYNTAXES | JPEGLS_SYNTAXES | JPEG_LOSSLESS_SYNTAXES
RLE_SYNTAX = "1.2.840.10008.1.2.5"
#: The syntaxes whose frames :func:`check_frame` reads the header of (the ones pydicom and
#: imagecodecs decode here).
CHECKED_SYNTAXES = CODESTREAM_SYNTAXES | JPEG_LOSSY_SYNTAXES | {RLE_SYNTAX}

# How messages name a syntax's codestreams (the other JPEG syntaxes: "JPEG").
_KINDS = {
    **dict.fromkeys(JPEG2000_SYNTAXES, "JPEG 2000"),
    **dict.fromkeys(HTJ2K_SYNTAXES, "HTJ2K"),
    **dict.fromkeys(JPEGLS_SYNTAXES, "JPEG-LS"),
}

#: Pixels a codestream's width or height may exceed Columns or Rows by: a frame padded to
#: whole 16 x 16 JPEG MCUs, a JPEG 2000 image area rounded up by its encoder.  Larger
#: claims are refused; smaller ones are left to the decoder (they allocate less).
SIZE_TOLERANCE = 16

_SOC, _SIZ, _COD, _COC, _SOT, _SOD, _EOC = 0xFF4F, 0xFF51, 0xFF52, 0xFF53, 0xFF90, 0xFF93, 0xFFD9
_SOI, _SOS, _SOF55, _LSE = 0xFFD8, 0xFFDA, 0xFFF7, 0xFFF8
# SOF0-SOF15 except DHT (C4), JPG (C8) and DAC (CC); and JPEG-LS's SOF55.
_SOF_MARKERS = frozenset(range(0xFFC0, 0xFFD0)) - {0xFFC4, 0xFFC8, 0xFFCC} | {_SOF55}
# Markers without a length: TEM, RST0-7, SOI, EOI.
_BARE_MARKERS = frozenset({0xFF01, *range(0xFFD0, 0xFFDA)})
#: The most tiles a JPEG 2000 image may have (tile indices are 16-bit, 65535 is reserved).
MAX_J2K_TILES = 65535


class CodestreamError(ValueError):
    """A codestream whose headers cannot be read."""


@dataclass(frozen=True)
class Codestream:
    """Facts of one frame's codestream header: JPEG SOFn / JPEG-LS SOF55, or JPEG 2000 SIZ
    (with COD/COC of every header when read by :func:`read_codestream`)."""

    width: int
    height: int
    x_origin: int
    y_origin: int
    components: int
    precision: int  # bits per sample, the most of any component
    signed: bool
    subsampled: bool
    levels: int  # decomposition levels: the fewest over every COD/COC of the codestream
    marker: str = "SIZ"  # the marker the size was read from (SOF0, SOF55, LSE, SIZ)
    tiles: int = 1  # JPEG 2000 tiles


# -- JPEG and JPEG-LS --------------------------------------------------------------------------


def read_frame_header(data: bytes, syntax: str) -> Codestream:
    """The headers of one frame's codestream in ``syntax`` (only JPEG 2000 has levels), as
    :mod:`dicomprep.formats.codestreams` decodes them."""
    if syntax in JPEGLS_SYNTAXES:
        return read_jpeg_frame(data, _SOF55)
    if syntax in JPEG_LOSSLESS_SYNTAXES:
        return read_jpeg_frame(data, 0xFFC3)
    return read_codestream(data)


def read_jpeg_frame(data: bytes, sof: int) -> Codestream:
    """Size, components and precision from the ``sof`` marker (SOF55 for JPEG-LS, SOF3 for
    lossless JPEG) of a JPEG stream.  Lossless JPEG with a point transform (SOS ``Al``) is
    refused: it is left to pydicom."""
    marker, header, point_transform = read_jpeg_header(data)
    if marker != sof:
        raise CodestreamError(f"JPEG frame marker {marker:04X}, not {sof:04X}")
    if sof == 0xFFC3 and point_transform:
        raise CodestreamError("lossless JPEG with a point transform")
    return header


def read_jpeg_header(data: bytes) -> tuple[int, Codestream, int]:
    """(frame marker, frame, point transform) of a JPEG or JPEG-LS stream, read from its
    first frame marker (SOF0-SOF15, SOF55) up to its first scan (SOS, whose ``Al`` is the
    point transform).  JPEG-LS's oversize dimensions (LSE, ID 4) replace SOF55's size."""
    if data[:2] != b"\xff\xd8":
        raise CodestreamError("not a JPEG stream (no SOI marker)")
    pos, found, header = 2, 0, None
    try:
        while pos + 4 <= len(data):
            marker = struct.unpack_from(">H", data, pos)[0]
            if marker == 0xFFFF:  # a fill byte
                pos += 1
                continue
            if marker < 0xFF00:
                break
            if marker in _BARE_MARKERS:
                pos += 2
                continue
            length = struct.unpack_from(">H", data, pos + 2)[0]
            if marker in _SOF_MARKERS and header is None:  # Lf, P, Y, X, Nf
                precision, height, width, components = struct.unpack_from(">BHHB", data, pos + 4)
                name = "SOF55" if marker == _SOF55 else f"SOF{marker - 0xFFC0}"
                found = marker
                header = Codestream(
                    width, height, 0, 0, components, precision, False, False, 0, name
                )
            elif marker == _LSE and data[pos + 4] == 4 and header is not None:
                header = _oversize_dimensions(data, pos, header)
            elif marker == _SOS and header is not None:  # Ns, Ns x 2, Ss, Se, Ah/Al
                point_transform = data[pos + 5 + 2 * data[pos + 4] + 2] & 0x0F
                return found, header, point_transform
            pos += 2 + length
    except (struct.error, IndexError) as exc:
        raise CodestreamError(f"truncated JPEG header: {exc}") from exc
    raise CodestreamError("JPEG stream without a frame marker (SOFn) and scan (SOS)")


def _oversize_dimensions(data: bytes, pos: int, header: Codestream) -> Codestream:
    """``header`` with the size of a JPEG-LS LSE marker of ID 4 at ``pos`` (Wxy bytes each
    for Y and X, used when they do not fit SOF55's 16 bits)."""
    size = data[pos + 5]
    if not 2 <= size <= 4 or pos + 6 + 2 * size > len(data):
        raise CodestreamError(f"JPEG-LS LSE marker with {size}-byte dimensions")
    height = int.from_bytes(data[pos + 6 : pos + 6 + size], "big")
    width = int.from_bytes(data[pos + 6 + size : pos + 6 + 2 * size], "big")
    return Codestream(**{**header.__dict__, "width": width, "height": height, "marker": "LSE"})


# -- JPEG 2000 and HTJ2K ---------------------------------------------------------------------


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


def read_siz(data: bytes) -> Codestream:
    """The SIZ marker of a JPEG 2000 / HTJ2K codestream, bare or in a JP2 file (its
    ``jp2c`` box): SIZ is the first marker after SOC, so nothing else is read."""
    start = _codestream_start(data)
    try:
        if struct.unpack_from(">HH", data, start) != (_SOC, _SIZ):
            raise CodestreamError("not a JPEG 2000 codestream (no SOC and SIZ markers)")
        return _parse_siz(data, start + 2)
    except struct.error as exc:
        raise CodestreamError(f"truncated SIZ marker: {exc}") from exc


def _codestream_start(data: bytes) -> int:
    """Where the codestream starts: 0, or after the header of a JP2 file's ``jp2c`` box."""
    if data[4:8] != b"jP  ":
        return 0
    pos = 0
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if length == 1 and pos + 16 <= len(data):  # a 64-bit length follows
            length, header = struct.unpack_from(">Q", data, pos + 8)[0], 16
        if kind == b"jp2c":
            return pos + header
        if length < header:
            break
        pos += length
    raise CodestreamError("JP2 file without a codestream box (jp2c)")


def _parse_siz(data: bytes, pos: int) -> Codestream:
    xsiz, ysiz, x0, y0, tile_w, tile_h, tile_x0, tile_y0 = struct.unpack_from(
        ">IIIIIIII", data, pos + 6
    )
    components = struct.unpack_from(">H", data, pos + 38)[0]
    ssiz = struct.unpack_from(f">{components * 3}B", data, pos + 40)
    if components == 0 or xsiz <= x0 or ysiz <= y0 or not tile_w or not tile_h:
        raise CodestreamError(f"SIZ marker with an empty image or tile ({xsiz} x {ysiz})")
    tiles = -(-(xsiz - tile_x0) // tile_w) * -(-(ysiz - tile_y0) // tile_h)
    return Codestream(
        width=xsiz - x0,
        height=ysiz - y0,
        x_origin=x0,
        y_origin=y0,
        components=components,
        precision=max((s & 0x7F) + 1 for s in ssiz[::3]),
        signed=bool(ssiz[0] & 0x80),
        subsampled=any(ssiz[3 * c + 1 : 3 * c + 3] != (1, 1) for c in range(components)),
        levels=0,
        tiles=tiles,
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


# -- reading frames ----------------------------------------------------------------------------


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


def pixel_value_start(path: str | os.PathLike, position: int, implicit: bool = False) -> int:
    """File offset of the first item of encapsulated Pixel Data whose element starts at
    ``position`` (raises CodestreamError when the element is not encapsulated).  With
    ``implicit`` an element written in implicit VR (tag, then an undefined length) is
    accepted too."""
    with open(path, "rb") as f:
        f.seek(position)
        header = f.read(12)
    if header[:4] == b"\xe0\x7f\x10\x00" and header[8:12] == b"\xff\xff\xff\xff":
        return position + 12
    if implicit and header[:4] == b"\xe0\x7f\x10\x00" and header[4:8] == b"\xff\xff\xff\xff":
        return position + 8
    raise CodestreamError("Pixel Data is not encapsulated")


# -- the checks --------------------------------------------------------------------------------


def check_frame_limits(info: ImageInfo, max_frame_pixels: int, max_frames: int) -> None:
    """Refuse a file whose frames are larger than ``max_frame_pixels`` (Rows x Columns) or
    more than ``max_frames``, before anything is decoded."""
    pixels = info.rows * info.columns
    if pixels > max_frame_pixels:
        raise DicomError(
            "decode",
            f"Rows x Columns is {info.rows} x {info.columns} = {pixels:,} pixels per frame, "
            f"more than max_frame_pixels ({max_frame_pixels:,})",
            ErrorType.FRAME_TOO_LARGE,
        )
    if info.num_frames > max_frames:
        raise DicomError(
            "decode",
            f"Number of Frames is {info.num_frames:,}, more than max_frames ({max_frames:,})",
            ErrorType.TOO_MANY_FRAMES,
        )


def check_frame(data: bytes, info: ImageInfo, index: int) -> None:
    """Refuse frame ``index`` (its encapsulated bytes ``data``) when its own header claims a
    larger image than ``info`` (:data:`SIZE_TOLERANCE`) or cannot be read; frames of other
    transfer syntaxes pass unread."""
    syntax = info.transfer_syntax
    if syntax == RLE_SYNTAX:
        check_rle_frame(data, info, index)
        return
    if syntax not in CHECKED_SYNTAXES:
        return
    j2k = syntax in JPEG2000_SYNTAXES or syntax in HTJ2K_SYNTAXES
    kind = _KINDS.get(syntax, "JPEG")
    try:
        claim = read_siz(data) if j2k else read_jpeg_header(data)[1]
    except CodestreamError as exc:
        raise DicomError(
            "decode",
            f"frame {index}'s {kind} codestream header cannot be read: {exc}",
            ErrorType.CORRUPT_CODESTREAM,
        ) from exc
    problem = claim_problem(claim, info)
    if problem:
        raise DicomError(
            "decode",
            f"frame {index}'s {kind} codestream ({claim.marker}) {problem}",
            ErrorType.CODESTREAM_MISMATCH,
        )


def claim_problem(claim: Codestream, info: ImageInfo) -> str:
    """What in ``claim`` exceeds the image ``info`` describes ('' when nothing does)."""
    if (
        claim.width > info.columns + SIZE_TOLERANCE
        or claim.height > info.rows + SIZE_TOLERANCE
        or claim.width == 0
        or claim.height == 0
    ):
        return (
            f"is {claim.width} x {claim.height} (width x height), but Columns x Rows is "
            f"{info.columns} x {info.rows}"
        )
    if claim.components > info.samples_per_pixel:
        return (
            f"has {claim.components} components, but Samples per Pixel is {info.samples_per_pixel}"
        )
    if claim.precision > max(info.bits_allocated, 8):
        return f"has {claim.precision}-bit samples, but Bits Allocated is {info.bits_allocated}"
    if claim.tiles > MAX_J2K_TILES:
        return f"has {claim.tiles:,} tiles, more than a JPEG 2000 image may ({MAX_J2K_TILES})"
    return ""


def check_rle_frame(data: bytes, info: ImageInfo, index: int) -> None:
    """Refuse an RLE frame whose segment table is malformed or points outside the frame
    (ErrorType.CORRUPT_CODESTREAM) or whose segment count is not Samples per Pixel x bytes
    per sample (ErrorType.CODESTREAM_MISMATCH: no decoder here converts such a frame)."""

    def corrupt(problem: str) -> DicomError:
        return DicomError("decode", f"frame {index}'s RLE {problem}", ErrorType.CORRUPT_CODESTREAM)

    if len(data) < 64:
        raise corrupt(f"frame is {len(data)} bytes, shorter than its 64-byte segment table")
    count, *offsets = struct.unpack_from("<16I", data)
    if not 1 <= count <= 15:
        raise corrupt(f"segment table names {count} segments (1 to 15 are possible)")
    offsets = offsets[:count]
    ends = [*offsets[1:], len(data)]
    for k, (start, end) in enumerate(zip(offsets, ends, strict=True)):
        if not 64 <= start < end <= len(data):
            raise corrupt(
                f"segment {k} starts at byte {start}, outside the frame's {len(data)} bytes "
                "or before the previous segment"
            )
    per_sample = -(-info.bits_allocated // 8)
    expected = info.samples_per_pixel * per_sample
    if count != expected:
        raise DicomError(
            "decode",
            f"frame {index}'s RLE segment table holds {count} segments, but Samples per Pixel "
            f"x bytes per sample is {info.samples_per_pixel} x {per_sample} = {expected}",
            ErrorType.CODESTREAM_MISMATCH,
        )


def bounded_decoding(syntax: str) -> dict:
    """pydicom options that keep decoding ``syntax`` within the header's image: RLE goes to
    pylibjpeg-rle alone, which decodes every segment into Rows x Columns bytes and drops
    what a segment holds beyond them; pydicom's own RLE decoder (tried when pylibjpeg-rle
    fails) first decodes each segment whole, up to 64 times its encoded size."""
    if syntax == RLE_SYNTAX and importlib.util.find_spec("rle") is not None:
        return {"decoding_plugin": "pylibjpeg"}
    return {}


def decoder_panic(exc: BaseException, index: int) -> DicomError | None:
    """The failure of frame ``index`` when ``exc`` is a decoder written in Rust giving up
    (pylibjpeg-rle panics on a segment that decodes past the frame): a BaseException that
    would otherwise end the worker; None for anything else."""
    if type(exc).__name__ != "PanicException":
        return None
    message = f"frame {index}'s codestream cannot be decoded: it is corrupt -- {exc}"
    return DicomError("decode", message, ErrorType.CORRUPT_CODESTREAM)


def frame_checker(source, ds: Dataset, info: ImageInfo) -> Callable[[int], None]:
    """A function checking frame ``index``'s header (:func:`check_frame`) before pydicom
    decodes that frame from ``source``: a path (``ds`` from ``read_header``, which records
    where Pixel Data starts) or a whole dataset.  The frame is read as pydicom reads it
    (``get_frame`` with the same frame count and extended offsets); a frame that cannot be
    read raises what ``get_frame`` raises, as pydicom would."""
    if info.transfer_syntax not in CHECKED_SYNTAXES:
        return lambda index: None
    offsets = None
    if "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds:
        offsets = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
    position = getattr(ds, "pixel_element_position", None)

    whole = source if isinstance(source, Dataset) else None

    def read(index: int) -> bytes:
        nonlocal whole
        if whole is None and position is None:  # not from read_header: read it once
            whole = dcmread(source, force=True)
        if whole is not None:
            return get_frame(
                whole.PixelData, index, number_of_frames=info.num_frames, extended_offsets=offsets
            )
        start = pixel_value_start(source, position, implicit=True)
        return next(read_frame_bytes(source, start, [index], info.num_frames, offsets))

    def check(index: int) -> None:
        check_frame(read(index), info, index)

    return check
