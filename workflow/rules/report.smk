rule report:
    """QC report: counts, size/crop/intensity plots, samples with crop box and padding, failures, studies."""
    input:
        manifest=f"{OUTPUT}/manifest.csv",
        failures=f"{OUTPUT}/failures.csv",
        summary=f"{WORK}/summary.json",
        catalog=f"{WORK}/catalog.parquet",
        results=shard_results,
    output:
        html=f"{OUTPUT}/report/index.html",
    log:
        f"{WORK}/logs/report.log",
    conda:
        "../../envs/dicomprep.yaml"
    threads: REPORT_PROCESSES
    params:
        results_root=lambda wildcards: OUTPUT_ROOT,  # as collect: its cached tables
        options=OPTIONS.to_dict(),
        samples_per_modality=config.get("report", {}).get("samples_per_modality", 24),
    script:
        "../scripts/report.py"
