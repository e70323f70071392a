"""Snakemake entry point: manifest, failures, slices, series report, summary, QC report."""

import gc
import sys
import time
from pathlib import Path

from dicomprep.options import Options
from dicomprep.report import write_report
from dicomprep.report.data import run_tables
from dicomprep.run.collect import collect_run
from dicomprep.run.plan import run_started_ns

with open(snakemake.log[0], "w") as log:  # noqa: F821 - provided by Snakemake
    started = time.perf_counter()
    collected = collect_run(
        snakemake.input.results,  # noqa: F821
        snakemake.input.catalog,  # noqa: F821
        snakemake.params.output_root,  # noqa: F821
        snakemake.output.manifest_csv,  # noqa: F821
        snakemake.output.manifest_parquet,  # noqa: F821
        snakemake.output.failures,  # noqa: F821
        snakemake.output.summary,  # noqa: F821
        run_started_ns=run_started_ns(snakemake.params.work),  # noqa: F821
        slices_csv=snakemake.output.slices_csv,  # noqa: F821
        slices_parquet=snakemake.output.slices_parquet,  # noqa: F821
        series_report=snakemake.input.series_report,  # noqa: F821
        series_report_csv=snakemake.output.series_report,  # noqa: F821
    )
    print(collected.numbers, file=log)
    print(f"collect: {time.perf_counter() - started:.2f} s", file=log, flush=True)
    started = time.perf_counter()
    dataset = Path(snakemake.output.manifest_csv).parent  # noqa: F821 - the dataset root
    numbers = write_report(
        snakemake.output.report,  # noqa: F821
        output_root=dataset,
        run=run_tables(
            dataset,
            manifest=collected.manifest,
            failures=collected.failures,
            summary=collected.summary,
            catalog=collected.catalog,
            results=collected.results,
        ),
        options=Options.from_mapping(snakemake.params.options),  # noqa: F821
        samples_per_modality=snakemake.params.samples_per_modality,  # noqa: F821
        processes=snakemake.threads,  # noqa: F821
        log=log,
    )
    print(numbers, file=log)
    print(f"report: {time.perf_counter() - started:.2f} s", file=log)
    if "error" in numbers:
        print(f"dicomprep: the QC report could not be built: {numbers['error']}", file=sys.stderr)

gc.freeze()  # done: skip the interpreter's final garbage collections
