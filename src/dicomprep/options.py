"""The processing options shared by the command line, the workflow config and the library.

One frozen :class:`Options` value describes everything that changes an output's pixels
or bytes.  Its :meth:`Options.fingerprint` (together with the library's code hash) is
what decides whether a finished output is still valid, so options that do not change
outputs (threads, strictness, paths) are deliberately not part of it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from functools import cache
from importlib import resources

FILTERS = ("nearest", "triangle", "catmull-rom", "gaussian", "lanczos3")
PADDINGS = ("zero", "top-left", "bottom-right", "center")
COMPRESSIONS = ("packbits", "lzw", "uncompressed", "zstd", "deflate")
VOLUME_HANDLERS = ("keep", "central-slice", "max-intensity", "interpolate")
VOI_MODES = ("auto", "none")


class OptionsError(ValueError):
    """An option has a value outside its domain; the message names the option."""


@dataclass(frozen=True)
class Options:
    """How one DICOM file becomes one TIFF (SPEC §2–§3)."""

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

    def __post_init__(self) -> None:
        _check_choice("filter", self.filter, FILTERS)
        _check_choice("padding", self.padding, PADDINGS)
        _check_choice("compression", self.compression, COMPRESSIONS)
        _check_choice("volume", self.volume, VOLUME_HANDLERS)
        if self.size is not None:
            size = tuple(self.size)
            if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
                raise OptionsError(
                    f"size must be two positive integers [width, height], got {size}"
                )
            object.__setattr__(self, "size", size)
        if self.volume == "interpolate":
            if not isinstance(self.target_frames, int) or self.target_frames < 1:
                raise OptionsError("volume 'interpolate' needs target_frames, a positive integer")
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

    @classmethod
    def from_mapping(cls, values: Mapping) -> Options:
        """Options from a config mapping, ignoring keys that are not options."""
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in values.items() if k in known and v is not None}
        if "size" in kwargs:
            kwargs["size"] = tuple(kwargs["size"])
        if isinstance(kwargs.get("voi"), list):
            kwargs["voi"] = tuple(kwargs["voi"])
        return cls(**kwargs)

    def to_dict(self) -> dict:
        """Plain JSON-able values (lists for tuples)."""
        out = asdict(self)
        for key in ("size", "voi"):
            if isinstance(out[key], tuple):
                out[key] = list(out[key])
        return out

    def fingerprint(self) -> str:
        """A short hash of these options and the library code: equal hashes, equal outputs."""
        payload = json.dumps({"options": self.to_dict(), "code": code_hash()}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise OptionsError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


# The modules whose code decides an output's bytes.  A change to any of them invalidates
# every output; reports, planning and the command line do not.
OUTPUT_MODULES = (
    "crop",
    "decode",
    "geometry",
    "intensity",
    "options",
    "pad",
    "pipeline",
    "resize",
    "tiff",
    "uids",
    "volume",
)


@cache
def code_hash() -> str:
    """A hash of the sources of :data:`OUTPUT_MODULES` (the code that makes outputs)."""
    digest = hashlib.sha256()
    package = resources.files("dicomprep")
    for name in OUTPUT_MODULES:
        digest.update(name.encode())
        digest.update((package / f"{name}.py").read_bytes())
    return digest.hexdigest()[:16]


def coerce_command_line_values(config: dict) -> dict:
    """Undo the string typing of ``snakemake --config`` for lists and booleans.

    ``--config size=[1024,1280]`` arrives as ``['1024', '1280']`` and ``crop=true`` as
    ``'true'``; the schema then rejects them.  Numbers in lists and true/false strings
    are converted; everything else is left for the schema to judge.
    """
    out = dict(config)
    for key, value in config.items():
        if isinstance(value, list):
            out[key] = [_number(v) for v in value]
        elif isinstance(value, str) and value.lower() in ("true", "false"):
            out[key] = value.lower() == "true"
        elif isinstance(value, str) and value.lower() in ("null", "none") and key != "voi":
            out[key] = None
    return out


def _number(value):
    if not isinstance(value, str):
        return value
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            continue
    return value
