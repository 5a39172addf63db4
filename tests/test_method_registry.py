"""The method registry: one record per method, and everything else follows from it.

dvc.yaml's method stage is the one the registry writes; a toy method added in a copy of the
package (its module and its record, nothing else) gets its stage, its row in the methods
table and its bars in the figure; each method's settings are defined and checked once; the
ensemble's row of the methods table is metrics.json's numbers; and, from outside, appending
a line to one method's module leaves every other stage as it was in ``dvc status``.
"""

from __future__ import annotations

import inspect
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from lorauq.methods import pipeline
from lorauq.methods.registry import METHODS

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def test_dvc_yaml_has_the_method_stage_the_registry_writes() -> None:
    text = (ROOT / "dvc.yaml").read_text(encoding="utf-8")
    block = pipeline.BEGIN + text.split(pipeline.BEGIN)[1].split(pipeline.END)[0] + pipeline.END
    assert block == pipeline.render(), "dvc.yaml is out of date: python -m lorauq.methods.pipeline"
    stage = yaml.safe_load(text)["stages"]["method"]["do"]
    assert "lorauq/methods/${item}.py" in stage["deps"]
    assert "${profile}.methods.${item}" in stage["params"]
    # no method's own module is a dep of every method; the main ensemble's outputs only
    own = {f"lorauq/methods/{name}.py" for name in METHODS}
    assert not own & set(stage["deps"])
    assert {"data/adapters/${main}", "data/logits/${main}"} <= set(stage["deps"])
    assert not {"data/adapters", "data/logits", "${profile}.methods"} & set(
        stage["deps"] + stage["params"]
    )


def test_a_method_may_not_import_another_method(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its stage would not rerun when the other changes: the writer refuses."""
    from lorauq.errors import ConfigError

    real = pipeline.module_closure

    def single_reaches_laplace(entries, root):
        found = real(entries, root)
        if "lorauq.methods.single" in entries:
            found |= {root / "lorauq" / "methods" / "laplace.py"}
        return found

    monkeypatch.setattr(pipeline, "module_closure", single_reaches_laplace)
    with pytest.raises(ConfigError, match=r"single.py reaches another method's module"):
        pipeline.method_stage(METHODS)


def test_method_settings_are_defined_and_checked_once() -> None:
    """The defaults live in the settings types, the checks in their ``check``: the functions
    that run a method take its settings without defaults and check none of them, and
    config.py names no method."""
    from lorauq.methods.laplace import laplace_samples
    from lorauq.methods.mc_dropout import dropout_samples
    from lorauq.methods.registry import LaplaceSettings

    empty = inspect.Parameter.empty
    laplace = inspect.signature(laplace_samples).parameters
    assert all(laplace[k].default is empty for k in ("hessian", "samples", "seed"))
    assert laplace["prior_precision"].default is empty
    dropout = inspect.signature(dropout_samples).parameters
    assert all(dropout[k].default is empty for k in ("dropout", "passes", "seed"))
    sources = {p.relative_to(ROOT).as_posix(): p.read_text() for p in ROOT.glob("lorauq/**/*.py")}
    for message in ("dropout must be in [0, 1)", "_at_least_one(", "prior_precision must be"):
        found = sorted(p for p, text in sources.items() if message in text)
        assert found == ["lorauq/methods/registry.py"], (message, found)
    config = sources["lorauq/config.py"]
    assert not any(f'"{name}"' in config or f"{name}:" in config for name in METHODS)
    # the one default of Laplace's prior precision is the one every profile may leave out
    assert LaplaceSettings().prior_precision == "validation"


def test_the_ensemble_row_of_the_methods_table_is_metrics_json() -> None:
    """One definition of each metric: the committed methods table and metrics.json, from the
    same run, agree on the main ensemble at its final epoch in the figures' read-out."""
    metrics = json.loads((ROOT / "reports" / "metrics.json").read_text(encoding="utf-8"))
    main = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))["main"]
    table = pd.read_csv(ROOT / "reports" / "methods.csv").set_index(["method", "eval_set"])
    readout = metrics["config"]["readout_of_figures"]
    final = metrics[main][readout]["final"]
    aurocs = metrics[main][readout]["ood_auroc"]["final"]
    rows = table.loc["lora_ensemble"]
    assert sorted(rows.index) == sorted(final)
    for eval_set, numbers in final.items():
        row = rows.loc[eval_set]
        for metric in ("accuracy", "nll", "ece", "brier", "mutual_information"):
            assert float(row[metric]) == pytest.approx(numbers[metric], rel=1e-5, abs=1e-9)
        if eval_set in aurocs:
            assert float(row["auroc_mi"]) == pytest.approx(
                aurocs[eval_set]["mutual_information"], rel=1e-5
            )
            assert float(row["auroc_entropy"]) == pytest.approx(
                aurocs[eval_set]["predictive_entropy"], rel=1e-5
            )


