# dicomprep: DICOM collections to TIFF files and a manifest for training.
# Run: snakemake --cores 2   (configuration in config.yaml, see README.md)
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


# Aggregation is cheap: it runs in the main process, not as a cluster job.
localrules:
    all,
    collect,
    strict_check,


include: "workflow/rules/common.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/collect.smk"


rule all:
    default_target: True
    input:
        final_outputs(),


onsuccess:
    print_summary()
    end_quickly()


onerror:
    end_quickly()
