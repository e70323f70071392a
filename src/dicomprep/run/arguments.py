"""The flags of a run over DICOM files, shared by ``dicom-preprocess`` and
``dicom-validate`` (which takes the same processing options so that its verdict is the
run's): the parser and the :class:`~dicomprep.options.Options` it describes."""

from __future__ import annotations

import argparse
import os
from importlib.metadata import version

from dicomprep.options import (
    COMPRESSIONS,
    FILTERS,
    PADDINGS,
    SERIES_MODES,
    VOLUME_FORMATS,
    VOLUME_HANDLERS,
    Options,
)
from dicomprep.run.local import WORK_FOLDER


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
    _processing_arguments(p)
    _volume_arguments(p)
    _limit_arguments(p)
    _discovery_arguments(p)
    if paths:
        _run_arguments(p)
    p.add_argument("-V", "--version", action="version", version=f"%(prog)s {version('dicomprep')}")
    return p


def _processing_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of an output's geometry and encoding: crop, size or spacing, filter,
    padding, compression."""
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


def _volume_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of multi-frame files and series, and of VOI."""
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


def _limit_arguments(p: argparse.ArgumentParser) -> None:
    """The limits on outputs and decoding (docs/limits.md), defaults from Options."""
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


def _discovery_arguments(p: argparse.ArgumentParser) -> None:
    """--strict, the links discovery follows, and the worker processes."""
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


def _run_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of a run over a folder or list: its work folder, the manifest, removals."""
    p.add_argument(
        "--work",
        metavar="DIR",
        help=f"the run's state (catalog, shard list, journal): a rerun converts only new or "
        f"changed files (default: OUTPUT/{WORK_FOLDER})",
    )
    p.add_argument(
        "--manifest",
        action="store_true",
        help="also write manifest.csv and manifest.parquet into OUTPUT",
    )
    p.add_argument(
        "--remove-orphans",
        action="store_true",
        help="remove the outputs of sources gone since the last run (default: off, kept)",
    )
    p.add_argument(
        "--allow-removal",
        type=_allowance,
        default=False,
        metavar="N",
        help="with --remove-orphans, remove up to N outputs (or 'true': any number) where a "
        "run would otherwise refuse (default: at most 20 or 10 %% of the dataset)",
    )


def _allowance(text: str) -> bool | int:
    if text.lower() in ("true", "yes"):
        return True
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or true, got {text!r}") from None


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
