"""Scale check of the workflow: dry run over a huge catalog, no-op and incremental reruns.

    python bench/scale.py --entries 1000000 --outputs 100000

1. Dry run: writes a synthetic catalog of ``--entries`` DICOM entries (as discovery would
   have produced) and times ``snakemake -n`` with ``rediscover: false`` — the cost of
   planning shards and building the DAG, without walking a file system. Timed twice: the
   first run writes the shard lists, the second finds them unchanged.
2. Reruns: creates ``--outputs`` tiny real DICOM files (stamped from one template with
   distinct UIDs, ``--study-size`` files per study), runs the workflow once with
   ``shards: 64`` to convert them all, then times
   - a plain rerun (which walks the source, stats every file, compares with the catalog
     and finds nothing to do), and
   - the incremental case: ``--add`` more files in two new studies, then a plain rerun
     (only the shards holding the new studies run; collect re-reads only those shards).
   Each run's jobs per rule are counted from Snakemake's log; the incremental run's
   phases come from the modification times of what each phase writes last.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from dicomprep_testdata import synthetic

from dicomprep.run.discover import CATALOG_COLUMNS, DICOM, normalise, save_catalog

REPO = Path(__file__).resolve().parents[1]
UID_ROOT = "1.2.826.0.1.3680043.10.999"


def snakemake(workdir: Path, config: dict, *args: str) -> float:
    """Run the workflow; return wall seconds (raises on failure)."""
    return snakemake_run(workdir, config, *args)[0]


def snakemake_run(workdir: Path, config: dict, *args: str) -> tuple[float, str]:
    """Run the workflow; return wall seconds and Snakemake's log (raises on failure)."""
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
    return seconds, proc.stdout + proc.stderr


def jobs_per_rule(log: str) -> dict[str, int]:
    """How many jobs of each rule Snakemake finished, from its log."""
    found = re.findall(r"^Finished jobid: \d+ \(Rule: (\w+)\)", log, flags=re.MULTILINE)
    return dict(Counter(found))


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


def tiny_sources(
    count: int, source: Path, study_size: int = 100, first: int = 0, first_study: int = 0
) -> None:
    """``count`` 16x16 DICOM files numbered from ``first``, ``study_size`` per study
    (studies numbered from ``first_study``): one template, UIDs patched in place (same
    length)."""
    template_sop = f"{UID_ROOT}.3.{10**9}"
    template_study = f"{UID_ROOT}.1.{10**7}"
    ds = synthetic.mammogram(
        rows=16, columns=16, study_uid=template_study, sop_uid=template_sop, label=False
    )
    path = synthetic.write(ds, source / "template.dcm")
    data = path.read_bytes()
    path.unlink()
    for i in range(count):
        k = first + i
        sop = f"{UID_ROOT}.3.{10**9 + k}".encode()
        study = f"{UID_ROOT}.1.{10**7 + first_study + i // study_size}".encode()
        body = data.replace(template_sop.encode(), sop).replace(template_study.encode(), study)
        folder = source / f"s{k // 1000:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{k:07d}.dcm").write_bytes(body)


def phases_since(tmp: Path, started: float, ended: float) -> dict[str, float]:
    """Seconds of each phase of a rerun, from the modification times of what each phase
    writes last: planning (the shard index), the shard jobs that ran (their results),
    the collect job with the QC report (the summary), and Snakemake's exit."""
    work = tmp / "work"
    marks = [("start", started)]
    for phase, paths in (
        ("start + planning", [work / "shards" / "index.json"]),
        ("shard jobs", list((work / "shards").glob("*.results.jsonl"))),
        ("collect + QC report", [work / "summary.json"]),  # one job
    ):
        times = [t for p in paths if (t := p.stat().st_mtime) >= marks[-1][1]]
        if times:
            marks.append((phase, max(times)))
    marks.append(("exit", ended))
    return {phase: t - marks[i][1] for i, (phase, t) in enumerate(marks[1:])}


def reruns(
    outputs: int, shards: int, tmp: Path, study_size: int, add: int, incremental: bool
) -> dict[str, float | str]:
    source = tmp / "src"
    existing = sum(1 for _ in source.rglob("*.dcm")) if source.is_dir() else 0
    started = time.perf_counter()
    if existing < outputs:  # a kept work folder (--workdir) holds the first ones already
        tiny_sources(outputs - existing, source, study_size, first=existing)
    else:
        outputs = existing
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
    noop, noop_log = snakemake_run(tmp, config)
    tiffs = sum(1 for _ in (tmp / "out").rglob("*.tiff"))
    if tiffs != outputs:
        raise SystemExit(f"expected {outputs} TIFFs, found {tiffs}")
    results: dict[str, float | str] = {
        "create sources s": created,
        **(
            {"first run s": full, "files/s first run": outputs / full}
            if existing < outputs
            else {"run over the kept work folder s": full}
        ),
        "no-op rerun s": noop,
        "no-op rerun jobs": str(jobs_per_rule(noop_log) or "none"),
    }
    if not incremental:
        return results
    studies = outputs // study_size + 1  # after every study of the files there
    per_study = -(-add // 2)
    tiny_sources(add, source, per_study, first=outputs, first_study=studies)
    wall_started = time.time()
    seconds, log = snakemake_run(tmp, config)
    phases = phases_since(tmp, wall_started, wall_started + seconds)
    tiffs = sum(1 for _ in (tmp / "out").rglob("*.tiff"))
    if tiffs != outputs + add:
        raise SystemExit(f"expected {outputs + add} TIFFs after adding {add}, found {tiffs}")
    results |= {
        f"rerun after adding {add} files in 2 new studies s": seconds,
        "  its jobs": str(jobs_per_rule(log)),
        "  its phases": ", ".join(f"{k} {v:.1f} s" for k, v in phases.items()),
    }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--outputs", type=int, default=100_000)
    parser.add_argument("--shards", type=int, default=512)
    parser.add_argument(
        "--study-size", type=int, default=50, help="files per study of --outputs (default 50)"
    )
    parser.add_argument(
        "--add", type=int, default=100, help="files added in 2 new studies (default 100)"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        help="keep the rerun data here; a second run reuses the converted files",
    )
    parser.add_argument("--skip-dry-run", action="store_true")
    parser.add_argument("--skip-noop", action="store_true", help="skip the reruns")
    parser.add_argument("--skip-incremental", action="store_true")
    args = parser.parse_args()
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    results: dict[str, float | str] = {}
    with tempfile.TemporaryDirectory(prefix="dicomprep-scale-") as tmp:
        kept = args.workdir.resolve() if args.workdir else Path(tmp)
        if not args.skip_dry_run:
            results |= {
                f"[{args.entries:,} entries] {k}": v
                for k, v in dry_run(args.entries, args.shards, Path(tmp) / "dry").items()
            }
        if not args.skip_noop:
            results |= {
                f"[{args.outputs:,} outputs] {k}": v
                for k, v in reruns(
                    args.outputs,
                    64,
                    kept / "noop",
                    args.study_size,
                    args.add,
                    not args.skip_incremental,
                ).items()
            }
    print(f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    width = max(len(k) for k in results)
    for key, value in results.items():
        shown = f"{value:10.1f}" if isinstance(value, float) else value
        print(f"{key:<{width}}  {shown}")


if __name__ == "__main__":
    main()
