"""``reports/methods.csv``: every method on every eval set, one table.

Each method's samples are read like an ensemble's members (:func:`lorauq.analysis
.probability_cube`), so accuracy, NLL, ECE, Brier and the OOD AUROCs by mutual information
and by predictive entropy mean the same for all. A method run from several seeds (one run
per member of the main ensemble) shows the mean over runs and, beside the headline
metrics, their standard deviation. A cell a method cannot fill says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lorauq.analysis import (
    METRICS,
    common_epochs,
    ensemble_summary,
    eval_set_cubes,
    ood_aurocs,
    probability_cube,
)
from lorauq.methods.registry import FINAL

__all__ = [
    "AUROC_SCORES",
    "BEST",
    "COLUMNS",
    "IN_DOMAIN",
    "NO_LABELS",
    "ONE_SAMPLE",
    "SHORT",
    "SPREAD_METRICS",
    "MethodRuns",
    "at_best_epoch",
    "best_epoch",
    "method_rows",
    "methods_table",
    "summary",
]

#: Metrics with a standard deviation over runs beside them.
SPREAD_METRICS = ("accuracy", "nll", "ece", "brier", "auroc_mi", "auroc_entropy")
#: The columns of reports/methods.csv: which read-out, the analysis's metrics of the mean
#: prediction and the mean uncertainties (AURC aside), the two OOD AUROCs, their spread over
#: runs, then cost in passes (the machine's memory and time are in ``reports/costs/``).
COLUMNS = [
    "method",
    "eval_set",
    "epoch",
    "selected_by",
    "runs",
    "samples",
    *(metric for metric in METRICS if metric != "aurc"),
    "auroc_mi",
    "auroc_entropy",
    *(f"{metric}_std" for metric in SPREAD_METRICS),
    "finetune_passes",
    "eval_passes",
]
ONE_SAMPLE = "one sample: MI is 0 by construction and cannot rank"
IN_DOMAIN = "in-domain set: the reference the other sets are told from"
BEST = "lowest in-domain NLL"


@dataclass
class MethodRuns:
    """One method's read-out: its runs (samples of one epoch each, sample s as member s),
    what it cost and, where it has a single run, why (the text of its ``*_std`` cells)."""

    runs: list[pd.DataFrame]
    info: dict = field(default_factory=dict)
    one_run: str = "one run"
    selected_by: str = FINAL
    one_sample: str = ONE_SAMPLE


#: The methods table's AUROC columns and the score of :data:`lorauq.analysis.OOD_SCORES`
#: each reads.
AUROC_SCORES = {"auroc_mi": "mutual_information", "auroc_entropy": "predictive_entropy"}
NO_LABELS = "no labelled questions"


def _run_metrics(table: pd.DataFrame, in_domain: str, n_bins: int, readout: str, one_sample):
    """Per eval set of one run (one epoch): the metrics, AUROCs and the epoch, by the
    analysis's own definitions (:func:`lorauq.analysis.ensemble_summary`,
    :func:`lorauq.analysis.ood_aurocs`), so the ensemble's row is metrics.json's numbers."""
    cubes = {cube.eval_set: cube for cube in eval_set_cubes(table, readout)}
    inside = cubes.get(in_domain)
    out = {}
    for eval_set, cube in cubes.items():
        epoch = int(cube.epochs[-1])
        summary = ensemble_summary(cube.ensemble(epoch), cube.answers, n_bins)
        row = {"epoch": epoch, "samples": cube.n_members}
        row |= {m: summary.get(m, NO_LABELS) for m in METRICS if m != "aurc"}
        shared = [] if inside is None else common_epochs(inside, cube)
        aurocs = ood_aurocs(inside, cube, shared[-1]) if shared and eval_set != in_domain else {}
        for column, score in AUROC_SCORES.items():
            if eval_set == in_domain:
                row[column] = IN_DOMAIN
            elif inside is None:
                row[column] = f"no in-domain set {in_domain!r} to tell it from"
            elif not shared:
                row[column] = f"no epoch shared with the in-domain set {in_domain!r}"
            elif score == "mutual_information" and cube.n_members == 1:
                row[column] = one_sample
            else:
                row[column] = aurocs[score]
        out[eval_set] = row
    return out


def _combine(values: list, reason: str) -> tuple[object, object]:
    """Mean and std over runs of one cell; text cells (the same in every run) stay text."""
    if any(isinstance(v, str) for v in values):
        return values[0], values[0]
    if len(values) == 1:
        return values[0], reason
    return float(np.mean(values)), float(np.std(values, ddof=1))


def method_rows(
    name: str, method: MethodRuns, in_domain: str, n_bins: int, readout: str
) -> list[dict]:
    """One row per eval set of one method: the mean over its runs, and their spread."""
    per_run = [_run_metrics(t, in_domain, n_bins, readout, method.one_sample) for t in method.runs]
    rows = []
    for eval_set in per_run[0]:
        cells = [run[eval_set] for run in per_run]
        epochs = sorted({c["epoch"] for c in cells})
        row = {
            "method": name,
            "eval_set": eval_set,
            "epoch": epochs[0]
            if len(epochs) == 1
            else "per run: " + ", ".join(str(c["epoch"]) for c in cells),
            "selected_by": method.selected_by,
            "runs": len(cells),
            "samples": cells[0]["samples"],
            "finetune_passes": method.info.get("finetune_passes", "not recorded"),
            "eval_passes": method.info.get("eval_passes", "not recorded"),
        }
        for metric in COLUMNS[COLUMNS.index("accuracy") : COLUMNS.index("accuracy_std")]:
            mean, std = _combine([c[metric] for c in cells], method.one_run)
            row[metric] = mean
            if metric in SPREAD_METRICS:
                row[f"{metric}_std"] = std
        rows.append(row)
    return rows


def best_epoch(table: pd.DataFrame, in_domain: str, readout: str) -> int:
    """The trained epoch (> 0) whose mean prediction has the lowest NLL on ``in_domain``
    (the NLL of :func:`lorauq.analysis.ensemble_summary`)."""
    cube = probability_cube(table[table["epoch"] > 0], in_domain, readout)
    epochs = [int(e) for e in cube.epochs]
    losses = [ensemble_summary(cube.ensemble(e), cube.answers, n_bins=1)["nll"] for e in epochs]
    return epochs[int(np.argmin(losses))]


def at_best_epoch(table: pd.DataFrame, in_domain: str, readout: str) -> pd.DataFrame:
    """The rows of ``table``'s best in-domain epoch (:func:`best_epoch`)."""
    return table[table["epoch"] == best_epoch(table, in_domain, readout)]


