"""The workflow's fixed cost: a whole run on a handful of tiny files, phase by phase.

    python bench/fixed_cost.py [--rounds 5] [--files 8 | --sample | --source DIR]

Runs ``snakemake --cores 2`` (this repository's Snakefile and config.yaml, shipped
defaults, default target with the QC report) on ``--files`` tiny synthetic mammograms
(256x192, 12-bit, two studies; converting them costs next to nothing, so what is left is
the fixed cost), or with ``--sample`` on the bundled sample set (``python -m
dicomprep_testdata.sample``: 33 files of many kinds, some of them slow to decode), in a fresh work
and output folder, ``--rounds`` times, then three times with nothing to do (no-op). While
a run goes,
a thread polls the work folder every few milliseconds and notes when each file first
appears; with the modification times of files written exactly once, that splits the run
into phases:

- Snakemake start: interpreter, Snakemake's import, parsing the Snakefile (until
  planning writes ``run_started_ns``, the first thing it writes);
- planning: discovery, catalog, shard lists (until ``shards/index.json``);
- shard job start: the DAG, scheduling, a fresh interpreter and the script's imports
  (until the job opens its log);
- conversion (until the shard's results file);
- collect: job start (until its log opens), then its work with the QC report, built in
  the same job (until its outputs are stamped; the log's own timing of the report is
  shown beside);
- exit: Snakemake after the last job, until the process ends.

Medians over the rounds; every round's total is printed too.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
POLL_SECONDS = 0.003


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


class Appearances(threading.Thread):
    """Notes the wall time (``time.time()``) at which each of ``paths`` first exists."""

    def __init__(self, paths: dict[str, Path]):
        super().__init__(daemon=True)
        self.paths = paths
        self.seen: dict[str, float] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set() and len(self.seen) < len(self.paths):
            now = time.time()
            for name, path in self.paths.items():
                if name not in self.seen and path.exists():
                    self.seen[name] = now
            time.sleep(POLL_SECONDS)


def mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def tiny_mammograms(count: int, source: Path) -> None:
    """``count`` 256x192 synthetic mammograms in two studies."""
    from dicomprep_testdata import synthetic

    for k in range(count):
        ds = synthetic.mammogram(
            rows=256,
            columns=192,
            laterality="LR"[k % 2],
            seed=k,
            study_uid=synthetic.derived_uid("fixed-cost study", k % 2),
            sop_uid=synthetic.derived_uid("fixed-cost image", k),
        )
        synthetic.write(ds, source / f"study{k % 2}" / f"{k:03d}.dcm")


def run_once(
    source: Path, run: Path, cores: int, snakefile: Path = REPO / "Snakefile"
) -> tuple[float, dict[str, float]]:
    """One workflow run in ``run``; its wall seconds and the seconds of each phase
    (phases whose marks are missing, e.g. in a no-op run, are left out)."""
    run.mkdir(parents=True, exist_ok=True)
    shutil.copy(snakefile.parent / "config.yaml", run / "config.yaml")
    work, out = run / "work", run / "out"
    watcher = Appearances(
        {
            "shard log": work / "logs" / "preprocess" / "s0000.log",
            "collect log": work / "logs" / "collect.log",
        }
    )
    cmd = [
        str(Path(sys.executable).with_name("snakemake")),
        "--snakefile",
        str(snakefile),
        "--directory",
        str(run),
        "--cores",
        str(cores),
        "--config",
        f"source={source}",
        f"output={out}",
        f"work={work}",
    ]
    watcher.start()
    started = time.time()
    with open(run / "log.txt", "a") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=environment())
    ended = time.time()
    watcher.done.set()
    watcher.join()
    if proc.returncode != 0:
        raise SystemExit(f"snakemake failed (exit {proc.returncode}), see {run / 'log.txt'}")
    seen = watcher.seen
    marks = [
        ("Snakemake start (import, parse)", mtime(work / "run_started_ns")),
        ("planning (discover, catalog, shards)", mtime(work / "shards" / "index.json")),
        ("shard job start (DAG, interpreter, imports)", seen.get("shard log")),
        ("conversion", mtime(work / "shards" / "s0000.results.jsonl")),
        ("collect job start", seen.get("collect log")),
        ("collect + QC report", mtime(work / "summary.json")),
    ]
    phases: dict[str, float] = {}
    last = started
    for name, at in marks:
        if at is not None and at >= last:
            phases[name] = at - last
            last = at
    phases["exit"] = ended - last
    report = _logged_seconds(work / "logs" / "collect.log", "report")
    if report is not None:  # Snakemake stamps a job's outputs alike: the job's log says
        phases["  of which the QC report (not added)"] = report
    return ended - started, phases


def _logged_seconds(log: Path, step: str) -> float | None:
    """The seconds the collect job's log gives for ``step`` (a line "step: 1.23 s")."""
    try:
        lines = log.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith(f"{step}: ") and line.endswith(" s"):
            return float(line[len(step) + 2 : -2])
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--files", type=int, default=8, help="tiny mammograms (default 8)")
    parser.add_argument("--sample", action="store_true", help="the bundled sample set instead")
    parser.add_argument("--source", type=Path, help="an input folder instead")
    parser.add_argument(
        "--snakefile", type=Path, default=REPO / "Snakefile", help="another copy of the workflow"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dicomprep-fixed-") as tmp:
        root = Path(tmp)
        source = args.source
        if source is None and not args.sample:
            source = root / "tiny"
            tiny_mammograms(args.files, source)
        elif source is None:
            source = root / "sample"
            subprocess.run(
                [sys.executable, "-m", "dicomprep_testdata.sample", str(source)],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        files = sum(1 for p in source.rglob("*") if p.is_file())
        print(f"{files} input files; {args.cores} cores; load average at start: {load()}")
        totals: list[float] = []
        phases: dict[str, list[float]] = {}
        run = root / "run"
        for round_ in range(args.rounds):
            shutil.rmtree(run, ignore_errors=True)
            seconds, parts = run_once(source, run, args.cores, args.snakefile.resolve())
            totals.append(seconds)
            for name, value in parts.items():
                phases.setdefault(name, []).append(value)
            print(f"round {round_ + 1}: {seconds:.2f} s", flush=True)
        noop = [run_once(source, run, args.cores, args.snakefile.resolve())[0] for _ in range(3)]
        print(f"load average at end: {load()}")
        print()
        print(f"| {'phase':<45} | {'median s':>8} | runs")
        print(f"|{'-' * 47}|{'-' * 10}|------")
        for name, values in phases.items():
            runs = ", ".join(f"{v:.2f}" for v in values)
            print(f"| {name:<45} | {statistics.median(values):8.2f} | {runs}")
        runs = ", ".join(f"{v:.2f}" for v in totals)
        median = statistics.median(totals)
        print(f"| {'**whole run**':<45} | {median:8.2f} | {runs}")
        runs = ", ".join(f"{v:.2f}" for v in noop)
        print(f"| {'no-op rerun':<45} | {statistics.median(noop):8.2f} | {runs}")
        verdict = "meets" if median <= 3 else "MISSES"
        print(f"\nwhole run {median:.2f} s ({verdict} target <= 3 s)")


if __name__ == "__main__":
    main()
