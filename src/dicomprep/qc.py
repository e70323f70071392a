"""The QC report: one self-contained HTML page to look at before training.

:func:`build_report` reads what a workflow run leaves behind — the manifest, the failures
table, the run summary, the header catalog and the shard results — and writes
``{output}/report/index.html`` with

- the counts of processed / skipped / duplicate / failed inputs per modality, the output
  sizes, the bytes of the TIFFs and the time the conversions took;
- for a fixed sample of outputs per modality (the first ``samples_per_modality`` SOP
  Instance UIDs in the order of their SHA-256 hash, so the same run always shows the same
  files) the source image beside its TIFF: the source decoded with the library (VOI
  applied, no crop or resize; the central frame of a volume, or the maximum-intensity
  projection when that is the volume handling) with the crop box read from the TIFF's tags,
  and the TIFF's central page with its active area and padding;
- the failures table and one section per study with its series, frame counts and sizes.

Thumbnails are PNG files in ``report/img/`` named by SOP Instance UID; the page has inline
CSS, no scripts and no network references.  Beside each sample's thumbnails a small JSON
file records what they were made from (the TIFF's and the source's size and modification
time, the options); a rebuild reuses thumbnails whose record still matches, so a rerun
after new data only renders new samples.  Samples are rendered in ``processes`` processes.

Privacy: the page holds UIDs, modalities, sizes, counts, statuses and times only; no header
value that names or identifies a patient (names, IDs, dates) is read into it.  Inputs that
did not become a TIFF are listed by their path *relative to the common folder of all
inputs*, so the folders above it never appear; folder and file names below it do.  Thumbnails
are pixels: text burned into an image stays visible, as it does in the TIFF.
"""

from __future__ import annotations

import hashlib
import html
import json
import multiprocessing
import os
import struct
import warnings
import zlib
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import tifffile

from .collect import read_results
from .decode import image_info, read_header
from .discover import DICOM, REPORT_STATUS, empty_catalog, load_catalog
from .geometry import Geometry
from .manifest import read_manifest
from .options import Options
from .pipeline import render
from .resize import fit_size, resize
from .tiff import read_geometry
from .volume import central_index

__all__ = [
    "STATUSES",
    "Sample",
    "build_report",
    "choose_samples",
    "instance_table",
    "load_run",
    "modality_counts",
    "render_sample",
    "sample_key",
    "size_distribution",
    "to_display",
    "volume_label",
    "write_png",
]

# Statuses of an input in the report, in display order ("pending": found by discovery but
# not converted yet, e.g. a report built while shards are missing).
STATUSES = ("processed", "skipped", "duplicate", "failed", "pending")

THUMBNAIL_SIZE = 256  # longest side of a thumbnail, in pixels
MAX_FAILURE_ROWS = 1000
MAX_STUDIES = 500
MAX_SIZE_ROWS = 40

# The order of the "not converted" table: the problems first.
FAILURE_ORDER = ("failed", "pending", "duplicate", "skipped")

# Overlay colours (RGB) and opacities.
CROP_COLOUR = (255, 150, 0)
OUTSIDE_CROP_COLOUR = (200, 30, 120)
ACTIVE_COLOUR = (0, 210, 90)
PADDING_COLOUR = (40, 100, 255)
TINT = 0.45

NO_MODALITY = "(none)"


# -- gathering the tables ----------------------------------------------------------------


@dataclass
class Run:
    """The tables of one finished run."""

    output_root: Path
    catalog: pd.DataFrame
    results: pd.DataFrame
    manifest: pd.DataFrame
    failures: pd.DataFrame
    summary: dict


RESULT_COLUMNS = ["source", "status", "output", "seconds", "reused"]
FAILURE_COLUMNS = ["path", "status", "stage", "error_type", "message"]


def load_run(
    output_root: str | os.PathLike,
    *,
    manifest_csv: str | os.PathLike,
    failures_csv: str | os.PathLike,
    summary_json: str | os.PathLike | None,
    catalog: str | os.PathLike | None,
    results: Iterable[str | os.PathLike] = (),
) -> Run:
    """Read the manifest, failures, summary, catalog and shard results of a run."""
    manifest = read_manifest(manifest_csv)
    failures = pd.read_csv(failures_csv, dtype=str, keep_default_na=False)
    failures = failures.reindex(columns=FAILURE_COLUMNS).fillna("")
    summary = {}
    if summary_json is not None and Path(summary_json).exists():
        summary = json.loads(Path(summary_json).read_text())
    table = load_catalog(catalog) if catalog is not None else None
    if table is None:
        table = empty_catalog()
    res = read_results(list(results))
    if not len(res):
        res = pd.DataFrame(columns=RESULT_COLUMNS)
    res["seconds"] = pd.to_numeric(res["seconds"], errors="coerce").fillna(0.0)
    res["reused"] = res["reused"].fillna(False).astype(bool)
    return Run(
        Path(output_root),
        _plain_strings(table),
        _plain_strings(res),
        _plain_strings(manifest),
        failures,
        summary,
    )


def _plain_strings(df: pd.DataFrame) -> pd.DataFrame:
    """Text columns as Python strings (object dtype): faster to look up in bulk."""
    text = [c for c in df.columns if isinstance(df[c].dtype, pd.StringDtype)]
    return df.astype({c: object for c in text}) if text else df


