"""Tests of lorauq.plots: every figure builds from the analysis tables, is fully labelled,
shows the rows it should, and save_figure writes PNG + PDF atomically."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from test_analysis import KNOWN, build_logits

from lorauq import analysis, plots

EVAL_SETS = sorted(KNOWN)


@pytest.fixture(scope="module")
def logits() -> pd.DataFrame:
    return build_logits()


@pytest.fixture(scope="module")
def metrics(logits: pd.DataFrame) -> pd.DataFrame:
    return analysis.metrics_table(logits)


def main_axes(fig: Figure) -> list[Axes]:
    """The figure's panels, without colour bars."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


#: figure name -> (build the figure from the logits, number of panels)
FIGURES: dict[str, tuple[Callable[[pd.DataFrame], Figure], int]] = {
    "metrics_over_epochs": (
        lambda t: plots.fig_metrics_over_epochs(analysis.metrics_table(t)),
        len(EVAL_SETS) * 3,
    ),
    "agreement": (
        lambda t: plots.fig_agreement(analysis.agreement_table(t, t[t.epoch <= 1])),
        len(EVAL_SETS) * 2,
    ),
    "half_agreement": (
        lambda t: plots.fig_agreement(analysis.half_agreement_table(t)),
        len(EVAL_SETS) * 2,
    ),
    "letter_mass": (lambda t: plots.fig_letter_mass(analysis.letter_mass_table(t)), 1),
    "entropy_mi_hist": (
        lambda t: plots.fig_entropy_mi_hist(analysis.question_table(t), epochs=[0, 2]),
        len(EVAL_SETS) * 2 * 2,
    ),
    "reliability": (lambda t: plots.fig_reliability(analysis.reliability_table(t, 2)), 3),
    "risk_coverage": (lambda t: plots.fig_risk_coverage(analysis.risk_coverage_table(t, 2)), 1),
    "ood_roc": (lambda t: plots.fig_ood_roc(analysis.roc_points(t)), len(EVAL_SETS) - 1),
    "ensemble_size": (lambda t: plots.fig_ensemble_size(analysis.metrics_table(t)), 4),
    "transitions": (
        lambda t: plots.fig_transitions(analysis.transitions_over_epochs(t)),
        len(EVAL_SETS),
    ),
    "subjects": (lambda t: plots.fig_subjects(analysis.subject_table(t, 2)), len(EVAL_SETS) * 2),
}


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_figure_is_complete_and_labelled(logits: pd.DataFrame, name: str) -> None:
    build, n_panels = FIGURES[name]
    fig = build(logits)
    assert isinstance(fig, Figure)
    panels = main_axes(fig)
    assert len(panels) == n_panels
    for ax in panels:
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel(), ax.get_title()
    titles = " ".join(ax.get_title() for ax in panels) + fig.get_suptitle()
    shown = [s for s in EVAL_SETS if s in titles]
    legends = [ax.get_legend() for ax in panels if ax.get_legend() is not None]
    if name in ("risk_coverage", "ensemble_size", "letter_mass"):  # eval sets in the legend
        shown = [t.get_text() for legend in legends for t in legend.get_texts()]
    assert set(EVAL_SETS) - {"in_domain"} <= set(shown)
    if name in ("entropy_mi_hist", "subjects"):  # colour bar / y axis instead of a legend
        return
    assert legends, "a figure with several curves needs a legend"


def test_entropy_mi_hist_has_one_labelled_colour_bar(logits: pd.DataFrame) -> None:
    fig = plots.fig_entropy_mi_hist(analysis.question_table(logits), epochs=[1])
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == 1 and "log" in bars[0].get_ylabel()
    assert "nats" in main_axes(fig)[0].get_xlabel() and "nats" in main_axes(fig)[0].get_ylabel()
    with pytest.raises(ValueError, match="epoch"):
        plots.fig_entropy_mi_hist(analysis.question_table(logits), epochs=[5])


