"""The authors' reference values (``data/reference/``) stay comparable with lorauq's tables.

The CSV is joined to ``reports/plots/metrics.csv`` on eval set, epoch, estimator and metric
names, so those names must be the ones lorauq writes; a renamed metric or eval set would make
every comparison silently empty. The checks also guard the file's own invariants (one value
per row, ranges as low/high pairs, fractions within [0, 1]).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from lorauq import analysis
from lorauq.config import load_params

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "data" / "reference" / "paper_2402.12264.csv"
README = ROOT / "data" / "reference" / "README.md"
COLUMNS = [
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
]
KEY = ["figure", "eval_set", "ensemble", "estimator", "member", "metric", "epoch", "split"]
FRACTIONS = {"accuracy", "ece", "agreement", "total_variation"}


@pytest.fixture(scope="module")
def ref() -> pd.DataFrame:
    return pd.read_csv(REFERENCE, keep_default_na=False)


def test_columns_and_readme(ref: pd.DataFrame) -> None:
    assert ref.columns.tolist() == COLUMNS
    readme = README.read_text(encoding="utf-8")
    missing = [c for c in COLUMNS if f"| `{c}` |" not in readme]
    assert not missing, f"data/reference/README.md does not describe {missing}"


def test_names_are_lorauqs(ref: pd.DataFrame) -> None:
    paper = load_params(ROOT / "params.yaml", {"profile": "paper"})
    assert set(ref["eval_set"]) <= {*paper.data.eval, ""}
    metrics = {*analysis.METRICS, "agreement", "total_variation", "lora_l2_term"}
    assert set(ref["metric"]) <= metrics
    estimators = {analysis.ENSEMBLE, analysis.MEMBER_MEAN, analysis.MEMBER, "any"}
    assert set(ref["estimator"]) <= estimators
    assert set(ref["split"]) <= {"all", "right", "wrong"}
    assert set(ref["kind"]) <= {"exact", "approx", "range_low", "range_high"}
    assert {"lora_l2", "reg_l2"} <= set(ref["ensemble"])


def test_rows_are_consistent(ref: pd.DataFrame) -> None:
    assert not ref.duplicated([*KEY, "kind"]).any()
    is_member = ref["estimator"] == analysis.MEMBER
    assert (ref.loc[is_member, "member"] >= 0).all()
    assert (ref.loc[~is_member, "member"] == -1).all()
    assert (ref.loc[ref["estimator"] != analysis.ENSEMBLE, "ensemble_size"] == 1).all()
    assert ref["epoch"].between(0, 10).all()
    fractions = ref[ref["metric"].isin(FRACTIONS)]
    assert fractions["value"].between(0, 1).all()
    assert (ref["value"] >= 0).all()
    assert ref["source"].str.fullmatch(r"[0-9a-f]{7}:experiments/\S+\.ipynb:\w+").all()


def test_ranges_come_in_ordered_pairs(ref: pd.DataFrame) -> None:
    low = ref[ref["kind"] == "range_low"].set_index(KEY)["value"]
    high = ref[ref["kind"] == "range_high"].set_index(KEY)["value"]
    lone_lows = low.index.difference(high.index)
    lone_highs = high.index.difference(low.index)
    # A bound without its partner is allowed only where the draft shows just one side.
    for key in [*lone_lows, *lone_highs]:
        row = ref.set_index(KEY).loc[key]
        note = " ".join(pd.Series(row["note"]).astype(str))
        assert re.search(r"at or above|below", note), f"unpaired range bound {key}"
    both = low.index.intersection(high.index)
    assert (low[both] <= high[both]).all()


def test_known_values(ref: pd.DataFrame) -> None:
    """Spot checks against counts: 1,021 of 1,221 CQA questions at the peak, and epoch 0
    (the base model) equal for every curve."""
    acc = ref.query("figure == 'A' and eval_set == 'cqa' and metric == 'accuracy'")
    peak = acc.query("ensemble == 'lora_l2' and estimator == 'ensemble' and epoch == 5")
    assert peak["value"].item() == pytest.approx(1021 / 1221, abs=5e-7)
    assert acc.query("epoch == 0")["value"].nunique() == 1
    assert len(acc) == 4 * 11