def test_the_methods_table_computes_what_metrics_json_computes() -> None:
    """The same, on the hand-built logits: the table's ensemble rows are
    :func:`lorauq.analysis.headline_metrics` of the same ensemble at its final epoch."""
    from known_logits import build_logits

    from lorauq.analysis import headline_metrics
    from lorauq.methods.report import MethodRuns, methods_table

    logits = build_logits()
    for readout in ("renormalized", "with_other"):
        expected = headline_metrics(logits, readout, n_bins=10, in_domain="in_domain")
        final = logits[logits["epoch"] == logits["epoch"].max()]
        table = methods_table({"lora_ensemble": MethodRuns([final])}, "in_domain", 10, readout)
        rows = table.set_index("eval_set")
        assert sorted(rows.index) == sorted(expected["final"])
        for eval_set, numbers in expected["final"].items():
            for metric in ("accuracy", "nll", "ece", "brier", "predictive_entropy"):
                assert rows.loc[eval_set, metric] == pytest.approx(numbers[metric], rel=1e-12)
        for eval_set, scores in expected["ood_auroc"]["final"].items():
            assert rows.loc[eval_set, "auroc_mi"] == pytest.approx(scores["mutual_information"])
            assert rows.loc[eval_set, "auroc_entropy"] == pytest.approx(
                scores["predictive_entropy"]
            )
        assert rows.loc["far", "auroc_mi"] == pytest.approx(1.0)  # disagreeing members: perfect


TOY_MODULE = '''"""Method ``toy``: member 0's final logits and the same with letter a raised, two samples."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lorauq.stages.methods import MethodOutput, member_logits
from lorauq.uncertainty import entropy


def run(params, layout, progress=False) -> MethodOutput:
    rows = member_logits(params, layout)
    final = rows[rows["epoch"] == rows["epoch"].max()]
    raised = final.assign(member=1, logit_a=final["logit_a"] + 1.0)
    uniform = float(entropy(np.full((1, 4), 0.25))[0])
    return MethodOutput(
        pd.concat([final, raised], ignore_index=True), {"raised_by": 1.0, "uniform": uniform}
    )
'''

TOY_RECORD = """        Method(
            "toy",
            NoSettings,
            per_member=False,
            needs=("main_logits",),
            profile_params=(),
            cost=lambda params, fitted: {"finetune_passes": 1, "eval_passes": 2},
            one_run="one run: a toy",
        ),
    )
}
"""

TOY_RUN = """
import json, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from known_logits import MEMBERS, build_logits
from lorauq.config import load_params
from lorauq.layout import Layout
from lorauq.stages import methods, methods_report
from lorauq.store import write_logits

params = load_params("params.yaml", {{
    "members": list(MEMBERS), "ensembles": {{"lora_l2": {{}}}}, "analysis.main": "lora_l2",
    "analysis.reference": "halves", "methods.run": ["single", "toy"],
}})
layout = Layout(Path("."))
table = build_logits()
for m in MEMBERS:
    write_logits(table[(table.member == m) & (table.epoch > 0)], layout.unit_logits("lora_l2", str(m)))
for name in params.methods.run:
    methods.run(params, name, layout, progress=False)
report = methods_report.run(params, layout)
figure = methods_report.figure(report)
print(json.dumps({{
    "rows": report[["method", "eval_set", "samples", "eval_passes", "nll_std"]].astype(str).values.tolist(),
    "legend": [t.get_text() for t in figure.legends[0].texts],
}}))
"""


