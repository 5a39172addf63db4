"""The report's figures: one function per figure, tidy tables of :mod:`lorauq.analysis` in.

Each function only selects and reshapes its table for display and returns a
:class:`matplotlib.figure.Figure` built without pyplot (no global figure state, nothing shown
twice in a notebook); :func:`save_figure` writes it as PNG and PDF. Every panel carries a
title naming the eval set, axis labels with units (entropies in nats) and a legend, so a
figure can be read without the code.

Figures of the paper (docs/paper.md): A = :func:`fig_metrics_over_epochs`,
B = :func:`fig_agreement`, C = :func:`fig_entropy_mi_hist`; the rest go beyond the paper, plus
the K-letter mass diagnostic (:func:`fig_letter_mass`).

One job at this length: one short function per figure, all sharing the same styling helpers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from lorauq.atomic import atomic_path

__all__ = [
    "DPI",
    "EPOCH_LABEL",
    "LABELS",
    "MEMBER_MEAN_CURVE",
    "PANEL_SIZE",
    "TITLES",
    "TRANSITION_COLOURS",
    "TRANSITION_LABELS",
    "fig_agreement",
    "fig_ensemble_size",
    "fig_entropy_mi_hist",
    "fig_letter_mass",
    "fig_lora_l2",
    "fig_metrics_over_epochs",
    "fig_ood_roc",
    "fig_reliability",
    "fig_risk_coverage",
    "fig_subjects",
    "fig_transitions",
    "save_figure",
]

#: Axis labels, with units, of every metric the analysis tables carry.
LABELS = {
    "accuracy": "accuracy (fraction correct)",
    "nll": "NLL (nats)",
    "ece": "ECE (fraction)",
    "brier": "Brier score (0 = perfect, 2 = worst)",
    "predictive_entropy": "predictive entropy H(p̄) (nats)",
    "expected_entropy": "expected entropy (nats)",
    "mutual_information": "mutual information (nats)",
    "aurc": "AURC (mean error rate)",
    "agreement": "agreement (fraction same answer)",
    "total_variation": "total variation distance (0–1)",
    "max_prob": "1 − max p̄",
    "letter_mass": "letter mass Σₖ p(letter k) (probability)",
}
#: Short panel-title names of the same metrics.
TITLES = {
    "accuracy": "accuracy",
    "nll": "NLL",
    "ece": "ECE",
    "brier": "Brier",
    "predictive_entropy": "predictive entropy",
    "expected_entropy": "expected entropy",
    "mutual_information": "mutual information",
    "aurc": "AURC",
    "agreement": "agreement with reference",
    "total_variation": "total variation to reference",
    "max_prob": "1 − max p̄",
    "letter_mass": "answer letters' share of the vocabulary",
}
TRANSITION_LABELS = {
    "stayed_right": "right → right",
    "learned": "wrong → right (learned)",
    "forgotten": "right → wrong (forgotten)",
    "stayed_wrong": "wrong → wrong",
}
#: Colours of the transitions: kept and learned in greens, forgotten in red, never in grey.
TRANSITION_COLOURS = ("#1a9850", "#91cf60", "#d73027", "#bdbdbd")
EPOCH_LABEL = "epoch (0 = base model)"
#: Curve name of the paper's "M=1": each single member's metric, averaged over members.
MEMBER_MEAN_CURVE = "M=1 (member mean)"
PANEL_SIZE = (4.0, 3.0)
DPI = 150


# --------------------------------------------------------------------------- helpers


def _figure(nrows: int, ncols: int, **subplot_kw: object) -> tuple[Figure, np.ndarray]:
    """A constrained-layout figure with a 2-D array of seaborn-styled axes."""
    with sns.axes_style("whitegrid"):
        fig = Figure(
            figsize=(max(PANEL_SIZE[0] * ncols, 6.0), PANEL_SIZE[1] * nrows + 0.4),
            layout="constrained",
        )
        axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)
    return fig, axes


def _require_rows(table: pd.DataFrame, what: str) -> None:
    if table.empty:
        raise ValueError(f"{what}: the table has no rows to plot")


def _label(ax: Axes, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


def _keep_one_legend(axes: np.ndarray, title: str | None = None) -> None:
    """Keep the first panel's legend (retitled when ``title`` is given), drop the others."""
    legends = [ax.get_legend() for ax in axes.flat]
    first = next((i for i, legend in enumerate(legends) if legend is not None), None)
    if first is None:
        return
    for legend in legends[first + 1 :]:
        if legend is not None:
            legend.remove()
    if title is not None:
        axes.flat[first].legend(title=title, fontsize="small")


