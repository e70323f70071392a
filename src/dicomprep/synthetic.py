"""Deterministic generators of realistic DICOM test files.

The DICOM test data that installs offline (pydicom, pydicom-data) holds no mammograms and no
breast tomosynthesis volumes, so the tests and the bundled sample synthesise them. Everything
here is deterministic: the same arguments give byte-identical files (pixels from
``numpy.random.default_rng(seed)``, UIDs derived from the arguments with
:func:`pydicom.uid.generate_uid` and fixed entropy, fixed dates and times).

Mammogram layout (``laterality="L"``; ``"R"`` is the mirror image)::

    +--------------------------------------+
    |                          [label ###] |   burned-in label, stored maximum (4095 @ 12 bit),
    |####                                  |   near the corner opposite the anatomy
    |#########                             |
    |############  breast: half-ellipse    |   stored 600..3000 (12 bit) with fibroglandular
    |#[m]#########  on the chest-wall edge |   texture and a skin-line falloff; [m] = marker
    |#########                             |   (tomosynthesis only, brightness encodes z)
    |####                                  |
    +--------------------------------------+   background: stored 0 (MONOCHROME2)

MONOCHROME1 files store ``max - value`` so that after the standard inversion the background is
still 0 and the label still the maximum. Window Center/Width (when written) map the background
to 0, the label to the maximum and the whole anatomy strictly inside ``(0, max)``.

Every file carries the identifying values in :data:`PATIENT_VALUES` (readable in the raw file
bytes for every transfer syntax except the deflated one), so a test can scan output bytes to
prove nothing identifying leaked.
"""

from __future__ import annotations

import copy
import io
import math
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom import config
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    JPEG2000,
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
    generate_uid,
)

__all__ = [
    "CT_IMAGE_STORAGE",
    "DIGITAL_MAMMOGRAPHY_FOR_PRESENTATION",
    "BREAST_TOMOSYNTHESIS_IMAGE_STORAGE",
    "PATIENT_VALUES",
    "SUPPORTED_TRANSFER_SYNTAXES",
    "LOSSLESS_TRANSFER_SYNTAXES",
    "Box",
    "MammogramLayout",
    "mammogram",
    "mammogram_layout",
    "mammogram_window",
    "tomosynthesis",
    "frame_marker_value",
    "frame_marker_box",
    "tomosynthesis_frame_order",
    "ct_slice",
    "encode",
    "write",
    "truncated_copy",
    "with_uids",
    "short_pixel_data",
    "derived_uid",
]

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

# --- transfer syntaxes -------------------------------------------------------------------------

_NATIVE = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
)
LOSSLESS_TRANSFER_SYNTAXES: tuple[UID, ...] = (
    *_NATIVE,
    RLELossless,
    JPEGLSLossless,
    JPEG2000Lossless,
)
"""Transfer syntaxes :func:`write` supports that reproduce the stored values exactly."""

SUPPORTED_TRANSFER_SYNTAXES: tuple[UID, ...] = (
    *LOSSLESS_TRANSFER_SYNTAXES,
    JPEGLSNearLossless,
    JPEG2000,
)
"""All transfer syntaxes :func:`write` can produce (JPEG baseline/lossless need an encoder
pydicom does not have; the bundled sample takes those from pydicom's own test files)."""

# --- helpers -----------------------------------------------------------------------------------


def derived_uid(*parts: object) -> UID:
    """A valid DICOM UID (pydicom root, at most 64 characters) derived only from ``parts``."""
    return generate_uid(entropy_srcs=["dicomprep.synthetic", *(repr(p) for p in parts)])


