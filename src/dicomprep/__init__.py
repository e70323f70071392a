"""dicomprep: DICOM collections to TIFF files and a manifest for training.

The training helpers are importable from here (``dicomprep.preprocess``,
``dicomprep.load``, ``dicomprep.ManifestDataset``, ...); they are imported on first use,
so ``import dicomprep`` itself stays cheap.
"""

__version__ = "0.1.0"

# The training side's names (dicomprep.training.__all__), listed here so that looking them
# up does not import the training side before it is used; a test holds the two equal.
_TRAINING = (
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
)

__all__ = ["__version__", *_TRAINING]


def __getattr__(name: str):
    if name in _TRAINING:
        from dicomprep import training

        return getattr(training, name)
    raise AttributeError(f"module 'dicomprep' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_TRAINING))
