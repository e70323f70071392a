"""Lookup tables checked against their descriptors before they are applied.

A palette (Red/Green/Blue Palette Color Lookup Table Descriptor and Data), a Modality LUT
Sequence or a VOI LUT Sequence whose data does not hold the entries its descriptor
announces makes pydicom fail with NumPy's words ("Alias 'uint0' was removed", "index 3 is
out of bounds").  These checks say it in the file's terms instead, e.g. "Red Palette Color
Lookup Table Descriptor says 256 entries, but the table holds 3".
"""

from __future__ import annotations

from pydicom import Dataset

from dicomprep.core.errors import DicomError, ErrorType

PALETTE_COLORS = ("Red", "Green", "Blue")
#: Bits per entry a palette may have (PS3.3 C.7.6.3.1.5), and a LUT sequence's LUT.
PALETTE_BITS = (8, 16)
LUT_BITS = range(8, 17)


def _descriptor(
    values, name: str, error_type: ErrorType, bits_allowed, stage: str
) -> tuple[int, int]:
    """(entries, bits per entry) of a lookup table descriptor (entries 0 means 65536)."""
    if values is None:
        raise DicomError(stage, f"{name} is absent", error_type)
    try:
        numbers = [int(v) for v in (values if hasattr(values, "__len__") else [values])]
    except (TypeError, ValueError):
        raise DicomError(stage, f"{name} is not three numbers", error_type) from None
    if len(numbers) != 3:
        raise DicomError(
            stage,
            f"{name} has {len(numbers)} values; 3 are expected (entries, first value "
            "mapped, bits per entry)",
            error_type,
        )
    entries, bits = numbers[0] or 65536, numbers[2]
    if entries < 0 or bits not in bits_allowed:
        allowed = f"{min(bits_allowed)} to {max(bits_allowed)}"
        if len(bits_allowed) == 2:
            allowed = f"{bits_allowed[0]} or {bits_allowed[1]}"
        raise DicomError(
            stage, f"{name} says {bits} bits per entry; {allowed} expected", error_type
        )
    return entries, bits


def _entries_held(data) -> tuple[int, bool]:
    """(16-bit entries a table's data holds, whether it is raw bytes)."""
    if isinstance(data, (bytes, bytearray)):
        return len(data) // 2, True
    return (len(data) if hasattr(data, "__len__") else 1), False


def _holds(data, entries: int, bits: int) -> bool:
    """Whether ``data`` holds ``entries`` entries: one 16-bit word each, or (raw bytes of
    8-bit entries) one byte each."""
    held, raw = _entries_held(data)
    return held == entries or (raw and bits <= 8 and len(data) == entries)


def check_palette(ds: Dataset) -> None:
    """Raise DicomError (decode, InvalidPalette) unless each of the Red, Green and Blue
    Palette Color Lookup Table Descriptors is three numbers with 8 or 16 bits per entry
    and its table data (or segmented data) holds the entries it announces."""
    for color in PALETTE_COLORS:
        name = f"{color} Palette Color Lookup Table Descriptor"
        keyword = f"{color}PaletteColorLookupTableDescriptor"
        entries, bits = _descriptor(
            ds.get(keyword), name, ErrorType.INVALID_PALETTE, PALETTE_BITS, "decode"
        )
        data = ds.get(f"{color}PaletteColorLookupTableData")
        if data is None:
            if f"Segmented{color}PaletteColorLookupTableData" in ds:
                continue  # segmented tables expand to their entries as they are applied
            raise DicomError(
                "decode",
                f"{color} Palette Color Lookup Table Data is absent",
                ErrorType.INVALID_PALETTE,
            )
        if not _holds(data, entries, bits):
            raise DicomError(
                "decode",
                f"{name} says {entries} entries, but the table holds {_entries_held(data)[0]}",
                ErrorType.INVALID_PALETTE,
            )


#: The LUT sequences, their names and error types.
LUT_SEQUENCES = {
    "ModalityLUTSequence": ("Modality LUT Sequence", ErrorType.INVALID_MODALITY_LUT),
    "VOILUTSequence": ("VOI LUT Sequence", ErrorType.INVALID_VOI_LUT),
}


def check_lut_sequence(holder: Dataset, keyword: str, stage: str = "transform") -> None:
    """Raise DicomError (``stage``; InvalidModalityLUT or InvalidVOILUT) unless the first
    item of ``holder``'s ``keyword`` (ModalityLUTSequence or VOILUTSequence) has a LUT
    Descriptor of three numbers with 8 to 16 bits per entry and LUT Data holding the
    entries it announces."""
    sequence_name, error_type = LUT_SEQUENCES[keyword]
    sequence = holder.get(keyword)
    if not sequence:
        raise DicomError(stage, f"{sequence_name} has no item", error_type)
    item = sequence[0]
    name = f"{sequence_name} LUT Descriptor"
    entries, bits = _descriptor(item.get("LUTDescriptor"), name, error_type, LUT_BITS, stage)
    data = item.get("LUTData")
    if data is None:
        raise DicomError(stage, f"{sequence_name} LUT Data is absent", error_type)
    if not _holds(data, entries, bits):
        raise DicomError(
            stage,
            f"{name} says {entries} entries, but LUT Data holds {_entries_held(data)[0]}",
            error_type,
        )
