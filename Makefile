# Set-up and the two entry points of the README. Everything installs from requirements.txt into .venv.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test lint format install rule-times

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -U pip
	$(VENV)/bin/pip install -q -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

# The main job: generate the demo dataset, train AMES on its training split and evaluate re-ranking, offline.
demo: $(STAMP)
	$(VENV)/bin/snakemake --cores all results/demo_ames.json

# The test suite (lint, then unit, workflow, end to end on the tiny demo and on ../shared/datasets/landmarks-mini).
test: lint
	$(VENV)/bin/python -m pytest -rs tests

# Lint and formatting checks (part of `make test`): ruff for the Python, snakefmt for the rules.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/snakefmt --check Snakefile rules

# Apply the formatters (what `make lint` checks).
format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/snakefmt Snakefile rules

# Where the time went: wall and CPU seconds per rule, summed from the Snakemake benchmark files under benchmarks/
# that the last run wrote (make rule-times ALL=1: every file, every run and configuration).
rule-times: $(STAMP)
	cd workflow_scripts && ../$(VENV)/bin/python -m retrieval.evaluation.rule_times ../benchmarks $(if $(filter-out 0,$(ALL)),--all)
