"""DICOM building blocks shared by the generators: SOP classes, UIDs, the identifying values.

Every synthetic file carries the identifying values in :data:`PATIENT_VALUES` (readable in the
raw file bytes for every transfer syntax except the deflated one), so a test can scan output
bytes to prove nothing identifying leaked.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

DIGITAL_MAMMOGRAPHY_FOR_PRESENTATION = UID("1.2.840.10008.5.1.4.1.1.1.2")
BREAST_TOMOSYNTHESIS_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.13.1.3")
CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")

# --- identifying values ------------------------------------------------------------------------

_PATIENT_NAME = "SYNTHETIC^JANE^Q"
_PATIENT_ID = "SYN-PID-4242"
_BIRTH_DATE = "19610315"
_ACCESSION = "SYNACC-90817"
_INSTITUTION = "Synthetic Breast Centre Ostholm"
_INSTITUTION_ADDRESS = "17 Imaginary Lane, Ostholm"
_REFERRING = "SYNDOC^WALTER^K"
_OPERATOR = "SYNTECH^MARTA"
_OTHER_IDS = "SYN-OTHER-7731"
_STATION = "SYNSTATION-9"
_STUDY_DATE = "20190723"
_STUDY_TIME = "101530"
_STUDY_ID = "SYNSTUDY-55"

PATIENT_VALUES: tuple[str, ...] = (
    _PATIENT_NAME,
    _PATIENT_ID,
    _BIRTH_DATE,
    _ACCESSION,
    _INSTITUTION,
    _INSTITUTION_ADDRESS,
    _REFERRING,
    _OPERATOR,
    _OTHER_IDS,
    _STATION,
    _STUDY_DATE,
    _STUDY_ID,
)
"""Distinctive identifying strings written into every synthetic file (names, IDs, dates)."""


# The entropy prefix is part of every synthetic UID (and so of every output's name): changing
# it changes all of them.
_UID_ENTROPY = "dicomprep.synthetic"


def derived_uid(*parts: object) -> UID:
    """A valid DICOM UID (pydicom root, at most 64 characters) derived only from ``parts``."""
    return generate_uid(entropy_srcs=[_UID_ENTROPY, *(repr(p) for p in parts)])


def patient_module(ds: Dataset) -> None:
    """Write the identifying values (patient, study, institution, staff) into ``ds``."""
    ds.PatientName = _PATIENT_NAME
    ds.PatientID = _PATIENT_ID
    ds.PatientBirthDate = _BIRTH_DATE
    ds.PatientSex = "F"
    ds.OtherPatientIDs = _OTHER_IDS
    ds.StudyDate = _STUDY_DATE
    ds.StudyTime = _STUDY_TIME
    ds.SeriesDate = _STUDY_DATE
    ds.SeriesTime = _STUDY_TIME
    ds.ContentDate = _STUDY_DATE
    ds.ContentTime = _STUDY_TIME
    ds.AccessionNumber = _ACCESSION
    ds.StudyID = _STUDY_ID
    ds.InstitutionName = _INSTITUTION
    ds.InstitutionAddress = _INSTITUTION_ADDRESS
    ds.ReferringPhysicianName = _REFERRING
    ds.OperatorsName = _OPERATOR
    ds.StationName = _STATION
    ds.Manufacturer = "dicomprep synthetic"
    ds.ManufacturerModelName = "synthetic generator"
    ds.SpecificCharacterSet = "ISO_IR 100"


def new_dataset(sop_class: UID, study_uid: str, series_uid: str, sop_uid: str) -> Dataset:
    """A data set of ``sop_class`` with file meta, these UIDs and the identifying values."""
    ds = Dataset()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = derived_uid("frame-of-reference", study_uid)
    patient_module(ds)
    return ds


def image_pixel_module(
    ds: Dataset, rows: int, columns: int, bits_stored: int, photometric: str, signed: bool = False
) -> None:
    """Write the Image Pixel module's attributes (one sample per pixel) into ``ds``."""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 8 if bits_stored <= 8 else 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0


def set_pixels(ds: Dataset, arr: np.ndarray) -> None:
    """Store ``arr`` as ``ds``'s Pixel Data in the type its Bits Allocated and sign say."""
    dtype = (
        np.uint8 if ds.BitsAllocated == 8 else (np.int16 if ds.PixelRepresentation else np.uint16)
    )
    ds.PixelData = np.ascontiguousarray(arr, dtype=dtype).tobytes()
    ds["PixelData"].VR = "OB" if ds.BitsAllocated == 8 else "OW"


def item(**elements: object) -> Dataset:
    """A sequence item holding ``elements`` (keyword → value)."""
    out = Dataset()
    for key, value in elements.items():
        setattr(out, key, value)
    return out
