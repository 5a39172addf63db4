"""The figures stage's report writers on the hand-built logits of test_analysis: every table,
figure and metric lands where ``dvc.yaml`` declares it, with the numbers worked out there."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_analysis import MEMBERS, OTHER_MASS, build_logits

from lorauq import analysis
from lorauq.config import load_params
from lorauq.errors import ConfigError
from lorauq.layout import Layout
from lorauq.schema import PRIOR_MEMBER
from lorauq.stages import figures as figures_stage
from lorauq.store import write_logits

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> tuple[Layout, dict, dict, dict]:
    """Write the known table as a store (prior + one file per member), then run the stage."""
    layout = Layout(tmp_path_factory.mktemp("repo"))
    table = build_logits()
    write_logits(
        table[(table.member == MEMBERS[0]) & (table.epoch == 0)].assign(member=PRIOR_MEMBER),
        layout.prior_logits,
    )
    for member in MEMBERS:
        write_logits(
            table[(table.member == member) & (table.epoch > 0)], layout.member_logits(member)
        )
    params = load_params(
        ROOT / "params.yaml", {"members": list(MEMBERS), "tiny.analysis.hist_epochs": [1, 2]}
    )
    report = figures_stage.run(params, layout)
    return layout, report.metrics, report.tables, report.files


def test_metrics_json_has_aurc_ood_auroc_and_letter_mass(reports) -> None:
    layout, metrics, _, _ = reports
    assert json.loads((layout.reports / "metrics.json").read_text()) == metrics
    for stage in ("prior", "final"):
        for numbers in metrics[stage].values():
            assert numbers["letter_mass"] == pytest.approx(1 - OTHER_MASS, rel=1e-6)
            assert "aurc" in numbers and "letter_mass_p05" in numbers
    assert metrics["ood_auroc"]["final"]["far"]["mutual_information"] == 1.0


def test_fig_b_compares_the_two_halves(reports) -> None:
    layout, _, tables, figures = reports
    agreement = pd.read_csv(layout.reports / "plots" / "agreement.csv")
    assert (agreement["reference"] == "members 1, 2 (M=2)").all()
    prior = agreement[agreement.epoch == 0].set_index("metric")["value"]
    assert (prior["agreement"] == 1).all() and (prior["total_variation"].abs() < 1e-6).all()
    assert len(agreement) == len(tables["agreement"])
    assert "fig_b_agreement" in figures


def test_dvc_yaml_declares_every_table_and_figure(reports) -> None:
    """A CSV or PNG the stage writes but dvc.yaml forgets is invisible to ``dvc plots``."""
    layout, _, tables, figures = reports
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    declared_csv = {next(iter(entry)) for entry in dvc["stages"]["figures"]["plots"]}
    written_csv = {f"reports/plots/{name}.csv" for name in tables}
    assert written_csv == declared_csv
    assert all((layout.reports / "plots" / f"{name}.csv").is_file() for name in tables)
    written_png = {f"reports/figures/{name}.png" for name in figures}
    assert written_png == set(dvc["plots"])
    for paths in figures.values():
        assert all(path.is_file() for path in paths)


def test_reference_can_be_another_ensembles_logits(reports) -> None:
    """``analysis.reference`` as a path: here the same store, so everything agrees."""
    layout, _, _, _ = reports
    params = load_params(
        ROOT / "params.yaml", {"members": list(MEMBERS), "tiny.analysis.reference": "data/logits"}
    )
    table, _ = figures_stage.agreement(
        params, figures_stage.ensemble_logits(params, layout), layout
    )
    assert (table["reference"] == "members 0–2 (M=3)").all()
    ensemble = table[table.estimator == "ensemble"].set_index("metric")["value"]
    assert (ensemble["agreement"] == 1).all()
    assert (ensemble["total_variation"].abs() < 1e-6).all()


def test_one_member_has_no_halves_and_no_fig_b(reports) -> None:
    layout, _, _, _ = reports
    params = load_params(ROOT / "params.yaml", {"members": [MEMBERS[0]]})
    table, _ = figures_stage.agreement(
        params, figures_stage.ensemble_logits(params, layout), layout
    )
    assert table.empty and list(table.columns) == list(analysis.AGREEMENT_COLUMNS)
    with pytest.raises(ConfigError, match=r"analysis\.reference"):
        load_params(ROOT / "params.yaml", {"tiny.analysis.reference": " "})


# --------------------------------------------------------------------------- unusual shapes


def _store(layout: Layout, table: pd.DataFrame) -> None:
    """Write ``table`` as the store the stage reads: the prior once, one file per member."""
    first = table.member.min()
    write_logits(
        table[(table.member == first) & (table.epoch == 0)].assign(member=PRIOR_MEMBER),
        layout.prior_logits,
    )
    for member in sorted(set(table.member)):
        write_logits(
            table[(table.member == member) & (table.epoch > 0)], layout.member_logits(member)
        )


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
        {"members": [MEMBERS[0]]},
        {"fig_b_agreement": "one member"},
    ),
    "one epoch": (lambda t: t.epoch <= 1, {}, {}),
    "one set, one member, one epoch": (
        lambda t: (t.eval_set == "near") & (t.member == MEMBERS[0]) & (t.epoch <= 1),
        {"members": [MEMBERS[0]]},
        {"ood_roc": "'in_domain' is not an eval set", "fig_b_agreement": "one member"},
    ),
    "unlabelled only": (
        lambda t: (t.eval_set == "near") & (t.answer < 0),
        {},
        {"reliability": "no eval set has labelled questions", "fig_c_entropy_vs_mi": "labelled"},
    ),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_shape_writes_every_table_and_says_what_it_skips(
    tmp_path: Path, shape: str, capsys: pytest.CaptureFixture[str]
) -> None:
    keep, overrides, missing = SHAPES[shape]
    table = build_logits()
    layout = Layout(tmp_path)
    _store(layout, table[keep(table)])
    params = load_params(
        ROOT / "params.yaml",
        {"members": list(MEMBERS), "tiny.analysis.hist_epochs": [1, 2], **overrides},
    )
    report = figures_stage.run(params, layout)
    for name in figures_stage.TABLES:
        assert (layout.reports / "plots" / f"{name}.csv").is_file(), name
    assert (layout.reports / "metrics.json").is_file()
    for figure, why in missing.items():
        assert figure not in report.figures and why in report.skipped[figure], figure
        assert report.figure(figure) is None
        assert why in capsys.readouterr().out
    drawn = set(report.figures) | set(report.skipped)
    assert drawn == {
        path.split("/")[-1][:-4]
        for path in yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    }
    for name, paths in report.files.items():
        assert all(path.is_file() for path in paths), name
    assert "fig_a_metrics_over_epochs" in report.figures  # every shape has metrics to plot
