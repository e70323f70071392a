"""Building the QC report page from a finished run (see the package docstring)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from dicomprep.options import Options
from dicomprep.report import plots
from dicomprep.report.data import (
    Run,
    choose_samples,
    first_by_key,
    in_sample_order,
    instance_table,
    load_run,
)
from dicomprep.report.images import (
    IMAGE_FORMATS,
    THUMBNAIL_SIZE,
    Sample,
    record_name,
    render_samples,
    write_atomically,
)
from dicomprep.report.page import MAX_STUDIES, page_context, render_html

__all__ = ["build_report", "write_report"]


def build_report(
    report_html: str | os.PathLike,
    *,
    output_root: str | os.PathLike,
    manifest_csv: str | os.PathLike | None = None,
    failures_csv: str | os.PathLike | None = None,
    summary_json: str | os.PathLike | None = None,
    catalog: str | os.PathLike | None = None,
    results: Iterable[str | os.PathLike] = (),
    results_root: str | None = None,
    options: Options | None = None,
    samples_per_modality: int = 24,
    max_studies: int = MAX_STUDIES,
    thumbnail_size: int = THUMBNAIL_SIZE,
    image_format: str = "png",
    crop_fraction_files: int = plots.CROP_FRACTION_FILES,
    processes: int = 1,
    log=None,
    run: Run | None = None,
) -> dict:
    """Write the report page and its thumbnails (``img/`` beside the page).

    The run's tables are read from ``manifest_csv``, ``failures_csv``, ``summary_json``,
    ``catalog`` and ``results``, or given as ``run`` (:func:`~dicomprep.report.data.run_tables`
    of what collect has just written, in the same process).

    ``results_root`` is the output root the collect step gave
    :func:`~dicomprep.run.collect.collect_run` (a folder or a bucket URL; by default
    ``output_root``): the shard results are then read from the tables collect cached
    beside them instead of being parsed again.  Thumbnails of files no longer sampled are
    removed; the crop tags read for the crop-fraction plot are cached in
    ``crop_tags.json`` beside the page.  Returns a few numbers for logs.
    """
    options = options or Options()
    report_html = Path(report_html)
    img_dir = report_html.parent / "img"
    if run is None:
        run = load_run(
            output_root,
            manifest_csv=manifest_csv,
            failures_csv=failures_csv,
            summary_json=summary_json,
            catalog=catalog,
            results=results,
            results_root=results_root,
        )
    instances = instance_table(run)
    ordered = in_sample_order(instances)  # hashed once, for the samples and the crop plot
    chosen = choose_samples(ordered, samples_per_modality, ordered=True)
    rows = [row for group in chosen.values() for row in group.itertuples(index=False)]
    rendered = render_samples(
        rows,
        run.output_root,
        img_dir,
        options,
        thumbnail_size,
        processes=processes,
        image_format=image_format,
    )
    samples = _samples_by_modality(rendered, log)
    _remove_stale(img_dir, [s for _, items in samples.items() for s in items])

    crop_rows = first_by_key(ordered, crop_fraction_files, ordered=True)
    charts = _charts(run, crop_rows, samples, report_html.parent / CROP_TAGS_CACHE)
    context = page_context(
        run, instances, samples, charts, options, samples_per_modality, max_studies
    )
    write_atomically(report_html, render_html(context).encode("utf-8"))
    return {
        "inputs": len(instances),
        "outputs": len(run.manifest),
        "samples": sum(len(v) for v in samples.values()),
        "samples_reused": sum(reused for _, reused in rendered),
        "sample_errors": sum(len(s.errors) for v in samples.values() for s in v),
        "crop_fraction_files": charts["crop"].total if charts["crop"] else 0,
    }


def _samples_by_modality(rendered, log=None) -> dict[str, list[Sample]]:
    """The rendered samples ((sample, reused) pairs) grouped by modality, in order; one
    log line each."""
    samples: dict[str, list[Sample]] = {}
    for sample, reused in rendered:
        samples.setdefault(sample.modality, []).append(sample)
        if log is not None:
            state = "; ".join(sample.errors) or "ok"
            how = " (thumbnails reused)" if reused else ""
            print(f"sample {sample.modality} {sample.sop_instance_uid}: {state}{how}", file=log)
    return samples


def write_report(report_html: str | os.PathLike, *, log=None, **arguments) -> dict:
    """:func:`build_report`, but a report that cannot be built costs only the report: the
    page then says what went wrong (the traceback goes to ``log``), and the returned
    numbers hold ``error``.  The workflow builds the report in the job that writes the
    manifest, whose outputs must not be lost to a problem in a plot."""
    try:
        return build_report(report_html, log=log, **arguments)
    except Exception as exc:  # noqa: BLE001 - the manifest beside it is what matters
        import html
        import traceback

        message = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        if log is not None:
            traceback.print_exc(file=log)
        page = (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            "<title>dicomprep QC report</title></head><body><h1>QC report</h1>"
            f"<p>The report could not be built: {html.escape(message)}</p>"
            "<p>The manifest and the failures table beside this folder are complete; "
            "the log of the collect step in the work folder has the details.</p></body></html>\n"
        )
        write_atomically(Path(report_html), page.encode("utf-8"))
        return {"error": message}


CROP_TAGS_CACHE = "crop_tags.json"  # beside the page: see plots.crop_fractions


def _charts(run, crop_rows, samples: dict[str, list[Sample]], crop_cache: Path) -> dict:
    """The size, crop-fraction (of ``crop_rows``) and per-modality intensity charts."""
    if not len(run.manifest):
        return {"sizes": None, "crop": None, "intensity": []}
    fractions = plots.crop_fractions(crop_rows, run.output_root, crop_cache)
    histograms = plots.intensity_histograms(
        (s.modality, s.histogram) for items in samples.values() for s in items
    )
    counted = {m: sum(len(s.histogram) == 256 for s in samples[m]) for m in histograms}
    return {
        "sizes": plots.size_chart(plots.size_counts(run.manifest)),
        "crop": plots.crop_fraction_chart(fractions, len(run.manifest)) if len(fractions) else None,
        "intensity": [plots.intensity_chart(m, h, counted[m]) for m, h in histograms.items()],
    }


def _remove_stale(img_dir: Path, samples: list[Sample]) -> None:
    """Delete the thumbnails and records in ``img_dir`` of files no longer sampled, and
    the temporaries of writers that were killed (the shard jobs, which also write here,
    have all ended when the report is built)."""
    wanted = {s.source_image for s in samples} | {s.output_image for s in samples}
    wanted |= {record_name(s.sop_instance_uid) for s in samples}
    patterns = ["*.json", *(f"*.{fmt}" for fmt in IMAGE_FORMATS), ".*.tmp"]
    for stale in [p for pattern in patterns for p in img_dir.glob(pattern)]:
        if stale.name not in wanted:
            stale.unlink(missing_ok=True)
