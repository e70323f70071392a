"""Snakemake entry point: manifest, failures, slices, series report and summary."""

from dicomprep.run.collect import collect
from dicomprep.run.plan import run_started_ns

with open(snakemake.log[0], "w") as log:  # noqa: F821 - provided by Snakemake
    numbers = collect(
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
    print(numbers, file=log)
