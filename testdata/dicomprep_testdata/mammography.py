"""Synthetic mammograms and breast tomosynthesis volumes (layout: :mod:`.layout`).

Deterministic: pixels from ``numpy.random.default_rng(seed)``, UIDs derived from the
arguments (:func:`.datasets.derived_uid`), fixed dates and times.
"""

from __future__ import annotations

import math

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from dicomprep_testdata.datasets import (
    BREAST_TOMOSYNTHESIS_IMAGE_STORAGE,
    DIGITAL_MAMMOGRAPHY_FOR_PRESENTATION,
    derived_uid,
    image_pixel_module,
    item,
    new_dataset,
    set_pixels,
)
from dicomprep_testdata.layout import (
    Box,
    anatomy_range,
    check_laterality,
    check_photometric,
    frame_marker_box,
    frame_marker_value,
    label_box,
    mammogram_window,
    max_value,
    radius2,
)

# --- pixels ------------------------------------------------------------------------------------


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


def _apply_photometric(img: np.ndarray, photometric: str, top: int) -> np.ndarray:
    """MONOCHROME2 values as stored under ``photometric`` (MONOCHROME1: ``top - value``)."""
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
    check_laterality(laterality)
    check_photometric(photometric)
    top = max_value(bits_stored)
    lo, hi = anatomy_range(bits_stored)
    args = (rows, columns, bits_stored, photometric, laterality, label, window, seed)
    args += (tuple(pixel_spacing),)
    study_uid = study_uid or derived_uid("study", seed)
    series_uid = derived_uid("mg-series", study_uid, laterality, photometric)
    sop_uid = sop_uid or derived_uid("mg", study_uid, *args)

    rng = np.random.default_rng(seed)
    tex = _texture(rng, rows, columns, rows)
    noise = rng.standard_normal((rows, columns), dtype=np.float32)
    img = _breast(radius2(rows, columns), tex, noise, lo, hi)
    if laterality == "R":
        img = np.ascontiguousarray(img[:, ::-1])
    if label:
        _draw_label(img, label_box(rows, columns, laterality), top)
    img = _apply_photometric(img, photometric, top)

    ds = new_dataset(DIGITAL_MAMMOGRAPHY_FOR_PRESENTATION, study_uid, series_uid, sop_uid)
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
    image_pixel_module(ds, rows, columns, bits_stored, photometric)
    set_pixels(ds, img)
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
    check_laterality(laterality)
    check_photometric(photometric)
    if frames < 1:
        raise ValueError("frames must be >= 1")
    args = (frames, rows, columns, bits_stored, photometric, laterality, label, seed)
    args += (shuffled, per_frame_voi)
    study_uid = study_uid or derived_uid("study", seed)
    series_uid = derived_uid("bto-series", study_uid, laterality, photometric)
    sop_uid = sop_uid or derived_uid("bto", study_uid, *args)
    order = tomosynthesis_frame_order(frames, seed, shuffled)
    look = (bits_stored, photometric, laterality, label)
    volume = _tomosynthesis_volume(order, rows, columns, seed, *look)

    ds = new_dataset(BREAST_TOMOSYNTHESIS_IMAGE_STORAGE, study_uid, series_uid, sop_uid)
    _tomosynthesis_header(ds, frames, photometric, laterality, label)
    shared = _shared_groups(laterality)
    if not per_frame_voi:
        center, width = mammogram_window(bits_stored, photometric)
        shared.FrameVOILUTSequence = DicomSequence(
            [item(WindowCenter=center, WindowWidth=width, WindowCenterWidthExplanation="SYN")]
        )
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    ds.PerFrameFunctionalGroupsSequence = _per_frame_groups(
        order, bits_stored, photometric, per_frame_voi
    )
    image_pixel_module(ds, rows, columns, bits_stored, photometric)
    set_pixels(ds, volume)
    return ds


