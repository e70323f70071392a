"""The processing options shared by the command line, the workflow config and the library.

One frozen :class:`Options` value describes everything that changes an output's pixels
or bytes.  Its :meth:`Options.fingerprint` (together with the library's code hash) is
what decides whether a finished output is still valid, so options that do not change
outputs (threads, strictness, paths) are deliberately not part of it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from functools import cache
from importlib import resources

from dicomprep.core.errors import ErrorType

FILTERS = ("nearest", "triangle", "catmull-rom", "gaussian", "lanczos3")
PADDINGS = ("zero", "top-left", "bottom-right", "center")
COMPRESSIONS = ("packbits", "lzw", "uncompressed", "zstd", "deflate")


class VolumeHandler(StrEnum):
    """What becomes of a volume's frames (docs/configuration.md: volume)."""

    KEEP = "keep"
    CENTRAL_SLICE = "central-slice"
    MAX_INTENSITY = "max-intensity"
    INTERPOLATE = "interpolate"
    LAPLACIAN_MIP = "laplacian-mip"

    @property
    def is_projection(self) -> bool:
        """Whether the volume becomes one page (the central frame or a projection)."""
        return self in _PROJECTIONS


_PROJECTIONS = frozenset(
    {VolumeHandler.CENTRAL_SLICE, VolumeHandler.MAX_INTENSITY, VolumeHandler.LAPLACIAN_MIP}
)
VOLUME_HANDLERS = tuple(handler.value for handler in VolumeHandler)
VOI_MODES = ("auto", "none")
DECODE_RESOLUTIONS = ("auto", "full")
SERIES_MODES = ("files", "stack")
VOLUME_FORMATS = ("tiff", "nifti")
# Frames skipped at each end before a maximum-intensity projection when `skip_frames` is not
# given: laplacian-mip skips the noisy edge slices of a tomosynthesis volume as the Rust
# dicom-preprocessing tool does; max-intensity keeps every frame as it always has.
DEFAULT_SKIP_FRAMES = {"laplacian-mip": 5, "max-intensity": 0}
#: Safety limits (docs/limits.md): they refuse an input but never change an output that is
#: written, so they are left out of the fingerprint (finished outputs stay valid when they
#: change), and a file refused by one is tried again on the next run (run/shard.py).
LIMIT_OPTIONS = (
    "max_output_pixels",
    "max_output_bytes",
    "max_upsampling",
    "max_frame_pixels",
    "max_frames",
)
#: The error types of a refusal by a safety limit (a raised limit may let the file through).
LIMIT_ERRORS = frozenset(
    {
        ErrorType.OUTPUT_TOO_LARGE,
        ErrorType.UPSAMPLING_TOO_LARGE,
        ErrorType.TOO_MANY_FRAMES,
        ErrorType.FRAME_TOO_LARGE,
    }
)


class OptionsError(ValueError):
    """An option has a value outside its domain; the message names the option."""


