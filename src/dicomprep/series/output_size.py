"""The size of an output, worked out from the header and the options before anything is
decoded, and the safety limits that refuse it (docs/limits.md, "Output-size limits").

An output holds ``width x height x pages x channels`` samples of ``itemsize`` bytes: the
canvas of ``size`` (or the source scaled exactly by ``spacing``, or the source's own
size), one page per frame or slice (one for a projection, ``target_frames`` for
``interpolate``, one every ``sz`` mm for a stack with ``spacing: [sx, sy, sz]``).  The
crop box is not known before decoding, so the whole image is assumed: the estimate is an
upper bound of what is written.  Upsampling is output size / source size along each axis
(x, y; z for a stack resampled to ``sz``), before padding, and is limited only where the
output's size follows from the source's extent in mm (``spacing``): with ``size`` the user
chose the canvas, so a 16 x 16 thumbnail may fill it, bounded by the pixel and byte limits.

Refusals, checked in this order, are DicomErrors of stage ``transform``:
``UpsamplingTooLarge`` (``max_upsampling``), then ``OutputTooLarge`` (``max_output_pixels``,
then ``max_output_bytes``).  The limits never change an output that is written, so they
are not part of its fingerprint (:data:`dicomprep.options.LIMIT_OPTIONS`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dicomprep.core.errors import DicomError, ErrorType
from dicomprep.formats.decode import ImageInfo
from dicomprep.options import Options
from dicomprep.pixels.resize import fit_size
from dicomprep.series.spacing import slice_count, spacing_scale

PROJECTIONS = ("central-slice", "max-intensity", "laplacian-mip")


@dataclass(frozen=True)
class OutputSize:
    """What an output would hold."""

    width: int  # of the canvas (after padding)
    height: int
    pages: int
    channels: int
    itemsize: int  # bytes per sample of the output type
    # output size / source size per axis resampled to ``spacing``, before padding:
    # {"x": 8.0, "y": 8.0[, "z": ...]}; empty without ``spacing``
    upsampling: dict[str, float]

    @property
    def pixels(self) -> int:
        """Samples: width x height x pages x channels."""
        return self.width * self.height * self.pages * self.channels

    @property
    def bytes(self) -> int:
        """Uncompressed bytes of the samples."""
        return self.pixels * self.itemsize


def output_pages(frames: int, options: Options, slice_positions=None) -> int:
    """Pages of the output of ``frames`` frames (or a stack's slices at
    ``slice_positions``, mm along the normal, increasing)."""
    handler = options.volume if frames > 1 else "keep"
    if handler in PROJECTIONS:
        return 1
    if handler == "interpolate":
        return int(options.target_frames)
    if slice_positions is not None and options.spacing is not None and len(options.spacing) == 3:
        return slice_count(slice_positions[0], slice_positions[-1], options.spacing[2])
    return frames


def estimate(
    info: ImageInfo,
    options: Options,
    dtype: np.dtype | None,
    frames: int,
    slice_positions=None,
) -> OutputSize:
    """The :class:`OutputSize` of ``info``'s image (``frames`` frames or stacked slices at
    ``slice_positions``) under ``options``; ``dtype`` is the output type of grey images
    (None: not known before decoding, 4 bytes assumed).  Raises the spacing's DicomError
    when ``spacing`` is set and the image has none, or an invalid one."""
    columns, rows = info.columns, info.rows
    if options.spacing is not None:
        scale_x, scale_y = required_spacing_scale(info, options)
        width, height = max(1, round(columns * scale_x)), max(1, round(rows * scale_y))
        resized = canvas = (width, height)
    elif options.size is not None:
        resized, canvas = fit_size(columns, rows, *options.size), options.size
    else:
        resized = canvas = (columns, rows)
    pages = output_pages(frames, options, slice_positions)
    upsampling = {}
    if options.spacing is not None:  # the output's size follows the source's extent in mm
        upsampling = {"x": resized[0] / columns, "y": resized[1] / rows}
        if slice_positions is not None and len(options.spacing) == 3:
            upsampling["z"] = pages / frames
    return OutputSize(
        width=int(canvas[0]),
        height=int(canvas[1]),
        pages=pages,
        channels=3 if info.is_color else 1,
        itemsize=_itemsize(info, dtype),
        upsampling=upsampling,
    )


def _itemsize(info: ImageInfo, dtype: np.dtype | None) -> int:
    if info.is_color:  # RGB stays 8-bit from 8-bit sources, else 16-bit
        return 1 if info.bits_allocated <= 8 and info.photometric != "PALETTE COLOR" else 2
    return np.dtype(dtype).itemsize if dtype is not None else 4


def required_spacing_scale(info: ImageInfo, options: Options) -> tuple[float, float]:
    """(sx, sy) of ``spacing`` for ``info``: InvalidPixelSpacing when the header's spacing
    is not valid, NoPixelSpacing when it has none."""
    if info.pixel_spacing_problem:
        raise DicomError(
            "transform",
            f"spacing is set and {info.pixel_spacing_problem}",
            ErrorType.INVALID_PIXEL_SPACING,
        )
    return spacing_scale(info.pixel_spacing, options.spacing)


def refusal(size: OutputSize, options: Options) -> DicomError | None:
    """The error refusing ``size`` under the limits of ``options``; None within them."""
    for axis, factor in size.upsampling.items():
        if factor > options.max_upsampling:
            return DicomError(
                "transform",
                f"the output would enlarge the {axis} axis {factor:.4g} times, more than "
                f"max_upsampling = {options.max_upsampling:g} (raise max_upsampling, "
                f"--max-upsampling, to convert it)",
                ErrorType.UPSAMPLING_TOO_LARGE,
            )
    shape = (
        f"{size.width} x {size.height} x {size.pages} page{'s' * (size.pages != 1)} x "
        f"{size.channels} channel{'s' * (size.channels != 1)}"
    )
    for value, option, unit in (
        (size.pixels, "max_output_pixels", "samples"),
        (size.bytes, "max_output_bytes", "bytes uncompressed"),
    ):
        limit = getattr(options, option)
        if value > limit:
            flag = "--" + option.replace("_", "-")
            return DicomError(
                "transform",
                f"the output would be {shape} = {value:,} {unit}, more than {option} = "
                f"{limit:,} (raise {option}, {flag}, to convert it)",
                ErrorType.OUTPUT_TOO_LARGE,
            )
    return None


def check_output_size(
    info: ImageInfo,
    options: Options,
    dtype: np.dtype | None,
    frames: int,
    slice_positions=None,
) -> OutputSize:
    """:func:`estimate`, raising its :func:`refusal` when there is one."""
    size = estimate(info, options, dtype, frames, slice_positions)
    error = refusal(size, options)
    if error is not None:
        raise error
    return size