def instance_table(run: Run) -> pd.DataFrame:
    """One row per input path: its modality, status, UIDs, source and output facts.

    The status comes from the failures table when the path is listed there, else
    ``processed`` when its SOP Instance UID is in the manifest, else ``pending``.
    """
    cat = run.catalog
    failed_status = dict(zip(run.failures["path"], run.failures["status"], strict=True))
    done = set(run.manifest["sop_instance_uid"])
    is_dicom = cat["status"] == DICOM
    fallback = np.where(
        is_dicom,
        np.where(cat["sop_instance_uid"].isin(done), "processed", "pending"),
        cat["status"].map(REPORT_STATUS).fillna("failed"),
    )
    status = cat["path"].map(failed_status)
    status = status.where(status.notna(), pd.Series(fallback, index=cat.index))
    table = pd.DataFrame(
        {
            "path": cat["path"],
            "status": status.astype(str),
            "modality": cat["modality"].replace("", NO_MODALITY),
            "study_instance_uid": cat["study_instance_uid"],
            "series_instance_uid": cat["series_instance_uid"],
            "sop_instance_uid": cat["sop_instance_uid"],
            "source_width": cat["columns"],
            "source_height": cat["rows"],
            "source_frames": np.where(cat["rows"] > 0, cat["number_of_frames"].clip(lower=1), 0),
            "source_bytes": cat["size"],
        }
    )
    extra = run.failures[~run.failures["path"].isin(set(cat["path"]))]
    if len(extra):  # failures of paths the catalog does not know (catalog missing)
        rows = pd.DataFrame({"path": extra["path"], "status": extra["status"]})
        rows["modality"] = NO_MODALITY
        table = pd.concat([table, rows], ignore_index=True)
    table = table.fillna({c: "" for c in table.columns if table[c].dtype == object})
    for column in ("source_width", "source_height", "source_frames", "source_bytes"):
        table[column] = pd.to_numeric(table[column], errors="coerce").fillna(0).astype("int64")

    out = run.manifest.rename(columns={"path": "tiff"})[
        ["sop_instance_uid", "tiff", "width", "height", "channels", "num_frames"]
    ].drop_duplicates("sop_instance_uid")
    processed = table["status"] == "processed"
    merged = table[processed].merge(out, on="sop_instance_uid", how="left")
    merged.index = table.index[processed]
    for column in ("tiff", "width", "height", "channels", "num_frames"):
        table[column] = merged[column]
    table["tiff"] = table["tiff"].fillna("")
    for column in ("width", "height", "channels", "num_frames"):
        table[column] = table[column].fillna(0).astype("int64")
    table["tiff_bytes"] = _file_sizes(run.output_root, table["tiff"])
    seconds = dict(zip(run.results["source"], run.results["seconds"], strict=True))
    table["seconds"] = table["path"].map(seconds).fillna(0.0).astype(float)
    return table


def _file_sizes(root: Path, relatives: Iterable[str]) -> list[int]:
    """Sizes of the files ``root/relative`` (0 for '' and for missing files)."""
    base = os.fspath(root) + os.sep
    sizes = []
    for relative in relatives:
        try:
            sizes.append(os.stat(base + relative).st_size if relative else 0)
        except OSError:
            sizes.append(0)
    return sizes


def modality_counts(instances: pd.DataFrame) -> pd.DataFrame:
    """Inputs per modality and status, with TIFF bytes, output frames and seconds."""
    if not len(instances):
        return pd.DataFrame(columns=["modality", *STATUSES, "tiff_bytes", "frames", "seconds"])
    counts = pd.crosstab(instances["modality"], instances["status"])
    counts = counts.reindex(columns=list(STATUSES), fill_value=0)
    sums = instances.groupby("modality")[["tiff_bytes", "num_frames", "seconds"]].sum()
    table = counts.join(sums).rename(columns={"num_frames": "frames"})
    table = table.reset_index().rename(columns={"index": "modality"})
    return table.sort_values("modality", kind="stable").reset_index(drop=True)


def size_distribution(manifest: pd.DataFrame) -> pd.DataFrame:
    """Output files per (width, height, channels), most frequent first."""
    columns = ["width", "height", "channels", "files", "frames"]
    if not len(manifest):
        return pd.DataFrame(columns=columns)
    grouped = manifest.groupby(["width", "height", "channels"])
    table = grouped.agg(files=("sop_instance_uid", "size"), frames=("num_frames", "sum"))
    table = table.reset_index()
    order = table.sort_values(["files", "width", "height"], ascending=[False, True, True])
    return order.reset_index(drop=True)[columns]


def source_size_distribution(instances: pd.DataFrame) -> pd.DataFrame:
    """Processed inputs per (modality, source width, source height), most frequent first."""
    done = instances[instances["status"] == "processed"]
    columns = ["modality", "source_width", "source_height", "files"]
    if not len(done):
        return pd.DataFrame(columns=columns)
    table = done.groupby(["modality", "source_width", "source_height"]).size()
    table = table.reset_index(name="files")
    table = table.sort_values(["files", "modality"], ascending=[False, True], kind="stable")
    return table.reset_index(drop=True)[columns]


# -- samples -----------------------------------------------------------------------------


def sample_key(sop_instance_uid: str) -> str:
    """The sort key that picks samples: the SHA-256 of the SOP Instance UID (hex)."""
    return hashlib.sha256(sop_instance_uid.encode()).hexdigest()


def choose_samples(instances: pd.DataFrame, per_modality: int) -> dict[str, pd.DataFrame]:
    """Per modality, the processed rows with the smallest :func:`sample_key` values."""
    done = instances[(instances["status"] == "processed") & (instances["tiff"] != "")]
    if per_modality <= 0 or not len(done):
        return {}
    done = done.assign(_key=done["sop_instance_uid"].map(sample_key))
    chosen = {}
    for modality, group in done.groupby("modality", sort=True):
        group = group.sort_values(["_key", "sop_instance_uid"], kind="stable")
        chosen[str(modality)] = group.head(per_modality).drop(columns="_key")
    return chosen


