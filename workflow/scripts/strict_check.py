"""Snakemake entry point: fail when any input did not become a TIFF (strict mode)."""

import sys

from dicomprep.run.failures import strict_violations

with open(snakemake.log[0], "w") as log:  # noqa: F821 - provided by Snakemake
    problems = strict_violations(snakemake.input.failures)  # noqa: F821
    for line in problems:
        print(line, file=log)
        print(line, file=sys.stderr)
if problems:
    sys.exit(f"strict: {len(problems)} input(s) did not become a TIFF (see above)")
