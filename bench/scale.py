"""Scale check of the workflow's planning: dry run over a huge catalog, no-op rerun.

    python bench/scale.py --entries 1000000 --outputs 100000

1. Dry run: writes a synthetic catalog of ``--entries`` DICOM entries (as discovery would
   have produced) and times ``snakemake -n`` with ``rediscover: false`` — the cost of
   planning shards and building the DAG, without walking a file system. Timed twice: the
   first run writes the shard lists, the second finds them unchanged.
2. No-op rerun: creates ``--outputs`` tiny real DICOM files (stamped from one template with
   distinct UIDs), runs the workflow once to convert them all, then times a plain rerun
   (which walks the source, stats every file, compares with the catalog and finds
   nothing to do).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from dicomprep import synthetic
from dicomprep.run.discover import CATALOG_COLUMNS, DICOM, normalise, save_catalog

REPO = Path(__file__).resolve().parents[1]
UID_ROOT = "1.2.826.0.1.3680043.10.999"


def snakemake(workdir: Path, config: dict, *args: str) -> float:
    """Run the workflow; return wall seconds (raises on failure)."""
    workdir.mkdir(parents=True, exist_ok=True)
    configfile = workdir / "scale-config.yaml"
    configfile.write_text(
        yaml.safe_dump({k: str(v) if isinstance(v, Path) else v for k, v in config.items()})
    )
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--cores",
        "2",
        "--configfile",
        str(REPO / "config.yaml"),
        str(configfile),
        *args,
    ]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"snakemake failed:\n{proc.stderr[-3000:]}")
    return seconds


def synthetic_catalog(entries: int, source: Path) -> pd.DataFrame:
    """A catalog of ``entries`` mammograms in 100-image studies (nothing on disk)."""
    i = np.arange(entries)
    study = i // 100
    return normalise(
        pd.DataFrame(
            {
                "path": [f"{source}/s{s}/img{k}.dcm" for s, k in zip(study, i, strict=True)],
                "size": 17_040_000,
                "mtime_ns": 1_700_000_000_000_000_000 + i,
                "status": DICOM,
                "study_instance_uid": [f"{UID_ROOT}.1.{s}" for s in study],
                "series_instance_uid": [f"{UID_ROOT}.2.{s}" for s in study],
                "sop_instance_uid": [f"{UID_ROOT}.3.{k}" for k in i],
                "modality": "MG",
                "rows": 3328,
                "columns": 2560,
                "number_of_frames": 1,
                "transfer_syntax": "1.2.840.10008.1.2.1",
                "photometric_interpretation": "MONOCHROME2",
            },
            columns=CATALOG_COLUMNS,
        )
    )


def dry_run(entries: int, shards: int, tmp: Path) -> dict[str, float]:
    work, source = tmp / "work", tmp / "src"
    started = time.perf_counter()
    save_catalog(synthetic_catalog(entries, source), work / "catalog.parquet")
    build = time.perf_counter() - started
    config = {
        "source": source,
        "output": tmp / "out",
        "work": work,
        "shards": shards,
        "rediscover": False,
    }
    first = snakemake(tmp, config, "-n", "--quiet")
    second = snakemake(tmp, config, "-n", "--quiet")
    return {
        "catalog build s": build,
        "dry run (writes shard lists) s": first,
        "dry run (unchanged) s": second,
    }


def tiny_sources(count: int, source: Path) -> None:
    """``count`` 16x16 DICOM files: one template, UIDs patched in place (same length)."""
    template_sop = f"{UID_ROOT}.3.{10**9}"
    template_study = f"{UID_ROOT}.1.{10**7}"
    ds = synthetic.mammogram(
        rows=16, columns=16, study_uid=template_study, sop_uid=template_sop, label=False
    )
    path = synthetic.write(ds, source / "template.dcm")
    data = path.read_bytes()
    path.unlink()
    for k in range(count):
        sop = f"{UID_ROOT}.3.{10**9 + k}".encode()
        study = f"{UID_ROOT}.1.{10**7 + k // 100}".encode()
        body = data.replace(template_sop.encode(), sop).replace(template_study.encode(), study)
        folder = source / f"s{k // 1000:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{k:07d}.dcm").write_bytes(body)


def noop_rerun(outputs: int, shards: int, tmp: Path) -> dict[str, float]:
    source = tmp / "src"
    started = time.perf_counter()
    tiny_sources(outputs, source)
    created = time.perf_counter() - started
    config = {
        "source": source,
        "output": tmp / "out",
        "work": tmp / "work",
        "shards": shards,
        "crop": False,
        "size": None,
    }
    full = snakemake(tmp, config)
    noop = snakemake(tmp, config)
    tiffs = sum(1 for _ in (tmp / "out").rglob("*.tiff"))
    if tiffs != outputs:
        raise SystemExit(f"expected {outputs} TIFFs, found {tiffs}")
    return {
        "create sources s": created,
        "first run s": full,
        "files/s first run": outputs / full,
        "no-op rerun s": noop,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--outputs", type=int, default=100_000)
    parser.add_argument("--shards", type=int, default=512)
    parser.add_argument("--skip-dry-run", action="store_true")
    parser.add_argument("--skip-noop", action="store_true")
    args = parser.parse_args()
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="dicomprep-scale-") as tmp:
        if not args.skip_dry_run:
            results |= {
                f"[{args.entries:,} entries] {k}": v
                for k, v in dry_run(args.entries, args.shards, Path(tmp) / "dry").items()
            }
        if not args.skip_noop:
            results |= {
                f"[{args.outputs:,} outputs] {k}": v
                for k, v in noop_rerun(args.outputs, 64, Path(tmp) / "noop").items()
            }
    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value:10.1f}")


if __name__ == "__main__":
    main()
