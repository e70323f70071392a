"""Header defects named in the file's terms: a data set not encoded as its Transfer Syntax
UID says, an element whose length runs past the end of the file, and an element whose
value cannot be read as its VR.

pydicom parses such files without complaint (a byte-swapped data set is garbage it reads
to the end; a value cut by the end of the file is simply shorter), so the reader would
call them objects without pixel data.  These checks run where a header read found no
pixel data, or failed, and say what is really wrong.
"""

from __future__ import annotations

import warnings
import zlib
from pathlib import Path

from pydicom import Dataset
from pydicom.datadict import dictionary_description
from pydicom.dataelem import RawDataElement
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.tag import Tag

from dicomprep.core.errors import DicomError, ErrorType, one_line, with_detail

#: Elements walked at the start of a data set to decide its byte order.
ELEMENTS_WALKED = 6
#: Bytes read from the start of the data set for that walk.
WALK_BYTES = 8192

#: Explicit VRs whose length field has 4 bytes (after 2 reserved bytes).
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR"}
_LONG_VRS |= {b"UT", b"UV"}
_UNDEFINED = 0xFFFFFFFF
#: VRs whose values are numbers: shown in messages (other values may identify a person).
NUMBER_VRS = {"IS", "DS", "US", "SS", "UL", "SL", "FL", "FD", "AT", "UV", "SV"}
#: The integer elements that describe the image.
IMAGE_NUMBERS = ("Rows", "Columns", "NumberOfFrames", "SamplesPerPixel", "BitsAllocated")
IMAGE_NUMBERS += ("BitsStored", "HighBit", "PixelRepresentation")
_LITTLE_ENDIAN_SYNTAXES = {"1.2.840.10008.1.2": "Implicit VR Little Endian"}
_LITTLE_ENDIAN_SYNTAXES["1.2.840.10008.1.2.1"] = "Explicit VR Little Endian"


def element_name(tag: int) -> str:
    """``Rows (0028,0010)``; ``(0043,104E)`` for an element the dictionary lacks."""
    tag = Tag(tag)
    shown = f"({tag.group:04X},{tag.element:04X})"
    try:
        return f"{dictionary_description(tag)} {shown}"
    except KeyError:
        return shown


def explicit_elements(data: bytes, little: bool, limit: int = ELEMENTS_WALKED) -> int:
    """How many elements at the start of ``data`` read as well-formed explicit VR elements
    in that byte order (tags ascending, VRs of two capital letters, lengths within
    ``data`` or undefined for a sequence), up to ``limit``."""
    order = "little" if little else "big"
    position, previous, count = 0, -1, 0
    while count < limit and position + 8 <= len(data):
        group = int.from_bytes(data[position : position + 2], order)
        element = int.from_bytes(data[position + 2 : position + 4], order)
        tag, vr = (group << 16) | element, data[position + 4 : position + 6]
        if tag <= previous or not (vr.isalpha() and vr.isupper()):
            break
        if vr in _LONG_VRS:
            length = int.from_bytes(data[position + 8 : position + 12], order)
            start = position + 12
            if length == _UNDEFINED:  # a sequence or encapsulated data: counted, not walked
                return count + 1
        else:
            length, start = int.from_bytes(data[position + 6 : position + 8], order), position + 8
        if start + length > len(data) and start + length > WALK_BYTES:
            return count + 1  # runs past what was read: plausible, not checked further
        if start + length > len(data):
            break
        position, previous, count = start + length, tag, count + 1
    return count


def _data_set_start(path: Path) -> tuple[int, str]:
    """(where the data set starts after the file meta information, its Transfer Syntax
    UID); (-1, '') when the meta information cannot be read."""
    with warnings.catch_warnings(), open(path, "rb") as f:
        warnings.simplefilter("ignore")
        try:
            read_preamble(f, force=False)
            meta = _read_file_meta_info(f)
        except Exception:  # noqa: BLE001 - not a Part 10 file: nothing to compare
            return -1, ""
        return f.tell(), str(meta.get("TransferSyntaxUID", ""))


def check_byte_order(path: str | Path) -> None:
    """Raise DicomError (discover, TransferSyntaxMismatch) when the data set of a Part 10
    file whose Transfer Syntax UID says little endian is encoded big endian: its first
    elements read as explicit VR big endian, not in the order the syntax says."""
    path = Path(path)
    start, syntax = _data_set_start(path)
    name = _LITTLE_ENDIAN_SYNTAXES.get(syntax)
    if start < 0 or name is None:
        return
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(WALK_BYTES)
    big = explicit_elements(data, little=False)
    if big < min(ELEMENTS_WALKED, 2) or explicit_elements(data, little=True) >= big:
        return
    if syntax == "1.2.840.10008.1.2" and _implicit_little_endian_reads(data):
        return
    first = int.from_bytes(data[0:2], "big") << 16 | int.from_bytes(data[2:4], "big")
    raise DicomError(
        "discover",
        f"Transfer Syntax UID {syntax} says {name}, but the data set is encoded big "
        f"endian (its first element {element_name(first)} reads only byte-swapped)",
        ErrorType.TRANSFER_SYNTAX_MISMATCH,
    )


