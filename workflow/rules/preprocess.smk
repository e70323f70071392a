rule preprocess_shard:
    """Convert the DICOM files of one shard; finished files are skipped on reruns."""
    input:
        shard=f"{WORK}/shards/{{shard}}.tsv",
        rerun=f"{WORK}/shards/{{shard}}.rerun",
    output:
        results=f"{WORK}/shards/{{shard}}.results.jsonl",
    log:
        f"{WORK}/logs/preprocess/{{shard}}.log",
    conda:
        "../../envs/dicomprep.yaml"
    threads: shard_threads
    resources:
        mem_mb=shard_mem_mb,
        runtime=config["shard_runtime_minutes"],
    params:
        options=OPTIONS.to_dict(),
        code=code_hash(),
        output_root=lambda wildcards: OUTPUT_ROOT,  # a folder or a bucket URL
        journal=lambda wildcards: f"{WORK}/journal/{wildcards.shard}.jsonl",
        keep_orphans=config["keep_orphans"],
        report_images=f"{OUTPUT}/report/img",  # thumbnails of the report's samples
        samples_per_modality=REPORT_SAMPLES,
    script:
        "../scripts/preprocess_shard.py"
