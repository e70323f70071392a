"""The plots a dataset curator looks at first, as numbers and bar geometry.

- **Output sizes**: files per output width × height (the most frequent sizes, the rest in
  one "other sizes" bar), from the manifest.
- **Crop fraction**: how much of each source the crop kept, ``crop width × crop height /
  (source columns × source rows)``, in bins of 0.05, from the crop tags of up to
  :data:`CROP_FRACTION_FILES` outputs (the first by the SHA-256 of their SOP Instance UID,
  as for the samples; every output when there are fewer).
- **Intensity per modality**: the histogram of the displayed values (0..255, as in the
  thumbnails: the high byte of 16-bit outputs) of the sampled outputs' central pages, inside
  their active area (padding left out), in bins of :data:`INTENSITY_BIN_WIDTH` values.  The
  two ends, 0 (the background around a mammogram or an ultrasound sector, and what the
  window clips at the bottom) and 255 (clipped at the top), are left out of the bars: their
  spike would flatten everything else.  The note gives their shares of the pixels instead
  (:func:`intensity_counts`).

Everything here is computed in Python; :mod:`.page` draws the bars as inline SVG from the
:class:`Chart` objects, so the page stays self-contained and no plotting library is imported.
The cost is bounded: the crop tags of at most :data:`CROP_FRACTION_FILES` files are read (and
kept in a small cache beside the page, so a rerun reads only new or changed TIFFs), and the
intensities come from the sample thumbnails' pages, read (and cached) anyway.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dicomprep.core.durable import atomic_write_bytes

__all__ = [
    "CROP_FRACTION_EDGES",
    "CROP_FRACTION_FILES",
    "Chart",
    "crop_fraction_chart",
    "crop_fractions",
    "intensity_chart",
    "intensity_counts",
    "intensity_histograms",
    "outside",
    "size_chart",
    "size_counts",
]

MAX_SIZE_BARS = 12  # the most frequent output sizes get a bar each, the rest share one
CROP_FRACTION_FILES = 2000  # crop tags read for the crop-fraction plot, at most
CROP_FRACTION_EDGES = np.linspace(0.0, 1.0, 21)  # bins of 0.05; 1.0 falls in the last bin
INTENSITY_BIN_WIDTH = 8  # displayed values per bar: 256 / 8 = 32 bars
INTENSITY_ENDS = (0, 255)  # displayed values left out of the bars (background, clipped)

# Layout of a chart, in SVG user units (pixels).
PLOT_WIDTH = 360
PLOT_HEIGHT = 140
MARGIN_LEFT = 44
MARGIN_BOTTOM = 30
MARGIN_TOP = 8
ROW_HEIGHT = 18  # a bar of a horizontal chart and its gap
LABEL_WIDTH = 110  # room for the category labels of a horizontal chart
FONT_SIZE = 10  # of every text in a chart (the page's style sheet: svg text)
# The widest advance of a character at FONT_SIZE, in em: DejaVu Sans and Helvetica digits
# are 0.64 and 0.56 em wide; capitals and "×" up to 0.84.  Texts are laid out with
# :func:`text_width` so that none reaches past its chart's edge.
DIGIT_EM, WIDE_EM = 0.64, 0.84


@dataclass(frozen=True)
class Bar:
    """One bar: what it counts, the number, and its rectangle."""

    label: str
    count: int
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class Text:
    """An axis or bar label at (x, y); ``anchor`` is SVG's text-anchor."""

    x: float
    y: float
    text: str
    anchor: str = "middle"


@dataclass(frozen=True)
class Chart:
    """A bar chart ready to draw: bars, labels, axis lines and a caption."""

    id: str
    title: str
    unit: str
    width: int
    height: int
    bars: tuple[Bar, ...]
    texts: tuple[Text, ...]
    axes: tuple[tuple[float, float, float, float], ...]  # lines (x1, y1, x2, y2)
    total: int
    note: str = ""


# -- the numbers -------------------------------------------------------------------------


