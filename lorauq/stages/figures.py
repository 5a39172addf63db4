"""Stage ``figures``: metrics, tidy tables and every figure, from the stored letter logits.

Every table carries an ``ensemble`` column (the experiment's ensembles side by side); the
paper's figures compare ensembles (Fig A), each against the reference ensemble (Fig B), and
show the main ensemble's uncertainty per eval set (Fig C); the other figures show the main
ensemble. Experiments come in every shape (one eval set, no out-of-domain set, one member, one
epoch): every table is written for each of them, possibly empty, and a figure that cannot be
drawn from what the experiment has is skipped with the reason, which the notebook prints.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from lorauq import analysis, comparison, plots
from lorauq.atomic import atomic_path, write_text_atomic
from lorauq.config import Params
from lorauq.layout import Layout
from lorauq.schema import READOUTS
from lorauq.store import read_logits

__all__ = [
    "FIGURES",
    "TABLES",
    "Report",
    "agreement",
    "build_tables",
    "draw_figures",
    "ensemble_logits",
    "fig_c_questions",
    "headline_metrics",
    "paper_comparison",
    "per_ensemble",
    "run",
    "training_costs",
    "training_table",
]

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
    "training",
)
#: Figures of every ensemble together, drawn from one table each.
_ENSEMBLE_FIGURES: dict[str, tuple[str, Callable[[pd.DataFrame], Figure]]] = {
    "fig_a_metrics_over_epochs": ("metrics", plots.fig_metrics_over_epochs),
    "fig_b_agreement": ("agreement", plots.fig_agreement),
    "lora_l2": ("training", plots.fig_lora_l2),
}
#: Figures of the main ensemble that are drawn from one table each.
_MAIN_FIGURES = {
    "reliability": ("reliability", plots.fig_reliability),
    "risk_coverage": ("risk_coverage", plots.fig_risk_coverage),
    "ensemble_size": ("metrics", plots.fig_ensemble_size),
    "learned_forgotten": ("transitions", plots.fig_transitions),
    "subjects": ("subjects", plots.fig_subjects),
    "letter_mass": ("letter_mass", plots.fig_letter_mass),
    "ood_roc": ("roc", plots.fig_ood_roc),
}
#: Every figure the stage may draw (``fig_c_entropy_vs_mi`` once per labelled eval set, its
#: name suffixed by the set), in ``reports/figures/{png,pdf}/``.
FIGURES = (*_ENSEMBLE_FIGURES, *_MAIN_FIGURES, "fig_c_entropy_vs_mi")


@dataclass
class Report:
    """What the figures stage produced: the numbers, the tables, the figures and what it skipped."""

    metrics: dict
    tables: dict[str, pd.DataFrame]
    figures: dict[str, Figure] = field(default_factory=dict)
    files: dict[str, list[Path]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    comparison: pd.DataFrame = field(default_factory=comparison.empty_comparison)

    def figure(self, name: str) -> Figure | None:
        """The figure ``name`` for a notebook to show inline, or None after printing why it
        was not drawn (an experiment without the eval sets or members it needs)."""
        if name in self.figures:
            return self.figures[name]
        print(f"{name} is not drawn: {self.skipped.get(name, 'unknown figure')}")
        return None

    def figure_names(self, prefix: str) -> list[str]:
        """Names of the drawn figures starting with ``prefix`` (Fig C has one per eval set)."""
        return sorted(name for name in self.figures if name.startswith(prefix))


def ensemble_logits(params: Params, layout: Layout = Layout()) -> dict[str, pd.DataFrame]:
    """Each ensemble's logits (its stages' files and the shared prior), all checked present."""
    return {
        name: read_logits(
            [layout.prior_logits, *(layout.unit_logits(name, unit) for unit in params.units)]
        )
        for name in params.ensembles
    }


def _training_records(params: Params, layout: Layout) -> pd.DataFrame:
    """Every ensemble's training log (``*.training.json`` beside its logits), one row per
    member and epoch."""
    rows = [
        {"ensemble": name, **record}
        for name in params.ensembles
        for unit in params.units
        for record in json.loads(layout.unit_training(name, unit).read_text(encoding="utf-8"))
    ]
    return pd.DataFrame(rows)


def training_table(params: Params, layout: Layout = Layout()) -> pd.DataFrame:
    """Per ensemble, member and epoch (checkpoint): the optimiser step it was taken after,
    training loss and the saved adapter's LoRA-L2 norm.

    Results only: the epoch's wall time is this machine's, so it goes to
    :func:`training_costs` and the table's hash depends on the experiment alone."""
    columns = ["ensemble", "member", "epoch", "step", "loss", "prior", "lora_l2", "tokens"]
    return _training_records(params, layout).reindex(columns=columns)


def training_costs(params: Params, layout: Layout = Layout()) -> pd.DataFrame:
    """Per ensemble, member and epoch: the wall time of the epoch on the machine that ran it
    (``reports/costs/training.csv``, kept apart from the results)."""
    columns = ["ensemble", "member", "epoch", "elapsed_s"]
    return _training_records(params, layout).reindex(columns=columns)


