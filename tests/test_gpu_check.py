"""scripts/gpu_check.py: the exact Mistral-7B geometry, and its CPU self-test end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import gpu_check  # noqa: E402


def test_geometry_is_mistral_7b_exactly():
    model = gpu_check.build_random_model(gpu_check.MISTRAL_7B, torch.bfloat16, torch.device("meta"))
    assert sum(p.numel() for p in model.parameters()) == gpu_check.MISTRAL_7B_PARAMETERS
    # N of the FLOP counts: everything but the 32000×4096 embedding and LM head.
    assert gpu_check.block_parameters(model) == 7_241_732_096 - 2 * 32000 * 4096
    assert next(model.parameters()).dtype == torch.bfloat16
    config = model.config
    assert (config.num_key_value_heads, config.head_dim, config.intermediate_size) == (
        8,
        128,
        14336,
    )


def test_random_sequences_respect_length_range_and_vocab():
    seqs = gpu_check.random_sequences(200, (48, 72), vocab=100, seed=0)
    lengths = [len(s) for s in seqs]
    assert min(lengths) >= 48 and max(lengths) <= 72
    assert all(3 <= t < 100 for s in seqs for t in s)
    assert seqs == gpu_check.random_sequences(200, (48, 72), vocab=100, seed=0)


def test_cpu_tiny_runs_the_lorauq_train_and_eval_paths(tmp_path):
    out = tmp_path / "check.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--cpu-tiny", "--json", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["device"] == "CPU" and report["dtype"] == "float32"
    phases = [(r["phase"], r["quantization"]) for r in report["results"]]
    assert phases == [
        ("train joint", "none"),
        ("evaluate joint", "none"),
        ("train", "none"),
        ("evaluate", "none"),
    ]
    peak = report["matmul_peak_tflops"]
    assert peak > 0
    for row in report["results"]:
        assert row["tokens_per_s"] > row["questions_per_s"] > 0
        # FLOP/s is 4·N (train) or 2·N (evaluate) per token, and the fraction uses the peak.
        assert row["tflops"] == pytest.approx(row["fraction_of_peak"] * peak, rel=1e-6)
        per_token = 2 if row["phase"].startswith("evaluate") else 4
        n = report["block_parameters"]
        assert row["tflops"] * 1e12 == pytest.approx(per_token * n * row["tokens_per_s"], rel=1e-6)
    assert 0 < report["block_parameters"] < report["parameters"]
    assert "| train | none | 4 questions |" in proc.stdout
    assert "| train joint | none | 2×4 questions |" in proc.stdout
    assert "| evaluate | none |" in proc.stdout
    assert "| evaluate joint | none | 2 members, 1024 tokens |" in proc.stdout


def test_no_gpu_without_cpu_tiny_fails_clearly():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the full check would run")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--peak-size", "64"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode != 0
    assert "--cpu-tiny" in proc.stderr