def _epoch_grid(data: pd.DataFrame, metrics: Sequence[str], suptitle: str) -> Figure:
    """Rows = eval sets, columns = metrics; colour = ensemble, line style = ``size``."""
    eval_sets = sorted(data["eval_set"].unique())
    fig, axes = _figure(len(eval_sets), len(metrics))
    for row, eval_set in enumerate(eval_sets):
        for col, metric in enumerate(metrics):
            ax = axes[row, col]
            panel = data[(data["eval_set"] == eval_set) & (data["metric"] == metric)]
            sns.lineplot(
                data=panel,
                x="epoch",
                y="value",
                hue="ensemble",
                style="size",
                markers=True,
                dashes=True,
                ax=ax,
            )
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            _label(ax, f"{eval_set}: {TITLES[metric]}", EPOCH_LABEL, LABELS[metric])
    _keep_one_legend(axes)
    fig.suptitle(suptitle)
    return fig


# --------------------------------------------------------------------------- paper figures


def _with_ensemble(table: pd.DataFrame) -> pd.DataFrame:
    """Tables of one ensemble (no ``ensemble`` column) plot as the ensemble ``ensemble``."""
    return table if "ensemble" in table.columns else table.assign(ensemble="ensemble")


def _size_label(estimator: pd.Series, size: pd.Series) -> pd.Series:
    """Line-style labels: ``M=5 (ensemble)`` or ``M=1 (member mean)``, the paper's curves."""
    ensemble = "M=" + size.astype(str) + " (ensemble)"
    return ensemble.where(estimator == "ensemble", MEMBER_MEAN_CURVE)


def fig_metrics_over_epochs(
    metrics_table: pd.DataFrame, metrics: Sequence[str] = ("accuracy", "nll", "ece")
) -> Figure:
    """Fig A: accuracy, NLL and ECE over epochs, each ensemble at M = its size and at M = 1.

    Rows are eval sets, columns metrics. Colour is the ensemble; a solid line its full
    ensemble (the largest ``ensemble_size``), a dashed one the single members' metric
    averaged (``member_mean``, the paper's M = 1).
    """
    _require_rows(metrics_table, "fig_metrics_over_epochs")
    table = _with_ensemble(metrics_table)
    ensemble = table[table["estimator"] == "ensemble"]
    full_size = ensemble.groupby(["ensemble", "eval_set"])["ensemble_size"].transform("max")
    full = ensemble[ensemble["ensemble_size"] == full_size]
    single = table[table["estimator"] == "member_mean"]
    data = pd.concat([full, single], ignore_index=True)
    data = data.assign(size=_size_label(data["estimator"], data["ensemble_size"]))
    return _epoch_grid(data, metrics, "Metrics over fine-tuning epochs")


def fig_agreement(agreement_table: pd.DataFrame) -> Figure:
    """Fig B: agreement and total variation of each ensemble to the reference, over epochs.

    Rows are eval sets; colour is the compared ensemble, solid its full ensemble, dashed its
    single members averaged. The suptitle names the reference and says whether it was taken
    at the same epoch or, where it stops earlier, at its final one (see
    :func:`lorauq.analysis.agreement_table`).
    """
    _require_rows(agreement_table, "fig_agreement")
    table = _with_ensemble(agreement_table)
    table = table.assign(size=_size_label(table["estimator"], table["ensemble_size"]))
    reference = " / ".join(sorted(table["reference"].unique()))
    same_epoch = (table["reference_epoch"] == table["epoch"]).all()
    when = "same epoch" if same_epoch else "same epoch, else its final epoch"
    return _epoch_grid(
        table,
        ("agreement", "total_variation"),
        f"Closeness to the reference ensemble ({reference}, {when})",
    )


def _edges(values: pd.Series, bins: int, top: float | None) -> np.ndarray:
    """Bin edges from 0 to ``top``, or to a little past the largest value when None."""
    top = top if top is not None else 1.05 * max(float(values.max()), 1e-3)
    return np.linspace(0.0, top, bins + 1)


