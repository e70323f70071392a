"""The golden list: SHA-256 of every output the command line and the workflow make from
every bundled pydicom / pydicom-data file and the sample set, under six option sets.

Recorded once from a known-good tree (``python -m tests.golden --record``) and compared
by ``tests/test_golden_outputs.py``: a change to the code that makes outputs must leave
every hash as it is, unless the commit names the fix that changes it (then record again).

Each option set is given twice, as workflow config overrides and as the equivalent
``dicom-preprocess`` flags (the command line's defaults differ from config.yaml's).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

from pydicom.data import get_testdata_files

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).with_name("golden_outputs.json")

#: name -> (workflow config overrides, dicom-preprocess flags): the same options.
OPTION_SETS: dict[str, tuple[dict, list[str]]] = {
    "defaults": ({}, []),
    "voi-none": ({"voi": "none"}, ["--voi", "none"]),
    "spacing": ({"size": None, "spacing": [0.5, 0.5]}, ["--spacing", "0.5,0.5"]),
    "stack-tiff": ({"series": "stack"}, ["--series", "stack"]),
    "stack-nifti": (
        {"series": "stack", "volume_format": "nifti"},
        ["--series", "stack", "--volume-format", "nifti"],
    ),
    "laplacian-mip": ({"volume": "laplacian-mip"}, ["-v", "laplacian-mip"]),
}
#: config.yaml's pixel defaults as flags (the command line's own defaults differ); the
#: size is left out when a set resamples to a spacing instead.
WORKFLOW_DEFAULT_FLAGS = ["-c", "-m"]
WORKFLOW_DEFAULT_SIZE = ["-s", "512,640"]
OUTPUT_SUFFIXES = (".tiff", ".nii.gz")


def copy_bundled_files(folder: Path) -> int:
    """Every file of pydicom's and pydicom-data's test folders under ``folder``, keeping
    their relative paths (names repeat across their subfolders); returns how many."""
    count = 0
    for path in map(Path, get_testdata_files()):
        if not path.is_file():
            continue
        parts = path.parts
        root = max(i for i, part in enumerate(parts) if part in ("test_files", "data"))
        target = folder / ("pydicom" if parts[root] == "test_files" else "pydicom-data")
        target = target.joinpath(*parts[root + 1 :])
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
        count += 1
    return count


def build_source(folder: Path) -> Path:
    """Every bundled pydicom / pydicom-data file (relative paths kept) and the sample set."""
    copy_bundled_files(folder)
    subprocess.run(
        [sys.executable, "-m", "dicomprep_testdata.sample", str(folder / "sample")],
        check=True,
        capture_output=True,
    )
    return folder


def output_hashes(root: Path) -> dict[str, str]:
    """SHA-256 of every output (TIFF, NIfTI) under ``root``, by path relative to it."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name.endswith(OUTPUT_SUFFIXES) and "report" not in p.parts
    }


def run_cli(source: Path, out: Path, flags: list[str]) -> dict[str, str]:
    cmd = [
        str(Path(sys.executable).with_name("dicom-preprocess")),
        *WORKFLOW_DEFAULT_FLAGS,
        *([] if "--spacing" in flags else WORKFLOW_DEFAULT_SIZE),
        *flags,
        "-j",
        "2",
        str(source),
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        raise AssertionError(f"dicom-preprocess failed ({proc.returncode}): {proc.stderr}")
    return output_hashes(out)


def run_workflow(source: Path, folder: Path, overrides: dict) -> dict[str, str]:
    from tests.workflow_helpers import snakemake

    config = {"source": source, "output": folder / "out", "work": folder / "work", **overrides}
    snakemake(folder, "--keep-going", config=config, check=False)
    if not (folder / "out" / "manifest.csv").exists():
        raise AssertionError(f"the workflow wrote no manifest in {folder}")
    return output_hashes(folder / "out")


def compute(folder: Path, names: list[str] | None = None) -> dict[str, dict[str, dict]]:
    """{option set: {"cli": hashes, "workflow": hashes}} for the given option sets."""
    source = build_source(folder / "source")
    result = {}
    for name in names or list(OPTION_SETS):
        overrides, flags = OPTION_SETS[name]
        result[name] = {
            "cli": run_cli(source, folder / name / "cli", flags),
            "workflow": run_workflow(source, folder / name / "workflow", overrides),
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help=f"write {GOLDEN.name}")
    parser.add_argument("folder", type=Path, help="scratch folder (made, left in place)")
    args = parser.parse_args(argv)
    args.folder.mkdir(parents=True, exist_ok=True)
    hashes = compute(args.folder)
    counts = {n: {k: len(v) for k, v in runs.items()} for n, runs in hashes.items()}
    print(json.dumps(counts, indent=1))
    if args.record:
        GOLDEN.write_text(json.dumps(hashes, indent=1, sort_keys=True) + "\n")
        print(f"wrote {GOLDEN}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
