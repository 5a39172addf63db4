"""benchmarks/run.py: both ways run on the same questions and agree on every letter logit."""

from __future__ import annotations

import json

import pytest

from benchmarks import run


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    """The quick benchmark's output: it trains and evaluates the tiny model both ways (~7 s)."""
    out = tmp_path_factory.mktemp("bench") / "result.json"
    returned = run.main(["--quick", "--models", "tiny", "--repeats", "1", "--json", str(out)])
    return returned, json.loads(out.read_text())


@pytest.mark.slow
def test_fast_path_logits_equal_the_authors_way(result):
    # Padded to 512, full logits, a fresh load per job, batch 2: the same numbers as lorauq's
    # answer-position-only, length-bucketed, one-load path (prior and every member epoch).
    _, saved = result
    assert saved["max_logit_delta"]["tiny"] <= 1e-5


@pytest.mark.slow
def test_joint_ensemble_equals_one_by_one(result):
    # Trained together vs one by one (train_member), then evaluated together vs one by one:
    # the same adapters and letter logits to float rounding.
    _, saved = result
    assert saved["workload"]["joint_members"] == 2
    assert 0 <= saved["joint_max_adapter_delta"]["tiny"] <= 1e-5
    assert 0 <= saved["joint_max_logit_delta"]["tiny"] <= 1e-5


@pytest.mark.slow
def test_every_method_and_phase_is_timed_on_the_same_work(result):
    _, saved = result
    rows = saved["rows"]
    assert [(r["phase"], r["method"].split(":")[0].split(",")[0]) for r in rows] == [
        ("train", "lorauq"),
        ("train", "HF Trainer"),
        ("evaluate", "lorauq"),
        ("evaluate", "authors"),
        ("ensemble train", "lorauq joint"),
        ("ensemble train", "lorauq"),
        ("ensemble evaluate", "lorauq joint"),
        ("ensemble evaluate", "lorauq"),
    ]
    for phase in ("train", "evaluate", "ensemble train", "ensemble evaluate"):
        ours, theirs = (r for r in rows if r["phase"] == phase)
        # Same questions and tokens: tokens/question agree, so the ratio compares like with like.
        assert ours["tokens_per_s"] / ours["questions_per_s"] == pytest.approx(
            theirs["tokens_per_s"] / theirs["questions_per_s"]
        )
        # FLOP/s and the fraction of the measured peak are consistent with each other.
        assert ours["gflops"] / ours["fraction_of_peak"] == pytest.approx(saved["peak_gflops"])
    assert saved["train_vs_plain"] == pytest.approx(
        rows[0]["tokens_per_s"] / rows[1]["tokens_per_s"]
    )
    assert saved["eval_vs_authors"] == pytest.approx(
        rows[2]["tokens_per_s"] / rows[3]["tokens_per_s"]
    )
    assert saved["joint_vs_separate"] == pytest.approx(
        rows[4]["tokens_per_s"] / rows[5]["tokens_per_s"]
    )
    assert saved["joint_eval_vs_separate"] == pytest.approx(
        rows[6]["tokens_per_s"] / rows[7]["tokens_per_s"]
    )
    # the ensemble rows count every member's questions
    assert rows[4]["questions_per_s"] * rows[4]["seconds"] == pytest.approx(
        2 * rows[0]["questions_per_s"] * rows[0]["seconds"]
    )


def test_made_up_questions_are_valid_and_seeded():
    frame = run.made_up_questions(20, seed=3)
    assert frame["id"].is_unique and len(frame) == 20
    assert frame["choices"].map(len).eq(5).all()
    assert frame["answer"].between(0, 4).all()
    assert frame.equals(run.made_up_questions(20, seed=3))
