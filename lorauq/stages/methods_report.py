"""Stage ``methods``: ``reports/methods.csv`` and the methods figure (``reports/methods/``).

The LoRA ensemble (the main ensemble, every member, final epoch) is always the first row,
then the ensemble and its single members at their lowest in-domain NLL epoch; each method of
``methods.run`` follows, in its order, from its ``data/methods/<name>/`` samples (its record in
:mod:`lorauq.methods.registry` says why it has one run where it has one) (and its other runs,
``runs/member-<m>.parquet``; Laplace's linearised read-out, ``linearised.parquet``, and its
other runs', ``runs/linearised/member-<m>.parquet``).
"""

from __future__ import annotations

import json
import sys

import pandas as pd

from lorauq.atomic import atomic_path
from lorauq.config import Params, load_params
from lorauq.errors import exit_code
from lorauq.layout import Layout
from lorauq.methods.registry import method
from lorauq.methods.report import BEST, MethodRuns, at_best_epoch, methods_table
from lorauq.schema import PRIOR_MEMBER
from lorauq.store import read_logits

__all__ = ["PANELS", "collect", "figure", "main", "run"]


def _main_logits(params: Params, layout: Layout) -> pd.DataFrame:
    """Every trained epoch of every member of the main ensemble (no prior)."""
    name = params.main_ensemble
    table = read_logits([layout.unit_logits(name, unit) for unit in params.units])
    return table[(table["member"] != PRIOR_MEMBER) & (table["epoch"] > 0)]


def _at_final(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["epoch"] == table["epoch"].max()]


def _method_runs(folder, read_out: str = "samples") -> list[pd.DataFrame]:
    """A read-out's run from member 0, then its runs from the other members in their order."""
    others = folder / "runs" if read_out == "samples" else folder / "runs" / read_out
    runs = sorted(others.glob("member-*.parquet"), key=lambda p: int(p.stem[7:]))
    return [read_logits(folder / f"{read_out}.parquet"), *map(read_logits, runs)]


def collect(params: Params, layout: Layout) -> dict[str, MethodRuns]:
    """Every row group of the table: the ensemble and member 0's epochs, at the final epoch
    and at the best in-domain one, then each method of ``methods.run``."""
    a = params.analysis
    main = _main_logits(params, layout)
    n = len(params.members)
    ensemble_cost = {"finetune_passes": n, "eval_passes": n}
    one_ensemble = f"one ensemble of {n} seeds: a second would need {n} more members"
    singles = [main[main["member"] == m].assign(member=0) for m in params.members]
    found = {"lora_ensemble": MethodRuns([_at_final(main)], ensemble_cost, one_ensemble)}
    if a.in_domain in set(main["eval_set"]):
        found["lora_ensemble@best"] = MethodRuns(
            [at_best_epoch(main, a.in_domain, a.readout)], ensemble_cost, one_ensemble, BEST
        )
        found["single@best"] = MethodRuns(
            [at_best_epoch(t, a.in_domain, a.readout) for t in singles],
            {"finetune_passes": 1, "eval_passes": 1},
            "one member in the experiment",
            BEST,
        )
    for name in params.methods.run:
        folder = layout.root / "data" / "methods" / name
        info = json.loads((folder / "info.json").read_text(encoding="utf-8"))
        record = method(name)
        found[name] = MethodRuns(_method_runs(folder), info, record.one_run, record.selected_by)
        if (folder / "linearised.parquet").exists():
            found[f"{name}_linearised"] = MethodRuns(
                _method_runs(folder, "linearised"),
                {**info, "eval_passes": "1 + a Jacobian per question (K backward passes)"},
                record.one_run,
                one_sample="one distribution (the probit read-out): no samples, no MI",
            )
    return found


#: The bar panels of the figure: column, title (with units and direction).
PANELS = (
    ("nll", "NLL of the mean prediction (nats, lower is better)"),
    ("ece", "ECE (fraction, lower is better)"),
    ("auroc_mi", "AUROC by MI against the in-domain set"),
    ("auroc_entropy", "AUROC by predictive entropy"),
)


def figure(table: pd.DataFrame):
    """Per eval set NLL, ECE and the two AUROCs side by side, and expected entropy against MI.

    Text cells (a method that cannot fill one, the in-domain reference of the AUROCs) are
    not drawn; the AUROC panels mark chance (0.5)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    metrics = [column for column, _ in PANELS]
    long = table.melt(["method", "eval_set"], metrics, "metric", "value")
    long["value"] = pd.to_numeric(long["value"], errors="coerce")  # text cells: not drawn
    fig, axes = plt.subplots(1, len(PANELS) + 1, figsize=(4.4 * (len(PANELS) + 1), 4.6))
    for ax, (metric, title) in zip(axes, PANELS, strict=False):
        sns.barplot(long[long["metric"] == metric], x="eval_set", y="value", hue="method", ax=ax)
        ax.set(title=title, xlabel="eval set", ylabel=metric)
        if metric.startswith("auroc"):
            ax.axhline(0.5, color="grey", linestyle="--", linewidth=1)
            ax.set_ylim(0, 1)
        ax.legend().remove()
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, title="method", loc="lower center", ncol=len(labels),
               bbox_to_anchor=(0.5, 0.0), frameon=False)  # fmt: skip
    sns.scatterplot(
        table,
        x="expected_entropy",
        y="mutual_information",
        hue="method",
        style="eval_set",
        ax=axes[-1],
        legend="brief",
    )
    # the methods' colours are in the figure's legend; this one keeps the eval sets' markers
    marks, names = axes[-1].get_legend_handles_labels()
    keep = [i for i, name in enumerate(names) if name in set(table["eval_set"])]
    axes[-1].legend([marks[i] for i in keep], [names[i] for i in keep], title="eval set")
    axes[-1].set(
        title="mean uncertainties per method and set",
        xlabel="expected entropy (aleatoric, nats)",
        ylabel="mutual information (epistemic, nats)",
    )
    fig.suptitle("Rival uncertainty methods at the final epoch (reports/methods.csv)")
    fig.tight_layout(rect=(0, 0.13, 1, 1))  # the bottom strip holds the methods' legend
    return fig


def run(params: Params, layout: Layout = Layout()) -> pd.DataFrame:
    from lorauq.plots import save_figure

    a = params.analysis
    table = methods_table(collect(params, layout), a.in_domain, a.n_bins, a.readout)
    path = layout.reports / "methods.csv"
    # columns that mix numbers and reasons are objects, which float_format does not reach
    shown = table.map(lambda v: float(f"{v:.6g}") if isinstance(v, float) else v)
    with atomic_path(path) as tmp:
        shown.to_csv(tmp, index=False, float_format="%.6g")
    save_figure(figure(table), layout.reports / "methods", "methods")
    return table


def main() -> int:
    return exit_code(lambda: run(load_params()).to_string())


if __name__ == "__main__":
    sys.exit(main())
