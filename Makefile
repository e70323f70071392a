# dicomprep: the two commands a newcomer needs are `make run` and `make test`.
# Extra Snakemake arguments go in ARGS, e.g. make run ARGS="--config source=/data/dicom".
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SAMPLE := resources/sample
ARGS ?=

.PHONY: run unlock slurm test install sample lint bench clean

# dicomprep itself, and (for tests, benchmarks and the sample) its test data: testdata/ is a
# development package the dicomprep wheel does not ship.
$(BIN)/snakemake: pyproject.toml testdata/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[workflow,test,s3]" -e ./testdata
	touch $@

install: $(BIN)/snakemake

sample: install
	$(BIN)/python -m dicomprep_testdata.sample $(SAMPLE)

# Build the bundled sample set and run the workflow on it (config.yaml).
run: sample
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --cores 2 $(ARGS)

# After a run was killed (SIGKILL, node failure): release Snakemake's lock, then rerun.
unlock: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --unlock $(ARGS)

# The workflow on a SLURM cluster; edit profiles/slurm/config.yaml and `source` first.
slurm: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --profile profiles/slurm $(ARGS)

# The whole test suite (workflow, SLURM and browser tests need root and Debian packages;
# they skip with a message when those are missing, .ci/run installs them).
test: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest -q -rs

lint: install
	$(BIN)/ruff check src tests workflow bench testdata examples
	$(BIN)/ruff format --check src tests workflow bench testdata examples
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/lint-imports

bench: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/stages.py --repeat 20
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/workflow.py --files 1000 --rounds 3 --shards 1

clean:
	rm -rf results .snakemake