def volume_label(source_frames: int, output_frames: int, options: Options) -> str:
    """How a multi-frame source was handled, for the sample captions ('' for one frame)."""
    if source_frames <= 1:
        return ""
    n = source_frames
    if options.volume == "central-slice":
        return f"volume of {n} frames: central slice (frame {central_index(n) + 1})"
    if options.volume == "max-intensity":
        return f"volume of {n} frames: maximum-intensity projection"
    if options.volume == "interpolate":
        return f"volume of {n} frames: interpolated to {output_frames} frames"
    return f"volume of {n} frames: keep {output_frames} frames"


@dataclass
class Sample:
    """One sampled output with its two thumbnails (file names inside ``img/``)."""

    modality: str
    study_instance_uid: str
    sop_instance_uid: str
    source_png: str = ""
    output_png: str = ""
    source_size: tuple[int, int] = (0, 0)
    output_size: tuple[int, int] = (0, 0)
    source_frames: int = 0
    output_frames: int = 0
    source_view: str = ""
    output_view: str = ""
    geometry: Geometry | None = None
    label: str = ""
    errors: list[str] = field(default_factory=list)


def to_display(frame: np.ndarray) -> np.ndarray:
    """An output or rendered frame as uint8 for viewing (H x W or H x W x 3).

    uint8 stays; uint16 (the full 0..65535 range after VOI) keeps its high byte; the
    signed or float values of `voi: none` are stretched from their minimum to maximum.
    """
    frame = np.asarray(frame)
    if frame.dtype == np.uint8:
        return frame
    if frame.dtype == np.uint16:
        return (frame >> 8).astype(np.uint8)
    values = frame.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(frame.shape, np.uint8)
    low, high = float(values[finite].min()), float(values[finite].max())
    if high <= low:
        return np.zeros(frame.shape, np.uint8)
    scaled = (np.where(finite, values, low) - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _thumbnail(image: np.ndarray, size: int) -> tuple[np.ndarray, float, float]:
    """``image`` (uint8) scaled to fit ``size x size`` as RGB, and the scale per axis."""
    height, width = image.shape[:2]
    new_w, new_h = fit_size(width, height, size, size)
    shrinking = new_w < width or new_h < height
    thumb = resize(image, new_w, new_h, "triangle" if shrinking else "nearest")
    if thumb.ndim == 2:
        thumb = np.repeat(thumb[:, :, None], 3, axis=2)
    return np.ascontiguousarray(thumb), new_w / width, new_h / height


def _scaled_box(box, sx: float, sy: float, width: int, height: int) -> tuple[int, ...]:
    """A box (x0, y0, x1, y1; exclusive end) in thumbnail pixels, at least 1 pixel wide."""
    x0, y0, x1, y1 = box
    a = min(max(int(np.floor(x0 * sx)), 0), width - 1)
    b = min(max(int(np.floor(y0 * sy)), 0), height - 1)
    c = min(max(int(np.ceil(x1 * sx)), a + 1), width)
    d = min(max(int(np.ceil(y1 * sy)), b + 1), height)
    return a, b, c, d


def _tint_outside(rgb: np.ndarray, box, colour, alpha: float) -> None:
    x0, y0, x1, y1 = box
    outside = np.ones(rgb.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    if outside.any():
        tint = np.asarray(colour, np.float32) * np.float32(alpha)
        blend = rgb[outside].astype(np.float32) * np.float32(1 - alpha) + tint
        rgb[outside] = np.rint(blend).astype(np.uint8)


def _outline(rgb: np.ndarray, box, colour, width: int = 2) -> None:
    x0, y0, x1, y1 = box
    w = max(1, min(width, (x1 - x0 + 1) // 2, (y1 - y0 + 1) // 2))
    colour = np.asarray(colour, np.uint8)
    rgb[y0 : y0 + w, x0:x1] = colour
    rgb[y1 - w : y1, x0:x1] = colour
    rgb[y0:y1, x0 : x0 + w] = colour
    rgb[y0:y1, x1 - w : x1] = colour


def source_thumbnail(frame: np.ndarray, crop_box, size: int = THUMBNAIL_SIZE) -> np.ndarray:
    """The source frame as an RGB thumbnail, outside the crop box tinted, the box outlined."""
    thumb, sx, sy = _thumbnail(to_display(frame), size)
    box = _scaled_box(crop_box, sx, sy, thumb.shape[1], thumb.shape[0])
    _tint_outside(thumb, box, OUTSIDE_CROP_COLOUR, TINT)
    _outline(thumb, box, CROP_COLOUR)
    return thumb


def output_thumbnail(page: np.ndarray, active_area, size: int = THUMBNAIL_SIZE) -> np.ndarray:
    """An output page as an RGB thumbnail, the padding tinted, the active area outlined."""
    thumb, sx, sy = _thumbnail(to_display(page), size)
    box = _scaled_box(active_area, sx, sy, thumb.shape[1], thumb.shape[0])
    _tint_outside(thumb, box, PADDING_COLOUR, TINT)
    _outline(thumb, box, ACTIVE_COLOUR)
    return thumb


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write a uint8 H x W (grey) or H x W x 3 (RGB) image as PNG, atomically.

    Plain zlib and the PNG "Up" row filter; no metadata chunks, so the bytes depend on the
    pixels alone.
    """
    image = np.ascontiguousarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"expected a uint8 H x W or H x W x 3 image, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] != 3:
        raise ValueError(f"expected 3 channels, got {image.shape[2]}")
    height, width = image.shape[:2]
    colour_type = 2 if image.ndim == 3 else 0
    rows = image.reshape(height, -1)
    up = rows.copy()
    up[1:] -= rows[:-1]  # uint8 arithmetic wraps modulo 256, as the filter requires
    filtered = np.empty((height, rows.shape[1] + 1), np.uint8)
    filtered[:, 0] = 2
    filtered[:, 1:] = up

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(filtered.tobytes(), 1))
        + chunk(b"IEND", b"")
    )
    _atomic_write(Path(path), data)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _source_options(options: Options) -> Options:
    """Decode a source as the pipeline does, without crop, resize or padding: the central
    frame of a volume (or the projection, when that is what the TIFF holds)."""
    volume = "max-intensity" if options.volume == "max-intensity" else "central-slice"
    voi = options.voi if isinstance(options.voi, tuple) else "auto"
    return Options(volume=volume, voi=voi)


def render_sample(
    row,
    output_root: str | os.PathLike,
    img_dir: str | os.PathLike,
    options: Options,
    size: int = THUMBNAIL_SIZE,
) -> Sample:
    """Thumbnails of one processed file (source with crop box, TIFF with active area).

    ``row`` is a row of :func:`instance_table`.  Problems (a source that moved, a TIFF that
    cannot be read) are recorded in ``Sample.errors`` instead of raised.
    """
    sop = str(row.sop_instance_uid)
    sample = Sample(str(row.modality), str(row.study_instance_uid), sop)
    img_dir = Path(img_dir)
    tiff_path = Path(output_root) / str(row.tiff)
    try:
        geometry = read_geometry(tiff_path)
        with tifffile.TiffFile(tiff_path) as tif:
            pages = len(tif.pages)
            index = central_index(pages)
            page = tif.pages[index].asarray()
        sample.geometry = geometry
        sample.output_frames = pages
        sample.output_size = (page.shape[1], page.shape[0])
        sample.output_view = f"page {index + 1} of {pages}" if pages > 1 else ""
        sample.output_png = f"{sop}.output.png"
        write_png(img_dir / sample.output_png, output_thumbnail(page, geometry.active_area, size))
    except Exception as exc:  # noqa: BLE001 - one unreadable file must not stop the report
        sample.errors.append(f"output: {_one_line(exc)}")
        geometry = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds, _ = read_header(row.path)
            frames = image_info(ds).num_frames
            source_options = _source_options(options)
            rendered = render(row.path, ds, source_options)
            frame = next(rendered.frames)
        sample.source_frames = frames
        sample.source_size = (frame.shape[1], frame.shape[0])
        if frames > 1:
            if source_options.volume == "max-intensity":
                sample.source_view = f"maximum-intensity projection of {frames} frames"
            else:
                sample.source_view = f"central frame {central_index(frames) + 1} of {frames}"
        crop = geometry.crop_box if geometry is not None else (0, 0, *sample.source_size)
        sample.source_png = f"{sop}.source.png"
        write_png(img_dir / sample.source_png, source_thumbnail(frame, crop, size))
    except Exception as exc:  # noqa: BLE001
        sample.errors.append(f"source: {_one_line(exc)}")
    frames_in = sample.source_frames or int(row.source_frames)
    sample.label = volume_label(frames_in, sample.output_frames or int(row.num_frames), options)
    return sample


def sample_record_key(row, output_root: str | os.PathLike, options: Options, size: int) -> dict:
    """What a sample's thumbnails are made from: the TIFF and the source file (size and
    modification time), the options and the thumbnail size."""

    def identity(path: str | os.PathLike) -> list[int]:
        try:
            st = os.stat(path)
        except OSError:
            return [-1, -1]
        return [st.st_size, st.st_mtime_ns]

    path_hash = hashlib.sha256(str(row.path).encode()).hexdigest()[:16]  # no folder names
    return {
        "tiff": identity(Path(output_root) / str(row.tiff)),
        "source": [path_hash, *identity(row.path)],
        "options": options.fingerprint(),
        "size": size,
    }


def _cached_sample(row, img_dir: Path, key: dict) -> Sample | None:
    """The sample recorded beside its thumbnails, if it was made from the same files."""
    try:
        record = json.loads((img_dir / f"{row.sop_instance_uid}.json").read_text())
        if record["key"] != key or record["sample"]["errors"]:
            return None
        fields = record["sample"]
        geometry = fields.pop("geometry")
        sample = Sample(**fields)
        sample.geometry = Geometry(**geometry) if geometry else None
        sample.source_size = tuple(sample.source_size)
        sample.output_size = tuple(sample.output_size)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not all((img_dir / name).is_file() for name in (sample.source_png, sample.output_png)):
        return None
    return sample


def _render_and_record(job) -> Sample:
    row, output_root, img_dir, options, size, key = job
    sample = render_sample(row, output_root, img_dir, options, size)
    record = {"key": key, "sample": asdict(sample)}
    _atomic_write(img_dir / f"{sample.sop_instance_uid}.json", json.dumps(record).encode())
    return sample


def render_samples(
    rows: list,
    output_root: str | os.PathLike,
    img_dir: str | os.PathLike,
    options: Options,
    size: int = THUMBNAIL_SIZE,
    processes: int = 1,
) -> list[tuple[Sample, bool]]:
    """``(sample, reused)`` for each row of :func:`instance_table`, in order: thumbnails
    still made from the same files are reused, the others rendered (in ``processes``
    forked processes when there are several to render)."""
    img_dir = Path(img_dir)
    keys = [sample_record_key(row, output_root, options, size) for row in rows]
    cached = [_cached_sample(row, img_dir, key) for row, key in zip(rows, keys, strict=True)]
    jobs = [
        (SimpleNamespace(**row._asdict()), output_root, img_dir, options, size, key)
        for row, key, sample in zip(rows, keys, cached, strict=True)
        if sample is None
    ]
    if processes > 1 and len(jobs) > 1:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(min(processes, len(jobs)), mp_context=context) as pool:
            fresh = iter(list(pool.map(_render_and_record, jobs)))
    else:
        fresh = iter([_render_and_record(job) for job in jobs])
    return [(sample, True) if sample is not None else (next(fresh), False) for sample in cached]


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


# -- paths shown in the report -----------------------------------------------------------


def common_folder(paths: Iterable[str]) -> str:
    """The deepest folder that holds every path ('' when they share none)."""
    paths = [str(p) for p in paths if p]
    if not paths:
        return ""
    prefix = os.path.commonprefix([min(paths), max(paths)])  # shared by all paths
    return prefix[: prefix.rfind("/")] if "/" in prefix else ""


def relative_to(path: str, folder: str) -> str:
    """``path`` relative to ``folder`` when inside it, else unchanged."""
    if folder and path.startswith(folder.rstrip("/") + "/"):
        return path[len(folder.rstrip("/")) + 1 :]
    return path


def _strip_folder(text: str, folder: str) -> str:
    if not folder or folder == "/":
        return text
    return text.replace(folder.rstrip("/") + "/", "")


# -- HTML --------------------------------------------------------------------------------

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
margin:0;color:#1d2430;background:#f4f6f9;font-size:14px}
header{background:#1f3a5f;color:#fff;padding:16px 28px}
header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#c9d6e8}
nav{background:#fff;border-bottom:1px solid #d8dee8;padding:8px 28px;position:sticky;top:0}
nav a{margin-right:18px;color:#1f3a5f;text-decoration:none;font-weight:600}
main{padding:8px 28px 40px}
section{margin-top:22px}
h2{font-size:18px;border-bottom:2px solid #1f3a5f;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 8px}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #d8dee8;border-radius:6px;padding:10px 16px;min-width:120px}
.card .n{font-size:24px;font-weight:700}
.card .l{color:#5a6677}
.processed .n{color:#18794e}.skipped .n{color:#8a6d00}.duplicate .n{color:#6b4fbb}
.failed .n{color:#c22d2d}.pending .n{color:#5a6677}
table{border-collapse:collapse;background:#fff;margin:6px 0 10px}
th,td{border:1px solid #d8dee8;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#e9eef5}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
td.uid{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12px;word-break:break-all}
td.msg{max-width:560px;word-break:break-word}
.note{color:#5a6677}
.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;
vertical-align:middle;border:1px solid #888}
.samples{display:flex;flex-wrap:wrap;gap:14px}
.sample{background:#fff;border:1px solid #d8dee8;border-radius:6px;padding:8px;width:540px}
.pair{display:flex;gap:8px;align-items:flex-start}
figure{margin:0;width:264px}
figure img{display:block;background:#000;max-width:256px;max-height:256px}
figcaption{font-size:12px;color:#3a4656;margin-top:3px}
.sample .uid{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:11px;
word-break:break-all;color:#3a4656}
.label{font-weight:600;color:#1f3a5f;margin:4px 0}
.err{color:#c22d2d}
details{background:#fff;border:1px solid #d8dee8;border-radius:6px;margin:6px 0;padding:4px 10px}
summary{cursor:pointer;font-weight:600}
summary .uid{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-weight:400}
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _bytes(n: float) -> str:
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def _duration(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {rest:02d} s"


def _table(headers: list[str] | None, rows: Iterable[list], classes: dict[int, str] | None = None):
    """An HTML table (no header row for ``headers=None``); ``classes`` maps a column index
    to a cell class (num, uid, msg)."""
    classes = classes or {}
    head = "".join(
        f'<th class="{classes[i]}">{_e(h)}</th>' if classes.get(i) == "num" else f"<th>{_e(h)}</th>"
        for i, h in enumerate(headers or [])
    )
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="{classes[i]}">{_e(v)}</td>' if i in classes else f"<td>{_e(v)}</td>"
            for i, v in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    thead = f"<thead><tr>{head}</tr></thead>" if headers is not None else ""
    return f"<table>{thead}<tbody>{''.join(body)}</tbody></table>"


def _summary_section(run: Run, instances: pd.DataFrame, options: Options) -> str:
    status_counts = instances["status"].value_counts().to_dict() if len(instances) else {}
    numbers = {s: int(run.summary.get(s, status_counts.get(s, 0))) for s in STATUSES[:4]}
    numbers["processed"] = len(run.manifest)
    pending = int(status_counts.get("pending", 0))
    cards = [
        f'<div class="card {s}"><div class="n">{numbers[s]}</div><div class="l">{s}</div></div>'
        for s in STATUSES[:4]
    ]
    if pending:
        cards.append(
            f'<div class="card pending"><div class="n">{pending}</div>'
            '<div class="l">pending</div></div>'
        )
    done = instances[instances["status"] == "processed"]
    tiff_bytes = int(done["tiff_bytes"].sum()) if len(done) else 0
    source_bytes = int(done["source_bytes"].sum()) if len(done) else 0
    frames = int(run.manifest["num_frames"].sum()) if len(run.manifest) else 0
    seconds = float(run.results["seconds"].sum()) if len(run.results) else 0.0
    fresh = run.results[~run.results["reused"]] if len(run.results) else run.results
    seconds_now = float(run.summary.get("seconds_now", fresh["seconds"].sum() if len(fresh) else 0))
    converted = len(run.results[run.results["status"] == "ok"]) if len(run.results) else 0
    per_file = seconds / converted if converted else 0.0
    facts = [
        ["output TIFF files", f"{len(run.manifest)} ({frames} frames)"],
        ["TIFF bytes", f"{_bytes(tiff_bytes)} ({tiff_bytes:,} bytes)"],
        ["source bytes of these files", f"{_bytes(source_bytes)} ({source_bytes:,} bytes)"],
        [
            "time (sum of per-file seconds)",
            f"{_duration(seconds)} ({seconds:.2f} s; {per_file:.3f} s per converted file)",
        ],
        [
            "of which converted in the last run",
            f"{int(run.summary.get('converted_now', len(fresh)))} files, "
            f"{_duration(seconds_now)}; {int(run.summary.get('reused', 0))} files reused",
        ],
    ]
    option_rows = [[k, json.dumps(v)] for k, v in options.to_dict().items()]
    return (
        '<section id="summary"><h2>Summary</h2>'
        f'<div class="cards">{"".join(cards)}</div>'
        f"<h3>Outputs and time</h3>{_table(None, facts)}"
        f"<h3>Options</h3>{_table(['option', 'value'], option_rows)}"
        "</section>"
    )


def _modality_section(instances: pd.DataFrame) -> str:
    table = modality_counts(instances)
    show = [s for s in STATUSES if s != "pending" or (len(table) and table["pending"].any())]
    headers = ["modality", *show, "total", "output frames", "TIFF bytes", "time"]
    rows = []
    for r in table.itertuples(index=False):
        counts = [int(getattr(r, s)) for s in show]
        rows.append(
            [
                r.modality,
                *counts,
                int(sum(int(getattr(r, s)) for s in STATUSES)),
                int(r.frames),
                _bytes(r.tiff_bytes),
                _duration(r.seconds),
            ]
        )
    numeric = {i: "num" for i in range(1, len(headers))}
    return (
        '<section id="modalities"><h2>By modality</h2>'
        + (_table(headers, rows, numeric) if rows else '<p class="note">No inputs.</p>')
        + "</section>"
    )


def _sizes_section(run: Run, instances: pd.DataFrame) -> str:
    sizes = size_distribution(run.manifest)
    rows = [
        [f"{r.width} × {r.height}", int(r.channels), int(r.files), int(r.frames)]
        for r in sizes.head(MAX_SIZE_ROWS).itertuples(index=False)
    ]
    more = len(sizes) - MAX_SIZE_ROWS
    sources = source_size_distribution(instances)
    source_rows = [
        [r.modality, f"{r.source_width} × {r.source_height}", int(r.files)]
        for r in sources.head(MAX_SIZE_ROWS).itertuples(index=False)
    ]
    more_sources = len(sources) - MAX_SIZE_ROWS
    parts = ['<section id="sizes"><h2>Sizes</h2><h3>Output (width × height)</h3>']
    if rows:
        parts.append(_table(["size", "channels", "files", "frames"], rows, {1: "num", 2: "num"}))
    else:
        parts.append('<p class="note">No outputs.</p>')
    if more > 0:
        parts.append(f'<p class="note">{more} more sizes (see manifest.csv).</p>')
    parts.append("<h3>Sources of the outputs (columns × rows)</h3>")
    if source_rows:
        parts.append(_table(["modality", "size", "files"], source_rows, {2: "num"}))
    if more_sources > 0:
        parts.append(f'<p class="note">{more_sources} more source sizes.</p>')
    parts.append("</section>")
    return "".join(parts)


def _sample_card(sample: Sample) -> str:
    g = sample.geometry
    parts = ['<div class="sample">']
    parts.append(f'<div class="uid">SOP {_e(sample.sop_instance_uid)}</div>')
    parts.append(f'<div class="uid">study {_e(sample.study_instance_uid)}</div>')
    if sample.label:
        parts.append(f'<div class="label">{_e(sample.label)}</div>')
    parts.append('<div class="pair">')
    if sample.source_png:
        sw, sh = sample.source_size
        caption = f"source {sw} × {sh}"
        if sample.source_view:
            caption += f", {sample.source_view}"
        if g is not None:
            x0, y0, x1, y1 = g.crop_box
            caption += f"; crop ({x0}, {y0})–({x1}, {y1}), {g.crop_width} × {g.crop_height}"
        parts.append(_figure(sample.source_png, caption, "source"))
    if sample.output_png and g is not None:
        ow, oh = sample.output_size
        caption = f"output {ow} × {oh}"
        if sample.output_view:
            caption += f", {sample.output_view}"
        left, top, right, bottom = g.active_area
        caption += (
            f"; scale {g.scale_x:.4g} × {g.scale_y:.4g}; "
            f"active area ({left}, {top})–({right}, {bottom})"
        )
        parts.append(_figure(sample.output_png, caption, "output"))
    parts.append("</div>")
    for error in sample.errors:
        parts.append(f'<div class="err">{_e(error)}</div>')
    parts.append("</div>")
    return "".join(parts)


def _figure(name: str, caption: str, alt: str) -> str:
    src = "img/" + name
    image = f'<img src="{_e(src)}" alt="{_e(alt)}">'
    return f"<figure>{image}<figcaption>{_e(caption)}</figcaption></figure>"


def _samples_section(
    samples: dict[str, list[Sample]], instances: pd.DataFrame, per_modality: int
) -> str:
    legend = (
        '<p class="legend">Source: decoded with VOI, no crop or resize;'
        f'<span style="background:rgb{CROP_COLOUR}"></span>crop box'
        f'<span style="background:rgb{OUTSIDE_CROP_COLOUR}"></span>cropped away. '
        "Output: the TIFF's central page;"
        f'<span style="background:rgb{ACTIVE_COLOUR}"></span>active area'
        f'<span style="background:rgb{PADDING_COLOUR}"></span>padding.</p>'
        f'<p class="note">Up to {per_modality} files per modality, chosen by the SHA-256 of '
        "their SOP Instance UID (the same files on every run).</p>"
    )
    parts = ['<section id="samples"><h2>Samples</h2>', legend]
    if not samples:
        parts.append('<p class="note">No samples.</p>')
    done = instances[instances["status"] == "processed"]
    for modality, items in samples.items():
        total = int((done["modality"] == modality).sum())
        parts.append(f"<h3>{_e(modality)} — {len(items)} of {total}</h3>")
        parts.append('<div class="samples">')
        parts.extend(_sample_card(s) for s in items)
        parts.append("</div>")
    parts.append("</section>")
    return "".join(parts)


def _failures_section(run: Run, folder: str) -> str:
    failures = run.failures
    parts = ['<section id="failures"><h2>Not converted</h2>']
    if not len(failures):
        parts.append('<p class="note">Every input became a TIFF.</p></section>')
        return "".join(parts)
    rank = {s: i for i, s in enumerate(FAILURE_ORDER)}
    failures = failures.assign(_rank=failures["status"].map(rank).fillna(len(rank)))
    failures = failures.sort_values(["_rank", "path"], kind="stable")
    kinds = failures.groupby(["_rank", "status", "stage", "error_type"]).size()
    kinds = kinds.reset_index(name="files").sort_values(["_rank", "files"], ascending=[True, False])
    parts.append(
        _table(
            ["status", "stage", "error type", "files"],
            [[r.status, r.stage, r.error_type, int(r.files)] for r in kinds.itertuples()],
            {3: "num"},
        )
    )
    parts.append(
        f"<h3>Files ({len(failures)}; paths relative to the common folder of all inputs)</h3>"
    )
    rows = [
        [
            r.status,
            r.stage,
            r.error_type,
            relative_to(r.path, folder),
            _strip_folder(r.message, folder),
        ]
        for r in failures.head(MAX_FAILURE_ROWS).itertuples(index=False)
    ]
    parts.append(_table(["status", "stage", "error type", "file", "message"], rows, {4: "msg"}))
    if len(failures) > MAX_FAILURE_ROWS:
        parts.append(
            f'<p class="note">{len(failures) - MAX_FAILURE_ROWS} more in '
            '<a href="../failures.csv">failures.csv</a>.</p>'
        )
    parts.append("</section>")
    return "".join(parts)


def _count(n: int, word: str) -> str:
    plural = word if word.endswith("s") else word + "s"
    return f"{n} {word if n == 1 else plural}"


@dataclass
class _Series:
    modalities: set = field(default_factory=set)
    statuses: dict = field(default_factory=dict)
    instances: int = 0
    source_frames: int = 0
    source_sizes: set = field(default_factory=set)
    output_frames: int = 0
    output_sizes: set = field(default_factory=set)


def _sizes_text(pairs: set) -> str:
    pairs = sorted(p for p in pairs if p[0] and p[1])
    text = ", ".join(f"{w} × {h}" for w, h in pairs[:4])
    if len(pairs) > 4:
        text += f", … ({len(pairs)} sizes)"
    return text


STUDY_HEADERS = [
    "series",
    "modality",
    "instances",
    "status",
    "source frames",
    "source sizes",
    "output frames",
    "output sizes",
]


def study_series(instances: pd.DataFrame, studies: Iterable[str]) -> dict[str, dict]:
    """Per study (of ``studies``) and series: modalities, statuses, frames and sizes."""
    wanted = set(studies)
    rows = instances[instances["study_instance_uid"].isin(wanted)]
    table: dict[str, dict[str, _Series]] = {}
    columns = [
        "study_instance_uid",
        "series_instance_uid",
        "modality",
        "status",
        "source_frames",
        "source_width",
        "source_height",
        "num_frames",
        "width",
        "height",
    ]
    for study, series, modality, status, frames, sw, sh, out_frames, w, h in zip(
        *(rows[c].tolist() for c in columns), strict=True
    ):
        entry = table.setdefault(study, {}).setdefault(series, _Series())
        entry.modalities.add(modality)
        entry.statuses[status] = entry.statuses.get(status, 0) + 1
        entry.instances += 1
        entry.source_frames += int(frames)
        entry.source_sizes.add((int(sw), int(sh)))
        if status == "processed":
            entry.output_frames += int(out_frames)
            entry.output_sizes.add((int(w), int(h)))
    return table


def _studies_section(instances: pd.DataFrame, max_studies: int) -> str:
    known = instances[instances["study_instance_uid"] != ""]
    parts = ['<section id="studies"><h2>Studies</h2>']
    if not len(known):
        parts.append('<p class="note">No studies.</p></section>')
        return "".join(parts)
    studies = sorted(set(known["study_instance_uid"]))
    parts.append(
        f'<p class="note">{len(studies)} studies, '
        f"{known['series_instance_uid'].nunique()} series, {len(known)} DICOM inputs.</p>"
    )
    open_all = len(studies) <= 20
    shown = studies[:max_studies]
    table = study_series(known, shown)
    for study in shown:
        series_map = table[study]
        modalities = set().union(*(e.modalities for e in series_map.values()))
        instances_n = sum(e.instances for e in series_map.values())
        tiffs = sum(e.statuses.get("processed", 0) for e in series_map.values())
        summary = (
            f'<summary><span class="uid">{_e(study)}</span> — '
            f"{_e(', '.join(sorted(modalities)))} — {_count(len(series_map), 'series')}, "
            f"{_count(instances_n, 'instance')}, {_count(tiffs, 'TIFF')}</summary>"
        )
        rows = [
            [
                series or "(no series UID)",
                ", ".join(sorted(e.modalities)),
                e.instances,
                ", ".join(f"{e.statuses[k]} {k}" for k in STATUSES if k in e.statuses),
                e.source_frames,
                _sizes_text(e.source_sizes),
                e.output_frames,
                _sizes_text(e.output_sizes),
            ]
            for series, e in sorted(series_map.items())
        ]
        rows_html = _table(STUDY_HEADERS, rows, {0: "uid", 2: "num", 4: "num", 6: "num"})
        parts.append(f"<details{' open' if open_all else ''}>{summary}{rows_html}</details>")
    if len(studies) > max_studies:
        parts.append(
            f'<p class="note">{len(studies) - max_studies} more studies '
            '(see <a href="../manifest.csv">manifest.csv</a>).</p>'
        )
    parts.append("</section>")
    return "".join(parts)


def render_html(
    run: Run,
    instances: pd.DataFrame,
    samples: dict[str, list[Sample]],
    options: Options,
    per_modality: int,
    max_studies: int = MAX_STUDIES,
) -> str:
    """The report page."""
    folder = common_folder(instances["path"]) if len(instances) else ""
    body = [
        _summary_section(run, instances, options),
        _modality_section(instances),
        _sizes_section(run, instances),
        _samples_section(samples, instances, per_modality),
        _failures_section(run, folder),
        _studies_section(instances, max_studies),
    ]
    nav = "".join(
        f'<a href="#{a}">{t}</a>'
        for a, t in (
            ("summary", "Summary"),
            ("modalities", "Modalities"),
            ("sizes", "Sizes"),
            ("samples", "Samples"),
            ("failures", "Not converted"),
            ("studies", "Studies"),
        )
    )
    subtitle = (
        f"{len(run.manifest)} TIFF files · "
        '<a style="color:#fff" href="../manifest.csv">manifest.csv</a> · '
        '<a style="color:#fff" href="../failures.csv">failures.csv</a>'
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>dicomprep QC report</title>"
        f"<style>{CSS}</style></head><body>"
        f"<header><h1>dicomprep QC report</h1><p>{subtitle}</p></header>"
        f"<nav>{nav}</nav><main>{''.join(body)}</main></body></html>\n"
    )


# -- the whole report --------------------------------------------------------------------


def build_report(
    report_html: str | os.PathLike,
    *,
    output_root: str | os.PathLike,
    manifest_csv: str | os.PathLike,
    failures_csv: str | os.PathLike,
    summary_json: str | os.PathLike | None = None,
    catalog: str | os.PathLike | None = None,
    results: Iterable[str | os.PathLike] = (),
    options: Options | None = None,
    samples_per_modality: int = 24,
    max_studies: int = MAX_STUDIES,
    thumbnail_size: int = THUMBNAIL_SIZE,
    processes: int = 1,
    log=None,
) -> dict:
    """Write the report page and its thumbnails (``img/`` beside the page).

    Thumbnails of files no longer sampled are removed.  Returns a few numbers for logs.
    """
    options = options or Options()
    report_html = Path(report_html)
    img_dir = report_html.parent / "img"
    run = load_run(
        output_root,
        manifest_csv=manifest_csv,
        failures_csv=failures_csv,
        summary_json=summary_json,
        catalog=catalog,
        results=results,
    )
    instances = instance_table(run)
    chosen = choose_samples(instances, samples_per_modality)
    img_dir.mkdir(parents=True, exist_ok=True)
    rows = [row for chosen_rows in chosen.values() for row in chosen_rows.itertuples(index=False)]
    rendered = render_samples(
        rows, run.output_root, img_dir, options, thumbnail_size, processes=processes
    )
    samples: dict[str, list[Sample]] = {}
    for sample, reused in rendered:
        samples.setdefault(sample.modality, []).append(sample)
        if log is not None:
            state = "; ".join(sample.errors) or "ok"
            how = " (thumbnails reused)" if reused else ""
            print(f"sample {sample.modality} {sample.sop_instance_uid}: {state}{how}", file=log)
    wanted = {s.source_png for v in samples.values() for s in v}
    wanted |= {s.output_png for v in samples.values() for s in v}
    wanted |= {f"{s.sop_instance_uid}.json" for v in samples.values() for s in v}
    for stale in [*img_dir.glob("*.png"), *img_dir.glob("*.json")]:
        if stale.name not in wanted:
            stale.unlink(missing_ok=True)
    page = render_html(run, instances, samples, options, samples_per_modality, max_studies)
    _atomic_write(report_html, page.encode("utf-8"))
    return {
        "inputs": len(instances),
        "outputs": len(run.manifest),
        "samples": sum(len(v) for v in samples.values()),
        "samples_reused": sum(reused for _, reused in rendered),
        "sample_errors": sum(len(s.errors) for v in samples.values() for s in v),
    }