def methods_table(
    methods: dict[str, MethodRuns],
    in_domain: str,
    n_bins: int,
    readout: str = "renormalized",
) -> pd.DataFrame:
    """``reports/methods.csv`` from ``{row label: its runs}`` (not to be confused with
    :mod:`lorauq.comparison`, which sets the ensemble beside the paper's published numbers)."""
    rows = [
        row
        for name, method in methods.items()
        for row in method_rows(name, method, in_domain, n_bins, readout)
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


#: Short forms of the text cells, for the compact view (notebook 04, the README).
SHORT = {
    ONE_SAMPLE: "MI ≡ 0 (one sample)",
    IN_DOMAIN: "reference set",
}


def _short(value: object) -> str:
    if isinstance(value, str):
        if value in SHORT:
            return SHORT[value]
        return "no samples" if "no samples" in value else value
    return f"{float(value):.3f}"


def summary(
    table: pd.DataFrame, metrics: tuple[str, ...] = ("accuracy", "nll", "ece", "auroc_mi")
) -> pd.DataFrame:
    """The methods table at a glance: one row per method and eval set, each metric as
    "mean ± std" where the method has several runs, text cells in short form."""
    out = table[["method", "eval_set", "runs"]].copy()
    for metric in metrics:
        std = table.get(f"{metric}_std")
        cells = []
        for i, value in enumerate(table[metric]):
            spread = None if std is None else std.iloc[i]
            text = _short(_number_or_text(value))
            if spread is not None and not isinstance(_number_or_text(spread), str):
                text += f" ± {float(spread):.3f}"
            cells.append(text)
        out[metric] = cells
    return out


def _number_or_text(value: object) -> object:
    """A cell read back from the CSV: a number where it parses as one, else its text."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)