@dataclass(frozen=True)
class Box:
    """A pixel box: ``left``/``top`` inclusive, ``right``/``bottom`` exclusive."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    def union(self, other: Box) -> Box:
        return Box(
            min(self.left, other.left),
            min(self.top, other.top),
            max(self.right, other.right),
            max(self.bottom, other.bottom),
        )

    def slices(self) -> tuple[slice, slice]:
        """``(rows, columns)`` slices for indexing an image array."""
        return slice(self.top, self.bottom), slice(self.left, self.right)


@dataclass(frozen=True)
class MammogramLayout:
    """Where things are in a synthetic mammogram (or in every tomosynthesis frame)."""

    rows: int
    columns: int
    laterality: str
    anatomy: Box
    """Bounding box of the breast (touches the chest-wall edge)."""
    label: Box | None
    """Bounding box of the burned-in label (None without a label)."""
    marker: Box
    """The tomosynthesis frame marker (inside the anatomy, near the chest wall)."""

    @property
    def foreground(self) -> Box:
        """Union of anatomy and label: what a zero-border crop keeps."""
        return self.anatomy if self.label is None else self.anatomy.union(self.label)


def _max_value(bits_stored: int) -> int:
    if not 8 <= bits_stored <= 16:
        raise ValueError(f"bits_stored must be 8..16, got {bits_stored}")
    return (1 << bits_stored) - 1


def _anatomy_range(bits_stored: int) -> tuple[int, int]:
    """Stored (MONOCHROME2) value range of the anatomy: 600..3000 at 12 bits."""
    top = _max_value(bits_stored)
    return round(top * 600 / 4095), round(top * 3000 / 4095)


def mammogram_window(bits_stored: int = 12, photometric: str = "MONOCHROME2") -> tuple[int, int]:
    """``(center, width)`` written by the generators: background → 0, label → max, anatomy
    strictly inside. For MONOCHROME1 the window is mirrored onto the inverted stored values."""
    top = _max_value(bits_stored)
    center = round(top * 1900 / 4095)
    width = round(top * 3200 / 4095)
    if photometric == "MONOCHROME1":
        center = top + 1 - center
    return center, width


def _check_laterality(laterality: str) -> None:
    if laterality not in ("L", "R"):
        raise ValueError(f"laterality must be 'L' or 'R', got {laterality!r}")


def _check_photometric(photometric: str) -> None:
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"photometric must be MONOCHROME1 or MONOCHROME2, got {photometric!r}")


def _ellipse(rows: int, columns: int, scale: float = 1.0) -> tuple[float, float, float]:
    """Half-ellipse of a left breast: (semi-axis across, semi-axis along, centre row)."""
    return 0.60 * columns * scale, 0.44 * rows * (0.9 + 0.1 * scale), rows / 2.0


def _radius2(rows: int, columns: int, scale: float = 1.0) -> np.ndarray:
    """Squared normalised radius of the (left-breast) half-ellipse, float32 H×W."""
    a, b, cy = _ellipse(rows, columns, scale)
    xs = ((np.arange(columns, dtype=np.float32) + 0.5) / np.float32(a)) ** 2
    ys = ((np.arange(rows, dtype=np.float32) + 0.5 - np.float32(cy)) / np.float32(b)) ** 2
    return ys[:, None] + xs[None, :]


def _label_box(rows: int, columns: int, laterality: str) -> Box:
    height = max(8, round(0.045 * rows))
    width = max(24, round(0.16 * columns))
    top = max(1, round(0.03 * rows))
    margin = max(1, round(0.04 * columns))
    left = columns - margin - width if laterality == "L" else margin
    return Box(left, top, left + width, top + height)


def frame_marker_box(rows: int, columns: int, laterality: str = "L") -> Box:
    """The square that carries the tomosynthesis frame marker (inside the anatomy)."""
    size = max(4, round(0.025 * columns))
    left = max(1, round(0.04 * columns))
    if laterality == "R":
        left = columns - left - size
    top = rows // 2 - size // 2
    return Box(left, top, left + size, top + size)


def frame_marker_value(k: int, frames: int, bits_stored: int = 12) -> int:
    """Stored value (MONOCHROME2 sense) of the marker of the frame at z index ``k``.

    Rises linearly from the anatomy's minimum (k = 0) to its maximum (k = frames - 1), so the
    brightness of the marker square tells the frame's position along z, survives any monotonic
    windowing and stays linear under interpolation along z. For MONOCHROME1 the stored value is
    ``2**bits_stored - 1`` minus this (the displayed brightness is the same).
    """
    lo, hi = _anatomy_range(bits_stored)
    if frames <= 1:
        return lo
    return lo + round((hi - lo) * k / (frames - 1))


def mammogram_layout(
    rows: int = 3328, columns: int = 2560, laterality: str = "L", label: bool = True
) -> MammogramLayout:
    """The boxes of a :func:`mammogram` with these arguments (computed from the same masks)."""
    _check_laterality(laterality)
    inside = _radius2(rows, columns) <= 1.0
    if laterality == "R":
        inside = inside[:, ::-1]
    r_any = np.flatnonzero(inside.any(axis=1))
    c_any = np.flatnonzero(inside.any(axis=0))
    anatomy = Box(int(c_any[0]), int(r_any[0]), int(c_any[-1]) + 1, int(r_any[-1]) + 1)
    return MammogramLayout(
        rows=rows,
        columns=columns,
        laterality=laterality,
        anatomy=anatomy,
        label=_label_box(rows, columns, laterality) if label else None,
        marker=frame_marker_box(rows, columns, laterality),
    )


def _value_noise(rng: np.random.Generator, rows: int, columns: int, cell: int) -> np.ndarray:
    """Smooth noise: a coarse Gaussian grid, randomly offset, upsampled with smoothstep weights."""
    cell = max(1, cell)
    grid = rng.standard_normal((rows // cell + 3, columns // cell + 3)).astype(np.float32)
    offsets = rng.uniform(0.0, 1.0, size=2)

    def axis(n: int, offset: float) -> tuple[np.ndarray, np.ndarray]:
        pos = np.arange(n, dtype=np.float32) / np.float32(cell) + np.float32(offset)
        idx = pos.astype(np.intp)
        w = pos - idx
        return idx, (w * w * (3 - 2 * w)).astype(np.float32)

    ri, rw = axis(rows, offsets[0])
    ci, cw = axis(columns, offsets[1])
    tmp = grid[ri] * (1 - rw)[:, None] + grid[ri + 1] * rw[:, None]
    return tmp[:, ci] * (1 - cw)[None, :] + tmp[:, ci + 1] * cw[None, :]


def _texture(rng: np.random.Generator, rows: int, columns: int, ref: int) -> np.ndarray:
    """Fibroglandular texture in [0, 1]: four octaves of low-pass noise with non-commensurate
    cell sizes (so no grid shows), float32."""
    tex = _value_noise(rng, rows, columns, ref // 5)
    for weight, divisor in ((0.6, 17), (0.35, 53), (0.15, 160)):
        tex += np.float32(weight) * _value_noise(rng, rows, columns, ref // divisor)
    lo, hi = float(tex.min()), float(tex.max())
    tex -= np.float32(lo)
    tex *= np.float32(1.0 / max(hi - lo, 1e-6))
    return tex


def _breast(r2: np.ndarray, tex: np.ndarray, noise: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Stored MONOCHROME2 values of a left breast (0 outside), uint16, within ``lo..hi``.

    Dense (glandular) tissue concentrates in the centre, fatty tissue towards the skin; the
    projected thickness falls off towards the skin line; ``noise`` (unit Gaussian) adds
    quantum noise of 0.5 % of the anatomy's range so the image compresses like a real one."""
    inner = np.clip(1.0 - r2, 0.0, 1.0)
    thickness = np.sqrt(inner)
    # Skin-line falloff: full density from ~1/3 of the thickness inwards.
    falloff = np.minimum(thickness * np.float32(1 / 0.35), np.float32(1.0))
    density = np.float32(0.25) + np.float32(0.45) * tex + np.float32(0.30) * inner * tex
    value = falloff * density
    value += noise * np.float32(0.005)
    value *= np.float32(hi - lo)
    value += np.float32(lo)
    np.clip(value, lo, hi, out=value)
    out = np.rint(value).astype(np.uint16)
    out[r2 > 1.0] = 0
    return out


