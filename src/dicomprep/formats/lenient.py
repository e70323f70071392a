"""The lenient cases: header defects an image is converted despite, each with a warning.

The rule: a defect is tolerated only where the pixels read are provably the ones the file
holds, and then the output's manifest row says so in its ``warnings`` column; where the
header leaves open which values the samples have, the file fails
(``InvalidImageDescription``).  docs/errors.md, section Warnings, lists the texts.

- Bits Stored 0 or absent: no bit of a sample is declared unused, so every bit of Bits
  Allocated is read; nothing is masked away or invented (warning).
- Bits Stored above Bits Allocated (17 of 16): the header claims bits the samples do not
  have; which of them hold the sign or the top of the range cannot be known (failure).
- High Bit other than Bits Stored - 1: the stored bits' position in the sample is
  ambiguous (DICOM requires High Bit = Bits Stored - 1) (failure); High Bit absent: the
  samples are read by Bits Stored alone, as they always are (warning).

Float Pixel Data and Double Float Pixel Data have no Bits Stored or High Bit (DICOM says
they are absent there): nothing is checked or said for them.
"""

from __future__ import annotations

from collections.abc import Iterable

from dicomprep.core.errors import DicomError, ErrorType

#: The warning texts (docs/errors.md, Warnings): ``{bits}`` is the number of bits read,
#: ``{bit}`` the high bit taken.
BITS_STORED_ZERO = "Bits Stored is 0: read as {bits}"
BITS_STORED_ABSENT = "Bits Stored is absent: read as {bits}"
HIGH_BIT_ABSENT = "High Bit is absent: taken as {bit}"
WARNING_TEXTS = (BITS_STORED_ZERO, BITS_STORED_ABSENT, HIGH_BIT_ABSENT)

#: What separates two warnings in one ``warnings`` value.
SEPARATOR = "; "


def _number(value) -> int | None:
    """An element's value as an int (None when absent or empty)."""
    if value is None or value == "":
        return None
    return int(value)


def stored_bits(
    bits_allocated: int, bits_stored, high_bit, float_pixels: bool = False
) -> tuple[int, tuple[str, ...]]:
    """(the Bits Stored to read the samples with, the warnings that reading needs) from the
    header's Bits Allocated and its raw Bits Stored and High Bit values (None: absent).

    Raises DicomError (decode, InvalidImageDescription) where the header leaves the
    samples' values open: Bits Stored above Bits Allocated, High Bit not Bits Stored - 1.
    """
    stored, high = _number(bits_stored), _number(high_bit)
    if float_pixels:
        return bits_allocated, ()
    found: list[str] = []
    if not stored:
        template = BITS_STORED_ZERO if stored == 0 else BITS_STORED_ABSENT
        found.append(template.format(bits=bits_allocated))
        stored = bits_allocated
    if stored < 0 or stored > bits_allocated:
        raise DicomError(
            "decode",
            f"Bits Stored {stored} with Bits Allocated {bits_allocated}: the samples do not "
            "have the bits the header claims",
            ErrorType.INVALID_IMAGE_DESCRIPTION,
        )
    if high is None:
        found.append(HIGH_BIT_ABSENT.format(bit=stored - 1))
    elif high != stored - 1:
        raise DicomError(
            "decode",
            f"High Bit {high} with Bits Stored {stored}: where the stored bits sit in the "
            f"sample is ambiguous (High Bit must be {stored - 1})",
            ErrorType.INVALID_IMAGE_DESCRIPTION,
        )
    return stored, tuple(found)


def join_warnings(warnings: Iterable[str]) -> str:
    """One ``warnings`` value: the distinct texts in the order first given, joined by
    :data:`SEPARATOR` ('' for none)."""
    return SEPARATOR.join(dict.fromkeys(w for w in warnings if w))