@dataclass(frozen=True)
class Options:
    """How one DICOM file becomes one TIFF (docs/configuration.md describes each option)."""

    crop: bool = False
    crop_max: bool = False
    crop_components: bool = False
    size: tuple[int, int] | None = None
    filter: str = "triangle"
    padding: str = "zero"
    compression: str = "packbits"
    volume: str = "keep"
    target_frames: int | None = None
    voi: str | tuple[float, float] = "auto"
    # JPEG 2000 / HTJ2K decoded at the coarsest wavelet level that still covers the output
    # size ("auto"), or always at full resolution ("full"); see dicomprep.formats.codestreams.
    decode_resolution: str = "auto"
    # Series: one output per file ("files") or one volume per stack of slices ("stack");
    # stacks are written as TIFF or NIfTI (docs/volumes.md).
    series: str = "files"
    volume_format: str = "tiff"
    # Resample to this pixel spacing [sx, sy] or voxel spacing [sx, sy, sz] in mm (not with size).
    spacing: tuple[float, ...] | None = None
    # laplacian-mip: weight of the MIP's detail; frames skipped at each end before the MIP.
    mip_weight: float = 1.5
    skip_frames: int | None = None
    # Output-size limits, checked before decoding (docs/limits.md): samples (width x height
    # x pages x channels), uncompressed bytes, and output / source size along each axis.
    max_output_pixels: int = 2**31
    max_output_bytes: int = 4 * 2**30
    max_upsampling: float = 16.0
    # Decoding limits, checked before decoding (docs/limits.md): Rows x Columns (100 M: over
    # seven 4096 x 3328 mammograms) and Number of Frames (50,000: twice an enhanced MR of 64
    # slices x 400 time points; cines hold hundreds of frames, tomosynthesis about 100).
    max_frame_pixels: int = 100_000_000
    max_frames: int = 50_000

    def __post_init__(self) -> None:
        for name in ("crop", "crop_max", "crop_components"):
            if not isinstance(getattr(self, name), bool):
                raise OptionsError(f"{name} must be true or false, got {getattr(self, name)!r}")
        _check_choice("filter", self.filter, FILTERS)
        _check_choice("padding", self.padding, PADDINGS)
        _check_choice("compression", self.compression, COMPRESSIONS)
        _check_choice("volume", self.volume, VOLUME_HANDLERS)
        _check_choice("decode_resolution", self.decode_resolution, DECODE_RESOLUTIONS)
        _check_choice("series", self.series, SERIES_MODES)
        _check_choice("volume_format", self.volume_format, VOLUME_FORMATS)
        self._check_spacing()
        self._check_output_limits()
        for name in ("max_frame_pixels", "max_frames"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise OptionsError(f"{name} must be an integer >= 1, got {value!r}")
        if isinstance(self.mip_weight, bool) or not isinstance(self.mip_weight, (int, float)):
            raise OptionsError(f"mip_weight must be a number, got {self.mip_weight!r}")
        if not 0 <= float(self.mip_weight) < float("inf"):
            raise OptionsError(f"mip_weight must be a finite number >= 0, got {self.mip_weight}")
        object.__setattr__(self, "mip_weight", float(self.mip_weight))
        if self.skip_frames is not None and (
            isinstance(self.skip_frames, bool)
            or not isinstance(self.skip_frames, int)
            or self.skip_frames < 0
        ):
            raise OptionsError(f"skip_frames must be an integer >= 0, got {self.skip_frames!r}")
        if self.size is not None:
            size = tuple(self.size)
            if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
                raise OptionsError(
                    f"size must be two positive integers [width, height], got {size}"
                )
            object.__setattr__(self, "size", size)
        if self.volume == "interpolate":
            if not isinstance(self.target_frames, int) or self.target_frames < 1:
                raise OptionsError("target_frames must be a positive integer for 'interpolate'")
        elif self.target_frames is not None and (
            not isinstance(self.target_frames, int) or self.target_frames < 1
        ):
            raise OptionsError("target_frames must be a positive integer")
        voi = self.voi
        if isinstance(voi, str):
            _check_choice("voi", voi, VOI_MODES)
        else:
            window = tuple(float(v) for v in voi)
            if len(window) != 2 or window[1] <= 0:
                raise OptionsError(f"voi must be 'auto', 'none' or [center, width>0], got {voi!r}")
            object.__setattr__(self, "voi", window)

    def _check_output_limits(self) -> None:
        for name in ("max_output_pixels", "max_output_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise OptionsError(f"{name} must be an integer >= 1, got {value!r}")
        value = self.max_upsampling
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 1:
            raise OptionsError(f"max_upsampling must be a number >= 1, got {value!r}")
        object.__setattr__(self, "max_upsampling", float(value))

    def _check_spacing(self) -> None:
        if self.spacing is None:
            return
        try:
            spacing = tuple(float(v) for v in self.spacing)
        except (TypeError, ValueError):
            spacing = ()
        if len(spacing) not in (2, 3) or not all(0 < v < float("inf") for v in spacing):
            raise OptionsError(
                f"spacing must be [sx, sy] or [sx, sy, sz] in mm, each > 0, got {self.spacing!r}"
            )
        if self.size is not None:
            raise OptionsError("size and spacing cannot both be set: spacing replaces size")
        object.__setattr__(self, "spacing", spacing)

    @property
    def frames_skipped(self) -> int:
        """Frames skipped at each end before a maximum over frames (see skip_frames)."""
        if self.skip_frames is not None:
            return self.skip_frames
        return DEFAULT_SKIP_FRAMES.get(self.volume, 0)

    @classmethod
    def from_mapping(cls, values: Mapping) -> Options:
        """Options from a config mapping, ignoring keys that are not options."""
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in values.items() if k in known and v is not None}
        for key in ("size", "spacing"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        if isinstance(kwargs.get("voi"), list):
            kwargs["voi"] = tuple(kwargs["voi"])
        return cls(**kwargs)

    def to_dict(self) -> dict:
        """Plain JSON-able values (lists for tuples)."""
        out = asdict(self)
        for key in ("size", "voi", "spacing"):
            if isinstance(out[key], tuple):
                out[key] = list(out[key])
        return out

    def fingerprint(self) -> str:
        """A short hash of these options and the library code: equal hashes, equal outputs."""
        values = {k: v for k, v in self.to_dict().items() if k not in LIMIT_OPTIONS}
        payload = json.dumps({"options": values, "code": code_hash()}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise OptionsError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


# The modules whose code decides an output's bytes (dotted names for subpackage modules).  A
# change to any of them invalidates every output; reports, planning and the command line do not.
OUTPUT_MODULES = (
    "formats.codestream_checks",
    "formats.codestreams",
    "pixels.crop",
    "formats.decode",
    "formats.geometry",
    "formats.nifti",
    "pixels.intensity",
    "options",
    "pixels.pad",
    "pipeline",
    "pixels.resize",
    "formats.tiff",
    "formats.uids",
    "pixels.volume",
    "pixels.frames",
    "pixels.mapper",
    "series.render",
    "series.spacing",
    "series.stacks",
    "series.volume_file",
)


@cache
def code_hash() -> str:
    """A hash of the sources of :data:`OUTPUT_MODULES` (the code that makes outputs)."""
    digest = hashlib.sha256()
    package = resources.files("dicomprep")
    for name in OUTPUT_MODULES:
        digest.update(name.encode())
        *folders, module = name.split(".")  # "series.stacks" is series/stacks.py
        digest.update(package.joinpath(*folders, f"{module}.py").read_bytes())
    return digest.hexdigest()[:16]


def coerce_command_line_values(config: dict) -> dict:
    """Undo the string typing of ``snakemake --config`` for lists and booleans.

    ``--config size=[1024,1280]`` arrives as ``['1024', '1280']`` and ``crop=true`` as
    ``'true'``; the schema then rejects them.  Numbers in lists and true/false strings
    are converted; everything else is left for the schema to judge.
    Nested mappings (``report={samples_per_modality: 3}``) arrive as strings throughout;
    their numbers are converted too.
    """
    return {key: _coerce(key, value) for key, value in config.items()}


def _coerce(key: str, value, nested: bool = False):
    if isinstance(value, list):
        return [_number(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _coerce(k, v, nested=True) for k, v in value.items()}
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if isinstance(value, str) and value.lower() in ("null", "none") and key != "voi":
        return None
    return _number(value) if nested else value


def unknown_config_keys(config: Mapping, schema: Mapping, prefix: str = "") -> list[str]:
    """Dotted names of the keys of ``config`` that ``schema`` (a JSON schema) does not define.

    Nested objects with their own ``properties`` (such as ``report``) are checked too."""
    properties = schema.get("properties", {})
    unknown = []
    for key, value in config.items():
        if key not in properties:
            unknown.append(f"{prefix}{key}")
        elif isinstance(value, Mapping) and "properties" in properties[key]:
            unknown += unknown_config_keys(value, properties[key], f"{prefix}{key}.")
    return unknown


def load_schema(path: str | os.PathLike) -> dict:
    """The workflow's config schema (a YAML file holding a JSON schema) as a mapping."""
    import yaml

    with open(path) as f:
        return yaml.safe_load(f)


def check_config_keys(config: Mapping, schema: Mapping) -> None:
    """Raise :class:`OptionsError` with one line naming the unknown keys and the valid ones.

    A JSON schema validator reports an unknown key by printing the whole schema; this names
    the key instead, e.g. ``unknown key 'crop_maximum'; valid keys: source, ...``."""
    unknown = unknown_config_keys(config, schema)
    if not unknown:
        return
    parent = unknown[0].rpartition(".")[0]
    properties = schema.get("properties", {})
    for part in parent.split(".") if parent else ():
        properties = properties[part].get("properties", {})
    where = f" of {parent}" if parent else ""
    plural = "s" if len(unknown) > 1 else ""
    raise OptionsError(
        f"unknown key{plural} {', '.join(repr(k) for k in unknown)}; valid keys{where}: "
        f"{', '.join(properties)} (see docs/configuration.md)"
    )


def check_config_types(config: Mapping, schema: Mapping) -> None:
    """Raise :class:`OptionsError` with one line naming the first key whose value the
    schema rejects, what it expects and the value given, e.g. ``size: expected null or a
    list of 2 integers >= 1, got ['abc']``; a JSON schema validator prints the whole rule
    and the instance instead."""
    from jsonschema.validators import validator_for

    errors = list(validator_for(schema)(schema).iter_errors(config))
    if not errors:
        return
    error = min(errors, key=lambda e: [str(p) for p in e.absolute_path])
    names, prop, value = [], schema, config
    for part in error.absolute_path:
        if not (isinstance(part, str) and part in prop.get("properties", {})):
            break
        names.append(part)
        prop, value = prop["properties"][part], value[part]
    if not names:
        raise OptionsError(error.message.splitlines()[0])
    raise OptionsError(f"{'.'.join(names)}: expected {expected_value(prop)}, got {value!r}")


def expected_value(prop: Mapping, plural: bool = False) -> str:
    """What a JSON schema property accepts, in words (``an integer from 1 to 1024``)."""
    for alternatives in ("oneOf", "anyOf"):
        if alternatives in prop:
            return " or ".join(expected_value(p, plural) for p in prop[alternatives])
    if "const" in prop:
        return repr(prop["const"])
    if "enum" in prop:
        return "one of " + ", ".join(str(v) for v in prop["enum"])
    kind = prop.get("type")
    if kind == "array":
        count = prop.get("minItems")
        many = f"{count} " if count is not None and count == prop.get("maxItems") else ""
        return f"a list of {many}{expected_value(prop.get('items', {}), plural=True)}"
    singular, several = _TYPE_WORDS.get(kind, ("a value", "values"))
    low, high = prop.get("minimum"), prop.get("maximum")
    if low is not None and high is not None:
        bounds = f" from {low} to {high}"
    else:
        bounds = f" >= {low}" if low is not None else f" <= {high}" if high is not None else ""
    return (several if plural else singular) + bounds


_TYPE_WORDS = {
    "integer": ("an integer", "integers"),
    "number": ("a number", "numbers"),
    "boolean": ("true or false", "true/false values"),
    "string": ("a string", "strings"),
    "null": ("null", "nulls"),
    "object": ("a mapping", "mappings"),
}


def _number(value):
    if not isinstance(value, str):
        return value
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            continue
    return value