def _implicit_little_endian_reads(data: bytes) -> bool:
    """Whether ``data`` starts with two implicit VR little endian elements of ascending
    tags whose lengths stay within it."""
    position, previous = 0, -1
    for _ in range(2):
        if position + 8 > len(data):
            return False
        tag = int.from_bytes(data[position : position + 2], "little") << 16
        tag |= int.from_bytes(data[position + 2 : position + 4], "little")
        length = int.from_bytes(data[position + 4 : position + 8], "little")
        if tag <= previous or (length != _UNDEFINED and position + 8 + length > len(data)):
            return False
        position, previous = position + 8 + length, tag
    return True


def check_truncated_elements(ds: Dataset) -> None:
    """Raise DicomError (discover, TruncatedElement) for a top-level element of ``ds``
    (read without pixel data) whose value holds fewer bytes than its length says: the
    file ends inside it."""
    for tag in sorted(ds.keys(), reverse=True):  # a cut value is the last one read
        raw = ds._dict.get(tag)
        if not isinstance(raw, RawDataElement) or raw.length == _UNDEFINED:
            continue
        held = len(raw.value) if isinstance(raw.value, bytes) else raw.length
        if held < raw.length:
            raise DicomError(
                "discover",
                f"{element_name(tag)} {raw.VR or ''} has a length of {raw.length} bytes, "
                f"but the file ends {held} bytes into its value",
                ErrorType.TRUNCATED_ELEMENT,
            )


def check_readable_values(ds: Dataset) -> None:
    """Raise DicomError (discover, InvalidHeader) naming the first top-level element of
    ``ds`` whose value cannot be read as its VR (``Number of Frames (0028,0008) IS value
    'x.5z' cannot be read``), with pydicom's reason after `` -- ``."""
    for tag in sorted(ds.keys()):
        try:
            element = ds[tag]
            str(element.value)
        except Exception as exc:  # noqa: BLE001 - any conversion failure names the element
            raw = ds._dict.get(tag)
            vr = getattr(raw, "VR", "") or ""
            shown = f" {_shown_value(raw.value)}" if vr in NUMBER_VRS else ""
            said = one_line(exc)
            message = f"{element_name(tag)} {vr} value{shown} cannot be read"
            raise DicomError(
                "discover",
                f"{message} -- {said}" if said else message,
                ErrorType.INVALID_HEADER,
            ) from exc


def check_image_numbers(ds: Dataset) -> None:
    """Raise DicomError (decode, InvalidImageDescription) naming the first element of the
    image description (Rows, Columns, Number of Frames, bits, samples) that is not an
    integer, e.g. ``Number of Frames (0028,0008) is 'x.5z', not an integer``."""
    for keyword in IMAGE_NUMBERS:
        try:
            value = ds.get(keyword)
            if value is not None and value != "":
                int(value)
        except Exception as exc:  # noqa: BLE001 - any conversion failure names the element
            tag = Tag(keyword)
            raw = ds._dict.get(tag)
            shown = _shown_value(getattr(raw, "value", b"") if raw is not None else b"")
            raise DicomError(
                "decode",
                f"{element_name(tag)} is {shown}, not an integer",
                ErrorType.INVALID_IMAGE_DESCRIPTION,
            ) from exc


def _shown_value(value) -> str:
    """A raw value as a short printable text (at most 24 characters)."""
    if isinstance(value, bytes):
        text = value[:24].decode("ascii", "replace")
        text = "".join(c if c.isprintable() else "?" for c in text)
        return repr(text + ("..." if len(value) > 24 else ""))
    return repr(str(value)[:24])


def header_failure(path: str | Path, exc: BaseException) -> DicomError:
    """The DicomError (stage discover) of a Part 10 file whose data set pydicom could not
    parse (``exc``): a data set in another byte order than its transfer syntax says, a
    corrupt deflate stream, sequences nested past any parser's depth, an I/O error, or
    else a malformed element (InvalidHeader, pydicom's words as a detail)."""
    try:
        check_byte_order(path)
    except DicomError as mismatch:
        return mismatch
    if isinstance(exc, zlib.error):
        message = "the deflated data set cannot be inflated: its deflate stream is corrupt"
        return DicomError("discover", with_detail(message, exc), ErrorType.CORRUPT_CODESTREAM)
    if isinstance(exc, RecursionError):
        message = "the data set's sequences nest too deeply to be read (thousands of levels)"
        return DicomError("discover", message, ErrorType.INVALID_HEADER)
    if isinstance(exc, OSError) and exc.errno is not None:
        message = f"the file cannot be read: {exc.strerror or 'an I/O error'}"
        return DicomError("discover", message, ErrorType.READ_ERROR)
    message = "the data set cannot be parsed: an element's tag, VR or length is malformed"
    return DicomError("discover", with_detail(message, exc), ErrorType.INVALID_HEADER)
