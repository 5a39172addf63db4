"""``reports/methods.csv``: every method on every eval set at the final epoch, one table.

Each method's samples are read like an ensemble's members (:func:`lorauq.analysis
.probability_cube`), so accuracy, NLL, ECE, Brier and the OOD AUROCs by mutual information
and by predictive entropy mean the same for all. A cell a method cannot fill says why.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lorauq.analysis import METRICS, probability_cube
from lorauq.uncertainty import (
    accuracy,
    auroc,
    brier,
    ece,
    ensemble_mean,
    expected_entropy,
    mutual_information,
    nll,
    predictive_entropy,
)

#: The columns of reports/methods.csv: the analysis's metrics of the mean prediction and the
#: mean uncertainties (AURC aside), the two OOD AUROCs, then spread and cost.
COLUMNS = [
    "method",
    "eval_set",
    "samples",
    *(metric for metric in METRICS if metric != "aurc"),
    "auroc_mi",
    "auroc_entropy",
    "spread",
    "finetune_passes",
    "eval_passes",
]
ONE_SAMPLE = "one sample: MI is 0 by construction and cannot rank"
IN_DOMAIN = "in-domain set: the reference the other sets are told from"
ONE_RUN = "one run (no seeds to spread over)"


def _scores(probs: np.ndarray) -> dict[str, np.ndarray]:
    return {"mi": mutual_information(probs), "entropy": predictive_entropy(probs)}


def method_rows(
    name: str, table: pd.DataFrame, info: dict, in_domain: str, n_bins: int, readout: str
) -> list[dict]:
    """One row per eval set of one method's samples (at their one epoch)."""
    cubes = {s: probability_cube(table, s, readout) for s in dict.fromkeys(table["eval_set"])}
    inside = cubes.get(in_domain)
    rows = []
    for eval_set, cube in cubes.items():
        probs = cube.probs[:, -1]
        labelled = cube.labelled
        p_bar = ensemble_mean(probs)[labelled]
        answers = cube.answers[labelled]
        row = {
            "method": name,
            "eval_set": eval_set,
            "samples": cube.n_members,
            "accuracy": accuracy(p_bar, answers),
            "nll": nll(p_bar, answers),
            "ece": ece(p_bar, answers, n_bins=n_bins),
            "brier": brier(p_bar, answers),
            "predictive_entropy": float(np.mean(predictive_entropy(probs))),
            "expected_entropy": float(np.mean(expected_entropy(probs))),
            "mutual_information": float(np.mean(mutual_information(probs))),
            "spread": ONE_RUN,
            "finetune_passes": info["finetune_passes"],
            "eval_passes": info["eval_passes"],
        }
        for score in ("mi", "entropy"):
            if eval_set == in_domain:
                row[f"auroc_{score}"] = IN_DOMAIN
            elif inside is None:
                row[f"auroc_{score}"] = f"no in-domain set {in_domain!r} to tell it from"
            elif score == "mi" and cube.n_members == 1:
                row[f"auroc_{score}"] = ONE_SAMPLE
            else:
                a, b = _scores(inside.probs[:, -1])[score], _scores(probs)[score]
                row[f"auroc_{score}"] = auroc(
                    np.r_[a, b], np.r_[np.zeros(len(a), bool), np.ones(len(b), bool)]
                )
        rows.append(row)
    return rows


def comparison(
    methods: dict[str, tuple[pd.DataFrame, dict]],
    in_domain: str,
    n_bins: int,
    readout: str = "renormalized",
) -> pd.DataFrame:
    """The methods table from ``{name: (samples at one epoch, cost info)}``."""
    rows = [
        row
        for name, (table, info) in methods.items()
        for row in method_rows(name, table, info, in_domain, n_bins, readout)
    ]
    return pd.DataFrame(rows, columns=COLUMNS)
