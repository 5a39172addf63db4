"""A run shaped like the paper's, on the tiny base: three ensembles (``lora_l2``, ``reg_l2``,
``r32`` as Fig B's reference), five stored letters on a four-choice set, Fig A in the
renormalised read-out and Fig C with "other", published numbers to compare with.

Everything the figures stage reports is recomputed here by hand from the stored letter
logits with plain numpy: the comparison CSV's ``ours``, each figure's read-out and Fig B's
agreement with the reference ensemble.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tinyworld as tw
import torch

from lorauq.config import resolve_params
from lorauq.in_process import run_experiment
from lorauq.layout import Layout
from lorauq.schema import LOGIT_COLUMNS
from lorauq.store import read_logits

pytestmark = pytest.mark.slow

ENSEMBLES = {
    "lora_l2": {},
    "reg_l2": {"train": {"prior_lambda": 0.0, "weight_decay": 0.001}},
    "r32": {"lora": {"r": 32}},
}
REFERENCE_ROWS = [
    # figure, eval_set, ensemble, estimator, size, member, metric, epoch, split, value, kind
    ("A", "cqa", "lora_l2", "ensemble", 2, -1, "accuracy", 1, "all", 0.5, "exact"),
    ("A", "mmlu_stem", "reg_l2", "member_mean", 1, -1, "nll", 2, "all", 1.0, "exact"),
    ("A", "cqa", "lora_l2", "ensemble", 5, -1, "accuracy", 1, "all", 0.8, "exact"),
    ("C", "cqa", "lora_l2", "ensemble", 2, -1, "predictive_entropy", 2, "right", 0.4, "exact"),
    (
        "C",
        "mmlu_stem",
        "lora_l2",
        "ensemble",
        2,
        -1,
        "mutual_information",
        2,
        "wrong",
        0.01,
        "exact",
    ),
    ("B", "cqa", "any", "any", 1, -1, "agreement", 2, "all", 0.9, "range_low"),
    ("A", "", "lora_l2", "member_mean", 1, -1, "lora_l2_term", 1, "all", 0.02, "approx"),
]


def _four_choice_questions(path: Path) -> Path:
    """A four-choice set (MMLU's shape) about the tiny world's words."""
    words = ["piano", "tiger", "mango", "hammer", "ferry", "otter", "lemon", "drill"]
    groups = ["instrument", "animal", "fruit", "tool", "vehicle", "animal", "fruit", "tool"]
    choices = ["animal", "fruit", "tool", "vehicle"]
    with path.open("w", encoding="utf-8") as handle:
        for i, (word, group) in enumerate(zip(words, groups, strict=True)):
            answer = choices.index(group) if group in choices else 0
            row = {
                "id": f"q{i}",
                "question": f"What is a {word}?",
                "choices": choices,
                "answer": answer,
            }
            handle.write(json.dumps(row) + "\n")
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("paper-shaped")
    questions = _four_choice_questions(root / "mmlu_stem.jsonl")
    reference = pd.DataFrame.from_records(
        [(*row, "hand-made", "") for row in REFERENCE_ROWS],
        columns=[
            "figure",
            "eval_set",
            "ensemble",
            "estimator",
            "ensemble_size",
            "member",
            "metric",
            "epoch",
            "split",
            "value",
            "kind",
            "source",
            "note",
        ],
    )
    reference.to_csv(root / "reference.csv", index=False)
    profile = {
        "members": [0, 1],
        "ensembles": ENSEMBLES,
        "base": {**dataclasses.asdict(tw.BASE), "kind": "tiny"},
        "data": {
            "template": "paper",
            "stored_letters": 5,
            "world": tw.WORLD,
            "train": {"source": "synthetic", "split": "train"},
            "eval": {
                "cqa": {"source": "synthetic", "split": "in_domain"},
                "mmlu_stem": {"source": "jsonl", "split": "test", "path": str(questions)},
            },
        },
        "lora": dataclasses.asdict(tw.LORA),
        "train": {**dataclasses.asdict(tw.TRAIN), "epochs": 2, "threads": 1},
        "infer": {**dataclasses.asdict(tw.INFER), "threads": 1},
        "analysis": {
            "readout": "renormalized",
            "in_domain": "cqa",
            "main": "lora_l2",
            "reference": "r32",
            "fig_c": {
                "readout": "with_other",
                "epochs": [1, 2],
                "entropy_max": math.log(4),
                "mi_max": 0.2,
                "bins": 30,
                "count_max": 1000,
            },
            "compare_with": "reference.csv",
        },
    }
    params = resolve_params(
        {"profile": "shaped", "ensembles": list(ENSEMBLES), "members": [0, 1], "shaped": profile}
    )
    layout = Layout(root)
    return params, layout, run_experiment(params, layout)


def _stored(layout: Layout, ensemble: str) -> pd.DataFrame:
    files = [layout.unit_logits(ensemble, unit) for unit in ("0", "1")]
    return read_logits([layout.prior_logits, *files])


def _probs(rows: pd.DataFrame, readout: str) -> np.ndarray:
    """(members, questions, classes) by hand: softmax over the 5 stored letters, or the 5
    letters' full-vocabulary probabilities plus the rest as a sixth class."""
    rows = rows.sort_values(["member", "id"])
    members = rows["member"].nunique()
    z = rows[LOGIT_COLUMNS[:5]].to_numpy(np.float64)
    if readout == "renormalized":
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
    else:
        letters = np.exp(z - rows["logsumexp_vocab"].to_numpy(np.float64)[:, None])
        p = np.concatenate([letters, 1 - letters.sum(axis=1, keepdims=True)], axis=1)
    return p.reshape(members, -1, p.shape[1])


def _answers(rows: pd.DataFrame) -> np.ndarray:
    first = rows[rows["member"] == rows["member"].min()].sort_values("id")
    return first["answer"].to_numpy()


def _entropy(p: np.ndarray) -> np.ndarray:
    return -(p * np.log(np.where(p > 0, p, 1))).sum(axis=-1)


def test_five_letters_are_stored_on_the_four_choice_set(run) -> None:
    _, layout, _ = run
    table = _stored(layout, "lora_l2")
    mmlu = table[table.eval_set == "mmlu_stem"]
    assert set(mmlu.n_choices) == {4} and set(mmlu.n_letters) == {5}
    assert np.isfinite(mmlu["logit_e"]).all() and mmlu["logit_f"].isna().all()
    assert set(table[table.eval_set == "cqa"].n_letters) == {5}


def test_comparison_rows_are_ours_computed_by_hand(run) -> None:
    _, layout, report = run
    written = pd.read_csv(layout.reports / "paper_comparison.csv", keep_default_na=False)
    assert len(written) == len(REFERENCE_ROWS)
    compared = report.comparison.set_index(
        ["figure", "eval_set", "ensemble", "metric", "epoch", "kind"]
    )

    lora = _stored(layout, "lora_l2")
    at = lambda t, s, e: t[(t.eval_set == s) & (t.epoch == e)]  # noqa: E731
    p = _probs(at(lora, "cqa", 1), "renormalized").mean(axis=0)
    accuracy = (p.argmax(-1) == _answers(at(lora, "cqa", 1))).mean()
    row = compared.loc[("A", "cqa", "lora_l2", "accuracy", 1, "exact")]
    row = row[row.ensemble_size == 2].iloc[0]
    assert row.ours == pytest.approx(accuracy) and row.difference == pytest.approx(accuracy - 0.5)
    assert np.isnan(
        compared.loc[("A", "cqa", "lora_l2", "accuracy", 1, "exact")]
        .query("ensemble_size == 5")
        .ours
    ).all()

    reg = at(_stored(layout, "reg_l2"), "mmlu_stem", 2)
    members = _probs(reg, "renormalized")
    y = _answers(reg)
    nll = np.mean([-np.log(m[np.arange(len(y)), y]).mean() for m in members])
    assert compared.loc[
        ("A", "mmlu_stem", "reg_l2", "nll", 2, "exact")
    ].ours.item() == pytest.approx(nll, rel=1e-5)

    # Fig C's read-out: five letters + other, right/wrong by the ensemble's argmax of six
    for eval_set, metric, split in (
        ("cqa", "predictive_entropy", "right"),
        ("mmlu_stem", "mutual_information", "wrong"),
    ):
        rows = at(lora, eval_set, 2)
        members = _probs(rows, "with_other")
        mean = members.mean(axis=0)
        right = mean.argmax(-1) == _answers(rows)
        chosen = right if split == "right" else ~right
        values = {
            "predictive_entropy": _entropy(mean),
            "mutual_information": np.maximum(_entropy(mean) - _entropy(members).mean(0), 0),
        }[metric]
        ours = compared.loc[("C", eval_set, "lora_l2", metric, 2, "exact")].ours.item()
        if chosen.any():
            assert ours == pytest.approx(values[chosen].mean(), rel=1e-5, abs=1e-9)
        else:
            assert np.isnan(ours)

    training = report.tables["training"]
    by_hand = training[(training.ensemble == "lora_l2") & (training.epoch == 1)]["lora_l2"].mean()
    term = compared.loc[("A", "", "lora_l2", "lora_l2_term", 1, "approx")].ours.item()
    assert term == pytest.approx(1.0 * by_hand) and by_hand > 0


def test_fig_b_is_each_ensemble_against_the_reference_by_hand(run) -> None:
    _, layout, report = run
    table = report.tables["agreement"]
    assert set(table["reference"].str.split(":").str[0]) == {"r32"}
    reference = _stored(layout, "r32")
    for ensemble in ("lora_l2", "reg_l2"):
        ours = _stored(layout, ensemble)
        for epoch in (1, 2):
            a = _probs(ours[(ours.eval_set == "cqa") & (ours.epoch == epoch)], "renormalized")
            r = _probs(
                reference[(reference.eval_set == "cqa") & (reference.epoch == epoch)],
                "renormalized",
            )
            target = r.mean(axis=0)
            agreement = (a.mean(axis=0).argmax(-1) == target.argmax(-1)).mean()
            tv = np.mean([0.5 * np.abs(m - target).sum(-1).mean() for m in a])
            rows = table[
                (table.ensemble == ensemble) & (table.eval_set == "cqa") & (table.epoch == epoch)
            ]
            assert rows.query(
                "estimator == 'ensemble' and metric == 'agreement'"
            ).value.item() == pytest.approx(agreement)
            assert rows.query(
                "estimator == 'member_mean' and metric == 'total_variation'"
            ).value.item() == pytest.approx(tv, rel=1e-5)
    low = report.comparison.query("figure == 'B' and kind == 'range_low'").ours.item()
    last = table[(table.eval_set == "cqa") & (table.metric == "agreement") & (table.epoch == 2)]
    assert low == pytest.approx(last.value.min())


def test_each_figure_has_its_read_out(run) -> None:
    """metrics.json holds both read-outs; Fig A's table is renormalised (5 classes), Fig C's
    histograms hold 6-class entropies (above ln 5 is possible only with "other")."""
    _, layout, report = run
    metrics = json.loads((layout.reports / "metrics.json").read_text())
    lora = _stored(layout, "lora_l2")
    final = lora[(lora.eval_set == "mmlu_stem") & (lora.epoch == 2)]
    for readout, classes in (("renormalized", 5), ("with_other", 6)):
        members = _probs(final, readout)
        assert members.shape[-1] == classes
        expected = _entropy(members.mean(axis=0)).mean()
        got = metrics["lora_l2"][readout]["final"]["mmlu_stem"]["predictive_entropy"]
        assert got == pytest.approx(expected, rel=1e-5)
    fig_a = report.tables["metrics"].query(
        "ensemble == 'lora_l2' and eval_set == 'mmlu_stem' and epoch == 2 and estimator == 'ensemble' "
        "and ensemble_size == 2 and metric == 'predictive_entropy'"
    )
    assert fig_a.value.item() == pytest.approx(
        metrics["lora_l2"]["renormalized"]["final"]["mmlu_stem"]["predictive_entropy"]
    )
    assert {f"fig_c_entropy_vs_mi_{s}" for s in ("cqa", "mmlu_stem")} <= set(report.figures)
    panel = report.figures["fig_c_entropy_vs_mi_cqa"].axes[0]
    assert panel.get_xlim() == pytest.approx(
        (0, math.log(4))
    ) and panel.get_ylim() == pytest.approx((0, 0.2))