def fig_entropy_mi_hist(
    question_table: pd.DataFrame,
    epochs: Sequence[int],
    *,
    bins: int = 30,
    entropy_max: float | None = None,
    mi_max: float | None = None,
    count_max: float | None = None,
) -> Figure:
    """Fig C of one eval set: 2-D histograms of predictive entropy (x) vs MI (y), in nats.

    The upper row holds the questions the ensemble answers right, the lower the wrong ones
    (unlabelled questions are left out), one column per epoch in ``epochs``. Every panel
    shares the axis ranges and one logarithmic colour scale of questions per bin, so panels
    compare directly; with ``entropy_max``/``mi_max``/``count_max`` fixed (the authors: ln 4,
    0.2 and 1000) so do figures of other eval sets and runs. Questions past the axis ranges
    are counted in the title, not dropped silently. Empty bins are blank.
    """
    _require_rows(question_table, "fig_entropy_mi_hist")
    eval_sets = sorted(question_table["eval_set"].unique())
    if len(eval_sets) != 1:
        raise ValueError(f"fig_entropy_mi_hist draws one eval set, got {eval_sets}")
    missing = sorted(set(epochs) - set(question_table["epoch"].unique().tolist()))
    if missing:
        raise ValueError(f"fig_entropy_mi_hist: epoch(s) {missing} are not in the table")
    labelled = question_table[question_table["correct"].notna()]
    right = labelled["correct"].astype(bool)
    panels = [
        (kind, epoch, labelled[(right == is_right) & (labelled["epoch"] == epoch)])
        for kind, is_right in (("right", True), ("wrong", False))
        for epoch in epochs
    ]
    x_edges = _edges(question_table["predictive_entropy"], bins, entropy_max)
    y_edges = _edges(question_table["mutual_information"], bins, mi_max)
    counts = [
        np.histogram2d(p["predictive_entropy"], p["mutual_information"], [x_edges, y_edges])[0]
        for *_, p in panels
    ]
    top = count_max if count_max is not None else max(2.0, max(c.max() for c in counts))
    norm = LogNorm(vmin=1, vmax=top)
    fig, axes = _figure(2, len(epochs), sharex=True, sharey=True)
    for ax, (kind, epoch, questions), count in zip(axes.flat, panels, counts, strict=True):
        mesh = ax.pcolormesh(
            x_edges, y_edges, np.ma.masked_less(count.T, 1), norm=norm, cmap="viridis"
        )
        ax.grid(False)
        outside = len(questions) - int(count.sum())
        beyond = f", {outside} beyond the axes" if outside else ""
        _label(
            ax,
            f"epoch {epoch}: {kind} answers (n={len(questions)}{beyond})",
            "predictive entropy (nats)",
            "mutual information (nats)",
        )
    fig.colorbar(mesh, ax=axes, label="questions per bin (log scale)", shrink=0.6, aspect=40)
    fig.suptitle(f"{eval_sets[0]}: total (x) vs epistemic (y) uncertainty, right and wrong")
    return fig


def fig_lora_l2(training_table: pd.DataFrame) -> Figure:
    """The LoRA-L2 norm Σ‖B·A‖²_F of the saved adapters over epochs, per ensemble.

    The loss adds λ times it (the paper's prior term); Reg-L2 ensembles (λ = 0) show how far
    the adapters drift without it. Lines are the member mean, bands the spread over members.
    """
    _require_rows(training_table, "fig_lora_l2")
    fig, axes = _figure(1, 2)
    for ax, (column, title, label) in zip(
        axes.flat,
        (
            ("lora_l2", "LoRA-L2 norm of the saved adapter", "Σ‖B·A‖²_F (before λ)"),
            ("loss", "training loss at the answer position", "cross-entropy (nats)"),
        ),
        strict=True,
    ):
        sns.lineplot(
            data=_with_ensemble(training_table),
            x="epoch",
            y=column,
            hue="ensemble",
            marker="o",
            errorbar=("pi", 100),
            ax=ax,
        )
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if column == "lora_l2" and (training_table[column] > 0).all():
            ax.set_yscale("log")  # the prior holds λ = 1 adapters orders of magnitude lower
            label += ", log scale"
        _label(ax, title, "epoch", label)
    _keep_one_legend(axes, "ensemble")
    fig.suptitle("What training did to the adapters (member mean, band: min–max over members)")
    return fig


# --------------------------------------------------------------------------- beyond the paper


