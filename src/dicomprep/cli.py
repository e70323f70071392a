"""Command line tools: ``dicom-preprocess`` and ``dicom-manifest`` (see README.md)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from dicomprep import __version__
from dicomprep.core.records import FAILED, OK, FileResult
from dicomprep.formats.manifest import scan_dataset, write_manifest
from dicomprep.options import (
    COMPRESSIONS,
    FILTERS,
    PADDINGS,
    SERIES_MODES,
    VOLUME_FORMATS,
    VOLUME_HANDLERS,
    Options,
    OptionsError,
)
from dicomprep.pipeline import process_file
from dicomprep.run.discover import (
    DICOM,
    DUPLICATE,
    MISSING,
    NOT_DICOM,
    SourceError,
    build_catalog,
)
from dicomprep.run.failures import (
    catalog_failures,
    counts,
    failures_frame,
    result_failures,
    summary_line,
    write_failures,
)
from dicomprep.run.guards import OutputError, probe_writable, require_files
from dicomprep.run.shard import (
    convert_copies,
    convert_in_workers,
    mark_copies,
    remove_shard_temporaries,
    remove_stale_temporaries,
)
from dicomprep.storage.urls import relative_to_root


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected W,H (e.g. 1024,1280), got {text!r}") from None
    if width <= 0 or height <= 0:
        raise argparse.ArgumentTypeError("width and height must be positive")
    return width, height


def _spacing(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) not in (2, 3) or not all(v > 0 for v in values):
        raise argparse.ArgumentTypeError(
            f"expected SX,SY or SX,SY,SZ in mm, each > 0 (e.g. 0.2,0.2), got {text!r}"
        )
    return values


def _voi(text: str) -> str | tuple[float, float]:
    if text in ("auto", "none"):
        return text
    try:
        center, width = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected auto, none or CENTER,WIDTH, got {text!r}"
        ) from None
    return center, width


PREPROCESS_EPILOG = """\
Defaults: like the Rust dicom-preprocessing tool it replaces, this command neither crops
nor resizes unless asked (-c, -m, -s). The workflow's config.yaml does both (crop: true,
crop_max: true, size: [512, 640]); pass -c -m -s 512,640 for the workflow's TIFFs.
Options are described in docs/configuration.md, the TIFF tags in docs/output-format.md.
Exit status: 0 when every DICOM input became a TIFF, 1 when any failed, 2 on usage errors.
"""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default ("off" for flags); the epilog keeps its lines."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or action.default in (None, argparse.SUPPRESS):
            return text
        if "default" in text:
            return text
        return f"{text} (default: {'off' if action.default is False else '%(default)s'})"


def _one_of(choices: tuple[str, ...]) -> str:
    return ", ".join(choices)


def preprocess_parser(paths: bool = True, **parser_args) -> argparse.ArgumentParser:
    """dicom-preprocess's parser; ``paths=False`` leaves out SOURCE and OUTPUT for a tool
    that takes the same processing options (dicom-validate), ``parser_args`` replacing
    its prog, description or epilog."""
    p = argparse.ArgumentParser(
        **{
            "prog": "dicom-preprocess",
            "description": "Convert DICOM files to TIFF files for computer-vision training.",
            "epilog": PREPROCESS_EPILOG,
            "formatter_class": _HelpFormatter,
            **parser_args,
        }
    )
    if paths:
        p.add_argument(
            "source", help="a DICOM file, a folder (searched recursively) or a .txt list"
        )
        p.add_argument("output", help="output folder (a file path when SOURCE is one file)")
    p.add_argument("-c", "--crop", action="store_true", help="crop zero rows/columns at edges")
    p.add_argument(
        "-m", "--crop-max", action="store_true", help="also treat the maximum value as background"
    )
    p.add_argument(
        "--crop-components",
        action="store_true",
        help="crop to the largest connected foreground region",
    )
    resize_to = p.add_mutually_exclusive_group()
    resize_to.add_argument(
        "-s",
        "--size",
        type=_size,
        metavar="W,H",
        help="resize to fit W x H (aspect kept), then pad (default: off, keep the size)",
    )
    resize_to.add_argument(
        "--spacing",
        type=_spacing,
        metavar="SX,SY[,SZ]",
        help="resample to this pixel (voxel) spacing in mm, instead of -s",
    )
    p.add_argument(
        "-f",
        "--filter",
        choices=FILTERS,
        default="triangle",
        metavar="FILTER",
        help=f"resize filter: {_one_of(FILTERS)}",
    )
    p.add_argument(
        "-p",
        "--padding",
        choices=PADDINGS,
        default="zero",
        metavar="PADDING",
        help=f"where the padding goes: {_one_of(PADDINGS)}",
    )
    p.add_argument(
        "-z",
        "--compressor",
        choices=COMPRESSIONS,
        default="packbits",
        metavar="COMPRESSOR",
        help=f"TIFF compression: {_one_of(COMPRESSIONS)}",
    )
    p.add_argument(
        "-v",
        "--volume-handler",
        choices=VOLUME_HANDLERS,
        default="keep",
        metavar="VOLUME",
        help=f"multi-frame files: {_one_of(VOLUME_HANDLERS)}",
    )
    p.add_argument(
        "-t",
        "--target-frames",
        type=int,
        metavar="N",
        help="frames for --volume-handler interpolate (default: none)",
    )
    p.add_argument(
        "--series",
        choices=SERIES_MODES,
        default="files",
        help="files: one output per file; stack: one volume per series' stack of slices",
    )
    p.add_argument(
        "--volume-format",
        choices=VOLUME_FORMATS,
        default="tiff",
        help="how stacks are written (--series stack)",
    )
    p.add_argument(
        "--mip-weight",
        type=float,
        default=1.5,
        metavar="W",
        help="laplacian-mip: weight of the MIP's detail",
    )
    p.add_argument(
        "--skip-frames",
        type=int,
        metavar="N",
        help="frames skipped at each end before a MIP (default: 5 laplacian-mip, 0 max-intensity)",
    )
    p.add_argument(
        "--voi",
        type=_voi,
        default="auto",
        metavar="auto|none|C,W",
        help="VOI LUT/window (auto), modality values (none), or window CENTER,WIDTH",
    )
    limits = Options()
    p.add_argument(
        "--max-output-pixels",
        type=int,
        default=limits.max_output_pixels,
        metavar="N",
        help="refuse outputs of more samples (width x height x pages x channels)",
    )
    p.add_argument(
        "--max-output-bytes",
        type=int,
        default=limits.max_output_bytes,
        metavar="N",
        help="refuse outputs of more bytes (uncompressed)",
    )
    p.add_argument(
        "--max-upsampling",
        type=float,
        default=limits.max_upsampling,
        metavar="F",
        help="refuse outputs enlarging an axis more than F times",
    )
    p.add_argument(
        "--max-frame-pixels",
        type=int,
        default=Options().max_frame_pixels,
        metavar="N",
        help="refuse frames of more pixels (Rows x Columns) before decoding them",
    )
    p.add_argument(
        "--max-frames",
        type=int,
        default=Options().max_frames,
        metavar="N",
        help="refuse files of more frames before decoding them",
    )
    p.add_argument("--strict", action="store_true", help="stop if any input is not DICOM")
    p.add_argument(
        "--follow-symlinks",
        action="store_true",
        help="follow symbolic links while walking SOURCE, only those whose target lies inside it",
    )
    p.add_argument(
        "--follow-links-outside-source",
        action="store_true",
        help="with --follow-symlinks, also follow links whose target lies outside SOURCE",
    )
    p.add_argument(
        "-j",
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        metavar="N",
        help="parallel worker processes (default: this machine's cores, %(default)s)",
    )
    p.add_argument("-V", "--version", action="version", version=f"%(prog)s {__version__}")
    return p


def options_from_args(args: argparse.Namespace) -> Options:
    return Options(
        crop=args.crop,
        crop_max=args.crop_max,
        crop_components=args.crop_components,
        size=args.size,
        filter=args.filter,
        padding=args.padding,
        compression=args.compressor,
        volume=args.volume_handler,
        target_frames=args.target_frames,
        voi=args.voi,
        series=args.series,
        volume_format=args.volume_format,
        spacing=args.spacing,
        mip_weight=args.mip_weight,
        skip_frames=args.skip_frames,
        max_frame_pixels=args.max_frame_pixels,
        max_frames=args.max_frames,
        max_output_pixels=args.max_output_pixels,
        max_output_bytes=args.max_output_bytes,
        max_upsampling=args.max_upsampling,
    )


def _progress(iterable, total: int):
    if not sys.stderr.isatty():
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, unit="file", file=sys.stderr)


def convert_many(entries: list[dict], root: str, options: Options, threads: int) -> list[dict]:
    """Convert catalog entries (in path order) in ``threads`` worker processes; results
    in input order.

    As in a shard job, each SOP Instance UID becomes one image, from the first copy that
    converts (a damaged first copy does not cost it; the other copies are reported as
    duplicates), and a worker that dies (a crashing decoder, the out-of-memory killer)
    costs only the file it held.
    """
    entries = [{"cost": 0, **entry} for entry in entries]
    results: list[dict | None] = [None] * len(entries)
    finished = convert_copies(entries, root, options, max(1, threads))
    for index, result in _progress(finished, len(entries)):
        results[index] = result.to_dict()
    mark_copies(entries, results)
    return [r for r in results if r is not None]


def preprocess_main(argv: list[str] | None = None) -> int:
    args = preprocess_parser().parse_args(argv)
    try:
        options = options_from_args(args)
    except OptionsError as exc:
        print(f"dicom-preprocess: {exc}", file=sys.stderr)
        return 2
    source, output = Path(args.source), Path(args.output)
    try:
        catalog = build_catalog(
            source,
            follow_symlinks=args.follow_symlinks,
            follow_links_outside_source=args.follow_links_outside_source,
            processes=max(1, args.threads),
        )
        require_files(source, int((catalog["status"] != MISSING).sum()))
    except SourceError as exc:
        print(f"dicom-preprocess: {exc}", file=sys.stderr)
        return 2
    if args.strict:
        bad = catalog[catalog["status"] == NOT_DICOM]["path"].tolist()
        if bad:
            print("dicom-preprocess: not DICOM (--strict): " + ", ".join(bad), file=sys.stderr)
            return 2
    single = source.is_file() and source.suffix.lower() != ".txt"
    try:  # before the first conversion, not after every file failed to be written
        probe_writable(output.parent if single and not output.is_dir() else output)
    except OutputError as exc:
        print(f"dicom-preprocess: {exc}", file=sys.stderr)
        return 2
    if single:
        return _single(source, output, options)

    failures, processed = convert_catalog(catalog, output, options, args.threads)
    write_failures(failures, output / "failures.csv")
    numbers = counts(processed, failures)
    print(summary_line(numbers, output), file=sys.stderr)
    if len(failures):
        print(f"dicomprep: not converted: see {output / 'failures.csv'}", file=sys.stderr)
    return 1 if numbers["failed"] else 0


def convert_catalog(catalog, output: Path, options: Options, threads: int):
    """Convert the images of a ``catalog`` (discovery's table) under ``output``; returns
    the failures table (one row per input that did not become an output) and the number
    of outputs written.  dicom-validate gives its verdicts from the same function."""
    todo = catalog.loc[
        catalog["status"].isin([DICOM, DUPLICATE]),
        ["path", "key", "study_instance_uid", "sop_instance_uid"],
    ].to_dict("records")
    remove_shard_temporaries(output, todo)  # of writes a killed earlier run left
    stack_failures, stacked = [], 0
    if options.series == "stack":
        todo, stack_failures, stacked = convert_stacks(todo, catalog, output, options, threads)
    results = convert_many(todo, str(output), options, threads)
    failures = failures_frame(catalog_failures(catalog) + result_failures(results) + stack_failures)
    return failures, sum(1 for r in results if r["status"] == OK) + stacked


def convert_stacks(
    entries: list[dict], catalog, output: Path, options: Options, threads: int
) -> tuple[list[dict], list[dict], int]:
    """Form stacks from the header facts the ``catalog`` holds for ``entries`` and convert
    each into one volume (slices on a web server or in a bucket too).

    Returns the entries left to convert one by one, failure rows (failed stacks, slices left
    out as duplicate positions, copies of stacked slices) and the number of stacks written;
    writes ``series_report.csv`` and ``slices.csv`` under ``output``."""
    from dicomprep.formats.errors import ErrorType
    from dicomprep.formats.uids import is_valid_uid
    from dicomprep.run.discover import placement_facts
    from dicomprep.series.stacks import DUPLICATE_POSITION, REPORT_COLUMNS, form_stacks
    from dicomprep.series.volume_file import stack_output_path

    firsts, copies = {}, {}
    for entry in entries:
        first = firsts.setdefault(entry["sop_instance_uid"], entry["path"])
        if first != entry["path"]:  # tried in path order when the first copy is damaged
            copies.setdefault(first, []).append(entry["path"])
    first_copies = catalog[catalog["path"].isin(set(firsts.values()))]
    study_of = dict(zip(first_copies["path"], first_copies["study_instance_uid"], strict=True))
    stacks, records = form_stacks(placement_facts(first_copies))
    stacks = [s for s in stacks if is_valid_uid(s.series_instance_uid)]
    units = [
        {
            "key": f"stack:{s.name}",
            "path": s.paths[0],
            "paths": list(s.paths),
            "output": stack_output_path(
                output, study_of[s.paths[0]], s.name, options.volume_format
            ),
            "study_instance_uid": study_of[s.paths[0]],
            "sop_instance_uid": s.sop_instance_uids[0],
            "copies": {p: copies[p] for p in s.paths if p in copies},
        }
        for s in stacks
    ]
    for unit in units:
        remove_stale_temporaries(Path(unit["output"]))  # a killed earlier run's
    results = _convert_stack_units(units, output, options, threads)

    taken = {p for s in stacks for p in s.paths} | {p for r in results for p in r.sources}
    taken_uids = {uid for s in stacks for uid in s.sop_instance_uids}
    failures, slice_rows = [], []
    for result in results:
        failures += [{"path": f["source"], "status": FAILED, **f} for f in result.left_out]
        for path in result.sources if result.status != OK else ():
            failures.append(
                {
                    "path": path,
                    "status": result.status,
                    "stage": result.stage,
                    "error_type": result.error_type,
                    "message": result.message,
                }
            )
        relative = relative_to_root(result.output, output) if result.output else ""
        slice_rows += [
            {
                "sop_instance_uid": placed.sop_instance_uid,
                "path": relative,
                "page": placed.page,
                "position": placed.position,
            }
            for placed in result.slices
        ]
    for record in records:
        if record.kind == DUPLICATE_POSITION:
            taken.update(record.paths)
            failures += [
                {
                    "path": path,
                    "status": "duplicate",
                    "stage": "transform",
                    "error_type": ErrorType.DUPLICATE_POSITION,
                    "message": record.message,
                }
                for path in record.paths
            ]
    for entry in entries:  # further copies of stacked slices
        uid = entry["sop_instance_uid"]
        if entry["path"] not in taken and uid in taken_uids:
            taken.add(entry["path"])
            failures.append(
                {
                    "path": entry["path"],
                    "status": "duplicate",
                    "stage": "discover",
                    "error_type": ErrorType.DUPLICATE_SOP_INSTANCE_UID,
                    "message": f"another copy of {uid} ({firsts[uid]}) is in a stack",
                }
            )
    output.mkdir(parents=True, exist_ok=True)
    import pandas as pd

    pd.DataFrame([r.to_row() for r in records], columns=REPORT_COLUMNS).to_csv(
        output / "series_report.csv", index=False
    )
    pd.DataFrame(slice_rows, columns=["sop_instance_uid", "path", "page", "position"]).to_csv(
        output / "slices.csv", index=False
    )
    left = [e for e in entries if e["path"] not in taken]
    return left, failures, sum(1 for r in results if r.status == OK)


def _convert_stack_units(units: list[dict], output: Path, options: Options, threads: int):
    """The StackResult of each unit (in order), each converted in a worker process as the
    workflow's shards do: a worker that dies (the out-of-memory killer, a crashing
    decoder) costs only its stack, whose slices then each get its failure."""
    from dicomprep.series.volume_file import StackResult

    finished = dict(convert_in_workers(list(enumerate(units)), output, options, threads))
    results = []
    for index, unit in enumerate(units):
        result = finished[index]
        if not isinstance(result, StackResult):  # its worker died: a FileResult
            result = StackResult(
                sources=list(unit["paths"]),
                stage=result.stage,
                error_type=result.error_type,
                message=result.message.replace("this file", "this stack"),
            )
        results.append(result)
    return results


def _single(source: Path, output: Path, options: Options) -> int:
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
