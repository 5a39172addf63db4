"""Every method's stage and the methods report, in-process on the smallest experiment that
still has an out-of-domain set and seeds to spread over: two members, two epochs, eval sets
in_domain and unseen."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from tinyworld import ROOT, WORLD

from lorauq.config import resolve_params
from lorauq.layout import Layout
from lorauq.methods.registry import FINAL
from lorauq.methods.report import BEST, IN_DOMAIN, ONE_SAMPLE
from lorauq.schema import LOGIT_COLUMNS
from lorauq.store import read_logits

pytestmark = pytest.mark.slow  # runs every stage in-process on a small experiment (~5 s)

SMALL = {
    "members": ["0-1"],
    "ensembles": {"lora_l2": {}},
    "analysis.reference": "halves",
    "data.world": WORLD,
    "base.hidden_size": 32,
    "base.intermediate_size": 64,
    "base.num_hidden_layers": 1,
    "base.vocab_size": 300,
    "base.pretrain_steps": 10,
    "lora.target_modules": ["q_proj", "v_proj"],
    "lora.r": 4,
    "train.epochs": 2,
    "train.threads": 1,
    "infer.threads": 1,
    "methods.checkpoints.last": 2,
    "methods.mc_dropout.passes": 2,
    "methods.laplace.samples": 2,
    "methods.ivon.samples": 2,
    "methods.ivon.train_samples": 2,
    "methods.run": [
        "single", "mc_dropout", "checkpoints", "temperature", "laplace", "ivon", "early_stopped"
    ],
}  # fmt: skip


def _accuracy(rows: pd.DataFrame) -> float:
    """Argmax accuracy over each question's own letters, straight from the stored logits."""
    letters = rows[LOGIT_COLUMNS].to_numpy()
    return float(np.mean(np.nanargmax(letters, axis=1) == rows["answer"].to_numpy()))


def _params():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    evals = raw["tiny"]["data"]["eval"]
    raw["tiny"]["data"]["eval"] = {k: evals[k] for k in ("in_domain", "unseen")}
    return resolve_params(raw, SMALL)


def test_every_method_writes_samples_and_the_report_compares_them(tmp_path: Path) -> None:
    from lorauq.stages import base, finetune, infer, methods, methods_report, prepare

    params = _params()
    layout = Layout(tmp_path)
    prepare.run(params, layout)
    assert len(pd.read_parquet(layout.calibration_table)) > 0
    base.run(params, layout, progress=False)
    finetune.run(params, "lora_l2", "0-1", layout, progress=False)
    infer.run(params, None, layout=layout, progress=False)
    infer.run(params, "lora_l2", "0-1", layout, progress=False)
    logits = read_logits(layout.unit_logits("lora_l2", "0-1"))
    member0 = logits[logits["member"] == 0]
    for name in params.methods.run:
        methods.run(params, name, layout, progress=False)
    samples = {
        name: read_logits(tmp_path / "data" / "methods" / name / "samples.parquet")
        for name in params.methods.run
    }
    expected = {
        "single": 1,
        "checkpoints": 2,
        "temperature": 1,
        "mc_dropout": 2,
        "laplace": 2,
        "ivon": 2,
        "early_stopped": 2,
    }
    assert {n: t["member"].nunique() for n, t in samples.items()} == expected
    assert all(set(t["epoch"]) == {2} for t in samples.values())
    final = member0[member0["epoch"] == 2].sort_values(["eval_set", "id"])
    single = samples["single"].sort_values(["eval_set", "id"])
    np.testing.assert_array_equal(single["logit_a"].to_numpy(), final["logit_a"].to_numpy())
    runs = tmp_path / "data" / "methods" / "single" / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["member-1.parquet"]
    assert set(read_logits(tmp_path / "data/methods/laplace/linearised.parquet")["member"]) == {0}
    table = methods_report.run(params, layout)
    assert list(table["method"].unique()) == [
        "lora_ensemble",
        "lora_ensemble@best",
        "single@best",
        *params.methods.run[:5],
        "laplace_linearised",
        "ivon",
        "early_stopped",
    ]
    assert len(table) == 11 * 2
    row = table.set_index(["method", "eval_set"])
    assert row.loc[("temperature", "unseen"), "auroc_mi"] == ONE_SAMPLE
    assert row.loc[("laplace", "in_domain"), "auroc_entropy"] == IN_DOMAIN
    assert 0.0 <= float(row.loc[("laplace", "unseen"), "auroc_mi"]) <= 1.0
    assert "no MI" in row.loc[("laplace_linearised", "unseen"), "auroc_mi"]
    assert float(row.loc[("single", "in_domain"), "mutual_information"]) == 0.0
    # single: two runs (members 0 and 1); the row is their mean and sample std
    final = logits[logits["epoch"] == 2]
    accs = [
        _accuracy(final[(final["member"] == m) & (final["eval_set"] == "in_domain")])
        for m in (0, 1)
    ]
    single_row = row.loc[("single", "in_domain")]
    assert int(single_row["runs"]) == 2
    assert float(single_row["accuracy"]) == pytest.approx(np.mean(accs))
    assert float(single_row["accuracy_std"]) == pytest.approx(np.std(accs, ddof=1))
    assert row.loc[("laplace", "unseen"), "nll_std"].startswith("one run")
    # ivon: a member of its own, trained with two draws per step, read out with two draws
    assert row.loc[("ivon", "unseen"), "nll_std"].startswith("one run")
    assert int(row.loc[("ivon", "unseen"), "samples"]) == 2
    assert int(row.loc[("ivon", "unseen"), "finetune_passes"]) == 2
    assert int(row.loc[("ivon", "unseen"), "eval_passes"]) == 2
    ivon_epochs = tmp_path / "data" / "methods" / "ivon" / "member-0"
    assert sorted(p.name for p in ivon_epochs.iterdir()) == ["epoch-1", "epoch-2"]
    assert row.loc[("lora_ensemble", "unseen"), "selected_by"] == FINAL
    assert row.loc[("single@best", "unseen"), "selected_by"] == BEST
    # early_stopped: both members, each at its checkpoint of lowest held-out NLL
    early = row.loc[("early_stopped", "unseen")]
    assert early["selected_by"] == "lowest held-out NLL, per member"
    assert (int(early["finetune_passes"]), int(early["eval_passes"])) == (2, 2 * 2 + 2)
    info = json.loads((tmp_path / "data/methods/early_stopped/info.json").read_text())
    assert set(info["chosen_epoch"]) <= {1, 2} and len(info["held_out_nll"]) == 2
    for name in params.methods.run:
        info = json.loads((tmp_path / "data" / "methods" / name / "info.json").read_text())
        assert "peak_rss_mib" not in info, name  # a measurement: kept apart from results
        cost = json.loads((tmp_path / "reports" / "costs" / f"method-{name}.json").read_text())
        assert cost["peak_rss_mib"] > 50, name
    assert "stage_peak_rss_mib" not in table.columns
    assert (tmp_path / "reports" / "methods.csv").is_file()
    assert (tmp_path / "reports" / "methods" / "png" / "methods.png").is_file()
    assert (tmp_path / "reports" / "methods" / "pdf" / "methods.pdf").is_file()