def _draw_label(img: np.ndarray, box: Box, value: int) -> None:
    """A burned-in label: an outlined rectangle with a few character-like bars at ``value``."""
    region = img[box.slices()]
    region[...] = 0
    h, w = region.shape
    t = max(1, h // 10)
    region[:t, :] = value
    region[-t:, :] = value
    region[:, :t] = value
    region[:, -t:] = value
    # "Text": bars of varying width and height, one pixel-ish gaps between them.
    inner_top, inner_bottom = 2 * t + 1, h - 2 * t - 1
    x = 2 * t + 1
    widths = (3, 1, 2, 2, 1, 3, 2, 1, 2)
    unit = max(1, (w - 4 * t) // 22)
    for i, cw in enumerate(widths):
        bar = cw * unit
        if x + bar > w - 2 * t - 1 or inner_bottom <= inner_top:
            break
        top = inner_top + (i % 3 == 1) * max(1, (inner_bottom - inner_top) // 3)
        region[top:inner_bottom, x : x + bar] = value
        x += bar + unit


def _patient_module(ds: Dataset) -> None:
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


def _new_dataset(sop_class: UID, study_uid: str, series_uid: str, sop_uid: str) -> Dataset:
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
    _patient_module(ds)
    return ds


def _image_pixel_module(
    ds: Dataset, rows: int, columns: int, bits_stored: int, photometric: str, signed: bool = False
) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 8 if bits_stored <= 8 else 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0


def _set_pixels(ds: Dataset, arr: np.ndarray) -> None:
    dtype = (
        np.uint8 if ds.BitsAllocated == 8 else (np.int16 if ds.PixelRepresentation else np.uint16)
    )
    ds.PixelData = np.ascontiguousarray(arr, dtype=dtype).tobytes()
    ds["PixelData"].VR = "OB" if ds.BitsAllocated == 8 else "OW"


def _apply_photometric(img: np.ndarray, photometric: str, top: int) -> np.ndarray:
    if photometric == "MONOCHROME1":
        return (top - img.astype(np.int32)).astype(img.dtype)
    return img


# --- mammogram ---------------------------------------------------------------------------------


def mammogram(
    *,
    rows: int = 3328,
    columns: int = 2560,
    bits_stored: int = 12,
    photometric: str = "MONOCHROME2",
    laterality: str = "L",
    label: bool = True,
    window: bool = True,
    seed: int = 0,
    study_uid: str | None = None,
    sop_uid: str | None = None,
    pixel_spacing: tuple[float, float] = (0.07, 0.07),
) -> Dataset:
    """A Digital Mammography X-Ray Image (For Presentation), CC view.

    Zero background (MONOCHROME2 stored 0; MONOCHROME1 stored maximum); the breast a
    half-ellipse on the chest-wall edge (``"L"``: left image edge, ``"R"``: right edge) covering
    about 60 % of the width, with smooth texture in 600..3000 (12 bit, scaled for other depths)
    and a skin-line falloff; a burned-in label at the stored maximum near the opposite top
    corner (see :func:`mammogram_layout`). ``window=True`` writes the Window Center/Width of
    :func:`mammogram_window`. UIDs default to values derived from the arguments.
    """
    _check_laterality(laterality)
    _check_photometric(photometric)
    top = _max_value(bits_stored)
    lo, hi = _anatomy_range(bits_stored)
    args = (rows, columns, bits_stored, photometric, laterality, label, window, seed)
    args += (tuple(pixel_spacing),)
    study_uid = study_uid or derived_uid("study", seed)
    series_uid = derived_uid("mg-series", study_uid, laterality, photometric)
    sop_uid = sop_uid or derived_uid("mg", study_uid, *args)

    rng = np.random.default_rng(seed)
    tex = _texture(rng, rows, columns, rows)
    noise = rng.standard_normal((rows, columns), dtype=np.float32)
    img = _breast(_radius2(rows, columns), tex, noise, lo, hi)
    if laterality == "R":
        img = np.ascontiguousarray(img[:, ::-1])
    if label:
        _draw_label(img, _label_box(rows, columns, laterality), top)
    img = _apply_photometric(img, photometric, top)

    ds = _new_dataset(DIGITAL_MAMMOGRAPHY_FOR_PRESENTATION, study_uid, series_uid, sop_uid)
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.Modality = "MG"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.SeriesNumber = 1 if laterality == "R" else 2
    ds.InstanceNumber = 1
    ds.BodyPartExamined = "BREAST"
    ds.ViewPosition = "CC"
    ds.ImageLaterality = laterality
    ds.Laterality = laterality
    ds.PatientOrientation = ["A", "R"] if laterality == "L" else ["P", "L"]
    ds.BurnedInAnnotation = "YES" if label else "NO"
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = 1 if photometric == "MONOCHROME2" else -1
    ds.PresentationLUTShape = "IDENTITY" if photometric == "MONOCHROME2" else "INVERSE"
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    ds.PixelSpacing = [float(pixel_spacing[0]), float(pixel_spacing[1])]
    ds.ImagerPixelSpacing = [float(pixel_spacing[0]), float(pixel_spacing[1])]
    ds.LossyImageCompression = "00"
    if window:
        center, width = mammogram_window(bits_stored, photometric)
        ds.WindowCenter = center
        ds.WindowWidth = width
        ds.WindowCenterWidthExplanation = "SYNTHETIC"
    _image_pixel_module(ds, rows, columns, bits_stored, photometric)
    _set_pixels(ds, img)
    return ds


# --- tomosynthesis -----------------------------------------------------------------------------


def tomosynthesis_frame_order(frames: int, seed: int = 0, shuffled: bool = False) -> list[int]:
    """z index ``k`` of each stored frame: identity, or a fixed non-identity permutation."""
    order = list(range(frames))
    if shuffled and frames > 1:
        perm = np.random.default_rng([seed, 0x70B0]).permutation(frames)
        if np.array_equal(perm, np.arange(frames)):
            perm = np.roll(perm, 1)
        order = [int(k) for k in perm]
    return order


def _item(**elements: object) -> Dataset:
    item = Dataset()
    for key, value in elements.items():
        setattr(item, key, value)
    return item


def tomosynthesis(
    *,
    frames: int = 50,
    rows: int = 1664,
    columns: int = 1280,
    bits_stored: int = 12,
    photometric: str = "MONOCHROME2",
    laterality: str = "L",
    label: bool = True,
    seed: int = 0,
    shuffled: bool = False,
    per_frame_voi: bool = False,
    study_uid: str | None = None,
    sop_uid: str | None = None,
) -> Dataset:
    """A Breast Tomosynthesis Image (enhanced multi-frame), one frame per 1 mm slice.

    Frame at z index ``k`` (0-based) lies at ImagePositionPatient ``[0, 0, k]`` with
    InStackPositionNumber ``k + 1``. The breast half-ellipse widens towards the middle slices
    and its texture shifts 2 pixels per slice, so the anatomy changes smoothly with z. Each
    frame has a marker square (:func:`frame_marker_box`, inside the anatomy near the chest wall)
    filled with :func:`frame_marker_value` ``(k, frames, bits_stored)``: its brightness rises
    linearly with ``k``. The label (if any) is the same on every frame.

    ``shuffled=True`` stores the frames in the order :func:`tomosynthesis_frame_order` gives
    (pixel data and per-frame positions permuted together), so ordering by position recovers z.
    The window sits in the shared FrameVOILUTSequence, or with ``per_frame_voi`` one per frame,
    centres rising by z from ``center - 5 %`` to ``center + 5 %`` of the stored range (the
    anatomy stays strictly inside every window).
    """
    _check_laterality(laterality)
    _check_photometric(photometric)
    if frames < 1:
        raise ValueError("frames must be >= 1")
    top = _max_value(bits_stored)
    lo, hi = _anatomy_range(bits_stored)
    args = (frames, rows, columns, bits_stored, photometric, laterality, label, seed)
    args += (shuffled, per_frame_voi)
    study_uid = study_uid or derived_uid("study", seed)
    series_uid = derived_uid("bto-series", study_uid, laterality, photometric)
    sop_uid = sop_uid or derived_uid("bto", study_uid, *args)
    order = tomosynthesis_frame_order(frames, seed, shuffled)
    center, width = mammogram_window(bits_stored, photometric)

    def voi_center(k: int) -> int:
        if frames <= 1:
            return center
        offset = round(0.05 * top * (2 * k / (frames - 1) - 1))
        return center - offset if photometric == "MONOCHROME1" else center + offset

    shift = 2
    rng = np.random.default_rng(seed)
    tex = _texture(rng, rows + shift * (frames - 1), columns, rows)
    # One noise field; each frame reads it at its own row offset (independent-looking noise).
    noise_step = 13
    noise = rng.standard_normal((rows + noise_step * (frames - 1), columns), dtype=np.float32)
    label_box = _label_box(rows, columns, laterality)
    marker = frame_marker_box(rows, columns, laterality)
    volume = np.empty((frames, rows, columns), dtype=np.uint8 if bits_stored <= 8 else np.uint16)
    for i, k in enumerate(order):
        scale = 0.85 + 0.15 * math.sin(math.pi * (k + 0.5) / frames)
        img = _breast(
            _radius2(rows, columns, scale),
            tex[k * shift : k * shift + rows],
            noise[k * noise_step : k * noise_step + rows],
            lo,
            hi,
        )
        if laterality == "R":
            img = img[:, ::-1]
        img[marker.slices()] = frame_marker_value(k, frames, bits_stored)
        if label:
            _draw_label(img, label_box, top)
        volume[i] = _apply_photometric(img, photometric, top)

    ds = _new_dataset(BREAST_TOMOSYNTHESIS_IMAGE_STORAGE, study_uid, series_uid, sop_uid)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "TOMOSYNTHESIS", "NONE"]
    ds.Modality = "MG"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.SeriesNumber = 3 if laterality == "R" else 4
    ds.InstanceNumber = 1
    ds.BodyPartExamined = "BREAST"
    ds.ViewPosition = "CC"
    ds.Laterality = laterality
    ds.BurnedInAnnotation = "YES" if label else "NO"
    ds.PresentationLUTShape = "IDENTITY" if photometric == "MONOCHROME2" else "INVERSE"
    ds.PixelIntensityRelationship = "LOG"
    ds.LossyImageCompression = "00"
    ds.NumberOfFrames = frames
    ds.ContentQualification = "RESEARCH"

    shared = _item(
        PixelMeasuresSequence=DicomSequence(
            [_item(PixelSpacing=[0.1, 0.1], SliceThickness=1.0, SpacingBetweenSlices=1.0)]
        ),
        PlaneOrientationSequence=DicomSequence([_item(ImageOrientationPatient=[1, 0, 0, 0, 1, 0])]),
        PixelValueTransformationSequence=DicomSequence(
            [_item(RescaleIntercept=0, RescaleSlope=1, RescaleType="US")]
        ),
        FrameAnatomySequence=DicomSequence(
            [
                _item(
                    FrameLaterality=laterality,
                    AnatomicRegionSequence=DicomSequence(
                        [
                            _item(
                                CodeValue="76752008",
                                CodingSchemeDesignator="SCT",
                                CodeMeaning="Breast",
                            )
                        ]
                    ),
                )
            ]
        ),
    )
    if not per_frame_voi:
        shared.FrameVOILUTSequence = DicomSequence(
            [_item(WindowCenter=center, WindowWidth=width, WindowCenterWidthExplanation="SYN")]
        )
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])

    per_frame = []
    for k in order:
        item = _item(
            FrameContentSequence=DicomSequence([_item(StackID="1", InStackPositionNumber=k + 1)]),
            PlanePositionSequence=DicomSequence([_item(ImagePositionPatient=[0.0, 0.0, float(k)])]),
        )
        if per_frame_voi:
            item.FrameVOILUTSequence = DicomSequence(
                [_item(WindowCenter=voi_center(k), WindowWidth=width)]
            )
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)

    _image_pixel_module(ds, rows, columns, bits_stored, photometric)
    _set_pixels(ds, volume)
    return ds


