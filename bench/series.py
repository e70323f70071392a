"""A CT series stacked into one volume by dicomprep, next to dcm2niix on the same files.

    python bench/series.py [--slices 300] [--size 512] [--repeat 2] [--stored jpeg2000]

Writes ``--slices`` synthetic 512x512 CT slices (``dicomprep_testdata.synthetic.ct_slice``, int16
stored, uncompressed or with ``--stored jpeg2000`` JPEG 2000 lossless) in shuffled file
names, then times, each in a fresh subprocess (wall time, and the peak resident memory of
that subprocess from
``resource.getrusage(RUSAGE_CHILDREN)`` in an intermediate process):

- dicomprep: read the headers, ``form_stacks``, ``process_stack`` with ``voi: none`` to a
  multi-page TIFF (packbits) and to NIfTI (``.nii.gz``);
- ``dcm2niix -z y`` (gzip NIfTI, the PyPI wheel's binary) and ``dcm2niix -z n``.

Targets: dicomprep within 1.5x of dcm2niix's time; peak RSS <= output size + 300 MB.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

MEASURE = r"""
import json, resource, subprocess, sys, time
started = time.perf_counter()
subprocess.run(sys.argv[1:], check=True, capture_output=True)
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps({"seconds": seconds, "peak_rss": peak}))
"""

STACK = r"""
import sys
from pathlib import Path
from dicomprep.formats.decode import read_header
from dicomprep.options import Options
from dicomprep.series.stacks import form_stacks, stack_facts
from dicomprep.series.volume_file import process_stack

folder, output, volume_format = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
facts = [{**stack_facts(read_header(p)[0]), "path": str(p)} for p in sorted(folder.iterdir())]
(stack,), records = form_stacks(facts)
result = process_stack(stack.paths, output, Options(voi="none", volume_format=volume_format))
assert result.status == "ok", result.message
"""


STORED = {"uncompressed": None, "jpeg2000": "JPEG 2000 lossless"}  # --stored: a stages.SYNTAXES key


def write_series(folder: Path, slices: int, size: int, stored: str = "uncompressed") -> int:
    from dicomprep_testdata import synthetic

    if STORED[stored] is not None:
        import stages

    folder.mkdir(parents=True)
    names = list(range(slices))
    random.Random(0).shuffle(names)
    total = 0
    for index in range(slices):
        ds = synthetic.ct_slice(
            rows=size,
            columns=size,
            index=index % 40,
            seed=index,
            study_uid=synthetic.derived_uid("bench-study"),
            series_uid=synthetic.derived_uid("bench-series"),
        )
        ds.InstanceNumber = index + 1
        ds.ImagePositionPatient = [-0.35 * size, -0.35 * size, 2.5 * index]
        ds.SliceLocation = 2.5 * index
        path = folder / f"{names[index]:05d}.dcm"
        if STORED[stored] is None:
            synthetic.write(ds, path)
        else:
            stages.write_syntax(ds, path, stages.SYNTAXES[STORED[stored]])
        total += path.stat().st_size
    return total


def measure(command: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, *command], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout)


def size_of(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.iterdir())
    return path.stat().st_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument(
        "--stored", choices=sorted(STORED), default="uncompressed", help="how the slices are stored"
    )
    args = parser.parse_args(argv)
    dcm2niix = str(Path(sys.executable).with_name("dcm2niix"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source_bytes = write_series(tmp / "in", args.slices, args.size, args.stored)
        print(
            f"{args.slices} slices {args.size}x{args.size}, {args.stored}: "
            f"{source_bytes / 2**20:.1f} MiB"
        )
        runs = {
            "dicomprep tiff": lambda out: [
                sys.executable,
                "-c",
                STACK,
                str(tmp / "in"),
                str(out / "v.tiff"),
                "tiff",
            ],
            "dicomprep nifti": lambda out: [
                sys.executable,
                "-c",
                STACK,
                str(tmp / "in"),
                str(out / "v.nii.gz"),
                "nifti",
            ],
            "dcm2niix -z y": lambda out: [
                dcm2niix,
                "-z",
                "y",
                "-b",
                "n",
                "-o",
                str(out),
                str(tmp / "in"),
            ],
            "dcm2niix -z n": lambda out: [
                dcm2niix,
                "-z",
                "n",
                "-b",
                "n",
                "-o",
                str(out),
                str(tmp / "in"),
            ],
        }
        results = {}
        for name, command in runs.items():
            times, peaks, size = [], [], 0
            for k in range(args.repeat):
                out = tmp / f"{name.replace(' ', '_')}{k}"
                out.mkdir()
                m = measure(command(out))
                times.append(m["seconds"])
                peaks.append(m["peak_rss"])
                size = size_of(out)
            results[name] = {
                "seconds": statistics.median(times),
                "peak_rss_mib": max(peaks) / 2**20,
                "output_mib": size / 2**20,
            }
            r = results[name]
            print(
                f"{name:16s} {r['seconds']:6.2f} s  peak RSS {r['peak_rss_mib']:7.1f} MiB  "
                f"output {r['output_mib']:7.1f} MiB",
                flush=True,
            )
        for ours, theirs in (
            ("dicomprep tiff", "dcm2niix -z n"),
            ("dicomprep nifti", "dcm2niix -z y"),
        ):
            ratio = results[ours]["seconds"] / results[theirs]["seconds"]
            budget = results[ours]["output_mib"] + 300
            print(
                f"{ours} / {theirs}: {ratio:.2f}x time (target <= 1.5); peak "
                f"{results[ours]['peak_rss_mib']:.0f} MiB vs budget {budget:.0f} MiB"
            )
        print(json.dumps(results), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
