"""Command line tools: ``dicom-preprocess`` and ``dicom-manifest`` (see README.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dicomprep import __version__
from dicomprep.core.records import OK, FileResult
from dicomprep.formats.manifest import scan_dataset, write_manifest
from dicomprep.options import Options, OptionsError
from dicomprep.pipeline import process_file
from dicomprep.run.arguments import options_from_args, preprocess_parser
from dicomprep.run.discover import SourceError, build_catalog, iter_source_paths
from dicomprep.run.failures import summary_line
from dicomprep.run.guards import OutputError, probe_writable
from dicomprep.run.local import LocalRun, NotDicomRefused, run_local
from dicomprep.run.lock import WorkFolderLocked
from dicomprep.run.plan import non_dicom_paths
from dicomprep.run.removal import REMOVED, RemovalRefused


def preprocess_main(argv: list[str] | None = None) -> int:
    """``dicom-preprocess``: one file to one output, or a folder or ``.txt`` list as a
    local run of the workflow (:func:`dicomprep.run.local.run_local`)."""
    args = preprocess_parser().parse_args(argv)
    try:
        options = options_from_args(args)
    except OptionsError as exc:
        print(f"dicom-preprocess: {exc}", file=sys.stderr)
        return 2
    source, output = Path(args.source), Path(args.output)
    try:
        if not source.exists():  # before the output is made: the source's own error
            list(iter_source_paths(source))
        if source.is_file() and source.suffix.lower() != ".txt":
            return _single(source, output, options, args.strict)
        run = run_local(
            source,
            output,
            options,
            work=args.work,
            workers=max(1, args.threads),
            follow_symlinks=args.follow_symlinks,
            follow_links_outside_source=args.follow_links_outside_source,
            keep_orphans=not args.remove_orphans,
            allow_removal=args.allow_removal,
            manifest=args.manifest,
            strict=args.strict,
            progress=sys.stderr.isatty(),
        )
    except (SourceError, OutputError, WorkFolderLocked, RemovalRefused, NotDicomRefused) as exc:
        print(f"dicom-preprocess: {_in_flags(str(exc))}", file=sys.stderr)
        return 2
    return _report_run(run, output)


def _in_flags(message: str) -> str:
    """A refusal's message naming this command's flag where it names the workflow's key."""
    return message.replace(
        "allow_removal: true (--config allow_removal=true) or a number",
        "--allow-removal true (or a number)",
    )


def _report_run(run: LocalRun, output: Path) -> int:
    """Print a local run's summary lines; its exit status (1 when any input failed)."""
    numbers = run.numbers
    print(summary_line(numbers, output), file=sys.stderr)
    if numbers.get("removed_now"):
        print(
            f"dicomprep: {numbers['removed_now']} output(s) whose source is gone were "
            f"removed; they are listed in {run.work / REMOVED}",
            file=sys.stderr,
        )
    if run.environment_error:
        print(f"dicomprep: {run.environment_error}", file=sys.stderr)
    if len(run.collected.failures):
        print(f"dicomprep: not converted: see {output / 'failures.csv'}", file=sys.stderr)
    return 1 if numbers["failed"] else 0


def _single(source: Path, output: Path, options: Options, strict: bool) -> int:
    """One file to one output (``output`` a file path, or a folder to put it in)."""
    if strict and non_dicom_paths(build_catalog(source)):
        print(f"dicom-preprocess: not DICOM (--strict): {source}", file=sys.stderr)
        return 2
    try:  # before converting, not after the file failed to be written
        probe_writable(output if output.is_dir() else output.parent)
    except OutputError as exc:
        print(f"dicom-preprocess: {exc}", file=sys.stderr)
        return 2
    if output.is_dir():
        result = process_file(source, output, options)
    else:
        result = process_file(source, options=options, output_path=output)
    return _report_single(result)


def _report_single(result: FileResult) -> int:
    if result.status == OK:
        print(f"dicomprep: wrote {result.output}", file=sys.stderr)
        return 0
    print(
        f"dicomprep: {result.status}: {result.source} [{result.stage}] "
        f"{result.error_type}: {result.message}",
        file=sys.stderr,
    )
    return 1 if result.status == "failed" else 0


def manifest_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dicom-manifest",
        description="Index a folder of {study}/{sop}.tiff files as CSV or Parquet.",
    )
    p.add_argument("source", help="the dataset root holding the study folders")
    p.add_argument("output", help="manifest path ending in .csv or .parquet")
    p.add_argument("-V", "--version", action="version", version=f"%(prog)s {__version__}")
    return p


def manifest_main(argv: list[str] | None = None) -> int:
    args = manifest_parser().parse_args(argv)
    root, output = Path(args.source), Path(args.output)
    if not root.is_dir():
        print(f"dicom-manifest: {root} is not a folder", file=sys.stderr)
        return 2
    if output.suffix.lower() not in (".csv", ".parquet"):
        print("dicom-manifest: OUTPUT must end in .csv or .parquet", file=sys.stderr)
        return 2
    table = scan_dataset(root)
    write_manifest(table, output)
    print(f"dicom-manifest: {len(table)} images indexed in {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(preprocess_main())
