"""The small bundled sample set the workflow's default configuration runs on.

``python -m dicomprep_testdata.sample DEST`` (or :func:`build_sample`) writes, deterministically::

    DEST/
      README.txt           what this is (a non-DICOM file in the tree: skipped)
      list.txt             a list-file input naming a few of the files below
      real/                byte copies of pydicom / pydicom-data test files: many modalities
                           and transfer syntaxes, LUT sequences, palette, multi-frame
      synthetic/           generated mammograms, a shuffled tomosynthesis volume, a CT series,
                           and zz_duplicate_sop.dcm (a byte copy of mg_01_LCC.dcm)
      bad/                 inputs that must not become TIFFs, one per failure category

A rerun produces byte-identical files and leaves files that are already correct untouched (their
modification times stay), so a workflow pointed at the sample does not redo anything.

:data:`SAMPLE_EXPECTATIONS` says what a correct run over ``DEST`` must report: which files become
TIFFs (with their size, frames and channels) and the reason category of every other file.

The duplicate lives in ``synthetic/`` rather than ``bad/`` on purpose: "the first in sorted path
order wins", and ``bad/`` sorts before ``synthetic/``, so a copy in ``bad/`` would win and turn the
original into the duplicate.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from dicomprep_testdata import synthetic

__all__ = [
    "REASONS",
    "SAMPLE_EXPECTATIONS",
    "SampleExpectations",
    "SampleImage",
    "build_sample",
    "main",
]

REASONS: tuple[str, ...] = (
    "not_dicom",
    "empty",
    "truncated",
    "no_pixels",
    "duplicate",
    "invalid_uid",
)
"""Reason categories for sample files that must not become TIFFs."""


@dataclass(frozen=True)
class SampleImage:
    """One sample file that must become a TIFF (numbers as stored in the source)."""

    path: str
    """Relative to the sample root, with forward slashes."""
    modality: str
    transfer_syntax: str
    rows: int
    columns: int
    frames: int
    channels: int
    """3 for RGB, YBR_* and PALETTE COLOR sources, else 1."""
    photometric: str
    bits_stored: int


@dataclass(frozen=True)
class SampleExpectations:
    """What a correct run over the sample must report."""

    images: tuple[SampleImage, ...]
    bad: Mapping[str, str]
    """Relative path → reason category (one of :data:`REASONS`) for every other file."""
    list_entries: tuple[str, ...] = field(default=())
    """The paths ``list.txt`` names (all of them are in :attr:`images`)."""

    @property
    def tiff_count(self) -> int:
        """Number of TIFFs a correct run writes."""
        return len(self.images)

    @property
    def image_paths(self) -> tuple[str, ...]:
        return tuple(image.path for image in self.images)

    def paths_with_reason(self, reason: str) -> tuple[str, ...]:
        return tuple(sorted(path for path, why in self.bad.items() if why == reason))

    @property
    def all_paths(self) -> tuple[str, ...]:
        """Every file :func:`build_sample` writes, sorted."""
        return tuple(sorted((*self.image_paths, *self.bad)))


# --- the sample's content ----------------------------------------------------------------------

# (file name in pydicom / pydicom-data, expectations except the path)
_REAL: tuple[tuple[str, tuple], ...] = (
    ("CT_small.dcm", ("CT", ExplicitVRLittleEndian, 128, 128, 1, 1, "MONOCHROME2", 16)),
    ("MR_small_implicit.dcm", ("MR", ImplicitVRLittleEndian, 64, 64, 1, 1, "MONOCHROME2", 16)),
    ("693_J2KR.dcm", ("CT", JPEG2000Lossless, 512, 512, 1, 1, "MONOCHROME2", 16)),
    ("RG3_J2KI.dcm", ("CR", JPEG2000, 1760, 1760, 1, 1, "MONOCHROME1", 10)),
    ("JPGExtended.dcm", ("NM", JPEGExtended12Bit, 1024, 256, 1, 1, "MONOCHROME2", 12)),
    (
        "JPGLosslessP14SV1_1s_1f_8b.dcm",
        ("US", JPEGLosslessSV1, 768, 1024, 1, 1, "MONOCHROME2", 8),
    ),
    ("SC_rgb_jpeg_dcmtk.dcm", ("OT", JPEGBaseline8Bit, 100, 100, 1, 3, "YBR_FULL", 8)),
    ("SC_rgb_rle.dcm", ("OT", RLELossless, 100, 100, 1, 3, "RGB", 8)),
    ("image_dfl.dcm", ("OT", DeflatedExplicitVRLittleEndian, 512, 512, 1, 1, "MONOCHROME2", 8)),
    ("ExplVR_BigEnd.dcm", ("US", ExplicitVRBigEndian, 60, 80, 1, 3, "RGB", 8)),
    ("US1_J2KR.dcm", ("US", JPEG2000Lossless, 480, 640, 1, 3, "YBR_RCT", 8)),
    (
        "emri_small_jpeg_ls_lossless.dcm",
        ("MR", JPEGLSLossless, 64, 64, 10, 1, "MONOCHROME2", 12),
    ),
    ("eCT_Supplemental.dcm", ("CT", ExplicitVRLittleEndian, 512, 512, 2, 1, "MONOCHROME2", 16)),
    ("examples_ybr_color.dcm", ("US", JPEGBaseline8Bit, 240, 320, 30, 3, "YBR_FULL_422", 8)),
    ("vlut_04.dcm", ("OT", ExplicitVRLittleEndian, 512, 512, 1, 1, "MONOCHROME2", 8)),
    ("mlut_18.dcm", ("OT", ExplicitVRLittleEndian, 512, 512, 1, 1, "MONOCHROME2", 12)),
    ("OBXXXX1A.dcm", ("US", ExplicitVRLittleEndian, 600, 800, 1, 3, "PALETTE COLOR", 8)),
)
"""Real files: every one decodes with pydicom + pylibjpeg/pyjpegls and has its own SOP UID."""

_NO_PIXELS_SOURCE = "rtplan.dcm"

# Reduced mammograms: 3328×2560 at 0.07 mm → 832×640 at 0.28 mm.
_MG_ROWS, _MG_COLUMNS, _MG_SPACING = 832, 640, (0.28, 0.28)
_STUDY_A = synthetic.derived_uid("sample", "study", "A")
_STUDY_B = synthetic.derived_uid("sample", "study", "B")
_STUDY_C = synthetic.derived_uid("sample", "study", "C")

_HOSTILE_SOP_UID = "../../etc/passwd"


def _mg(laterality: str, seed: int, study: str, photometric: str = "MONOCHROME2"):
    return lambda: synthetic.mammogram(
        rows=_MG_ROWS,
        columns=_MG_COLUMNS,
        laterality=laterality,
        photometric=photometric,
        seed=seed,
        study_uid=study,
        pixel_spacing=_MG_SPACING,
    )


def _tomo():
    return synthetic.tomosynthesis(
        frames=8,
        rows=416,
        columns=320,
        laterality="L",
        seed=5,
        shuffled=True,
        per_frame_voi=True,
        study_uid=_STUDY_B,
    )


_CT_SERIES = synthetic.derived_uid("sample", "ct-series")


def _ct(index: int):
    return lambda: synthetic.ct_slice(
        index=index, seed=6, study_uid=_STUDY_C, series_uid=_CT_SERIES
    )


_MG_ARGS = ("MG", _MG_ROWS, _MG_COLUMNS, 1, 1)
# (relative path, dataset factory, transfer syntax, expectation fields)
_SYNTHETIC: tuple[tuple[str, Callable, str, tuple], ...] = (
    (
        "synthetic/mg_01_LCC.dcm",
        _mg("L", 1, _STUDY_A),
        ExplicitVRLittleEndian,
        (*_MG_ARGS, "MONOCHROME2", 12),
    ),
    (
        "synthetic/mg_02_RCC_rle.dcm",
        _mg("R", 2, _STUDY_A),
        RLELossless,
        (*_MG_ARGS, "MONOCHROME2", 12),
    ),
    (
        "synthetic/mg_03_LCC_mono1.dcm",
        _mg("L", 3, _STUDY_B, "MONOCHROME1"),
        ExplicitVRLittleEndian,
        (*_MG_ARGS, "MONOCHROME1", 12),
    ),
    (
        "synthetic/mg_04_RCC_j2k.dcm",
        _mg("R", 4, _STUDY_B),
        JPEG2000Lossless,
        (*_MG_ARGS, "MONOCHROME2", 12),
    ),
    (
        "synthetic/bto_01_LCC_shuffled.dcm",
        _tomo,
        ExplicitVRLittleEndian,
        ("MG", 416, 320, 8, 1, "MONOCHROME2", 12),
    ),
    *(
        (
            f"synthetic/ct_{i:03d}.dcm",
            _ct(i),
            JPEGLSLossless if i == 2 else ExplicitVRLittleEndian,
            ("CT", 128, 128, 1, 1, "MONOCHROME2", 16),
        )
        for i in range(3)
    ),
)

_DUPLICATE = ("synthetic/zz_duplicate_sop.dcm", "synthetic/mg_01_LCC.dcm")

_LIST_ENTRIES = (
    "real/CT_small.dcm",
    "real/US1_J2KR.dcm",
    "synthetic/mg_01_LCC.dcm",
    "synthetic/bto_01_LCC_shuffled.dcm",
)

_README = """\
dicomprep sample data
=====================