def _tomosynthesis_volume(
    order: list[int],
    rows: int,
    columns: int,
    seed: int,
    bits_stored: int,
    photometric: str,
    laterality: str,
    label: bool,
) -> np.ndarray:
    """The stored frames (``order[i]`` is the z index of frame ``i``), frames × rows × columns.

    One texture 2 rows taller per frame, each frame reading it 2 rows further down; one noise
    field, each frame reading it 13 rows further down (independent-looking noise)."""
    frames = len(order)
    top = max_value(bits_stored)
    lo, hi = anatomy_range(bits_stored)
    shift = 2
    rng = np.random.default_rng(seed)
    tex = _texture(rng, rows + shift * (frames - 1), columns, rows)
    noise_step = 13
    noise = rng.standard_normal((rows + noise_step * (frames - 1), columns), dtype=np.float32)
    label_at = label_box(rows, columns, laterality)
    marker = frame_marker_box(rows, columns, laterality)
    volume = np.empty((frames, rows, columns), dtype=np.uint8 if bits_stored <= 8 else np.uint16)
    for i, k in enumerate(order):
        scale = 0.85 + 0.15 * math.sin(math.pi * (k + 0.5) / frames)
        img = _breast(
            radius2(rows, columns, scale),
            tex[k * shift : k * shift + rows],
            noise[k * noise_step : k * noise_step + rows],
            lo,
            hi,
        )
        if laterality == "R":
            img = img[:, ::-1]
        img[marker.slices()] = frame_marker_value(k, frames, bits_stored)
        if label:
            _draw_label(img, label_at, top)
        volume[i] = _apply_photometric(img, photometric, top)
    return volume


def _tomosynthesis_header(
    ds: Dataset, frames: int, photometric: str, laterality: str, label: bool
) -> None:
    """The attributes of a tomosynthesis image outside the functional groups and pixels."""
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


def _shared_groups(laterality: str) -> Dataset:
    """The shared functional groups item: 0.1 mm pixels, 1 mm slices, axial, identity
    rescale, breast anatomy of ``laterality`` (no window: the caller adds it if shared)."""
    breast = item(CodeValue="76752008", CodingSchemeDesignator="SCT", CodeMeaning="Breast")
    return item(
        PixelMeasuresSequence=DicomSequence(
            [item(PixelSpacing=[0.1, 0.1], SliceThickness=1.0, SpacingBetweenSlices=1.0)]
        ),
        PlaneOrientationSequence=DicomSequence([item(ImageOrientationPatient=[1, 0, 0, 0, 1, 0])]),
        PixelValueTransformationSequence=DicomSequence(
            [item(RescaleIntercept=0, RescaleSlope=1, RescaleType="US")]
        ),
        FrameAnatomySequence=DicomSequence(
            [
                item(
                    FrameLaterality=laterality,
                    AnatomicRegionSequence=DicomSequence([breast]),
                )
            ]
        ),
    )


def _voi_center(k: int, frames: int, bits_stored: int, photometric: str) -> int:
    """The per-frame window centre of the frame at z index ``k``: the shared centre moved by
    -5 % (k = 0) to +5 % (last frame) of the stored range, mirrored for MONOCHROME1."""
    center, _ = mammogram_window(bits_stored, photometric)
    if frames <= 1:
        return center
    offset = round(0.05 * max_value(bits_stored) * (2 * k / (frames - 1) - 1))
    return center - offset if photometric == "MONOCHROME1" else center + offset


def _per_frame_groups(
    order: list[int], bits_stored: int, photometric: str, per_frame_voi: bool
) -> DicomSequence:
    """One per-frame functional groups item per stored frame: its stack position and
    ImagePositionPatient ``[0, 0, k]``, and with ``per_frame_voi`` its own window."""
    _, width = mammogram_window(bits_stored, photometric)
    groups = []
    for k in order:
        group = item(
            FrameContentSequence=DicomSequence([item(StackID="1", InStackPositionNumber=k + 1)]),
            PlanePositionSequence=DicomSequence([item(ImagePositionPatient=[0.0, 0.0, float(k)])]),
        )
        if per_frame_voi:
            center = _voi_center(k, len(order), bits_stored, photometric)
            group.FrameVOILUTSequence = DicomSequence(
                [item(WindowCenter=center, WindowWidth=width)]
            )
        groups.append(group)
    return DicomSequence(groups)