def fig_reliability(reliability_table: pd.DataFrame) -> Figure:
    """Reliability diagram per eval set: accuracy per confidence bin against the diagonal."""
    _require_rows(reliability_table, "fig_reliability")
    eval_sets = sorted(reliability_table["eval_set"].unique())
    fig, axes = _figure(1, len(eval_sets))
    colours = sns.color_palette()
    for ax, eval_set in zip(axes.flat, eval_sets, strict=True):
        table = reliability_table[reliability_table["eval_set"] == eval_set]
        filled = table[table["count"] > 0]
        ax.bar(
            filled["bin_lower"],
            filled["accuracy"],
            width=filled["bin_upper"] - filled["bin_lower"],
            align="edge",
            edgecolor="white",
            color=colours[0],
            label="accuracy in bin",
        )
        ax.plot(
            filled["confidence"],
            filled["accuracy"],
            "o",
            color=colours[1],
            label="(mean confidence, accuracy)",
        )
        ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
        ax.set(xlim=(0, 1), ylim=(0, 1))
        epoch = int(table["epoch"].iloc[0])
        _label(
            ax,
            f"{eval_set}: reliability, epoch {epoch}",
            "confidence max p̄ (probability)",
            "accuracy (fraction correct)",
        )
        ax.legend(fontsize="small", loc="upper left")
    _keep_one_legend(axes)
    fig.suptitle("Reliability of the full ensemble (equal-width confidence bins)")
    return fig


def fig_risk_coverage(risk_coverage_table: pd.DataFrame) -> Figure:
    """Risk–coverage curves: error rate when answering only the most confident questions."""
    _require_rows(risk_coverage_table, "fig_risk_coverage")
    fig, axes = _figure(1, 1)
    ax = axes[0, 0]
    sns.lineplot(
        data=risk_coverage_table,
        x="coverage",
        y="risk",
        hue="eval_set",
        estimator=None,
        sort=False,
        ax=ax,
    )
    epoch = int(risk_coverage_table["epoch"].iloc[0])
    _label(
        ax,
        f"Risk–coverage of the full ensemble, epoch {epoch}",
        "coverage (fraction of questions answered)",
        "risk (error rate among answered)",
    )
    ax.legend(title="eval set", fontsize="small")
    return fig


def fig_ood_roc(roc_points: pd.DataFrame) -> Figure:
    """ROC curves of telling each other eval set (positive) from the in-domain one."""
    _require_rows(roc_points, "fig_ood_roc")
    eval_sets = sorted(roc_points["eval_set"].unique())
    fig, axes = _figure(1, len(eval_sets))
    for ax, eval_set in zip(axes.flat, eval_sets, strict=True):
        curves = roc_points[roc_points["eval_set"] == eval_set]
        curves = curves.assign(
            score=curves["score"].map(TITLES)
            + " (AUROC "
            + curves["auroc"].map("{:.3f}".format)
            + ")"
        )
        sns.lineplot(data=curves, x="fpr", y="tpr", hue="score", estimator=None, sort=False, ax=ax)
        ax.plot([0, 1], [0, 1], "--", color="grey", label="chance (AUROC 0.5)")
        epoch = int(curves["epoch"].iloc[0])
        _label(
            ax,
            f"{eval_set} vs in-domain, epoch {epoch}",
            "false positive rate (in-domain flagged)",
            "true positive rate (OOD flagged)",
        )
        ax.legend(title="score", fontsize="small", loc="lower right")
    fig.suptitle("Out-of-domain detection by the ensemble's uncertainty")
    return fig


def fig_ensemble_size(
    metrics_table: pd.DataFrame,
    epoch: int | None = None,
    metrics: Sequence[str] = ("accuracy", "nll", "ece", "mutual_information"),
) -> Figure:
    """Metrics against ensemble size M (the first M members) at one epoch (default: last)."""
    _require_rows(metrics_table, "fig_ensemble_size")
    chosen = int(metrics_table["epoch"].max()) if epoch is None else epoch
    data = metrics_table[
        (metrics_table["estimator"] == "ensemble") & (metrics_table["epoch"] == chosen)
    ]
    _require_rows(data, f"fig_ensemble_size at epoch {chosen}")
    fig, axes = _figure(1, len(metrics))
    for ax, metric in zip(axes.flat, metrics, strict=True):
        sns.lineplot(
            data=data[data["metric"] == metric],
            x="ensemble_size",
            y="value",
            hue="eval_set",
            marker="o",
            ax=ax,
        )
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        _label(
            ax,
            f"{TITLES[metric]}, epoch {chosen}",
            "ensemble size M (first M members)",
            LABELS[metric],
        )
    _keep_one_legend(axes, "eval set")
    fig.suptitle("Effect of ensemble size")
    return fig