@pytest.mark.slow
def test_a_toy_method_needs_its_module_and_its_record_only(tmp_path: Path) -> None:
    """In a copy of the package: the module and the record; then the stage writer, and the
    run list of params.yaml that chooses to run it. Its stage, row and bars follow."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "lorauq", repo / "lorauq", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, repo / name)
    (repo / "lorauq" / "methods" / "toy.py").write_text(TOY_MODULE)
    registry = repo / "lorauq" / "methods" / "registry.py"
    text = registry.read_text()
    assert text.count("    )\n}\n") == 1
    registry.write_text(text.replace("    )\n}\n", TOY_RECORD))
    before = {p.relative_to(repo): p.read_bytes() for p in repo.rglob("*") if p.is_file()}
    env = {"PYTHONPATH": str(repo), "PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path)}

    def python(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, *args], cwd=repo, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    python("-m", "lorauq.methods.pipeline")
    changed = {p for p, data in before.items() if (repo / p).read_bytes() != data}
    assert changed == {Path("dvc.yaml")}  # the toy reaches lorauq/uncertainty.py
    assert (
        "lorauq/uncertainty.py"
        not in yaml.safe_load(before[Path("dvc.yaml")])["stages"]["method"]["do"]["deps"]
    )
    raw = yaml.safe_load((repo / "params.yaml").read_text())
    raw["methods"] = raw["tiny"]["methods"]["run"] = ["single", "toy"]
    raw["tiny"]["methods"]["toy"] = {}
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    dvc = str(Path(sys.executable).with_name("dvc"))
    subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=repo, check=True, env=env)
    listed = subprocess.run(
        [dvc, "stage", "list", "--name-only"], cwd=repo, env=env, capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    assert {"method@single", "method@toy"} <= set(listed.stdout.split())
    stage = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]["method"]["do"]
    assert {"lorauq/methods/${item}.py", "lorauq/uncertainty.py"} <= set(stage["deps"])

    out = json.loads(python("-c", TOY_RUN.format(tests=str(TESTS))).splitlines()[-1])
    toy = [row for row in out["rows"] if row[0] == "toy"]
    assert [row[1] for row in toy] == ["far", "in_domain", "near"]
    assert {row[2] for row in toy} == {"2"} and {row[3] for row in toy} == {"2"}
    assert {row[4] for row in toy} == {"one run: a toy"}
    assert "toy" in out["legend"] and "single" in out["legend"]
    info = json.loads((repo / "data" / "methods" / "toy" / "info.json").read_text())
    assert info.pop("uniform") == pytest.approx(1.3862944, rel=1e-6)  # ln 4
    assert info == {"finetune_passes": 1, "eval_passes": 2, "raised_by": 1.0, "runs": 1}


@pytest.mark.slow
def test_dvc_status_reruns_one_method_for_its_module_or_its_settings(tmp_path: Path) -> None:
    """Checked from outside, on a repro'd tiny experiment (about 2 min): appending a line to
    the Laplace module, or changing MC dropout's passes, leaves every other stage (the other
    methods, fine-tuning, inference) unchanged in ``dvc status``."""
    from workspace import QUICK, reproduced_copy, sh

    repo = reproduced_copy(tmp_path / "repo", QUICK)

    def changed() -> set[str]:
        return set(json.loads(sh(repo, "dvc", "status", "--json") or "{}"))

    assert changed() == set()
    with (repo / "lorauq" / "methods" / "laplace.py").open("a", encoding="utf-8") as handle:
        handle.write("# an appended comment\n")
    assert changed() == {"method@laplace"}
    sh(repo, "git", "checkout", "--", "lorauq/methods/laplace.py")
    raw = yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))
    raw["tiny"]["methods"]["mc_dropout"]["passes"] += 1
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    assert changed() == {"method@mc_dropout"}
