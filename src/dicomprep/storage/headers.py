"""Headers of objects with ranged reads: a first range of :data:`FIRST_RANGE` bytes, a
longer one only when the header (up to the pixel data) does not fit in it, read by a
bounded pool of threads (``header_concurrency``).

The bytes read are parsed by the same :func:`dicomprep.formats.decode.read_header` as a local
file (from a small temporary file holding the range), so an object and the same file
on disk give the same catalog row.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor

from dicomprep.storage.objects import ObjectFacts, read_range
from dicomprep.storage.retry import RetryPolicy

FIRST_RANGE = 64 * 1024  # bytes: the whole header of nearly every image object
GROWTH = 8  # each further range is this many times longer
DEFAULT_CONCURRENCY = 16
PIXEL_ELEMENT_HEAD = 12  # tag, VR and length of the pixel data element


def header_from_bytes(data: bytes):
    """``read_header`` of a file holding ``data`` (the first bytes of an object):
    (dataset without pixel data, whether pixel data follows)."""
    from dicomprep.formats.decode import read_header

    with tempfile.NamedTemporaryFile(prefix="dicomprep-header-", suffix=".dcm") as f:
        f.write(data)
        f.flush()
        return read_header(f.name)


def has_preamble(data: bytes) -> bool:
    return data[128:132] == b"DICM"


def read_object_header(
    facts: ObjectFacts,
    storage_options: Mapping | None = None,
    *,
    first_range: int = FIRST_RANGE,
    policy: RetryPolicy | None = None,
    ranges: list | None = None,
):
    """(dataset, has_pixels) of one object from as few ranged reads as its header needs.

    A range is long enough when parsing reached the pixel data element with its length
    in the range, or when it is the whole object.  Otherwise (a header that parses
    without reaching pixel data, or a Part 10 file, with the ``DICM`` preamble, whose
    header does not parse from the range) the object is read again with a range
    :data:`GROWTH` times longer; content without the preamble that does not parse from
    the first range is not DICOM (its header would have parsed), and is not read further.
    ``ranges`` (a list) receives the length of each range read.
    """
    from dicomprep.formats.decode import DicomError

    length = max(1, first_range)
    while True:
        end = min(length, facts.size)
        data = read_range(facts.url, 0, end, storage_options, policy) if end > 0 else b""
        if ranges is not None:
            ranges.append(len(data))
        whole = len(data) >= facts.size
        try:
            ds, has_pixels = header_from_bytes(data)
        except DicomError:
            if whole or not has_preamble(data):
                raise
        else:
            position = getattr(ds, "pixel_element_position", None)
            if whole or (has_pixels and position + PIXEL_ELEMENT_HEAD <= len(data)):
                return ds, has_pixels
        length *= GROWTH


def map_bounded(
    func: Callable, items: Iterable, concurrency: int = DEFAULT_CONCURRENCY
) -> Iterator:
    """``map(func, items)`` on up to ``concurrency`` threads, results in input order."""
    items = list(items)
    if concurrency <= 1 or len(items) <= 1:
        yield from map(func, items)
        return
    with ThreadPoolExecutor(max_workers=min(concurrency, len(items))) as pool:
        yield from pool.map(func, items)


def header_concurrency(value: int | None = None) -> int:
    """Threads reading headers: ``value``, else ``DICOMPREP_HEADER_CONCURRENCY``, else
    :data:`DEFAULT_CONCURRENCY`."""
    if value:
        return max(1, int(value))
    try:
        return max(1, int(os.environ.get("DICOMPREP_HEADER_CONCURRENCY", "")))
    except ValueError:
        return DEFAULT_CONCURRENCY


def quiet(func: Callable) -> Callable:
    """``func`` with warnings silenced (pydicom warns about many real-world headers)."""

    def call(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return func(*args, **kwargs)

    return call
