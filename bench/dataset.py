"""Deterministic synthetic DICOM dataset for the benchmarks, of configurable size.

    python bench/dataset.py DEST [--files 1000] [--size 3328x2560] [--tomo 2] [--ct 16]

writes::

    DEST/mammo/NNNNN/MMMMMM.dcm   --files mammograms, four per study (--size rows x columns,
                                  12-bit, zero background, burned-in label at the maximum)
    DEST/tomo/bto_K.dcm           --tomo tomosynthesis volumes (--tomo-frames x 1664 x 1280)
    DEST/ct/ct_SSS.dcm            a CT series of --ct slices (512 x 512, int16, HU rescale)

Mammogram ``i`` (0-based) is fully determined by ``i``: laterality L for even ``i``, R for
odd; MONOCHROME1 when ``i % 5 == 4`` (20 %), else MONOCHROME2; RLE Lossless when
``i % 10 == 3`` (10 %), JPEG 2000 Lossless when ``i % 20 == 7`` (5 %), else Explicit VR
Little Endian. To keep generation fast, the pixels come from ``--variants`` distinct images
per (laterality, photometric) pair; every file has its own Study/SOP Instance UIDs.

Existing files are left untouched (their content would be the same), so growing ``--files``
from 1000 to 1010 adds exactly ten new files; that is how the incremental benchmark works.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import pydicom
from dicomprep_testdata import synthetic
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless

FILES_PER_STUDY = 4


@dataclass(frozen=True)
class MammoSpec:
    index: int
    laterality: str
    photometric: str
    transfer_syntax: str
    variant: int


def mammo_spec(index: int, variants: int) -> MammoSpec:
    """What mammogram ``index`` looks like (a pure function of its index)."""
    if index % 20 == 7:
        syntax = JPEG2000Lossless
    elif index % 10 == 3:
        syntax = RLELossless
    else:
        syntax = ExplicitVRLittleEndian
    return MammoSpec(
        index=index,
        laterality="L" if index % 2 == 0 else "R",
        photometric="MONOCHROME1" if index % 5 == 4 else "MONOCHROME2",
        transfer_syntax=str(syntax),
        variant=(index // 2) % max(1, variants),
    )


def mammo_path(dest: Path, index: int) -> Path:
    return dest / "mammo" / f"{index // FILES_PER_STUDY:05d}" / f"{index:06d}.dcm"


@lru_cache(maxsize=64)
def _encoded(
    rows: int, columns: int, laterality: str, photometric: str, variant: int, syntax: str
) -> bytes:
    ds = synthetic.mammogram(
        rows=rows,
        columns=columns,
        laterality=laterality,
        photometric=photometric,
        seed=1000 + variant,
    )
    return synthetic.encode(ds, syntax)


def write_mammogram(dest: Path, index: int, rows: int, columns: int, variants: int) -> bool:
    """Write mammogram ``index`` unless it exists; True when written."""
    path = mammo_path(dest, index)
    if path.exists():
        return False
    spec = mammo_spec(index, variants)
    data = _encoded(
        rows, columns, spec.laterality, spec.photometric, spec.variant, spec.transfer_syntax
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(io.BytesIO(data))
    study = synthetic.derived_uid("bench-study", index // FILES_PER_STUDY)
    sop = synthetic.derived_uid("bench-mg", index)
    tmp = path.with_name(f".{path.name}.tmp")
    synthetic.with_uids(ds, tmp, study_uid=study, sop_uid=sop)
    tmp.replace(path)
    return True


def write_tomo(dest: Path, k: int, frames: int) -> bool:
    path = dest / "tomo" / f"bto_{k}.dcm"
    if path.exists():
        return False
    ds = synthetic.tomosynthesis(
        frames=frames,
        rows=1664,
        columns=1280,
        laterality="L" if k % 2 == 0 else "R",
        photometric="MONOCHROME1" if k % 3 == 2 else "MONOCHROME2",
        shuffled=k % 2 == 1,
        seed=2000 + k,
        study_uid=synthetic.derived_uid("bench-tomo-study", k),
    )
    tmp = path.with_name(f".{path.name}.tmp")
    synthetic.write(ds, tmp)
    tmp.replace(path)
    return True


def write_ct(dest: Path, index: int) -> bool:
    path = dest / "ct" / f"ct_{index:03d}.dcm"
    if path.exists():
        return False
    ds = synthetic.ct_slice(rows=512, columns=512, index=index, seed=3000)
    tmp = path.with_name(f".{path.name}.tmp")
    synthetic.write(ds, tmp)
    tmp.replace(path)
    return True


@dataclass
class DatasetInfo:
    dest: str
    files: int
    rows: int
    columns: int
    tomo: int
    tomo_frames: int
    ct: int
    variants: int
    written: int
    seconds: float
    bytes: int
    monochrome1: int
    rle: int
    jpeg2000: int

    @property
    def total(self) -> int:
        return self.files + self.tomo + self.ct


def generate(
    dest: str | Path,
    files: int = 1000,
    size: tuple[int, int] = (3328, 2560),
    tomo: int = 2,
    tomo_frames: int = 50,
    ct: int = 16,
    variants: int = 4,
    progress: bool = False,
    exact: bool = False,
) -> DatasetInfo:
    """Write the dataset under ``dest`` (existing files are kept); describe it.

    ``exact`` removes generated files beyond the requested counts (left by a larger run)."""
    dest = Path(dest)
    rows, columns = size
    start = time.perf_counter()
    if exact:
        prune(dest, files, tomo, ct)
    written = 0
    for i in range(files):
        written += write_mammogram(dest, i, rows, columns, variants)
        if progress and (i + 1) % 100 == 0:
            print(f"  mammograms {i + 1}/{files}", file=sys.stderr, flush=True)
    for k in range(tomo):
        written += write_tomo(dest, k, tomo_frames)
    for s in range(ct):
        written += write_ct(dest, s)
    specs = [mammo_spec(i, variants) for i in range(files)]
    info = DatasetInfo(
        dest=str(dest),
        files=files,
        rows=rows,
        columns=columns,
        tomo=tomo,
        tomo_frames=tomo_frames,
        ct=ct,
        variants=variants,
        written=written,
        seconds=time.perf_counter() - start,
        bytes=sum(p.stat().st_size for p in dest.rglob("*.dcm")),
        monochrome1=sum(s.photometric == "MONOCHROME1" for s in specs),
        rle=sum(s.transfer_syntax == RLELossless for s in specs),
        jpeg2000=sum(s.transfer_syntax == JPEG2000Lossless for s in specs),
    )
    (dest / "dataset.json").write_text(json.dumps(asdict(info), indent=1) + "\n")
    return info


def prune(dest: Path, files: int, tomo: int, ct: int) -> None:
    """Delete generated files whose index is beyond the requested counts."""
    limits = {"mammo": files, "tomo": tomo, "ct": ct}
    for folder, limit in limits.items():
        for path in (dest / folder).rglob("*.dcm"):
            if int(path.stem.rsplit("_", 1)[-1]) >= limit:
                path.unlink()


def parse_size(text: str) -> tuple[int, int]:
    rows, _, columns = text.lower().partition("x")
    return int(rows), int(columns)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dest", type=Path)
    parser.add_argument("--files", type=int, default=1000, help="number of mammograms")
    parser.add_argument(
        "--size", type=parse_size, default=(3328, 2560), help="mammogram ROWSxCOLUMNS"
    )
    parser.add_argument("--tomo", type=int, default=2, help="tomosynthesis volumes")
    parser.add_argument("--tomo-frames", type=int, default=50)
    parser.add_argument("--ct", type=int, default=16, help="slices of the CT series")
    parser.add_argument("--variants", type=int, default=4, help="distinct pixel images")
    parser.add_argument(
        "--exact", action="store_true", help="delete generated files beyond these counts"
    )
    args = parser.parse_args(argv)
    info = generate(
        args.dest,
        files=args.files,
        size=args.size,
        tomo=args.tomo,
        tomo_frames=args.tomo_frames,
        ct=args.ct,
        variants=args.variants,
        progress=True,
        exact=args.exact,
    )
    print(
        f"{info.total} DICOM files in {info.dest} ({info.files} mammograms "
        f"{info.rows}x{info.columns}: {info.monochrome1} MONOCHROME1, {info.rle} RLE, "
        f"{info.jpeg2000} JPEG 2000; {info.tomo} tomosynthesis x {info.tomo_frames} frames; "
        f"{info.ct} CT slices), {info.bytes / 1e9:.2f} GB; "
        f"{info.written} written in {info.seconds:.1f} s"
    )


if __name__ == "__main__":
    main()
