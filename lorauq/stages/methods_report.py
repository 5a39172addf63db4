"""Stage ``methods``: ``reports/methods.csv`` and the methods figure (``reports/methods/``).

The LoRA ensemble (the main ensemble, every member, final epoch) is always the first row;
each method of ``methods.run`` follows from its ``data/methods/<name>/`` samples.
"""

from __future__ import annotations

import json
import sys

import pandas as pd

from lorauq.atomic import atomic_path
from lorauq.config import Params, load_params
from lorauq.errors import exit_code
from lorauq.layout import Layout
from lorauq.methods.report import comparison
from lorauq.store import read_logits


def _lora_ensemble(params: Params, layout: Layout) -> tuple[pd.DataFrame, dict]:
    name = params.main_ensemble
    table = read_logits([layout.unit_logits(name, unit) for unit in params.units])
    table = table[table["epoch"] == table["epoch"].max()]
    n = len(params.members)
    return table, {"finetune_passes": n, "eval_passes": n}


def collect(params: Params, layout: Layout) -> dict[str, tuple[pd.DataFrame, dict]]:
    found = {"lora_ensemble": _lora_ensemble(params, layout)}
    for name in params.methods.run:
        folder = layout.root / "data" / "methods" / name
        info = json.loads((folder / "info.json").read_text(encoding="utf-8"))
        found[name] = (read_logits(folder / "samples.parquet"), info)
    return found


def figure(table: pd.DataFrame):
    """Per eval set NLL, ECE and the two AUROCs side by side, and expected entropy against MI."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    metrics = ["nll", "ece", "auroc_mi", "auroc_entropy"]
    long = table.melt(["method", "eval_set"], metrics, "metric", "value")
    long["value"] = pd.to_numeric(long["value"], errors="coerce")  # text cells: not drawn
    fig, axes = plt.subplots(1, len(metrics) + 1, figsize=(4 * (len(metrics) + 1), 4))
    for ax, metric in zip(axes, metrics, strict=False):
        sns.barplot(long[long["metric"] == metric], x="eval_set", y="value", hue="method", ax=ax)
        ax.set(title=metric, xlabel="eval set", ylabel=metric)
        ax.legend().set_visible(ax is axes[0])
    sns.scatterplot(
        table,
        x="expected_entropy",
        y="mutual_information",
        hue="method",
        style="eval_set",
        ax=axes[-1],
    )
    axes[-1].set(
        title="means per method and set",
        xlabel="expected entropy (nats)",
        ylabel="mutual information (nats)",
    )
    fig.tight_layout()
    return fig


def run(params: Params, layout: Layout = Layout()) -> pd.DataFrame:
    from lorauq.plots import save_figure

    a = params.analysis
    table = comparison(collect(params, layout), a.in_domain, a.n_bins, a.readout)
    path = layout.reports / "methods.csv"
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    save_figure(figure(table), layout.reports / "methods", "methods")
    return table


def main() -> int:
    return exit_code(lambda: run(load_params()).to_string())


if __name__ == "__main__":
    sys.exit(main())
