# Every target creates .venv and installs casepool (with its dev tools) when missing or stale.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test test-slow bench lint docs sample-data clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/casepool demo --workdir demo_output

# Two workers (pytest-xdist): each runs the session demo once; `pytest tests/x.py` stays one process.
test: $(STAMP)
	$(PY) -m pytest -n 2

test-slow: $(STAMP)
	$(PY) -m pytest -m slow

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) bench/run.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench tools
	$(VENV)/bin/ruff format --check src tests bench tools
	$(VENV)/bin/mypy

# Regenerates every generated page in docs/ (a test fails while one is stale).
docs: $(STAMP)
	$(PY) -m casepool.cli.reference_docs docs

sample-data: $(STAMP)
	rm -rf sample_data.tmp
	$(VENV)/bin/casepool synth --out sample_data.tmp --orgs 6 --records 3000 --seed 2025
	rm -rf sample_data && mv sample_data.tmp sample_data

clean:
	rm -rf $(VENV) demo_output .pytest_cache .mypy_cache .ruff_cache
