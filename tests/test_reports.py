"""The figures stage's report writers on the hand-built logits of ``known_logits``: every
table, figure and metric lands where ``dvc.yaml`` declares it, with the numbers worked out
there.

The store holds two ensembles: ``lora_l2`` and ``r32`` (Fig B's reference), the same
hand-built logits for both, so their agreement is known exactly (1, total variation 0).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from known_logits import MEMBERS, OTHER_MASS, build_logits

from lorauq import analysis
from lorauq.config import load_params
from lorauq.layout import Layout
from lorauq.schema import PRIOR_MEMBER
from lorauq.stages import figures as figures_stage
from lorauq.store import write_logits

ROOT = Path(__file__).resolve().parents[1]
ENSEMBLES = {"lora_l2": {}, "r32": {"lora": {"r": 32}}}
OVERRIDES = {
    "members": list(MEMBERS),
    "ensembles": ENSEMBLES,
    "analysis.reference": "r32",
    "analysis.main": "lora_l2",
    "analysis.fig_c.epochs": [1, 2],
}


def write_store(layout: Layout, table: pd.DataFrame, ensembles=tuple(ENSEMBLES)) -> None:
    """``table`` as the store the stage reads: the prior once, then per ensemble one file per
    member stage (here one member each) and its training record."""
    first = table.member.min()
    write_logits(
        table[(table.member == first) & (table.epoch == 0)].assign(member=PRIOR_MEMBER),
        layout.prior_logits,
    )
    for ensemble in ensembles:
        for member in sorted(set(table.member)):
            unit = str(member)
            rows = table[(table.member == member) & (table.epoch > 0)]
            write_logits(rows, layout.unit_logits(ensemble, unit))
            records = [
                {
                    "member": int(member),
                    "epoch": int(e),
                    "loss": 1.0 / e,
                    "prior": 0.0,
                    "lora_l2": 0.01 * e,
                    "tokens": 100,
                    "elapsed_s": 1.0,
                }
                for e in sorted(set(rows.epoch))
            ]
            path = layout.unit_training(ensemble, unit)
            path.write_text(json.dumps(records), encoding="utf-8")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Layout, figures_stage.Report]:
    """The figures stage run on the hand-built store (a stage, ~10 s: its users are slow)."""
    layout = Layout(tmp_path_factory.mktemp("repo"))
    write_store(layout, build_logits())
    params = load_params(ROOT / "params.yaml", OVERRIDES)
    return layout, figures_stage.run(params, layout)


@pytest.mark.slow
def test_metrics_json_has_both_readouts_per_ensemble(report) -> None:
    layout, produced = report
    metrics = produced.metrics
    assert json.loads((layout.reports / "metrics.json").read_text()) == metrics
    assert set(metrics) == {"lora_l2", "r32", "config"}
    for readout in ("renormalized", "with_other"):
        for stage in ("prior", "final"):
            for numbers in metrics["lora_l2"][readout][stage].values():
                assert numbers["letter_mass"] == pytest.approx(1 - OTHER_MASS, rel=1e-6)
                assert "aurc" in numbers and "letter_mass_p05" in numbers
        assert metrics["lora_l2"][readout]["ood_auroc"]["final"]["far"]["mutual_information"] == 1.0
    renorm = metrics["lora_l2"]["renormalized"]["final"]["in_domain"]
    other = metrics["lora_l2"]["with_other"]["final"]["in_domain"]
    # the 20 % outside the letters is one more class for with_other: more entropy, same argmax
    assert other["predictive_entropy"] > renorm["predictive_entropy"]
    assert other["accuracy"] == renorm["accuracy"]
    assert metrics["r32"] == metrics["lora_l2"]  # the same logits


@pytest.mark.slow
def test_fig_b_compares_each_ensemble_with_the_reference(report) -> None:
    layout, produced = report
    table = pd.read_csv(layout.reports / "plots" / "agreement.csv")
    assert table["reference"].str.startswith("r32: members 0–2 (M=3)").all()
    full = table[(table.ensemble == "lora_l2") & (table.estimator == "ensemble")]
    assert (full[full.metric == "agreement"]["value"] == 1).all()  # the same logits
    assert (full[full.metric == "total_variation"]["value"].abs() < 1e-6).all()
    # the reference's full ensemble is not compared with itself; its members are
    assert table[(table.ensemble == "r32") & (table.estimator == "ensemble")].empty
    members = table[(table.ensemble == "r32") & (table.estimator == "member_mean")]
    logits = build_logits()
    cube = analysis.probability_cube(logits, "far")
    reference = cube.probs[:, -1].mean(axis=0)
    by_hand = np.mean(
        [(cube.probs[m, -1].argmax(-1) == reference.argmax(-1)).mean() for m in range(3)]
    )
    last = members[(members.eval_set == "far") & (members.metric == "agreement")]
    assert last[last.epoch == 2]["value"].item() == pytest.approx(by_hand)
    assert "fig_b_agreement" in produced.figures


@pytest.mark.slow
def test_dvc_yaml_declares_every_table_and_figure(report) -> None:
    """A CSV the stage writes but dvc.yaml forgets is invisible to ``dvc plots``."""
    layout, produced = report
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    figures_stage_outs = dvc["stages"]["figures"]
    declared_csv = {next(iter(entry)) for entry in figures_stage_outs["plots"]}
    assert {f"reports/plots/{name}.csv" for name in produced.tables} == declared_csv
    for name in produced.tables:
        assert (layout.reports / "plots" / f"{name}.csv").is_file(), name
    assert dvc["plots"] == ["reports/figures/png"]
    pngs = {p.stem for p in (layout.reports / "figures" / "png").glob("*.png")}
    pdfs = {p.stem for p in (layout.reports / "figures" / "pdf").glob("*.pdf")}
    assert pngs == pdfs == set(produced.figures)
    fig_c = {f"fig_c_entropy_vs_mi_{name}" for name in ("far", "in_domain", "near")}
    assert fig_c | {"fig_a_metrics_over_epochs", "fig_b_agreement", "lora_l2"} <= pngs
    outs = [next(iter(o)) if isinstance(o, dict) else o for o in figures_stage_outs["outs"]]
    assert "reports/paper_comparison.csv" in outs


@pytest.mark.slow
def test_tables_carry_the_ensemble(report) -> None:
    _, produced = report
    for name, table in produced.tables.items():
        assert table.columns[0] == "ensemble", name
        if not table.empty and name != "agreement":
            assert set(table["ensemble"]) == set(ENSEMBLES), name
    training = produced.tables["training"]
    assert len(training) == 2 * len(MEMBERS) * 2  # ensembles × members × epochs 1-2
    assert training["lora_l2"].max() == pytest.approx(0.02)


@pytest.mark.slow
def test_no_published_numbers_means_an_empty_comparison(report) -> None:
    layout, produced = report
    written = pd.read_csv(layout.reports / "paper_comparison.csv")
    assert written.empty and list(written.columns) == list(produced.comparison.columns)


def test_one_member_has_no_halves_and_no_fig_b(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    table = build_logits()
    write_store(layout, table[table.member == MEMBERS[0]], ensembles=("lora_l2",))
    params = load_params(
        ROOT / "params.yaml",
        {"members": [MEMBERS[0]], "ensembles": {"lora_l2": {}}, "analysis.reference": "halves"},
    )
    agreement, why = figures_stage.agreement(params, figures_stage.ensemble_logits(params, layout))
    assert agreement.empty and "one member" in why
    assert list(agreement.columns) == ["ensemble", *analysis.AGREEMENT_COLUMNS]


# --------------------------------------------------------------------------- unusual shapes


SHAPES = {
    # name: (rows kept, param overrides, figures that must be missing with a reason excerpt)
    "one eval set": (
        lambda t: t.eval_set == "in_domain",
        {},
        {"ood_roc": "one eval set"},
    ),
    "no in-domain set": (
        lambda t: t.eval_set != "in_domain",
        {},
        {"ood_roc": "'in_domain' is not an eval set"},
    ),
    "one member": (
        lambda t: t.member == MEMBERS[0],
        {"members": [MEMBERS[0]], "analysis.reference": "halves"},
        {"fig_b_agreement": "one member"},
    ),
    "one epoch": (lambda t: t.epoch <= 1, {}, {}),
    "one set, one member, one epoch": (
        lambda t: (t.eval_set == "near") & (t.member == MEMBERS[0]) & (t.epoch <= 1),
        {"members": [MEMBERS[0]], "analysis.reference": "halves"},
        {"ood_roc": "'in_domain' is not an eval set", "fig_b_agreement": "one member"},
    ),
    "unlabelled only": (
        lambda t: (t.eval_set == "near") & (t.answer < 0),
        {},
        {"reliability": "no eval set has labelled questions", "fig_c_entropy_vs_mi": "labelled"},
    ),
}


@pytest.mark.slow  # the figures stage, once per shape (~5 s each)
@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_shape_writes_every_table_and_says_what_it_skips(
    tmp_path: Path, shape: str, capsys: pytest.CaptureFixture[str]
) -> None:
    keep, overrides, missing = SHAPES[shape]
    table = build_logits()
    layout = Layout(tmp_path)
    write_store(layout, table[keep(table)])
    params = load_params(ROOT / "params.yaml", {**OVERRIDES, **overrides})
    report = figures_stage.run(params, layout)
    for name in figures_stage.TABLES:
        assert (layout.reports / "plots" / f"{name}.csv").is_file(), name
    assert (layout.reports / "metrics.json").is_file()
    assert (layout.reports / "paper_comparison.csv").is_file()
    for figure, why in missing.items():
        assert figure not in report.figures and why in report.skipped[figure], figure
        assert report.figure(figure) is None
        assert why in capsys.readouterr().out
    for name, paths in report.files.items():
        assert all(path.is_file() for path in paths), name
    assert "fig_a_metrics_over_epochs" in report.figures  # every shape has metrics to plot