# --- CT ----------------------------------------------------------------------------------------


def ct_slice(
    *,
    rows: int = 128,
    columns: int = 128,
    index: int = 0,
    seed: int = 0,
    study_uid: str | None = None,
    series_uid: str | None = None,
) -> Dataset:
    """An axial CT slice: int16 stored, Rescale Slope 1 / Intercept −1024 (HU = stored − 1024).

    Air outside the body is exactly −1000 HU, a water annulus exactly 0 HU, a bone ring exactly
    +1000 HU, and the inside soft tissue (≈40 HU, noisy) holds a +80 HU lesion whose radius
    grows with ``index``. Window 40/400. Slice ``index`` lies at z = 2.5·index mm.
    """
    study_uid = study_uid or derived_uid("study", seed)
    series_uid = series_uid or derived_uid("ct-series", study_uid, rows, columns)
    sop_uid = derived_uid("ct", series_uid, rows, columns, index, seed)
    n = min(rows, columns)
    yy = np.arange(rows, dtype=np.float32)[:, None] + 0.5 - rows / 2
    xx = np.arange(columns, dtype=np.float32)[None, :] + 0.5 - columns / 2
    r = np.sqrt(yy * yy + xx * xx) / n

    rng = np.random.default_rng([seed, index])
    hu = np.full((rows, columns), -1000, dtype=np.int16)
    hu[r <= 0.45] = 0
    hu[r <= 0.38] = 1000
    inner = r <= 0.33
    tissue = 40 + np.rint(rng.normal(0.0, 8.0, size=(rows, columns))).astype(np.int16)
    hu[inner] = tissue[inner]
    lesion_r = 0.04 + 0.02 * index
    ly = yy / n + 0.10
    lx = xx / n - 0.08
    hu[(np.sqrt(ly * ly + lx * lx) <= lesion_r) & inner] += 80

    ds = _new_dataset(CT_IMAGE_STORAGE, study_uid, series_uid, sop_uid)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.Modality = "CT"
    ds.SeriesNumber = 5
    ds.InstanceNumber = index + 1
    ds.BodyPartExamined = "CHEST"
    ds.KVP = 120
    ds.SliceThickness = 2.5
    ds.PixelSpacing = [0.7, 0.7]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [-0.35 * columns, -0.35 * rows, 2.5 * index]
    ds.SliceLocation = 2.5 * index
    ds.PatientPosition = "HFS"
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    _image_pixel_module(ds, rows, columns, 16, "MONOCHROME2", signed=True)
    _set_pixels(ds, hu.astype(np.int32) + 1024)
    return ds


