"""Our numbers beside published ones: one tidy table, row by row with the difference.

The published numbers are a CSV of the shape of ``data/reference/paper_2402.12264.csv``
(one value per row, keyed by figure, eval set, ensemble, estimator, metric, epoch and split).
Each row is matched with what this experiment computed for the same key: Fig A rows with the
metrics table, Fig C rows with the main ensemble's per-question entropy and MI averaged over
its right or wrong answers, Fig B ranges with the spread of our agreement curves at the last
epoch, LoRA-L2 rows with the adapters' norm times λ. A row this experiment has nothing for
(another eval set, ensemble or epoch) keeps an empty ``ours`` and says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from lorauq.errors import DataError

#: The columns a published-numbers CSV must have.
REFERENCE_COLUMNS = [
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
]
COMPARISON_COLUMNS = [
    *REFERENCE_COLUMNS[:9],
    "kind",
    "theirs",
    "ours",
    "difference",
    "note",
    "source",
]


def read_reference(path: str | Path) -> pd.DataFrame:
    """The published numbers, checked for the columns the comparison needs."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file of published numbers (analysis.compare_with)")
    table = pd.read_csv(path, keep_default_na=False)
    missing = [c for c in REFERENCE_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; expected {REFERENCE_COLUMNS}")
    return table


def _metric_value(metrics: pd.DataFrame, row: pd.Series) -> float | None:
    chosen = metrics[
        (metrics["ensemble"] == row["ensemble"])
        & (metrics["eval_set"] == row["eval_set"])
        & (metrics["estimator"] == row["estimator"])
        & (metrics["ensemble_size"] == int(row["ensemble_size"]))
        & (metrics["member"] == int(row["member"]))
        & (metrics["metric"] == row["metric"])
        & (metrics["epoch"] == int(row["epoch"]))
    ]
    return float(chosen["value"].iloc[0]) if len(chosen) == 1 else None


def _split_mean(questions: pd.DataFrame, row: pd.Series) -> float | None:
    chosen = questions[
        (questions["ensemble"] == row["ensemble"])
        & (questions["eval_set"] == row["eval_set"])
        & (questions["epoch"] == int(row["epoch"]))
        & questions["correct"].notna()
    ]
    if row["split"] in ("right", "wrong"):
        chosen = chosen[chosen["correct"].astype(bool) == (row["split"] == "right")]
    if chosen.empty or row["metric"] not in chosen.columns:
        return None
    return float(chosen[row["metric"]].mean())


def _agreement_end(agreement: pd.DataFrame, row: pd.Series) -> float | None:
    """A Fig B range end: the lowest or highest of our curves at the last epoch."""
    chosen = agreement[
        (agreement["eval_set"] == row["eval_set"]) & (agreement["metric"] == row["metric"])
    ]
    if chosen.empty:
        return None
    last = chosen[chosen["epoch"] == chosen["epoch"].max()]["value"]
    return float(last.max() if row["kind"] == "range_high" else last.min())


def _lora_l2_term(
    training: pd.DataFrame, row: pd.Series, lambdas: Mapping[str, float]
) -> float | None:
    chosen = training[
        (training["ensemble"] == row["ensemble"]) & (training["epoch"] == int(row["epoch"]))
    ]
    if chosen.empty:
        return None
    return float(lambdas.get(row["ensemble"], 1.0) * chosen["lora_l2"].mean())


def compare(
    reference: pd.DataFrame,
    *,
    metrics: pd.DataFrame,
    questions: pd.DataFrame,
    agreement: pd.DataFrame,
    training: pd.DataFrame,
    lambdas: Mapping[str, float],
) -> pd.DataFrame:
    """Every published row with ours beside it (``ours`` empty where we have no such number).

    ``metrics`` and ``agreement`` are the figures stage's tables, ``questions`` the per-question
    table in Fig C's read-out, ``training`` the adapters' LoRA-L2 norms; all carry ``ensemble``.
    ``lambdas`` is each ensemble's λ, so the LoRA-L2 term compares with the authors' λ·Σ‖BA‖².
    """
    records = []
    for _, row in reference.iterrows():
        if row["metric"] == "lora_l2_term":
            ours = _lora_l2_term(training, row, lambdas)
        elif row["figure"] == "B":
            ours = _agreement_end(agreement, row) if row["kind"].startswith("range") else None
        elif row["figure"] == "C":
            ours = _split_mean(questions, row)
        else:
            ours = _metric_value(metrics, row)
        theirs = float(row["value"])
        note = "" if ours is not None else "this experiment has no such number"
        records.append(
            {
                **{c: row[c] for c in REFERENCE_COLUMNS[:9]},
                "kind": row["kind"],
                "theirs": theirs,
                "ours": np.nan if ours is None else ours,
                "difference": np.nan if ours is None else ours - theirs,
                "note": note,
                "source": row["source"],
            }
        )
    table = pd.DataFrame.from_records(records, columns=COMPARISON_COLUMNS)
    return table


def empty_comparison() -> pd.DataFrame:
    """The comparison of a profile that names no published numbers: no rows."""
    return pd.DataFrame(columns=COMPARISON_COLUMNS)


__all__ = [
    "COMPARISON_COLUMNS",
    "REFERENCE_COLUMNS",
    "compare",
    "empty_comparison",
    "read_reference",
]