def fig_transitions(transitions_table: pd.DataFrame) -> Figure:
    """Stacked fractions of right/wrong transitions from the reference epoch, per eval set.

    Takes :func:`lorauq.analysis.transitions_over_epochs`: "forgotten" is what was right at the
    reference epoch (default the base model) and is wrong at the later epoch.
    """
    _require_rows(transitions_table, "fig_transitions")
    eval_sets = sorted(transitions_table["eval_set"].unique())
    fig, axes = _figure(1, len(eval_sets))
    for ax, eval_set in zip(axes.flat, eval_sets, strict=True):
        table = transitions_table[transitions_table["eval_set"] == eval_set]
        wide = table.pivot(index="epoch", columns="transition", values="fraction")
        wide = wide.reindex(columns=list(TRANSITION_LABELS))
        wide.rename(columns=TRANSITION_LABELS).plot(
            kind="bar",
            stacked=True,
            ax=ax,
            color=TRANSITION_COLOURS,
            rot=0,
            width=0.8,
        )
        reference = int(table["reference_epoch"].iloc[0])
        _label(
            ax,
            f"{eval_set}: answers vs epoch {reference}",
            "epoch",
            "fraction of labelled questions",
        )
        ax.set_ylim(0, 1)
        ax.legend(title=f"epoch {reference} → epoch", fontsize="small")
    _keep_one_legend(axes)
    fig.suptitle("What fine-tuning taught and made the ensemble forget")
    return fig


def fig_subjects(
    subject_table: pd.DataFrame, metrics: Sequence[str] = ("accuracy", "mutual_information")
) -> Figure:
    """Per-subject bars (e.g. MMLU subjects): rows = eval sets, columns = metrics."""
    _require_rows(subject_table, "fig_subjects")
    eval_sets = sorted(subject_table["eval_set"].unique())
    heights = [subject_table["eval_set"].eq(name).sum() for name in eval_sets]
    fig, axes = _figure(len(eval_sets), len(metrics), gridspec_kw={"height_ratios": heights})
    fig.set_size_inches(5.5 * len(metrics), 1.0 + 0.3 * sum(heights) + 0.6 * len(eval_sets))
    epoch = int(subject_table["epoch"].iloc[0])
    for row, eval_set in enumerate(eval_sets):
        table = subject_table[subject_table["eval_set"] == eval_set].sort_values("subject")
        for col, metric in enumerate(metrics):
            ax = axes[row, col]
            sns.barplot(
                data=table, y="subject", x=metric, orient="h", ax=ax, color=sns.color_palette()[col]
            )
            _label(ax, f"{eval_set}: {TITLES[metric]}", LABELS[metric], "subject")
            if metric == "accuracy":
                ax.set_xlim(0, 1)
    fig.suptitle(f"Per-subject breakdown of the full ensemble, epoch {epoch}")
    return fig


def fig_letter_mass(letter_mass_table: pd.DataFrame) -> Figure:
    """How much probability the answer letters hold in the full vocabulary, over epochs.

    One panel; colour = eval set, line style = statistic over questions (mean, median, 5th
    percentile). A mass well below 1 means the renormalised read-out hides that the model
    wanted to say something other than a letter.
    """
    _require_rows(letter_mass_table, "fig_letter_mass")
    fig, axes = _figure(1, 1)
    ax = axes[0, 0]
    sns.lineplot(
        data=letter_mass_table.rename(columns={"eval_set": "eval set"}),
        x="epoch",
        y="value",
        hue="eval set",
        style="statistic",
        marker="o",
        ax=ax,
    )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(top=1.0)
    _label(ax, "Mass of the K answer letters (ensemble mean)", EPOCH_LABEL, LABELS["letter_mass"])
    ax.legend(fontsize="small")
    return fig


# --------------------------------------------------------------------------- saving


def save_figure(fig: Figure, folder: str | os.PathLike[str], name: str) -> list[Path]:
    """Write ``folder/png/<name>.png`` (150 dpi) and ``folder/pdf/<name>.pdf``, atomically.

    PNG and PDF live apart so that ``dvc plots`` can take the whole PNG folder (it renders
    images, and fails on PDFs). The PDF carries no creation date, so re-running the pipeline
    on the same data gives the same bytes and DVC sees no change.
    """
    written = []
    for fmt, metadata in (("png", None), ("pdf", {"CreationDate": None})):
        path = Path(folder) / fmt / f"{name}.{fmt}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=DPI, metadata=metadata)
        written.append(path)
    return written
