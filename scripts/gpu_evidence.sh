#!/usr/bin/env bash
# The GPU evidence, one command on a fresh GPU machine that has this checkout and a Python
# with a CUDA torch: install the carried wheels (if any), then run scripts/gpu_evidence.py,
# which writes benchmarks/results/<card>-<date>.json (or --out DIR).
#
#   bash scripts/gpu_evidence.sh [--wheels DIR] [gpu_evidence.py options]
#
# --wheels DIR: wheels to install first, offline, into a temporary folder put ahead of the
#   machine's own packages (a machine without network: fill DIR with scripts/gpu_wheels.py
#   where the package registry is reachable). Nothing is installed into the machine's Python.
# PYTHON: the interpreter (default .venv/bin/python if there is one, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
args=()
site=""
while (($#)); do
    if [[ "$1" == "--wheels" ]]; then
        wheels=${2:?--wheels needs a folder}
        shopt -s nullglob
        found=("$wheels"/*.whl)
        shopt -u nullglob
        if ((${#found[@]} == 0)); then
            echo "gpu_evidence.sh: no wheels in $wheels" >&2
            exit 2
        fi
        site=$(mktemp -d)
        trap 'rm -rf "$site"' EXIT
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
            --target "$site" "${found[@]}"
        args+=(--wheels "$wheels")
        shift 2
    else
        args+=("$1")
        shift
    fi
done

# The carried packages first, then this checkout's lorauq (no install needed).
export PYTHONPATH="${site:+$site:}$PWD${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
"$PYTHON" scripts/gpu_evidence.py ${args[@]+"${args[@]}"}
