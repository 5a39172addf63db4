"""Methods run from several seeds (``runs`` in their settings): run r from member r, its own
sampling seed, stored beside run 0 and combined into a mean and a standard deviation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from known_logits import MEMBERS, build_logits
from letter_maths import member_probs

from lorauq.config import load_params
from lorauq.layout import Layout
from lorauq.methods import mc_dropout, own_member
from lorauq.methods.report import methods_table
from lorauq.stages import methods
from lorauq.stages.methods_report import collect
from lorauq.store import write_logits

ROOT = Path(__file__).resolve().parents[1]
#: Run r's samples: these members of the hand-built table at its final epoch, as samples 0, 1.
RUN_MEMBERS = {0: (0, 1), 1: (1, 2)}


def _numpy_metrics(samples: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per eval set, accuracy and NLL of the samples' mean softmax over each question's own
    letters, from the stored logits with numpy alone."""
    out = {}
    for eval_set, rows in samples.groupby("eval_set"):
        probs, answers = member_probs(rows)
        labelled = [q for q in probs if answers[q] >= 0]
        p_bar = {q: probs[q].mean(axis=0) for q in labelled}
        out[eval_set] = {
            "accuracy": float(np.mean([p_bar[q].argmax() == answers[q] for q in labelled])),
            "nll": float(np.mean([-np.log(p_bar[q][answers[q]]) for q in labelled])),
        }
    return out


def test_two_runs_are_two_members_seeds_and_combine_as_numpy_does(tmp_path, monkeypatch):
    params = load_params(
        ROOT / "params.yaml",
        {
            "members": list(MEMBERS),
            "ensembles": {"lora_l2": {}},
            "analysis.main": "lora_l2",
            "analysis.reference": "halves",
            "methods.run": ["mc_dropout"],
            "methods.mc_dropout.runs": 2,
            "methods.mc_dropout.seed": 7,
        },
    )
    layout = Layout(tmp_path)
    table = build_logits()
    for m in MEMBERS:
        rows = table[(table.member == m) & (table.epoch > 0)]
        write_logits(rows, layout.unit_logits("lora_l2", str(m)))
    final = table[table["epoch"] == table["epoch"].max()]
    runs = {
        r: pd.concat(
            [final[final["member"] == m].assign(member=s) for s, m in enumerate(chosen)],
            ignore_index=True,
        )
        for r, chosen in RUN_MEMBERS.items()
    }
    calls = []

    def trained_and_read(params, layout, name, train_fn, read_fn, member=0):
        """What own_member returns without a model: the run's samples, noting its seeds."""
        calls.append((name, member, read_fn.keywords["seed"], read_fn.keywords["passes"]))
        return runs[member]

    monkeypatch.setattr(own_member, "own_member", trained_and_read)
    methods.write_output(params, "mc_dropout", mc_dropout.run(params, layout), layout)

    passes = params.methods.mc_dropout.passes
    assert calls == [("mc_dropout", 0, 7, passes), ("mc_dropout", 1, 8, passes)]
    folder = tmp_path / "data" / "methods" / "mc_dropout"
    assert json.loads((folder / "info.json").read_text(encoding="utf-8"))["runs"] == 2
    assert sorted(p.name for p in (folder / "runs").iterdir()) == ["member-1.parquet"]

    found = collect(params, layout)
    a = params.analysis
    report = methods_table({"mc_dropout": found["mc_dropout"]}, a.in_domain, a.n_bins)
    per_run = [_numpy_metrics(runs[r]) for r in sorted(runs)]
    assert sorted(report["eval_set"]) == sorted(per_run[0])
    for row in report.itertuples():
        assert row.runs == 2 and row.samples == 2
        for metric in ("accuracy", "nll"):
            values = [run[row.eval_set][metric] for run in per_run]
            assert getattr(row, metric) == pytest.approx(np.mean(values), rel=1e-5, abs=1e-7)
            spread = getattr(row, f"{metric}_std")
            assert spread == pytest.approx(np.std(values, ddof=1), rel=1e-4, abs=1e-7)
    nll_std = report.set_index("eval_set")["nll_std"]
    assert nll_std["far"] > 0.01  # the two runs differ: the check above is not 0 == 0


def test_a_method_that_returns_other_runs_than_its_settings_ask_is_refused(tmp_path):
    from lorauq.errors import StoreError
    from lorauq.stages.methods import MethodOutput

    params = load_params(ROOT / "params.yaml", {"methods.run": ["ivon"], "methods.ivon.runs": 3})
    one = build_logits()
    with pytest.raises(StoreError, match=r"'ivon' runs 3 times \(runs: 3\) but returned runs"):
        methods.write_output(params, "ivon", MethodOutput(one, runs={1: one}), Layout(tmp_path))
    assert not (tmp_path / "data" / "methods" / "ivon").exists()


def test_laplace_run_r_fits_around_member_r_with_its_own_seed(tmp_path, monkeypatch):
    """Without a model: run r's posterior is fitted around member r's final adapter, draws
    from seed + r, and its probit read-out is of member r's own logits; both read-outs come
    back by member, and the info lists every run's prior precision."""
    import lorauq.model
    import lorauq.questions
    import lorauq.stages.infer
    from lorauq.methods import laplace

    params = load_params(
        ROOT / "params.yaml",
        {"members": list(MEMBERS), "methods.run": ["laplace"], "methods.laplace.runs": 3},
    )
    table = build_logits()
    final = table[table["epoch"] == table["epoch"].max()]
    calls = []

    def fit(model, tokenizer, adapter, train, evals, *, seed, member_table, **settings):
        """laplace_samples' answer: the member's own rows as the samples, noting its inputs."""
        member = int(str(adapter).rsplit("-", 1)[1])
        own = final[final["member"] == member].sort_values(["eval_set", "id"])["logit_a"]
        probit_of = member_table.sort_values(["eval_set", "id"])["logit_a"]
        calls.append(
            (member, seed, set(member_table["member"]), probit_of.tolist() == own.tolist())
        )
        rows = final[final["member"] == member].assign(member=0)
        return rows, {"prior_precision": 10.0 + member}, rows.assign(logit_a=rows["logit_a"] - 1)

    monkeypatch.setattr(laplace, "laplace_samples", fit)
    monkeypatch.setattr(laplace, "final_adapter", lambda p, lay, m: (tmp_path / f"adapter-{m}", 2))
    monkeypatch.setattr(laplace, "member_logits", lambda p, lay, m: table[table["member"] == m])
    monkeypatch.setattr(lorauq.model, "load_base", lambda base, path: (None, None))
    monkeypatch.setattr(lorauq.questions, "read_prepared", lambda path: None)
    monkeypatch.setattr(lorauq.stages.infer, "eval_sets", lambda params, layout: {})

    out = laplace.run(params, Layout(tmp_path))
    seed = params.methods.laplace.seed
    assert calls == [(r, seed + r, {0}, True) for r in range(3)]
    assert sorted(out.runs) == sorted(out.readout_runs["linearised"]) == [1, 2]
    assert out.fitted["prior_precision"] == 10.0
    assert out.fitted["prior_precisions"] == [10.0, 11.0, 12.0]
    for member, rows in out.runs.items():
        expected = final[final["member"] == member]["logit_a"].to_numpy()
        np.testing.assert_array_equal(rows["logit_a"].to_numpy(), expected)
        linearised = out.readout_runs["linearised"][member]["logit_a"].to_numpy()
        np.testing.assert_array_equal(linearised, expected - 1)
