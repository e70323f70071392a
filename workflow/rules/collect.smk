rule collect:
    """Manifest (CSV + Parquet), failures table, where stacked slices went, run summary
    and the QC report, from all shards (one job: the report is built from the tables in
    memory; a report that fails costs only the report page)."""
    input:
        results=shard_results,
        catalog=f"{WORK}/catalog.parquet",
        series_report=f"{WORK}/series_report.csv",
    output:
        manifest_csv=f"{OUTPUT}/manifest.csv",
        manifest_parquet=f"{OUTPUT}/manifest.parquet",
        failures=f"{OUTPUT}/failures.csv",
        slices_csv=f"{OUTPUT}/slices.csv",
        slices_parquet=f"{OUTPUT}/slices.parquet",
        series_report=f"{OUTPUT}/series_report.csv",
        summary=f"{WORK}/summary.json",
        report=f"{OUTPUT}/report/index.html",
    log:
        f"{WORK}/logs/collect.log",
    conda:
        "../../envs/dicomprep.yaml"
    threads: REPORT_PROCESSES
    params:
        output_root=lambda wildcards: OUTPUT_ROOT,  # a folder or a bucket URL
        work=lambda wildcards, input: Path(input.catalog).parent,
        options=OPTIONS.to_dict(),
        samples_per_modality=REPORT_SAMPLES,
    script:
        "../scripts/collect.py"


rule strict_check:
    """With `strict: true`, fail naming every input that did not become a TIFF."""
    input:
        failures=f"{OUTPUT}/failures.csv",
    output:
        touch(f"{WORK}/strict.ok"),
    log:
        f"{WORK}/logs/strict_check.log",
    conda:
        "../../envs/dicomprep.yaml"
    script:
        "../scripts/strict_check.py"