# --- writing -----------------------------------------------------------------------------------


def encode(ds: Dataset, transfer_syntax: str = ExplicitVRLittleEndian) -> bytes:
    """The bytes of ``ds`` as a DICOM file (preamble + meta) in ``transfer_syntax``.

    ``ds`` itself is not modified. Native syntaxes are written directly (big endian with the
    pixel words byte-swapped); RLE Lossless uses pylibjpeg-rle when available, JPEG-LS uses
    pyjpegls, JPEG 2000 uses pylibjpeg-openjpeg (lossy: compression ratio 10).
    """
    ts = UID(transfer_syntax)
    if ts not in SUPPORTED_TRANSFER_SYNTAXES:
        raise ValueError(f"unsupported transfer syntax {ts} ({ts.name})")
    if ts.is_compressed and "PixelData" not in ds:
        raise ValueError("cannot compress a dataset without Pixel Data")
    out = copy.deepcopy(ds)
    if not hasattr(out, "file_meta"):
        out.file_meta = FileMetaDataset()
    if ts.is_compressed:
        kwargs: dict[str, object] = {"generate_instance_uid": False}
        if ts == RLELossless:
            from pydicom.pixels.encoders import RLELosslessEncoder

            if "pylibjpeg" in RLELosslessEncoder.available_plugins:
                kwargs["encoding_plugin"] = "pylibjpeg"
        elif ts == JPEG2000:
            kwargs["j2k_cr"] = [10]
        elif ts == JPEGLSNearLossless:
            kwargs["jls_error"] = 2
        out.compress(ts, **kwargs)
        out.LossyImageCompression = "01" if ts in (JPEG2000, JPEGLSNearLossless) else "00"
        if ts in (JPEG2000, JPEGLSNearLossless):
            out.LossyImageCompressionMethod = "ISO_15444_1" if ts == JPEG2000 else "ISO_14495_1"
    else:
        out.file_meta.TransferSyntaxUID = ts
        if ts == ExplicitVRBigEndian and "PixelData" in out and out.get("BitsAllocated", 8) > 8:
            # pydicom writes OW pixel bytes as they are: swap them to big endian ourselves.
            dtype = np.dtype(f"<u{out.BitsAllocated // 8}")
            words = np.frombuffer(out.PixelData, dtype=dtype)
            out.PixelData = words.astype(dtype.newbyteorder(">")).tobytes()
            out["PixelData"].VR = "OW"
    out.file_meta.MediaStorageSOPClassUID = out.SOPClassUID
    out.file_meta.MediaStorageSOPInstanceUID = out.SOPInstanceUID
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with config.disable_value_validation():
            out.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def encode_without_meta(ds: Dataset, implicit_vr: bool = True) -> bytes:
    """The bytes of ``ds`` as a bare dataset: no preamble, no file meta information (the
    pre-Part-10 layout of old archives), little endian, implicit or explicit VR."""
    out = copy.deepcopy(ds)
    out.file_meta = FileMetaDataset()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with config.disable_value_validation():
            pydicom.dcmwrite(
                buf, out, implicit_vr=implicit_vr, little_endian=True, enforce_file_format=False
            )
    return buf.getvalue()


