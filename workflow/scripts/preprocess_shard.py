"""Snakemake entry point: convert the files of one shard."""

import gc

from dicomprep.options import Options
from dicomprep.report.sampling import ShardThumbnails
from dicomprep.run.shard import run_shard

with open(snakemake.log[0], "w") as log:  # noqa: F821 - provided by Snakemake
    summary = run_shard(
        snakemake.input.shard,  # noqa: F821
        snakemake.params.output_root,  # noqa: F821
        Options.from_mapping(snakemake.params.options),  # noqa: F821
        journal=snakemake.params.journal,  # noqa: F821
        results=snakemake.output.results,  # noqa: F821
        log=log,
        workers=snakemake.threads,  # noqa: F821
        keep_orphans=snakemake.params.keep_orphans,  # noqa: F821
        report_images=snakemake.params.report_images,  # noqa: F821
        samples_per_modality=snakemake.params.samples_per_modality,  # noqa: F821
        thumbnails=ShardThumbnails(),
    )
    print(
        f"shard done: {summary.processed} converted, {summary.reused} already done, "
        f"{summary.failed} not converted, {len(summary.removed)} removed (source gone); "
        f"{snakemake.threads} worker process(es)",  # noqa: F821
        file=log,
    )

gc.freeze()  # done: skip the interpreter's final garbage collections
