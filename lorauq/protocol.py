"""The Bayesian-LoRA protocol's table: our methods in the units the field prints them in.

Laplace-LoRA, BLoB, TFB and IVON-LoRA report accuracy and ECE in percent (ECE with 15
equal-width bins) and NLL in nats on each task's validation split, and the same on the sets
of their out-of-distribution table (trained on OpenBookQA, evaluated on ARC and two MMLU
subjects), where the AUROCs that tell an OOD set's questions from the task's are added.
:func:`protocol_rows` turns the methods table (:func:`lorauq.methods.report.methods_table`,
one row per method and eval set, fractions, a ``*_std`` over runs beside the headline
metrics) into that long form, one value and its std over runs per (task, eval set, method,
metric);
:func:`protocol_comparison` sets the published rows of ``data/reference/
bayesian_lora_protocol.csv`` (:mod:`lorauq.protocol_reference`) beside ours, so a published
row shows up the day it is added, with ours where we have the same key.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lorauq.protocol_reference import METRIC_UNITS

__all__ = [
    "COMPARISON_COLUMNS",
    "ECE_BINS",
    "OOD_METRICS",
    "PROTOCOL_COLUMNS",
    "PROTOCOL_METRICS",
    "PUBLISHED_METHOD",
    "UNITS",
    "figure",
    "protocol_comparison",
    "protocol_rows",
]

#: The protocol's ECE bins (equal width, top-label), as its papers compute it.
ECE_BINS = 15
#: The metrics of the protocol's tables, in the order the papers print them.
PROTOCOL_METRICS = ("accuracy", "ece", "nll")
#: The out-of-distribution scores (methods table columns, fractions): the AUROC of telling an
#: eval set's questions from the in-domain set's by mutual information and by entropy.
OOD_METRICS = ("auroc_mi", "auroc_entropy")
#: The unit each metric of the table is written in.
UNITS = {
    **{m: METRIC_UNITS[m][0] for m in PROTOCOL_METRICS},
    **dict.fromkeys(OOD_METRICS, "fraction"),
}
PROTOCOL_COLUMNS = ["task", "eval_set", "method", "metric", "value", "std", "unit"]
#: Our method (a row label of the methods table) → the published table's name for it.
#: Laplace-LoRA's tables report the linearised (probit) read-out; their ensemble has 3 members.
PUBLISHED_METHOD = {
    "ensemble_m3": "ensemble",
    "mc_dropout": "mc_dropout",
    "laplace_linearised": "laplace",
    "ivon": "ivon",
}
COMPARISON_COLUMNS = [
    "train_task",
    "eval_set",
    "method",
    "metric",
    "unit",
    "theirs",
    "theirs_std",
    "ours",
    "ours_std",
    "ours_method",
    "difference",
    "paper",
    "table",
    "note",
]


def _number(cell: object) -> float:
    """A methods-table cell as a number; NaN for a text cell (a reason, not a value)."""
    return float(pd.to_numeric(pd.Series([cell]), errors="coerce").iloc[0])


def protocol_rows(methods: pd.DataFrame, task: str, eval_names: dict[str, str]) -> pd.DataFrame:
    """Accuracy (%), ECE (%, whatever bins ``methods`` was computed with), NLL (nats) and the
    OOD AUROCs (fractions) of every method on every eval set, long, each with its standard
    deviation over the method's runs (``<metric>_std``; empty where it has one run).

    ``methods`` has the columns of ``reports/methods.csv`` (fractions); ``eval_names`` maps our
    eval set names to the protocol's (the in-domain set → ``task``). A cell a method cannot
    fill (text: the in-domain set's AUROC, MI of one sample) is left out rather than written
    as a number."""
    rows = []
    for _, row in methods.iterrows():
        for metric, unit in UNITS.items():
            value = _number(row.get(metric))
            if np.isnan(value):
                continue
            scale = 100.0 if unit == "percent" else 1.0
            rows.append(
                {
                    "task": task,
                    "eval_set": eval_names.get(row["eval_set"], row["eval_set"]),
                    "method": row["method"],
                    "metric": metric,
                    "value": value * scale,
                    "std": _number(row.get(f"{metric}_std")) * scale,
                    "unit": unit,
                }
            )
    return pd.DataFrame(rows, columns=PROTOCOL_COLUMNS)


def protocol_comparison(ours: pd.DataFrame, published: pd.DataFrame) -> pd.DataFrame:
    """Every published row (:func:`lorauq.protocol_reference.read_protocol_reference`) with
    our value and its std over runs for the same (task, eval set, method, metric) beside it;
    ``ours`` is empty where we ran no such thing (another task, a method we do not have),
    ``ours_std`` where our method has one run."""
    ours_by_key = {
        (r.task, r.eval_set, PUBLISHED_METHOD[r.method], r.metric): (r.value, r.std, r.method)
        for r in ours.itertuples()
        if r.method in PUBLISHED_METHOD
    }
    rows = []
    for r in published.itertuples():
        value, std, method = ours_by_key.get(
            (r.train_task, r.eval_set, r.method, r.metric), (np.nan, np.nan, "")
        )
        rows.append(
            {
                "train_task": r.train_task,
                "eval_set": r.eval_set,
                "method": r.method,
                "metric": r.metric,
                "unit": r.unit,
                "theirs": r.value,
                "theirs_std": r.std,
                "ours": value,
                "ours_std": std,
                "ours_method": method,
                "difference": value - r.value,
                "paper": r.paper,
                "table": r.table,
                "note": r.note if method else "not run here: another task or method",
            }
        )
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def figure(table: pd.DataFrame):
    """One panel per metric of the protocol table (the AUROCs where there are OOD sets): each
    method's value per eval set."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    metrics = [m for m in UNITS if m in set(table["metric"])]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 4.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        chosen = table[table["metric"] == metric]
        sns.barplot(chosen, x="eval_set", y="value", hue="method", ax=ax)
        better = "lower" if metric in ("ece", "nll") else "higher"
        ax.set(
            title=f"{metric} ({chosen['unit'].iloc[0]}, {better} is better)",
            xlabel="eval set",
            ylabel=metric,
        )
        ax.legend().remove()
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, title="method", loc="lower center", ncol=len(labels),
               bbox_to_anchor=(0.5, 0.0), frameon=False)  # fmt: skip
    tasks = ", ".join(dict.fromkeys(table["task"]))
    fig.suptitle(f"The Bayesian-LoRA protocol's metrics, task {tasks} (reports/protocol.csv)")
    fig.tight_layout(rect=(0, 0.12, 1, 1))  # the bottom strip holds the methods' legend
    return fig