def deflate_bomb(
    path: str | Path, inflated_bytes: int = 256 * 2**20, rows: int = 64, columns: int = 64
) -> Path:
    """A small deflated file whose Pixel Data inflates to ``inflated_bytes`` zero bytes
    although its header describes a ``rows x columns`` 16-bit image.

    Written in a stream: the zeros are never held in memory.
    """
    ds = mammogram(rows=rows, columns=columns, label=False)
    del ds.PixelData
    data = encode(ds, DeflatedExplicitVRLittleEndian)
    from pydicom.filereader import _read_file_meta_info, read_preamble

    f = io.BytesIO(data)
    read_preamble(f, force=False)
    _read_file_meta_info(f)
    start = f.tell()
    dataset = zlib.decompress(data[start:], -zlib.MAX_WBITS)
    length = inflated_bytes + inflated_bytes % 2
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    zeros = bytes(2**20)
    with open(path, "wb") as out:
        out.write(data[:start])
        out.write(deflater.compress(dataset))
        out.write(deflater.compress(b"\xe0\x7f\x10\x00OW\x00\x00" + length.to_bytes(4, "little")))
        for done in range(0, length, len(zeros)):
            out.write(deflater.compress(zeros[: min(len(zeros), length - done)]))
        out.write(deflater.flush())
    return path