Built by `python -m dicomprep_testdata.sample DEST`; rebuilding gives byte-identical files.

real/       byte copies of test files shipped with the pydicom and pydicom-data packages
            (see those packages for origin and licences): CT, MR, CR, NM, US, OT in many
            transfer syntaxes, LUT sequences, a palette image, multi-frame files.
synthetic/  generated mammograms (832x640, left/right, MONOCHROME1, RLE, JPEG 2000),
            a shuffled 8-frame breast tomosynthesis volume and a 3-slice CT series.
            zz_duplicate_sop.dcm repeats the SOP Instance UID of mg_01_LCC.dcm.
bad/        files that must not become TIFFs: not DICOM, empty, truncated, without pixel
            data, and a SOP Instance UID that is not a valid UID.
list.txt    a list-file input (paths relative to its folder).

Every synthetic file carries made-up patient data ("SYNTHETIC^JANE^Q", ...) so tests can
prove none of it reaches the outputs. This README is not DICOM and must be skipped.
"""

_NOT_DICOM = b"""This file ends in .dcm but it is plain text, not DICOM.
A DICOM file is recognised by its content, never by its extension.
"""

_LIST = (
    "# dicomprep sample: a list-file input, one path per line.\n"
    "# Relative paths are resolved against this file's folder; '#' lines and blank lines are\n"
    "# ignored.\n" + "\n".join(_LIST_ENTRIES[:2]) + "\n\n" + "\n".join(_LIST_ENTRIES[2:]) + "\n"
)

_BAD_REASONS: dict[str, str] = {
    "README.txt": "not_dicom",
    "list.txt": "not_dicom",
    "bad/not_dicom.dcm": "not_dicom",
    "bad/empty.dcm": "empty",
    "bad/truncated.dcm": "truncated",
    "bad/no_pixels_rtplan.dcm": "no_pixels",
    "bad/hostile_uid.dcm": "invalid_uid",
    _DUPLICATE[0]: "duplicate",
}

SAMPLE_EXPECTATIONS = SampleExpectations(
    images=tuple(
        [SampleImage(f"real/{name}", *fields) for name, fields in _REAL]
        + [SampleImage(path, f[0], ts, *f[1:]) for path, _, ts, f in _SYNTHETIC]
    ),
    bad=MappingProxyType(dict(sorted(_BAD_REASONS.items()))),
    list_entries=_LIST_ENTRIES,
)
"""What a correct run over a built sample must report."""


# --- building ----------------------------------------------------------------------------------


def _put(path: Path, data: bytes, stats: dict[str, int]) -> None:
    """Write ``data`` to ``path`` unless it already holds exactly that (atomic replace)."""
    if path.is_file() and not path.is_symlink():
        try:
            if path.stat().st_size == len(data) and path.read_bytes() == data:
                stats["unchanged"] += 1
                return
        except OSError:
            pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    stats["written"] += 1


def _testdata(name: str) -> Path:
    from pydicom.data import get_testdata_file

    found = get_testdata_file(name)
    if found is None:
        raise FileNotFoundError(
            f"pydicom test file {name!r} not found; install the 'pydicom-data' package"
        )
    return Path(found)


def _truncated_bytes() -> bytes:
    ds = synthetic.mammogram(
        rows=416,
        columns=320,
        laterality="R",
        seed=7,
        study_uid=_STUDY_A,
        pixel_spacing=(0.56, 0.56),
    )
    with tempfile.TemporaryDirectory() as tmp:
        full = synthetic.write(ds, Path(tmp) / "full.dcm")
        return synthetic.truncated_copy(full, Path(tmp) / "cut.dcm", 0.6).read_bytes()


def _hostile_bytes() -> bytes:
    ds = synthetic.mammogram(
        rows=416,
        columns=320,
        laterality="L",
        seed=8,
        study_uid=_STUDY_A,
        pixel_spacing=(0.56, 0.56),
    )
    with tempfile.TemporaryDirectory() as tmp:
        return synthetic.with_uids(ds, Path(tmp) / "h.dcm", sop_uid=_HOSTILE_SOP_UID).read_bytes()


def build_sample(dest: str | Path, *, verbose: bool = False) -> Path:
    """Build (or refresh) the sample set under ``dest`` and return ``dest``.

    Deterministic: rebuilding gives byte-identical files, and files that already hold the right
    bytes are not rewritten. Files in ``dest`` that are not part of the sample are left alone.
    """
    dest = Path(dest)
    stats = {"written": 0, "unchanged": 0}
    started = time.perf_counter()

    def put(rel: str, data: bytes) -> None:
        _put(dest / rel, data, stats)

    put("README.txt", _README.encode())
    put("list.txt", _LIST.encode())

    for name, _ in _REAL:
        put(f"real/{name}", _testdata(name).read_bytes())

    synthetic_bytes: dict[str, bytes] = {}
    for rel, factory, transfer_syntax, _ in _SYNTHETIC:
        synthetic_bytes[rel] = synthetic.encode(factory(), transfer_syntax)
        put(rel, synthetic_bytes[rel])
    put(_DUPLICATE[0], synthetic_bytes[_DUPLICATE[1]])

    put("bad/not_dicom.dcm", _NOT_DICOM)
    put("bad/empty.dcm", b"")
    put("bad/truncated.dcm", _truncated_bytes())
    put("bad/no_pixels_rtplan.dcm", _testdata(_NO_PIXELS_SOURCE).read_bytes())
    put("bad/hostile_uid.dcm", _hostile_bytes())

    if verbose:
        total = sum((dest / rel).stat().st_size for rel in SAMPLE_EXPECTATIONS.all_paths)
        print(
            f"sample in {dest}: {len(SAMPLE_EXPECTATIONS.all_paths)} files, "
            f"{total / 1e6:.1f} MB ({stats['written']} written, {stats['unchanged']} unchanged) "
            f"in {time.perf_counter() - started:.1f} s; "
            f"{SAMPLE_EXPECTATIONS.tiff_count} should become TIFFs"
        )
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dicomprep_testdata.sample",
        description="Build the small bundled DICOM sample set (deterministic, offline).",
    )
    parser.add_argument("dest", type=Path, help="folder to build the sample in")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing")
    args = parser.parse_args(argv)
    try:
        build_sample(args.dest, verbose=not args.quiet)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
