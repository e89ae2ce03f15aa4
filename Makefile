# Set-up and the two entry points of the README. Everything installs from requirements.txt into .venv.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test install rule-times

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -U pip
	$(VENV)/bin/pip install -q -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

# The main job: generate the demo dataset, train AMES on its training split and evaluate re-ranking, offline.
demo: $(STAMP)
	$(VENV)/bin/snakemake --cores all results/demo_ames.json

# The test suite (unit, workflow, end to end on the tiny demo and on ../shared/datasets/landmarks-mini).
test: $(STAMP)
	$(VENV)/bin/python -m pytest -rs tests

# Where the time went: wall and CPU seconds per rule, summed from the Snakemake benchmark files under benchmarks/.
rule-times: $(STAMP)
	cd workflow_scripts && ../$(VENV)/bin/python -m retrieval.benchmarks.rule_times ../benchmarks
