"""Costs of the run machinery that must grow no faster than the data.

1. Shard parent overhead per file: a shard's parent process hands N files to 2 worker
   processes and collects their results.  The files are tiny non-DICOM files, so the
   workers' own work is a file sniff and the parent's CPU time per file is what is left.
   Target: flat from 1,000 to 50,000 files per shard.
2. Duplicate marking on a 1,000,000-row catalog with 10,000 duplicates (every run does
   it, no-op reruns included).  Target: < 1 s.
3. Cleaning up temporaries of interrupted writes with 20,000 outputs in one study folder:
   once per shard (now) against once per file (before), per file.

    python bench/run_state.py [--files 1000 10000 50000] [--catalog-rows 1000000]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from dicomprep.options import Options
from dicomprep.run.discover import DICOM, mark_duplicates, normalise
from dicomprep.run.shard import (
    convert_in_workers,
    remove_shard_temporaries,
    remove_stale_temporaries,
)


def parent_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def shard_parent_overhead(files: int, folder: Path) -> tuple[float, float]:
    """(parent CPU µs per file, wall µs per file) for ``files`` tiny files, 2 workers."""
    folder.mkdir(parents=True, exist_ok=True)
    jobs = []
    for k in range(files):
        path = folder / f"f{k:06d}.dcm"
        if not path.exists():
            path.write_bytes(b"not a DICOM file")
        jobs.append((k, {"path": str(path), "study_instance_uid": "", "sop_instance_uid": ""}))
    cpu, wall = parent_cpu(), time.perf_counter()
    done = sum(1 for _ in convert_in_workers(jobs, folder / "out", Options(), workers=2))
    cpu, wall = parent_cpu() - cpu, time.perf_counter() - wall
    assert done == files
    return cpu / files * 1e6, wall / files * 1e6


def duplicate_marking(rows: int, duplicates: int, repeat: int = 3) -> float:
    """Median seconds of :func:`mark_duplicates` on a catalog of ``rows`` rows."""
    rng = np.random.default_rng(0)
    sops = [f"1.2.3.{k}" for k in range(rows - duplicates)]
    sops += [sops[k] for k in rng.choice(len(sops), duplicates, replace=False)]
    catalog = normalise(
        pd.DataFrame(
            {
                "path": [f"/data/{k:07d}.dcm" for k in range(rows)],
                "sop_instance_uid": sops,
                "status": DICOM,
            }
        )
    )
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        marked = mark_duplicates(catalog)
        times.append(time.perf_counter() - start)
    assert int((marked["status"] == "duplicate").sum()) == duplicates
    return statistics.median(times)


def cleanup_per_file(outputs: int, folder: Path) -> tuple[float, float]:
    """(µs per file once per shard, µs per file once per file) with ``outputs`` TIFFs in
    one study folder; the per-file variant is timed on a sample of 500 files."""
    study = folder / "1.2.3"
    study.mkdir(parents=True, exist_ok=True)
    entries = []
    for k in range(outputs):
        (study / f"1.2.3.{k}.tiff").touch()
        entries.append({"study_instance_uid": "1.2.3", "sop_instance_uid": f"1.2.3.{k}"})
    start = time.perf_counter()
    remove_shard_temporaries(folder, entries)
    per_shard = (time.perf_counter() - start) / outputs * 1e6
    sample = entries[:500]
    start = time.perf_counter()
    for entry in sample:
        remove_stale_temporaries(study / f"{entry['sop_instance_uid']}.tiff")
    per_file = (time.perf_counter() - start) / len(sample) * 1e6
    return per_shard, per_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--catalog-rows", type=int, default=1_000_000)
    parser.add_argument("--duplicates", type=int, default=10_000)
    parser.add_argument("--study-outputs", type=int, default=20_000)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        print("shard parent overhead (2 workers, tiny non-DICOM files)")
        print(f"{'files':>8} {'parent CPU µs/file':>19} {'wall µs/file':>13}")
        for files in args.files:
            cpu, wall = shard_parent_overhead(files, Path(tmp) / "files")
            print(f"{files:>8} {cpu:>19.0f} {wall:>13.0f}")
        seconds = duplicate_marking(args.catalog_rows, args.duplicates)
        print(
            f"duplicate marking: {args.catalog_rows:,} rows, {args.duplicates:,} duplicates: "
            f"{seconds:.2f} s (median of 3)"
        )
        per_shard, per_file = cleanup_per_file(args.study_outputs, Path(tmp) / "out")
        print(
            f"temporary cleanup, {args.study_outputs:,} outputs in one study: "
            f"{per_shard:.1f} µs per file once per shard, {per_file:.0f} µs per file "
            "once per file"
        )


if __name__ == "__main__":
    main()
