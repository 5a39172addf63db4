"""Stage ``figures``: metrics, tidy tables and every figure, from the stored letter logits.

Experiments come in every shape (one eval set, no out-of-domain set, one member, one epoch):
every table is written for each of them, possibly empty, and a figure that cannot be drawn
from what the experiment has is skipped with the reason, which the notebook prints.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from lorauq import analysis, plots
from lorauq.atomic import atomic_path, write_text_atomic
from lorauq.config import Params
from lorauq.layout import Layout
from lorauq.store import read_logits

#: Every table the stage writes to ``reports/plots/<name>.csv`` (``dvc.yaml`` declares them).
TABLES = (
    "metrics",
    "agreement",
    "letter_mass",
    "questions",
    "transitions",
    "reliability",
    "risk_coverage",
    "subjects",
    "ood",
    "roc",
)


@dataclass
class Report:
    """What the figures stage produced: the numbers, the tables, the figures and what it skipped."""

    metrics: dict
    tables: dict[str, pd.DataFrame]
    figures: dict[str, Figure] = field(default_factory=dict)
    files: dict[str, list[Path]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def figure(self, name: str) -> Figure | None:
        """The figure ``name`` for a notebook to show inline, or None after printing why it
        was not drawn (an experiment without the eval sets or members it needs)."""
        if name in self.figures:
            return self.figures[name]
        print(f"{name} is not drawn: {self.skipped.get(name, 'unknown figure')}")
        return None


def ensemble_logits(params: Params, layout: Layout = Layout()) -> pd.DataFrame:
    """The logits of the configured members (and the prior), checked to be all present."""
    files = [layout.prior_logits, *(layout.member_logits(m) for m in params.members)]
    return read_logits(files)


def headline_metrics(params: Params, logits: pd.DataFrame) -> dict:
    """``reports/metrics.json``'s content: prior and final numbers per eval set, + OOD AUROC.

    Per eval set: the :data:`lorauq.analysis.METRICS` (AURC included) and the answer letters'
    probability mass (``letter_mass``, ``letter_mass_p05``), see
    :func:`lorauq.analysis.headline_metrics`.
    """
    a = params.analysis
    metrics = analysis.headline_metrics(
        logits, readout=a.readout, n_bins=a.n_bins, in_domain=a.in_domain
    )
    metrics["config"] = {
        "readout": a.readout,
        "ece_bins": a.n_bins,
        "members": len(params.members),
        "units": "nats; ece and letter_mass as fractions",
    }
    return metrics


def _ood_problem(params: Params, logits: pd.DataFrame) -> str | None:
    """Why out-of-domain detection cannot be measured here, or None if it can."""
    eval_sets = sorted(set(logits["eval_set"]))
    if params.analysis.in_domain not in eval_sets:
        return (
            f"analysis.in_domain {params.analysis.in_domain!r} is not an eval set "
            f"({eval_sets}): nothing is in-domain"
        )
    if len(eval_sets) < 2:
        return "the experiment has one eval set: there is no out-of-domain set to detect"
    return None


def agreement(
    params: Params, logits: pd.DataFrame, layout: Layout
) -> tuple[pd.DataFrame, str | None]:
    """Fig B's table against ``analysis.reference`` and, if it is empty, why."""
    a = params.analysis
    if a.reference != "halves":
        reference = read_logits(layout.root / a.reference)
        return analysis.agreement_table(logits, reference, readout=a.readout), None
    if logits["member"].nunique() < 2:
        empty = pd.DataFrame(columns=analysis.AGREEMENT_COLUMNS)
        return empty, "one member: the halves of the ensemble need at least two members"
    return analysis.half_agreement_table(logits, readout=a.readout), None