def size_counts(manifest: pd.DataFrame, max_bars: int = MAX_SIZE_BARS) -> list[tuple[str, int]]:
    """``(label, files)`` per output width × height, most frequent first (ties: smaller width,
    then height); beyond ``max_bars`` sizes the rest are summed into one last entry."""
    if not len(manifest):
        return []
    counts = manifest.groupby(["width", "height"]).size().reset_index(name="files")
    counts = counts.sort_values(["files", "width", "height"], ascending=[False, True, True])
    items = [(f"{w} × {h}", int(n)) for w, h, n in counts.itertuples(index=False)]
    if len(items) > max_bars:
        rest = items[max_bars - 1 :]
        items = items[: max_bars - 1] + [(f"{len(rest)} other sizes", sum(n for _, n in rest))]
    return items


def crop_fractions(
    rows: pd.DataFrame,
    output_root: str | os.PathLike,
    cache: str | os.PathLike | None = None,
) -> np.ndarray:
    """Cropped area / source area of each row of an instance table (its TIFF's crop tags
    against the catalog's rows × columns); rows whose TIFF or source size is unreadable
    are left out.

    With ``cache`` (a JSON file), each TIFF's crop size is kept there with the TIFF's size
    and modification time, and read from there while both are unchanged: a rerun opens
    only new or changed TIFFs.  The cache holds the rows of the last call only.
    """
    from dicomprep.formats.outputs import read_output_geometry

    known = _read_crop_cache(cache)
    kept: dict[str, list[int]] = {}
    fractions = []
    root = Path(output_root)
    columns = (rows["tiff"], rows["source_width"], rows["source_height"])
    for tiff, width, height in zip(*columns, strict=True):
        if not (tiff and width > 0 and height > 0):
            continue
        try:
            st = os.stat(root / tiff)
            entry = known.get(tiff)
            if entry is None or entry[:2] != [st.st_size, st.st_mtime_ns]:
                g = read_output_geometry(root / tiff)
                entry = [st.st_size, st.st_mtime_ns, g.crop_width, g.crop_height]
        except Exception:  # noqa: BLE001 - a file that went away is just not counted
            continue
        kept[tiff] = entry
        fractions.append(entry[2] * entry[3] / (int(width) * int(height)))
    if cache is not None and kept != known:
        _write_crop_cache(Path(cache), kept)
    return np.clip(np.asarray(fractions, np.float64), 0.0, 1.0)


