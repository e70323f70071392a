"""The QC report page: the run's tables and charts turned into one HTML document.

:func:`page_context` gathers what the page shows as plain values (strings, numbers, lists);
:func:`render_html` fills ``templates/report.html.j2`` with them through Jinja2 with
autoescaping on, so no value from the data can inject markup.  The page has inline CSS and
inline SVG charts, no scripts and no network references.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

import pandas as pd

from dicomprep.options import Options
from dicomprep.report.data import (
    FAILURE_ORDER,
    STATUSES,
    Run,
    common_folder,
    modality_counts,
    relative_to,
    size_distribution,
    source_size_distribution,
    strip_folder,
    study_series,
)
from dicomprep.report.images import (
    ACTIVE_COLOUR,
    CROP_COLOUR,
    OUTSIDE_CROP_COLOUR,
    PADDING_COLOUR,
    Sample,
)
from dicomprep.report.plots import Chart
from dicomprep.run.collect import converted_outputs

__all__ = ["format_bytes", "format_duration", "page_context", "render_html"]

MAX_FAILURE_ROWS = 1000
MAX_STUDIES = 500
MAX_SIZE_ROWS = 40
OPEN_STUDIES = 20  # up to this many studies, every study section starts open


def format_bytes(n: float) -> str:
    """A byte count in B, KiB, MiB, GiB or TiB."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def format_duration(seconds: float) -> str:
    """Seconds as '12.3 s', '4 min 05 s' or '2 h 03 min'."""
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {rest:02d} s"


def _count(n: int, word: str) -> str:
    plural = word if word.endswith("s") else word + "s"
    return f"{n} {word if n == 1 else plural}"


def _sizes_text(pairs: set) -> str:
    pairs = sorted(p for p in pairs if p[0] and p[1])
    text = ", ".join(f"{w} × {h}" for w, h in pairs[:4])
    if len(pairs) > 4:
        text += f", … ({len(pairs)} sizes)"
    return text


@dataclass(frozen=True)
class Table:
    """Rows of cells under a header; ``classes`` maps a column to a cell class."""

    headers: list[str] | None
    rows: list[list]
    classes: dict[int, str]


# -- the sections ------------------------------------------------------------------------


def _summary(run: Run, instances: pd.DataFrame, options: Options) -> dict:
    status_counts = instances["status"].value_counts().to_dict() if len(instances) else {}
    numbers = {s: int(run.summary.get(s, status_counts.get(s, 0))) for s in STATUSES[:4]}
    numbers["processed"] = len(run.manifest)
    cards = [(s, numbers[s]) for s in STATUSES[:4]]
    if status_counts.get("pending", 0):
        cards.append(("pending", int(status_counts["pending"])))
    done = instances[instances["status"] == "processed"]
    tiff_bytes = int(done["tiff_bytes"].sum()) if len(done) else 0
    source_bytes = int(done["source_bytes"].sum()) if len(done) else 0
    frames = int(run.manifest["num_frames"].sum()) if len(run.manifest) else 0
    outputs = converted_outputs(run.results)
    seconds = float(outputs["seconds"].sum()) if len(outputs) else 0.0
    fresh = outputs[~outputs["reused"]] if len(outputs) else outputs
    seconds_now = float(run.summary.get("seconds_now", fresh["seconds"].sum() if len(fresh) else 0))
    converted = len(outputs)
    per_file = seconds / converted if converted else 0.0
    facts = [
        ["output TIFF files", f"{len(run.manifest)} ({frames} frames)"],
        ["TIFF bytes", f"{format_bytes(tiff_bytes)} ({tiff_bytes:,} bytes)"],
        ["source bytes of these files", f"{format_bytes(source_bytes)} ({source_bytes:,} bytes)"],
        [
            "time (sum of per-output seconds)",
            f"{format_duration(seconds)} ({seconds:.2f} s; {per_file:.3f} s per output)",
        ],
        [
            "of which converted in the last run",
            f"{int(run.summary.get('converted_now', len(fresh)))} outputs, "
            f"{format_duration(seconds_now)}; {int(run.summary.get('reused', 0))} reused",
        ],
    ]
    option_rows = [[k, json.dumps(v)] for k, v in options.to_dict().items()]
    return {
        "cards": cards,
        "facts": Table(None, facts, {}),
        "options": Table(["option", "value"], option_rows, {}),
    }


def _modalities(instances: pd.DataFrame) -> Table:
    table = modality_counts(instances)
    show = [s for s in STATUSES if s != "pending" or (len(table) and table["pending"].any())]
    headers = ["modality", *show, "total", "output frames", "TIFF bytes", "time"]
    rows = [
        [
            r.modality,
            *(int(getattr(r, s)) for s in show),
            int(sum(int(getattr(r, s)) for s in STATUSES)),
            int(r.frames),
            format_bytes(r.tiff_bytes),
            format_duration(r.seconds),
        ]
        for r in table.itertuples(index=False)
    ]
    return Table(headers, rows, {i: "num" for i in range(1, len(headers))})


def _sizes(run: Run, instances: pd.DataFrame) -> dict:
    sizes = size_distribution(run.manifest)
    sources = source_size_distribution(instances)
    return {
        "outputs": Table(
            ["size", "channels", "files", "frames"],
            [
                [f"{r.width} × {r.height}", int(r.channels), int(r.files), int(r.frames)]
                for r in sizes.head(MAX_SIZE_ROWS).itertuples(index=False)
            ],
            {1: "num", 2: "num", 3: "num"},
        ),
        "more_outputs": max(len(sizes) - MAX_SIZE_ROWS, 0),
        "sources": Table(
            ["modality", "size", "files"],
            [
                [r.modality, f"{r.source_width} × {r.source_height}", int(r.files)]
                for r in sources.head(MAX_SIZE_ROWS).itertuples(index=False)
            ],
            {2: "num"},
        ),
        "more_sources": max(len(sources) - MAX_SIZE_ROWS, 0),
    }