def build_tables(
    params: Params, logits: pd.DataFrame, layout: Layout = Layout()
) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """Every table of :data:`TABLES`, and the reason for each one left empty on purpose."""
    a = params.analysis
    last = int(logits["epoch"].max())
    agreement_table, agreement_skip = agreement(params, logits, layout)
    tables = {
        "metrics": analysis.metrics_table(logits, readout=a.readout, n_bins=a.n_bins),
        "agreement": agreement_table,
        "letter_mass": analysis.letter_mass_table(logits),
        "questions": analysis.question_table(logits, readout=a.readout),
        "transitions": analysis.transitions_over_epochs(
            logits, reference_epoch=0, readout=a.readout
        ),
        "reliability": analysis.reliability_table(
            logits, epoch=last, n_bins=a.n_bins, readout=a.readout
        ),
        "risk_coverage": analysis.risk_coverage_table(logits, epoch=last, readout=a.readout),
        "subjects": analysis.subject_table(logits, epoch=last, readout=a.readout),
    }
    skipped = {"agreement": agreement_skip} if agreement_skip else {}
    ood_problem = _ood_problem(params, logits)
    if ood_problem is None:
        tables["ood"] = analysis.ood_table(logits, in_domain=a.in_domain, readout=a.readout)
        tables["roc"] = analysis.roc_points(logits, in_domain=a.in_domain, readout=a.readout)
    else:
        tables["ood"] = pd.DataFrame(columns=["eval_set", "epoch", "score", "auroc"])
        tables["roc"] = pd.DataFrame(columns=["eval_set", "epoch", "score", "auroc", "fpr", "tpr"])
        skipped["ood"] = skipped["roc"] = ood_problem
    if tables["reliability"].empty:
        for name in ("transitions", "reliability", "risk_coverage"):
            skipped[name] = "no eval set has labelled questions"
    return tables, skipped


def _hist_epochs(params: Params, questions: pd.DataFrame) -> list[int]:
    """``analysis.hist_epochs`` that exist; else the first fine-tuned epochs (or epoch 0 alone)."""
    epochs = sorted(set(questions["epoch"].tolist()))
    chosen = [e for e in params.analysis.hist_epochs if e in epochs]
    return chosen or epochs[1:4] or epochs


def draw_figures(
    params: Params, tables: dict[str, pd.DataFrame], skipped: dict[str, str]
) -> tuple[dict[str, Figure], dict[str, str]]:
    """Every figure the tables can carry, and why each of the others is not drawn."""
    recipes = {
        "fig_a_metrics_over_epochs": ("metrics", plots.fig_metrics_over_epochs),
        "fig_b_agreement": ("agreement", plots.fig_agreement),
        "fig_c_entropy_vs_mi": (
            "reliability",  # Fig C splits right from wrong: it needs labelled questions
            lambda _: plots.fig_entropy_mi_hist(
                tables["questions"], _hist_epochs(params, tables["questions"])
            ),
        ),
        "reliability": ("reliability", plots.fig_reliability),
        "risk_coverage": ("risk_coverage", plots.fig_risk_coverage),
        "ensemble_size": ("metrics", plots.fig_ensemble_size),
        "learned_forgotten": ("transitions", plots.fig_transitions),
        "subjects": ("subjects", plots.fig_subjects),
        "letter_mass": ("letter_mass", plots.fig_letter_mass),
        "ood_roc": ("roc", plots.fig_ood_roc),
    }
    figures, not_drawn = {}, {}
    for name, (table, draw) in recipes.items():
        if tables[table].empty:
            not_drawn[name] = skipped.get(table, f"the {table} table is empty")
            continue
        figures[name] = draw(tables[table])
    return figures, not_drawn


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")


def run(params: Params, layout: Layout = Layout()) -> Report:
    """Write ``reports/metrics.json``, ``reports/plots/*.csv`` and ``reports/figures/*``."""
    logits = ensemble_logits(params, layout)
    metrics = headline_metrics(params, logits)
    write_text_atomic(
        layout.reports / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n"
    )
    tables, skipped = build_tables(params, logits, layout)
    for name in TABLES:
        _write_csv(tables[name], layout.reports / "plots" / f"{name}.csv")
    figures, not_drawn = draw_figures(params, tables, skipped)
    files = {
        name: plots.save_figure(figure, layout.reports / "figures" / name)
        for name, figure in figures.items()
    }
    return Report(metrics, tables, figures, files, not_drawn)
