"""Tests of lorauq.plots: every figure builds from the analysis tables, is fully labelled,
shows the rows it should, and save_figure writes PNG + PDF atomically."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from known_logits import KNOWN, build_logits
from matplotlib.axes import Axes
from matplotlib.figure import Figure

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
        lambda t: plots.fig_entropy_mi_hist(
            analysis.question_table(t).query("eval_set == 'far'"), epochs=[0, 2]
        ),
        2 * 2,
    ),
    "lora_l2": (lambda t: plots.fig_lora_l2(training_table()), 2),
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
    if name == "entropy_mi_hist":  # one figure per eval set
        assert shown == ["far"]
    elif name != "lora_l2":  # adapters belong to no eval set
        assert set(EVAL_SETS) - {"in_domain"} <= set(shown)
    if name in ("entropy_mi_hist", "subjects"):  # colour bar / y axis instead of a legend
        return
    assert legends, "a figure with several curves needs a legend"


def test_entropy_mi_hist_has_one_labelled_colour_bar(logits: pd.DataFrame) -> None:
    questions = analysis.question_table(logits).query("eval_set == 'near'")
    fig = plots.fig_entropy_mi_hist(questions, epochs=[1])
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == 1 and "log" in bars[0].get_ylabel()
    assert "nats" in main_axes(fig)[0].get_xlabel() and "nats" in main_axes(fig)[0].get_ylabel()
    with pytest.raises(ValueError, match="epoch"):
        plots.fig_entropy_mi_hist(questions, epochs=[5])
    with pytest.raises(ValueError, match="one eval set"):
        plots.fig_entropy_mi_hist(analysis.question_table(logits), epochs=[1])


def test_entropy_mi_hist_fixed_axes_count_what_falls_outside(logits: pd.DataFrame) -> None:
    """The paper's fixed ranges (x 0–ln 4, y 0–0.2, colour 1–1000): figures of different
    sets and epochs compare, and questions past the axes are counted, not lost."""
    questions = analysis.question_table(logits).query("eval_set == 'far'")
    fig = plots.fig_entropy_mi_hist(
        questions, epochs=[2], entropy_max=np.log(4), mi_max=0.01, count_max=1000
    )
    panel = main_axes(fig)[0]
    assert panel.get_xlim() == pytest.approx((0, np.log(4)))
    assert panel.get_ylim() == pytest.approx((0, 0.01))
    bar = next(ax for ax in fig.axes if ax.get_label() == "<colorbar>")
    assert bar.get_ylim()[1] == pytest.approx(1000)
    at_two = questions[(questions.epoch == 2) & questions.correct.notna()]
    for ax, kind in zip(main_axes(fig), ("right", "wrong"), strict=True):
        chosen = at_two[at_two.correct.astype(bool) == (kind == "right")]
        outside = int(
            (chosen.mutual_information > 0.01).sum() + (chosen.predictive_entropy > np.log(4)).sum()
        )
        assert f"n={len(chosen)}" in ax.get_title()
        assert (f"{outside} beyond the axes" in ax.get_title()) == (outside > 0)


def _curves(ax: Axes) -> list[np.ndarray]:
    return [np.asarray(line.get_ydata()) for line in ax.get_lines() if len(line.get_ydata()) > 1]


def _legend(fig: Figure) -> list[str]:
    return [
        t.get_text()
        for ax in main_axes(fig)
        if ax.get_legend()
        for t in ax.get_legend().get_texts()
    ]


def test_metrics_figure_plots_the_table_values(metrics: pd.DataFrame) -> None:
    """Fig A shows each ensemble at M = its size and at M = 1, exactly as in the table."""
    two = pd.concat(
        [
            metrics.assign(ensemble="lora_l2"),
            metrics.assign(ensemble="reg_l2", value=metrics["value"] / 2),
        ],
        ignore_index=True,
    )
    fig = plots.fig_metrics_over_epochs(two)
    first = main_axes(fig)[0]  # row "far", column accuracy
    assert first.get_title() == "far: accuracy"
    assert {"lora_l2", "reg_l2", "M=3 (ensemble)", "M=1 (member mean)"} <= set(_legend(fig))
    rows = metrics[(metrics.eval_set == "far") & (metrics.metric == "accuracy")]
    full = rows[(rows.estimator == "ensemble") & (rows.ensemble_size == 3)]["value"].to_numpy()
    single = rows[rows.estimator == "member_mean"]["value"].to_numpy()
    expected = [full, single, full / 2, single / 2]
    curves = _curves(first)
    assert len(curves) == 4
    for values in expected:
        assert any(np.allclose(curve, values) for curve in curves), values


def test_agreement_figure_plots_the_table_values(logits: pd.DataFrame) -> None:
    """Fig B names the reference and the compared ensemble, and draws the table's numbers."""
    four = pd.concat([logits, logits[logits.member == 2].assign(member=3)], ignore_index=True)
    table = analysis.half_agreement_table(four)
    fig = plots.fig_agreement(table)
    assert "members 2, 3 (M=2)" in fig.get_suptitle() and "same epoch" in fig.get_suptitle()
    first = main_axes(fig)[1]  # row "far", column total variation
    assert first.get_title() == "far: total variation to reference"
    assert "(0–1)" in first.get_ylabel()
    assert {"M=2 (ensemble)", "M=1 (member mean)"} <= set(_legend(fig))
    rows = table[(table.eval_set == "far") & (table.metric == "total_variation")]
    curves = _curves(first)
    for estimator in ("ensemble", "member_mean"):
        expected = rows[rows.estimator == estimator]["value"].to_numpy()
        assert any(np.allclose(curve, expected) for curve in curves), estimator
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
    """PNG and PDF in folders of their own: ``dvc plots`` takes the PNG folder whole."""
    fig = plots.fig_risk_coverage(analysis.risk_coverage_table(logits, 2))
    folder = tmp_path / "figures"
    written = plots.save_figure(fig, folder, "fig.size")  # a dot must not become a suffix
    assert written == [folder / "png" / "fig.size.png", folder / "pdf" / "fig.size.pdf"]
    png, pdf = (path.read_bytes() for path in written)
    assert png.startswith(b"\x89PNG") and len(png) > 1000
    assert pdf.startswith(b"%PDF") and len(pdf) > 1000
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == [
        "pdf/fig.size.pdf",
        "png/fig.size.png",
    ]
    plots.save_figure(fig, folder, "fig.size")  # the same figure again gives the same PDF bytes
    assert written[1].read_bytes() == pdf


def training_table() -> pd.DataFrame:
    """Two ensembles × two members × three epochs of adapter norms and losses."""
    rows = [
        {"ensemble": e, "member": m, "epoch": k, "lora_l2": scale * k * (m + 1), "loss": 1 / k}
        for e, scale in (("lora_l2", 0.01), ("reg_l2", 0.05))
        for m in (0, 1)
        for k in (1, 2, 3)
    ]
    return pd.DataFrame(rows)


def test_lora_l2_figure_shows_the_member_mean_per_ensemble() -> None:
    table = training_table()
    fig = plots.fig_lora_l2(table)
    norm = main_axes(fig)[0]
    assert "Σ‖B·A‖²_F" in norm.get_ylabel() and norm.get_xlabel() == "epoch"
    means = table.groupby(["ensemble", "epoch"])["lora_l2"].mean()
    curves = _curves(norm)
    for ensemble in ("lora_l2", "reg_l2"):
        assert any(np.allclose(c, means[ensemble].to_numpy()) for c in curves), ensemble
    assert {"lora_l2", "reg_l2"} <= set(_legend(fig))