def test_metrics_figure_plots_the_table_values(metrics: pd.DataFrame) -> None:
    """Fig A shows the full ensemble and the member mean, exactly as in the table."""
    fig = plots.fig_metrics_over_epochs(metrics)
    first = main_axes(fig)[0]  # row "far", column accuracy
    assert first.get_title() == "far: accuracy"
    labels = [t.get_text() for t in first.get_legend().get_texts()]
    assert labels == ["ensemble (M=3)", "single members, mean (M=1)"]
    rows = metrics[(metrics.eval_set == "far") & (metrics.metric == "accuracy")]
    expected = [
        rows[(rows.estimator == "ensemble") & (rows.ensemble_size == 3)]["value"],
        rows[rows.estimator == "member_mean"]["value"],
    ]
    for line, values in zip(first.get_lines()[:2], expected, strict=True):
        np.testing.assert_allclose(line.get_ydata(), values.to_numpy())


def test_agreement_figure_plots_the_table_values(logits: pd.DataFrame) -> None:
    """Fig B names the reference and the compared ensemble, and draws the table's numbers."""
    four = pd.concat([logits, logits[logits.member == 2].assign(member=3)], ignore_index=True)
    table = analysis.half_agreement_table(four)
    fig = plots.fig_agreement(table)
    assert "members 2, 3 (M=2)" in fig.get_suptitle() and "same epoch" in fig.get_suptitle()
    first = main_axes(fig)[1]  # row "far", column total variation
    assert first.get_title() == "far: total variation to reference"
    assert "(0–1)" in first.get_ylabel()
    labels = [t.get_text() for t in main_axes(fig)[0].get_legend().get_texts()]
    assert labels == ["ensemble (M=2)", "single members, mean (M=1)"]
    rows = table[(table.eval_set == "far") & (table.metric == "total_variation")]
    for line, estimator in zip(first.get_lines()[:2], ("ensemble", "member_mean"), strict=True):
        expected = rows[rows.estimator == estimator]["value"].to_numpy()
        np.testing.assert_allclose(line.get_ydata(), expected)
    late = plots.fig_agreement(analysis.agreement_table(logits, logits[logits.epoch <= 1]))
    assert "else its final epoch" in late.get_suptitle()


def test_letter_mass_figure_shows_each_statistic(logits: pd.DataFrame) -> None:
    fig = plots.fig_letter_mass(analysis.letter_mass_table(logits))
    ax = main_axes(fig)[0]
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert set(analysis.LETTER_MASS_STATISTICS) <= set(texts)
    assert "probability" in ax.get_ylabel() and "epoch" in ax.get_xlabel()
    plotted = np.concatenate([line.get_ydata() for line in ax.get_lines() if len(line.get_ydata())])
    np.testing.assert_allclose(plotted, 0.8, rtol=1e-6)  # the known table leaves 0.2 outside


def test_empty_table_is_refused() -> None:
    with pytest.raises(ValueError, match="no rows"):
        plots.fig_risk_coverage(pd.DataFrame(columns=["eval_set", "epoch", "coverage", "risk"]))


def test_save_figure_writes_png_and_pdf_atomically(logits: pd.DataFrame, tmp_path) -> None:
    fig = plots.fig_risk_coverage(analysis.risk_coverage_table(logits, 2))
    stem = tmp_path / "figures" / "fig.size"  # a dot in the stem must not become a suffix
    written = plots.save_figure(fig, stem)
    assert written == [tmp_path / "figures" / "fig.size.png", tmp_path / "figures" / "fig.size.pdf"]
    png, pdf = (path.read_bytes() for path in written)
    assert png.startswith(b"\x89PNG") and len(png) > 1000
    assert pdf.startswith(b"%PDF") and len(pdf) > 1000
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == [
        "fig.size.pdf",
        "fig.size.png",
    ]
    plots.save_figure(fig, stem)  # the same figure again gives the same PDF bytes
    assert written[1].read_bytes() == pdf