def _read_crop_cache(cache: str | os.PathLike | None) -> dict[str, list[int]]:
    """``{tiff: [size, mtime_ns, crop width, crop height]}`` (empty when absent or damaged)."""
    if cache is None:
        return {}
    try:
        known = json.loads(Path(cache).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(known, dict):
        return {}
    return {
        k: v
        for k, v in known.items()
        if isinstance(v, list) and len(v) == 4 and all(isinstance(x, int) for x in v)
    }


def _write_crop_cache(cache: Path, entries: dict[str, list[int]]) -> None:
    atomic_write_bytes(cache, json.dumps(entries, separators=(",", ":")).encode(), sync=False)


def binned(values: np.ndarray, edges: np.ndarray) -> list[int]:
    """Counts of ``values`` per bin ``[edges[i], edges[i+1])``, the last bin closed."""
    counts, _ = np.histogram(values, bins=edges)
    return counts.astype(int).tolist()


def intensity_histograms(
    histograms: Iterable[tuple[str, Sequence[int]]],
) -> dict[str, np.ndarray]:
    """Per modality (sorted), the sum of the 256-value histograms of its samples."""
    totals: dict[str, np.ndarray] = {}
    for modality, counts in histograms:
        if len(counts) != 256:
            continue
        totals.setdefault(modality, np.zeros(256, np.int64))
        totals[modality] += np.asarray(counts, np.int64)
    return dict(sorted(totals.items()))


@dataclass(frozen=True)
class IntensityCounts:
    """One modality's displayed-value histogram as the chart shows it: ``bars`` counts the
    values 1..254 in bins of :data:`INTENSITY_BIN_WIDTH` (the first bin holds 1..7, the last
    248..254); ``at_ends`` counts the values :data:`INTENSITY_ENDS` (0 and 255), left out."""

    bars: tuple[int, ...]
    at_ends: tuple[int, int]

    @property
    def pixels(self) -> int:
        """Every pixel counted, the ends included."""
        return sum(self.bars) + sum(self.at_ends)


def intensity_counts(counts_256: Sequence[int], bin_width: int = INTENSITY_BIN_WIDTH):
    """The :class:`IntensityCounts` of a 256-value histogram (from :func:`intensity_histograms`)."""
    counts = np.asarray(counts_256, np.int64).copy()
    ends = tuple(int(counts[v]) for v in INTENSITY_ENDS)
    counts[list(INTENSITY_ENDS)] = 0
    bars = counts.reshape(-1, bin_width).sum(axis=1)
    return IntensityCounts(tuple(int(n) for n in bars), ends)


# -- the drawings ------------------------------------------------------------------------


def text_width(text: str, font_size: float = FONT_SIZE) -> float:
    """An upper bound of ``text``'s width in user units: digits and punctuation at
    :data:`DIGIT_EM`, other characters at :data:`WIDE_EM` (not measured: no fonts here)."""
    narrow = sum(c.isdigit() or c in ".,:;–- " for c in text)
    return font_size * (narrow * DIGIT_EM + (len(text) - narrow) * WIDE_EM)


def text_box(t: Text, font_size: float = FONT_SIZE) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) a text can cover at most: its :func:`text_width` placed by its
    anchor, from one font size above its baseline to a quarter below."""
    w = text_width(t.text, font_size)
    x0 = {"start": t.x, "middle": t.x - w / 2, "end": t.x - w}[t.anchor]
    return x0, t.y - font_size, x0 + w, t.y + font_size / 4


def outside(chart: Chart) -> list[Text]:
    """The texts of ``chart`` whose :func:`text_box` reaches past its width or height."""
    return [
        t
        for t in chart.texts
        if (box := text_box(t))[0] < 0
        or box[1] < 0
        or box[2] > chart.width
        or box[3] > chart.height
    ]


def _count_text(n: float) -> str:
    return f"{n:,.0f}"


def size_chart(items: list[tuple[str, int]]) -> Chart:
    """Horizontal bars, one per output size (from :func:`size_counts`)."""
    top = max((n for _, n in items), default=0)
    widest = max((text_width(label) for label, _ in items), default=0.0)
    left = max(LABEL_WIDTH, widest + 10)
    room = PLOT_WIDTH - left - text_width(_count_text(top)) - 8  # the count after the bar
    bars, texts = [], []
    for i, (label, n) in enumerate(items):
        y = MARGIN_TOP + i * ROW_HEIGHT
        width = room * n / top if top else 0.0
        bars.append(Bar(label, n, left, y, round(width, 2), ROW_HEIGHT - 4))
        texts.append(Text(left - 6, y + ROW_HEIGHT - 7, label, "end"))
        texts.append(Text(left + width + 4, y + ROW_HEIGHT - 7, _count_text(n), "start"))
    height = MARGIN_TOP + max(len(items), 1) * ROW_HEIGHT + 6
    axes = ((left, MARGIN_TOP - 2, left, height - 4),)
    total = sum(n for _, n in items)
    return Chart(
        "plot-sizes",
        "Output sizes (width × height)",
        "files",
        PLOT_WIDTH,
        height,
        tuple(bars),
        tuple(texts),
        axes,
        total,
    )


def histogram_chart(
    chart_id: str,
    title: str,
    unit: str,
    labels: Sequence[str],
    counts: Sequence[int],
    tick_every: int,
    tick_texts: Sequence[str],
    note: str = "",
) -> Chart:
    """Vertical bars of equal width, one per bin; a tick text under every ``tick_every``-th
    bin boundary (``tick_texts`` holds one text per boundary, len(counts) + 1)."""
    n = len(counts)
    top = max(counts, default=0)
    # room for the count at the top of the value axis, and for the half of the last tick
    # text that lies past the last bin boundary
    left = max(MARGIN_LEFT, round(text_width(_count_text(top)) + 6))
    last_tick = tick_texts[n] if n % tick_every == 0 else ""
    right = max(8, round(text_width(last_tick) / 2 + 2))
    plot_w = PLOT_WIDTH - left - right
    step = plot_w / max(n, 1)
    base = MARGIN_TOP + PLOT_HEIGHT
    bars = []
    for i, (label, count) in enumerate(zip(labels, counts, strict=True)):
        h = PLOT_HEIGHT * count / top if top else 0.0
        x = left + i * step
        bars.append(
            Bar(
                label,
                int(count),
                round(x + 0.5, 2),
                round(base - h, 2),
                round(max(step - 1, 0.5), 2),
                round(h, 2),
            )
        )
    texts = [
        Text(round(left + i * step, 2), base + 14, tick_texts[i])
        for i in range(0, n + 1, tick_every)
    ]
    texts.append(Text(left - 4, MARGIN_TOP + 10, _count_text(top), "end"))
    texts.append(Text(left - 4, base, "0", "end"))
    axes = (
        (left, base, left + plot_w, base),
        (left, MARGIN_TOP, left, base),
    )
    height = base + MARGIN_BOTTOM
    return Chart(
        chart_id,
        title,
        unit,
        PLOT_WIDTH,
        int(height),
        tuple(bars),
        tuple(texts),
        axes,
        int(sum(counts)),
        note,
    )


def crop_fraction_chart(fractions: np.ndarray, outputs: int) -> Chart:
    """The histogram of :func:`crop_fractions` in bins of 0.05."""
    edges = CROP_FRACTION_EDGES
    labels = [f"{a:.2f}–{b:.2f}" for a, b in zip(edges[:-1], edges[1:], strict=True)]
    note = f"{len(fractions)} of {outputs} outputs" + (
        " (the first by the SHA-256 of their SOP Instance UID)" if len(fractions) < outputs else ""
    )
    return histogram_chart(
        "plot-crop",
        "Crop fraction (cropped area / source area)",
        "files",
        labels,
        binned(fractions, edges),
        4,
        [f"{e:.1f}" for e in edges],
        note,
    )


def intensity_chart(modality: str, counts_256: np.ndarray, samples: int) -> Chart:
    """The displayed-value histogram of one modality in bins of
    :data:`INTENSITY_BIN_WIDTH` values, the values 0 and 255 left out of the bars and
    named in the note (:func:`intensity_counts`)."""
    w = INTENSITY_BIN_WIDTH
    counts = intensity_counts(counts_256, w)
    labels = [f"{max(a, 1)}–{min(a + w - 1, 254)}" for a in range(0, 256, w)]
    ticks = [str(a) for a in range(0, 257, w)]
    pixels = counts.pixels
    ends = zip(INTENSITY_ENDS, counts.at_ends, strict=True)
    shares = ", ".join(f"{_share(n, pixels)} at {value}" for value, n in ends)
    note = (
        f"{_count_text(pixels)} pixels of {samples} sampled outputs; left out of the bars: {shares}"
    )
    safe = "".join(c if c.isalnum() else "-" for c in modality)
    return histogram_chart(
        f"plot-intensity-{safe}",
        f"Intensity — {modality}",
        "pixels",
        labels,
        list(counts.bars),
        8,
        ticks,
        note,
    )


def _share(n: int, total: int) -> str:
    """``n`` of ``total`` as a percentage with one decimal ("0 %" only for none; a
    no-break space before the sign, so that a line never breaks inside a share)."""
    if not n:
        return "0\u00a0%"
    return f"{max(100.0 * n / total, 0.1):.1f}\u00a0%"
