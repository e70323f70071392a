"""Reading an output TIFF's layout from its header alone (no pixel data, no tifffile):
the page count, size, samples and the volume description dicomprep writes, for building
the manifest of a large folder quickly."""

from __future__ import annotations

import struct
from dataclasses import dataclass


@dataclass(frozen=True)
class TiffLayout:
    """Image size, samples per pixel, page count and the first page's description, read
    from the IFD chain only."""

    width: int
    height: int
    channels: int
    num_frames: int
    description: str | None = None


_TYPE_FORMATS = {3: "H", 4: "I", 16: "Q"}  # SHORT, LONG, LONG8
_ASCII = 2
_IMAGE_DESCRIPTION = 270
_MAX_DESCRIPTION = 1 << 20  # dicomprep's are a few hundred bytes


def read_layout(path) -> TiffLayout:
    """Width, height and samples of the first page and the number of pages.

    Parses the header and walks the IFD chain directly (a few small reads per file), which
    is much faster than building a :class:`tifffile.TiffFile` when indexing many files.
    Classic TIFF and BigTIFF, either byte order.
    """
    with open(path, "rb") as fh:
        head = fh.read(16)
        if len(head) < 8 or head[:2] not in (b"II", b"MM"):
            raise ValueError(f"{path}: not a TIFF file")
        bo = "<" if head[:2] == b"II" else ">"
        magic = struct.unpack(bo + "H", head[2:4])[0]
        if magic == 42:
            offset = struct.unpack(bo + "I", head[4:8])[0]
            count_fmt, entry_size, off_fmt, value_size = "H", 12, "I", 4
        elif magic == 43 and len(head) == 16:
            offset = struct.unpack(bo + "Q", head[8:16])[0]
            count_fmt, entry_size, off_fmt, value_size = "Q", 20, "Q", 8
        else:
            raise ValueError(f"{path}: not a TIFF file")
        count_size = struct.calcsize(count_fmt)
        off_size = struct.calcsize(off_fmt)
        entry = struct.Struct(bo + "HH" + off_fmt)

        fields: dict[int, int] = {}
        description_at: tuple[int, int] | None = None  # (offset, length) of page 0's
        description = None
        pages = 0
        seen: set[int] = set()
        while offset:
            if offset in seen:
                raise ValueError(f"{path}: IFD chain has a cycle")
            seen.add(offset)
            fh.seek(offset)
            raw = fh.read(count_size)
            if len(raw) != count_size:
                raise ValueError(f"{path}: truncated IFD at offset {offset}")
            n = struct.unpack(bo + count_fmt, raw)[0]
            if pages == 0:
                block = fh.read(n * entry_size + off_size)
                if len(block) != n * entry_size + off_size:
                    raise ValueError(f"{path}: truncated IFD at offset {offset}")
                for i in range(n):
                    pos = i * entry_size
                    code, typ, cnt = entry.unpack_from(block, pos)
                    if code == _IMAGE_DESCRIPTION and typ == _ASCII and cnt <= _MAX_DESCRIPTION:
                        value_pos = pos + entry.size
                        if cnt <= value_size:
                            description = block[value_pos : value_pos + cnt]
                        else:
                            at = struct.unpack_from(bo + off_fmt, block, value_pos)[0]
                            description_at = (at, cnt)
                    if code in (256, 257, 277) and cnt == 1 and typ in _TYPE_FORMATS:
                        value_pos = pos + entry.size
                        fmt = bo + _TYPE_FORMATS[typ]
                        if struct.calcsize(fmt) <= value_size:
                            fields[code] = struct.unpack_from(fmt, block, value_pos)[0]
                raw = block[-off_size:]
            else:
                fh.seek(offset + count_size + n * entry_size)
                raw = fh.read(off_size)
                if len(raw) != off_size:
                    raise ValueError(f"{path}: truncated IFD at offset {offset}")
            pages += 1
            offset = struct.unpack(bo + off_fmt, raw)[0]
        if description_at is not None:
            fh.seek(description_at[0])
            description = fh.read(description_at[1])
    if pages == 0 or 256 not in fields or 257 not in fields:
        raise ValueError(f"{path}: no image in TIFF file")
    return TiffLayout(
        width=fields[256],
        height=fields[257],
        channels=fields.get(277, 1),
        num_frames=pages,
        description=_ascii_text(description),
    )


def _ascii_text(value: bytes | None) -> str | None:
    """A TIFF ASCII value as text (up to its first NUL; undecodable bytes replaced)."""
    if value is None:
        return None
    return value.split(b"\0", 1)[0].decode("ascii", errors="replace")