def _sample_card(sample: Sample) -> dict:
    g = sample.geometry
    figures = []
    if sample.source_image:
        sw, sh = sample.source_size
        caption = f"source {sw} × {sh}"
        if sample.source_view:
            caption += f", {sample.source_view}"
        if g is not None:
            x0, y0, x1, y1 = g.crop_box
            caption += f"; crop ({x0}, {y0})–({x1}, {y1}), {g.crop_width} × {g.crop_height}"
        figures.append({"src": "img/" + sample.source_image, "alt": "source", "caption": caption})
    if sample.output_image and g is not None:
        ow, oh = sample.output_size
        caption = f"output {ow} × {oh}"
        if sample.output_view:
            caption += f", {sample.output_view}"
        left, top, right, bottom = g.active_area
        caption += (
            f"; scale {g.scale_x:.4g} × {g.scale_y:.4g}; "
            f"active area ({left}, {top})–({right}, {bottom})"
        )
        figures.append({"src": "img/" + sample.output_image, "alt": "output", "caption": caption})
    return {
        "sop": sample.sop_instance_uid,
        "study": sample.study_instance_uid,
        "label": sample.label,
        "figures": figures,
        "errors": sample.errors,
    }


def _samples(samples: dict[str, list[Sample]], instances: pd.DataFrame) -> list[dict]:
    done = instances[instances["status"] == "processed"]
    per_modality = done["modality"].value_counts().to_dict() if len(done) else {}
    return [
        {
            "modality": modality,
            "total": int(per_modality.get(modality, 0)),
            "cards": [_sample_card(s) for s in items],
        }
        for modality, items in samples.items()
    ]


def _failures(run: Run, folder: str) -> dict:
    failures = run.failures
    if not len(failures):
        return {"count": 0}
    rank = {s: i for i, s in enumerate(FAILURE_ORDER)}
    failures = failures.assign(_rank=failures["status"].map(rank).fillna(len(rank)))
    failures = failures.sort_values(["_rank", "path"], kind="stable")
    kinds = failures.groupby(["_rank", "status", "stage", "error_type"]).size()
    kinds = kinds.reset_index(name="files").sort_values(["_rank", "files"], ascending=[True, False])
    rows = [
        [
            r.status,
            r.stage,
            r.error_type,
            relative_to(r.path, folder),
            strip_folder(r.message, folder),
        ]
        for r in failures.head(MAX_FAILURE_ROWS).itertuples(index=False)
    ]
    return {
        "count": len(failures),
        "kinds": Table(
            ["status", "stage", "error type", "files"],
            [[r.status, r.stage, r.error_type, int(r.files)] for r in kinds.itertuples()],
            {3: "num"},
        ),
        "files": Table(["status", "stage", "error type", "file", "message"], rows, {4: "msg"}),
        "more": max(len(failures) - MAX_FAILURE_ROWS, 0),
    }


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


def _studies(instances: pd.DataFrame, max_studies: int) -> dict:
    known = instances[instances["study_instance_uid"] != ""] if len(instances) else instances
    if not len(known):
        return {"count": 0}
    studies = sorted(set(known["study_instance_uid"]))
    shown = studies[:max_studies]
    table = study_series(known, shown)
    sections = []
    for study in shown:
        series_map = table[study]
        modalities = set().union(*(e.modalities for e in series_map.values()))
        instances_n = sum(e.instances for e in series_map.values())
        tiffs = sum(e.statuses.get("processed", 0) for e in series_map.values())
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
        sections.append(
            {
                "uid": study,
                "summary": (
                    f"{', '.join(sorted(modalities))} — {_count(len(series_map), 'series')}, "
                    f"{_count(instances_n, 'instance')}, {_count(tiffs, 'TIFF')}"
                ),
                "table": Table(STUDY_HEADERS, rows, {0: "uid", 2: "num", 4: "num", 6: "num"}),
            }
        )
    return {
        "count": len(studies),
        "series": int(known["series_instance_uid"].nunique()),
        "inputs": len(known),
        "open": len(studies) <= OPEN_STUDIES,
        "sections": sections,
        "more": max(len(studies) - max_studies, 0),
    }


def page_context(
    run: Run,
    instances: pd.DataFrame,
    samples: dict[str, list[Sample]],
    charts: dict[str, Chart | list[Chart] | None],
    options: Options,
    per_modality: int,
    max_studies: int = MAX_STUDIES,
) -> dict:
    """Everything the template shows, as plain values."""
    folder = common_folder(instances["path"]) if len(instances) else ""
    return {
        "outputs": len(run.manifest),
        "summary": _summary(run, instances, options),
        "modalities": _modalities(instances),
        "sizes": _sizes(run, instances),
        "charts": charts,
        "per_modality": per_modality,
        "samples": _samples(samples, instances),
        "failures": _failures(run, folder),
        "studies": _studies(instances, max_studies),
        "colours": {
            "crop": CROP_COLOUR,
            "outside": OUTSIDE_CROP_COLOUR,
            "active": ACTIVE_COLOUR,
            "padding": PADDING_COLOUR,
        },
    }


@lru_cache(maxsize=1)
def _environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("dicomprep.report", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["rgb"] = lambda c: "rgb({},{},{})".format(*c)
    return env


def render_html(context: dict) -> str:
    """The report page for a :func:`page_context`."""
    return _environment().get_template("report.html.j2").render(**context)
