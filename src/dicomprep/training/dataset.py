"""A map-style dataset over a manifest, for PyTorch's DataLoader or any other loader.

:class:`ManifestDataset` holds only plain lists and arrays (no open files, no torch), so
it pickles to DataLoader worker processes and ``multiprocessing`` pools, and every item
opens, reads and closes its TIFF.  Item ``i`` is ``(array, record)``: the pixels from
:func:`~dicomprep.training.load.load` (shape (frames, H, W, C)) after the optional
``transform``, and a dict with the manifest row (both UIDs, ``path`` relative to the root,
``inode``, sizes), the ``index``, the absolute ``file`` and the ``geometry``
(:class:`~dicomprep.formats.geometry.Geometry`) for mapping annotations.

PyTorch's default collate function cannot batch a Geometry; batch with :func:`collate`
(stacked arrays as NumPy, records as a list) or ``batch_size=None``.  Read in inode order
in shuffled blocks with :meth:`ManifestDataset.sampler`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dicomprep.formats.manifest import read_manifest
from dicomprep.training.load import DTYPES, load_with_geometry
from dicomprep.training.order import InodeBlockSampler

__all__ = ["ManifestDataset", "collate"]

REQUIRED_COLUMNS = ("study_instance_uid", "sop_instance_uid", "path")


class ManifestDataset:
    """Items of a dicomprep manifest as ``(array, record)``.

    ``manifest`` is a ``manifest.csv``/``.parquet`` path or a DataFrame with at least
    ``study_instance_uid``, ``sop_instance_uid`` and ``path`` (relative to ``root``).
    ``root`` defaults to the manifest's folder (required for a DataFrame).  ``dtype`` is
    passed to :func:`~dicomprep.training.load.load`; ``frames`` selects pages (None: all);
    ``transform`` is applied to each array (it must pickle for worker processes).
    """

    def __init__(
        self,
        manifest,
        dtype: str = "float32",
        transform: Callable | None = None,
        root=None,
        frames=None,
    ):
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
        if isinstance(manifest, pd.DataFrame):
            if root is None:
                raise ValueError("give root (the dataset folder) with a DataFrame manifest")
            table = manifest
        else:
            table = read_manifest(manifest)
            root = Path(manifest).parent if root is None else root
        missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
        if missing:
            raise ValueError(f"manifest is missing columns: {', '.join(missing)}")
        self.root = Path(root).resolve()
        self.dtype = dtype
        self.transform = transform
        self.frames = frames
        self._length = len(table)
        self._columns = {str(name): _column(table[name]) for name in table.columns}
        if "inode" in table.columns:
            inodes = pd.to_numeric(table["inode"], errors="coerce").to_numpy(np.float64)
        else:
            inodes = np.full(len(table), np.nan)
        self.inodes = inodes

    def __len__(self) -> int:
        return self._length

    def file(self, index: int) -> Path:
        """Absolute path of item ``index``'s TIFF."""
        return self.root / self._columns["path"][index]

    def record(self, index: int) -> dict:
        """The manifest row of item ``index`` as a dict, with ``index`` and ``file``."""
        record = {name: column[index] for name, column in self._columns.items()}
        record["index"] = index
        record["file"] = str(self.file(index))
        return record

    def __getitem__(self, index: int):
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} is out of range for {len(self)} items")
        index %= len(self)
        array, geometry = load_with_geometry(self.file(index), self.dtype, self.frames)
        record = self.record(index)
        record["geometry"] = geometry
        if self.transform is not None:
            array = self.transform(array)
        return array, record

    def sampler(
        self, block_size: int = 64, seed: int = 0, shuffle_within: bool = False
    ) -> InodeBlockSampler:
        """An :class:`InodeBlockSampler` over this dataset's inodes."""
        return InodeBlockSampler(self.inodes, block_size, seed, shuffle_within)

    def __repr__(self) -> str:
        return f"ManifestDataset({len(self)} items, root={str(self.root)!r}, dtype={self.dtype!r})"


class TextColumn:
    """Strings packed into one UTF-8 buffer with offsets: no Python object per row.

    A list of millions of ``str`` objects would be copied page by page into every forked
    DataLoader worker as reference counts change ("copy-on-read"); two NumPy arrays are not.
    Missing values read back as None.
    """

    def __init__(self, values):
        encoded = [None if _missing(v) else str(v).encode() for v in values]
        lengths = np.array([0 if e is None else len(e) for e in encoded], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])
        self.data = np.frombuffer(b"".join(e for e in encoded if e is not None), dtype=np.uint8)
        self.missing = np.array([e is None for e in encoded], dtype=bool)

    def __len__(self) -> int:
        return len(self.missing)

    def __getitem__(self, index: int) -> str | None:
        if self.missing[index]:
            return None
        return self.data[self.offsets[index] : self.offsets[index + 1]].tobytes().decode()


class NumberColumn:
    """Numbers as one NumPy array; items come back as Python int/float (None if missing)."""

    def __init__(self, values: pd.Series):
        numbers = pd.to_numeric(values, errors="coerce")
        self.missing = numbers.isna().to_numpy(bool)
        integral = pd.api.types.is_integer_dtype(numbers.dtype) or (
            not self.missing.all() and (numbers.dropna() % 1 == 0).all()
        )
        self.values = numbers.fillna(0).to_numpy(np.int64 if integral else np.float64)

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, index: int):
        return None if self.missing[index] else self.values[index].item()


def _missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def _column(values: pd.Series):
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values):
        return NumberColumn(values)
    return TextColumn(values)


def collate(batch: Sequence[tuple[np.ndarray, dict]]) -> tuple[np.ndarray, list[dict]]:
    """Batch ``(array, record)`` items: arrays stacked (all the same shape), records listed.

    For ``DataLoader(dataset, batch_size=n, collate_fn=collate)``; the arrays stay NumPy
    (``torch.from_numpy`` shares their memory).
    """
    arrays = [item[0] for item in batch]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(
            f"cannot stack arrays of different shapes {sorted(shapes)}; "
            "use the `size` option or batch_size=None"
        )
    return np.stack(arrays), [item[1] for item in batch]