def _write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write(ds: Dataset, path: str | Path, transfer_syntax: str = ExplicitVRLittleEndian) -> Path:
    """Write ``ds`` to ``path`` (parents created) in ``transfer_syntax``; see :func:`encode`."""
    return _write_bytes(path, encode(ds, transfer_syntax))


def _pixel_data_offset(data: bytes) -> int | None:
    """Byte offset where the top-level Pixel Data value starts, if it can be found."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(io.BytesIO(data), defer_size=64)
    elem = ds.get_item(0x7FE00010)
    if elem is None:
        return None
    # pydicom 3: DataElement.file_tell; older: RawDataElement.value_tell.
    tell = getattr(elem, "file_tell", None)
    return tell if tell is not None else getattr(elem, "value_tell", None)


def truncated_copy(src: str | Path, dest: str | Path, keep_fraction: float = 0.6) -> Path:
    """Copy the first ``keep_fraction`` of ``src``'s bytes to ``dest``, cutting inside the pixel
    data (at least 16 bytes of it kept and at least 16 bytes missing)."""
    data = Path(src).read_bytes()
    cut = int(len(data) * keep_fraction)
    start = _pixel_data_offset(data)
    if start is not None:
        cut = min(max(cut, start + 16), len(data) - 16)
    if not 0 < cut < len(data):
        raise ValueError(f"{src}: too small to truncate")
    return _write_bytes(dest, data[:cut])


def with_uids(
    src_or_ds: str | Path | Dataset,
    dest: str | Path,
    *,
    study_uid: str | None = None,
    sop_uid: str | None = None,
) -> Path:
    """Write ``src_or_ds`` to ``dest`` (same transfer syntax) with other Study/SOP Instance UIDs.

    The values are written exactly as given, even when they are not valid UIDs (``"../x"``,
    ``"1.2/3"``, ``"1.2 3"``, ``"1..2"``, longer than 64 characters, empty): that is the point.
    ``None`` keeps the current value.
    """
    ds = copy.deepcopy(src_or_ds) if isinstance(src_or_ds, Dataset) else pydicom.dcmread(src_or_ds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with config.disable_value_validation():
            if study_uid is not None:
                ds.StudyInstanceUID = study_uid
            if sop_uid is not None:
                ds.SOPInstanceUID = sop_uid
                ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
            buf = io.BytesIO()
            if ds.file_meta.get("MediaStorageSOPInstanceUID"):
                ds.save_as(buf, enforce_file_format=True)
            else:
                # pydicom refuses an empty SOP Instance UID in the file meta when it enforces the
                # file format: complete the meta by hand and write it as it is (pydicom still
                # recomputes a group length that is present).
                meta = ds.file_meta
                meta.FileMetaInformationGroupLength = 0
                if "FileMetaInformationVersion" not in meta:
                    meta.FileMetaInformationVersion = b"\x00\x01"
                if "ImplementationClassUID" not in meta:
                    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
                if "ImplementationVersionName" not in meta:
                    meta.ImplementationVersionName = f"PYDICOM {pydicom.__version__}"
                ds.preamble = b"\0" * 128
                ds.save_as(buf, enforce_file_format=False)
    return _write_bytes(dest, buf.getvalue())


def short_pixel_data(src: str | Path | Dataset, dest: str | Path) -> Path:
    """Write ``src`` (native transfer syntax) with Pixel Data holding only half the bytes that
    Rows × Columns × frames × samples need."""
    ds = copy.deepcopy(src) if isinstance(src, Dataset) else pydicom.dcmread(src)
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        raise ValueError("short_pixel_data needs a native (uncompressed) transfer syntax")
    data = ds.PixelData
    keep = len(data) // 2
    keep -= keep % 2
    ds.PixelData = data[:keep]
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(buf, enforce_file_format=True)
    return _write_bytes(dest, buf.getvalue())