def per_ensemble(
    build: Callable[[pd.DataFrame], pd.DataFrame], logits: dict[str, pd.DataFrame]
) -> pd.DataFrame:
    """``build`` applied to each ensemble's logits, stacked, with an ``ensemble`` column first."""
    frames = [build(table).assign(ensemble=name) for name, table in logits.items()]
    stacked = pd.concat(frames, ignore_index=True)
    return stacked[["ensemble", *(c for c in stacked.columns if c != "ensemble")]]


def headline_metrics(params: Params, logits: dict[str, pd.DataFrame]) -> dict:
    """``reports/metrics.json``'s content: per ensemble and read-out, the prior and final
    numbers per eval set (+ OOD AUROC), see :func:`lorauq.analysis.headline_metrics`."""
    a = params.analysis
    metrics: dict = {
        name: {
            readout: analysis.headline_metrics(
                table, readout=readout, n_bins=a.n_bins, in_domain=a.in_domain
            )
            for readout in READOUTS
        }
        for name, table in logits.items()
    }
    metrics["config"] = {
        "readout_of_figures": a.readout,
        "ece_bins": a.n_bins,
        "members": len(params.members),
        "ensembles": list(params.ensembles),
        "stored_letters": params.data.stored_letters or "each question's choices",
        "units": "nats; ece and letter_mass as fractions",
    }
    return metrics


def _ood_problem(params: Params, eval_sets: list[str]) -> str | None:
    """Why out-of-domain detection cannot be measured here, or None if it can."""
    if params.analysis.in_domain not in eval_sets:
        return (
            f"analysis.in_domain {params.analysis.in_domain!r} is not an eval set "
            f"({eval_sets}): nothing is in-domain"
        )
    if len(eval_sets) < 2:
        return "the experiment has one eval set: there is no out-of-domain set to detect"
    return None


def agreement(params: Params, logits: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, str | None]:
    """Fig B's table and, if it is empty, why.

    ``analysis.reference`` names an ensemble: every ensemble (its full ensemble and its single
    members) against that one's full ensemble, as the paper compared with its rank-32
    ensemble; the reference's full ensemble against itself is left out (it agrees by
    definition). ``halves``: each ensemble's first ⌊M/2⌋ members against the rest.
    """
    a = params.analysis
    empty = pd.DataFrame(columns=["ensemble", *analysis.AGREEMENT_COLUMNS])
    if a.reference == "halves":
        split = {name: t for name, t in logits.items() if t["member"].nunique() >= 2}
        if not split:
            return empty, "one member: the halves of the ensemble need at least two members"
        table = per_ensemble(lambda t: analysis.half_agreement_table(t, readout=a.readout), split)
        return table, None
    reference = logits[a.reference]
    table = per_ensemble(
        lambda t: analysis.agreement_table(t, reference, readout=a.readout), logits
    )
    itself = (table["ensemble"] == a.reference) & (table["estimator"] == analysis.ENSEMBLE)
    table = table[~itself].reset_index(drop=True)
    table["reference"] = a.reference + ": " + table["reference"]
    if table.empty:
        return empty, f"one member: the reference {a.reference} can only be compared with itself"
    return table, None


def build_tables(
    params: Params, logits: dict[str, pd.DataFrame], layout: Layout = Layout()
) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """Every table of :data:`TABLES`, and the reason for each one left empty on purpose."""
    a = params.analysis
    last = int(max(int(t["epoch"].max()) for t in logits.values()))
    agreement_table, agreement_skip = agreement(params, logits)
    tables = {
        "metrics": per_ensemble(
            lambda t: analysis.metrics_table(t, readout=a.readout, n_bins=a.n_bins), logits
        ),
        "agreement": agreement_table,
        "letter_mass": per_ensemble(analysis.letter_mass_table, logits),
        "questions": per_ensemble(lambda t: analysis.question_table(t, readout=a.readout), logits),
        "transitions": per_ensemble(
            lambda t: analysis.transitions_over_epochs(t, reference_epoch=0, readout=a.readout),
            logits,
        ),
        "reliability": per_ensemble(
            lambda t: analysis.reliability_table(t, epoch=last, n_bins=a.n_bins, readout=a.readout),
            logits,
        ),
        "risk_coverage": per_ensemble(
            lambda t: analysis.risk_coverage_table(t, epoch=last, readout=a.readout), logits
        ),
        "subjects": per_ensemble(
            lambda t: analysis.subject_table(t, epoch=last, readout=a.readout), logits
        ),
        "training": training_table(params, layout),
    }
    skipped = {"agreement": agreement_skip} if agreement_skip else {}
    eval_sets = sorted(set(tables["questions"]["eval_set"]))
    ood_problem = _ood_problem(params, eval_sets)
    if ood_problem is None:
        tables["ood"] = per_ensemble(
            lambda t: analysis.ood_table(t, in_domain=a.in_domain, readout=a.readout), logits
        )
        tables["roc"] = per_ensemble(
            lambda t: analysis.roc_points(t, in_domain=a.in_domain, readout=a.readout), logits
        )
    else:
        tables["ood"] = pd.DataFrame(columns=["ensemble", "eval_set", "epoch", "score", "auroc"])
        tables["roc"] = pd.DataFrame(
            columns=["ensemble", "eval_set", "epoch", "score", "auroc", "fpr", "tpr"]
        )
        skipped["ood"] = skipped["roc"] = ood_problem
    if tables["reliability"].empty:
        for name in ("transitions", "reliability", "risk_coverage"):
            skipped[name] = "no eval set has labelled questions"
    return tables, skipped


