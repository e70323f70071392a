"""Snakemake entry point: the QC report page, its thumbnails and plots."""

from pathlib import Path

from dicomprep.options import Options
from dicomprep.report import build_report

with open(snakemake.log[0], "w") as log:  # noqa: F821 - provided by Snakemake
    numbers = build_report(
        snakemake.output.html,  # noqa: F821
        output_root=Path(snakemake.input.manifest).parent,  # noqa: F821 - the dataset root
        manifest_csv=snakemake.input.manifest,  # noqa: F821
        failures_csv=snakemake.input.failures,  # noqa: F821
        summary_json=snakemake.input.summary,  # noqa: F821
        catalog=snakemake.input.catalog,  # noqa: F821
        results=snakemake.input.results,  # noqa: F821
        results_root=snakemake.params.results_root,  # noqa: F821 - collect's output root
        options=Options.from_mapping(snakemake.params.options),  # noqa: F821
        samples_per_modality=snakemake.params.samples_per_modality,  # noqa: F821
        processes=snakemake.threads,  # noqa: F821
        log=log,
    )
    print(numbers, file=log)
