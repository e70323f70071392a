"""The training side: in-memory preprocessing, loading, datasets, read order, annotations.

=========================  ============================================================
:func:`preprocess`         a DICOM path or bytes → (frames, H, W, C) array + Geometry
:func:`load`               a dicomprep TIFF → (frames, H, W, C) uint8/uint16/float32
:class:`ManifestDataset`   map-style dataset over a manifest (DataLoader, multiprocessing)
:func:`inode_block_order`  inode order cut into shuffled blocks, per (seed, epoch)
:class:`InodeBlockSampler` the same as a DataLoader sampler with ``set_epoch``
:func:`map_annotations`    annotation boxes/points between source and output pixels
:func:`validate_file`      what a run does with a DICOM file: ok, skipped or blocker
=========================  ============================================================
"""

from dicomprep.training.annotations import map_annotations, map_coco
from dicomprep.training.dataset import ManifestDataset, collate
from dicomprep.training.load import load, load_with_geometry
from dicomprep.training.order import InodeBlockSampler, inode_block_order
from dicomprep.training.preprocess import preprocess
from dicomprep.training.validate import validate_file

__all__ = [
    "InodeBlockSampler",
    "ManifestDataset",
    "collate",
    "inode_block_order",
    "load",
    "load_with_geometry",
    "map_annotations",
    "map_coco",
    "preprocess",
    "validate_file",
]