def _main_rows(params: Params, table: pd.DataFrame) -> pd.DataFrame:
    """The main ensemble's rows, without the ``ensemble`` column (one-ensemble figures)."""
    rows = table[table["ensemble"] == params.main_ensemble]
    return rows.drop(columns="ensemble").reset_index(drop=True)


def fig_c_questions(params: Params, logits: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The main ensemble's per-question table in Fig C's own read-out."""
    main = logits[params.main_ensemble]
    return analysis.question_table(main, readout=params.analysis.fig_c.readout)


def _fig_c(params: Params, questions: pd.DataFrame) -> tuple[dict[str, Figure], dict[str, str]]:
    """One Fig C per eval set with labelled questions; the others are skipped with a reason."""
    c = params.analysis.fig_c
    epochs = sorted(set(questions["epoch"].tolist()))
    chosen = [e for e in c.epochs if e in epochs] or epochs[1:4] or epochs
    figures, skipped = {}, {}
    for eval_set in sorted(set(questions["eval_set"])):
        name = f"fig_c_entropy_vs_mi_{eval_set}"
        rows = questions[questions["eval_set"] == eval_set]
        if rows["correct"].isna().all():
            skipped[name] = "its questions are unlabelled: nothing to split into right and wrong"
            continue
        figures[name] = plots.fig_entropy_mi_hist(
            rows,
            chosen,
            bins=c.bins,
            entropy_max=c.entropy_max,
            mi_max=c.mi_max,
            count_max=c.count_max,
        )
    return figures, skipped


def draw_figures(
    params: Params,
    tables: dict[str, pd.DataFrame],
    skipped: dict[str, str],
    fig_c_table: pd.DataFrame,
) -> tuple[dict[str, Figure], dict[str, str]]:
    """Every figure the tables can carry, and why each of the others is not drawn."""
    figures, not_drawn = {}, {}
    for name, (table, draw) in _ENSEMBLE_FIGURES.items():
        if tables[table].empty:
            not_drawn[name] = skipped.get(table, f"the {table} table is empty")
        else:
            figures[name] = draw(tables[table])
    for name, (table, draw) in _MAIN_FIGURES.items():
        rows = _main_rows(params, tables[table])
        if rows.empty:
            not_drawn[name] = skipped.get(table, f"the {table} table is empty")
        else:
            figures[name] = draw(rows)
    fig_c, fig_c_skipped = _fig_c(params, fig_c_table)
    figures.update(fig_c)
    not_drawn.update(fig_c_skipped)
    if not fig_c:
        not_drawn["fig_c_entropy_vs_mi"] = "no eval set has labelled questions"
    return figures, not_drawn


def paper_comparison(
    params: Params, tables: dict[str, pd.DataFrame], fig_c_table: pd.DataFrame, layout: Layout
) -> pd.DataFrame:
    """``reports/paper_comparison.csv``: published numbers beside ours (no rows without any)."""
    a = params.analysis
    if a.compare_with is None:
        return comparison.empty_comparison()
    return comparison.compare(
        comparison.read_reference(layout.root / a.compare_with),
        metrics=tables["metrics"],
        questions=fig_c_table.assign(ensemble=params.main_ensemble),
        agreement=tables["agreement"],
        training=tables["training"],
        lambdas={name: e.train.prior_lambda for name, e in params.ensembles.items()},
    )


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")


def run(params: Params, layout: Layout = Layout()) -> Report:
    """Write ``reports/metrics.json``, ``reports/plots/*.csv``, ``reports/paper_comparison.csv``,
    ``reports/figures/{png,pdf}/*`` and this machine's timings, ``reports/costs/training.csv``."""
    logits = ensemble_logits(params, layout)
    metrics = headline_metrics(params, logits)
    write_text_atomic(
        layout.reports / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n"
    )
    tables, skipped = build_tables(params, logits, layout)
    for name in TABLES:
        _write_csv(tables[name], layout.reports / "plots" / f"{name}.csv")
    fig_c_table = fig_c_questions(params, logits)
    compared = paper_comparison(params, tables, fig_c_table, layout)
    _write_csv(compared, layout.reports / "paper_comparison.csv")
    _write_csv(training_costs(params, layout), layout.reports / "costs" / "training.csv")
    figures, not_drawn = draw_figures(params, tables, skipped, fig_c_table)
    files = {
        name: plots.save_figure(figure, layout.reports / "figures", name)
        for name, figure in figures.items()
    }
    return Report(metrics, tables, figures, files, not_drawn, compared)
