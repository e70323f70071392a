"""dicomprep: DICOM collections to TIFF files and a manifest for training."""

__version__ = "0.1.0"
