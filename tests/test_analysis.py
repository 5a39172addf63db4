"""Tests of lorauq.analysis against the hand-built logits table of ``known_logits``, whose
probabilities are known (that module says how it is built)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from known_logits import EPOCHS, IN_DOMAIN_PEAKS, KNOWN, MEMBERS, OTHER_MASS, build_logits

from lorauq import analysis
from lorauq.errors import StoreError
from lorauq.store import normalize_logits_frame, read_logits, write_logits
from lorauq.uncertainty import aurc

RTOL, ATOL = 1e-5, 1e-7


@pytest.fixture(scope="module")
def logits() -> pd.DataFrame:
    return build_logits()


@pytest.fixture(scope="module")
def metrics(logits: pd.DataFrame) -> pd.DataFrame:
    return analysis.metrics_table(logits)


# --------------------------------------------------------------------------- direct numpy


def entropy(p: np.ndarray) -> np.ndarray:
    return -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=-1)


def direct_metrics(p_ens: np.ndarray, answers: np.ndarray) -> dict[str, float]:
    """Textbook formulas, written out here independently of lorauq.uncertainty."""
    p_bar = p_ens.mean(axis=0)
    labelled = answers >= 0
    p, y = p_bar[labelled], answers[labelled]
    confidence, correct = p.max(axis=1), p.argmax(axis=1) == y
    bins = np.clip(np.ceil(confidence * 10).astype(int) - 1, 0, 9)
    ece = sum(
        (bins == b).mean() * abs(correct[bins == b].mean() - confidence[bins == b].mean())
        for b in np.unique(bins)
    )
    return {
        "accuracy": correct.mean(),
        "nll": -np.log(p[np.arange(len(y)), y]).mean(),
        "ece": ece,
        "brier": ((p - np.eye(p.shape[1])[y]) ** 2).sum(axis=1).mean(),
        "predictive_entropy": entropy(p_bar).mean(),
        "expected_entropy": entropy(p_ens).mean(),
        "mutual_information": (entropy(p_bar) - entropy(p_ens).mean(axis=0)).mean(),
        "aurc": aurc(confidence, correct),
    }


def values(table: pd.DataFrame, **where: object) -> dict[str, float]:
    """``metric -> value`` of the rows of ``table`` matching ``where``."""
    rows = table
    for column, wanted in where.items():
        rows = rows[rows[column] == wanted]
    assert rows["metric"].is_unique, where
    return dict(zip(rows["metric"], rows["value"], strict=True))


def assert_close(actual: dict[str, float], expected: dict[str, float]) -> None:
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        assert actual[key] == pytest.approx(value, rel=RTOL, abs=ATOL), key


# --------------------------------------------------------------------------- cube


def test_cube_holds_the_known_probabilities(logits: pd.DataFrame) -> None:
    for name, (answers, _, probs) in KNOWN.items():
        cube = analysis.probability_cube(logits, name)
        assert cube.probs.shape == probs.shape
        np.testing.assert_allclose(cube.probs, probs, rtol=RTOL, atol=ATOL)
        np.testing.assert_array_equal(cube.answers, answers)
        assert cube.members.tolist() == list(MEMBERS)
        assert cube.epochs.tolist() == list(EPOCHS)
        assert cube.ids.tolist() == [f"{name}-{q}" for q in range(len(answers))]
        assert cube.subjects[1] == f"{name}-subject1" and cube.groups[1] == "stem"


def test_cube_with_other_appends_the_other_mass(logits: pd.DataFrame) -> None:
    cube = analysis.probability_cube(logits, "near", readout="with_other")
    probs = KNOWN["near"][2]
    assert cube.probs.shape == (*probs.shape[:3], probs.shape[3] + 1)
    np.testing.assert_allclose(cube.probs[..., :-1], (1 - OTHER_MASS) * probs, rtol=RTOL)
    np.testing.assert_allclose(cube.probs[..., -1], OTHER_MASS, rtol=1e-4)


def test_cube_ignores_row_order(logits: pd.DataFrame) -> None:
    shuffled = logits.sample(frac=1.0, random_state=0)
    np.testing.assert_array_equal(
        analysis.probability_cube(shuffled, "in_domain").probs,
        analysis.probability_cube(logits, "in_domain").probs,
    )


def test_cube_survives_the_parquet_store(logits: pd.DataFrame, tmp_path) -> None:
    for member in MEMBERS:
        write_logits(logits[logits["member"] == member], tmp_path / f"member-{member}.parquet")
    stored = analysis.probability_cube(read_logits(tmp_path), "far")
    np.testing.assert_array_equal(stored.probs, analysis.probability_cube(logits, "far").probs)


@pytest.mark.parametrize(
    ("drop", "message"),
    [
        # one question missing for one member at one epoch
        (lambda t: (t.member == 1) & (t.epoch == 2) & (t.id == "in_domain-3"), "member 1 epoch 2"),
        # a member never evaluated at an epoch
        (lambda t: (t.member == 2) & (t.epoch == 1), "member 2 epoch 1"),
    ],
)
def test_mismatched_members_raise(logits: pd.DataFrame, drop, message: str) -> None:
    broken = logits[~drop(logits) | (logits.eval_set != "in_domain")]
    with pytest.raises(StoreError, match=message) as error:
        analysis.probability_cube(broken, "in_domain")
    assert "'in_domain'" in str(error.value)
    with pytest.raises(StoreError, match=message):
        analysis.metrics_table(broken)


def test_duplicate_and_inconsistent_rows_raise(logits: pd.DataFrame) -> None:
    near = logits[logits.eval_set == "near"]
    with pytest.raises(StoreError, match="more than once"):
        analysis.probability_cube(pd.concat([near, near.iloc[:1]]), "near")
    relabelled = near.copy()
    relabelled.loc[(relabelled.member == 2) & (relabelled.id == "near-0"), "answer"] = 1
    with pytest.raises(StoreError, match=r"member 2 .*'near-0'"):
        analysis.probability_cube(relabelled, "near")
    with pytest.raises(StoreError, match="no rows for eval set 'nope'"):
        analysis.probability_cube(logits, "nope")


# --------------------------------------------------------------------------- metrics


def test_metrics_table_shape(metrics: pd.DataFrame) -> None:
    assert list(metrics.columns) == [
        "eval_set",
        "epoch",
        "estimator",
        "ensemble_size",
        "member",
        "metric",
        "value",
    ]
    # per eval set × epoch: 3 ensemble sizes + 3 members + the member mean, 8 metrics each
    assert len(metrics) == len(KNOWN) * len(EPOCHS) * (3 + 3 + 1) * 8
    assert set(metrics["metric"]) == set(analysis.METRICS)
    assert (metrics.loc[metrics.estimator != "member", "member"] == -1).all()
    assert sorted(metrics.loc[metrics.estimator == "member", "member"].unique()) == [0, 1, 2]


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_ensemble_rows_equal_direct_numpy(metrics: pd.DataFrame, name: str) -> None:
    answers, _, probs = KNOWN[name]
    for e, epoch in enumerate(EPOCHS):
        for size in (1, 2, 3):
            actual = values(
                metrics, eval_set=name, epoch=epoch, estimator="ensemble", ensemble_size=size
            )
            assert_close(actual, direct_metrics(probs[:size, e], answers))


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_member_rows_and_member_mean(metrics: pd.DataFrame, name: str) -> None:
    answers, _, probs = KNOWN[name]
    for e, epoch in enumerate(EPOCHS):
        singles = [values(metrics, eval_set=name, epoch=epoch, member=m) for m in MEMBERS]
        for m, single in enumerate(singles):
            assert_close(single, direct_metrics(probs[m : m + 1, e], answers))
        mean = values(metrics, eval_set=name, epoch=epoch, estimator="member_mean")
        assert_close(mean, {k: np.mean([s[k] for s in singles]) for k in singles[0]})


def test_mutual_information_is_zero_at_epoch_0(metrics: pd.DataFrame) -> None:
    at_base = metrics[metrics.epoch == 0].pivot_table(
        index=["eval_set", "estimator", "ensemble_size", "member"], columns="metric", values="value"
    )
    assert (at_base["mutual_information"] == 0).all()
    np.testing.assert_allclose(at_base["expected_entropy"], at_base["predictive_entropy"])
    later = metrics[(metrics.epoch == 2) & (metrics.ensemble_size == 3)]
    assert (later.loc[later.metric == "mutual_information", "value"] > 1e-3).all()


def test_unlabelled_questions_only_count_for_uncertainty(metrics: pd.DataFrame) -> None:
    full = values(metrics, eval_set="near", epoch=1, estimator="ensemble", ensemble_size=3)
    p_bar = KNOWN["near"][2][:, 1].mean(axis=0)
    assert full["accuracy"] == pytest.approx(1.0)  # the 4 labelled ones are all right
    assert full["predictive_entropy"] == pytest.approx(entropy(p_bar).mean(), rel=RTOL)
    assert full["predictive_entropy"] != pytest.approx(entropy(p_bar[:4]).mean(), rel=RTOL)


def test_ensemble_sizes_argument(logits: pd.DataFrame) -> None:
    table = analysis.metrics_table(logits, ensemble_sizes=[2])
    assert set(table.loc[table.estimator == "ensemble", "ensemble_size"]) == {2}
    with pytest.raises(StoreError, match="ensemble size"):
        analysis.metrics_table(logits, ensemble_sizes=[4])


def test_with_other_readout_changes_entropy_not_ranking(logits: pd.DataFrame) -> None:
    table = analysis.metrics_table(logits, readout="with_other", ensemble_sizes=[3])
    cube = analysis.probability_cube(logits, "far", readout="with_other")
    answers = KNOWN["far"][0]
    assert_close(
        values(table, eval_set="far", epoch=2, estimator="ensemble"),
        direct_metrics(cube.probs[:, 2], answers),
    )


# --------------------------------------------------------------------------- headline


def test_headline_matches_metrics_table(logits: pd.DataFrame, metrics: pd.DataFrame) -> None:
    headline = analysis.headline_metrics(logits)
    json.dumps(headline)  # plain floats only
    for stage, epoch in (("prior", 0), ("final", 2)):
        assert sorted(headline[stage]) == sorted(KNOWN)
        for name, numbers in headline[stage].items():
            assert all(type(v) is float for v in numbers.values())
            expected = values(
                metrics, eval_set=name, epoch=epoch, estimator="ensemble", ensemble_size=3
            )
            # Every row leaves OTHER_MASS outside the letters (float32 logsumexp: 1e-6).
            expected |= {"letter_mass": 1 - OTHER_MASS, "letter_mass_p05": 1 - OTHER_MASS}
            assert numbers == pytest.approx(expected, rel=1e-6)
    assert sorted(headline["ood_auroc"]["final"]) == ["far", "near"]
    assert headline["ood_auroc"]["final"]["far"] == {
        "mutual_information": 1.0,
        "predictive_entropy": 1.0,
        "max_prob": 1.0,
    }
    assert "ood_auroc" not in analysis.headline_metrics(logits, in_domain="absent")


# --------------------------------------------------------------------------- per question


def test_question_table(logits: pd.DataFrame) -> None:
    table = analysis.question_table(logits)
    assert len(table) == len(EPOCHS) * sum(len(known[0]) for known in KNOWN.values())
    assert not table.duplicated(["eval_set", "epoch", "id"]).any()
    unlabelled = table[table.answer == -1]
    assert len(unlabelled) == len(EPOCHS) and unlabelled["correct"].isna().all()
    final = table[(table.eval_set == "in_domain") & (table.epoch == 2)]
    assert final["prediction"].tolist() == IN_DOMAIN_PEAKS[2]
    assert final["correct"].tolist() == [False, True, True, True, False, True]
    np.testing.assert_allclose(final["confidence"], 0.72, rtol=RTOL)
    p_ens = KNOWN["in_domain"][2][:, 2]
    np.testing.assert_allclose(final["predictive_entropy"], entropy(p_ens.mean(0)), rtol=RTOL)
    np.testing.assert_allclose(final["expected_entropy"], entropy(p_ens).mean(0), rtol=RTOL)
    assert (table.loc[table.epoch == 0, "mutual_information"] == 0).all()


def test_subject_table(logits: pd.DataFrame) -> None:
    table = analysis.subject_table(logits, epoch=2)
    row = table.set_index(["eval_set", "subject"])
    # in_domain at epoch 2: right = [F, T, T, T, F, T]; subject0 = q0 q2 q4, subject1 = q1 q3 q5
    assert row.loc[("in_domain", "in_domain-subject0"), "accuracy"] == pytest.approx(1 / 3)
    assert row.loc[("in_domain", "in_domain-subject1"), "accuracy"] == pytest.approx(1.0)
    # near: subject0 = q0 q2 q4 (q4 unlabelled): 3 questions, accuracy over 2
    assert row.loc[("near", "near-subject0"), "count"] == 3
    assert row.loc[("near", "near-subject0"), "accuracy"] == pytest.approx(1.0)
    assert table["count"].sum() == sum(len(known[0]) for known in KNOWN.values())


# --------------------------------------------------------------------------- transitions


def counts_of(table: pd.DataFrame, **where: object) -> dict[str, int]:
    rows = table
    for column, wanted in where.items():
        rows = rows[rows[column] == wanted]
    return dict(zip(rows["transition"], rows["count"], strict=True))


def test_transitions_hand_case(logits: pd.DataFrame) -> None:
    table = analysis.transitions(logits, 0, 2)
    assert counts_of(table, eval_set="in_domain") == {
        "stayed_right": 2,  # q1, q2
        "learned": 2,  # q3, q5
        "forgotten": 1,  # q0: right at epoch 0, wrong at epoch 2
        "stayed_wrong": 1,  # q4
    }
    # near: q3 learned, q0–q2 stayed right, the unlabelled q4 is not counted
    assert counts_of(table, eval_set="near") == {
        "stayed_right": 3,
        "learned": 1,
        "forgotten": 0,
        "stayed_wrong": 0,
    }
    assert (table[["epoch_from", "epoch_to"]] == [0, 2]).all().all()
    np.testing.assert_allclose(table.groupby("eval_set")["fraction"].sum(), 1.0)


def test_transitions_by_subject_add_up(logits: pd.DataFrame) -> None:
    per_subject = analysis.transitions(logits, 0, 2, by="subject")
    per_set = analysis.transitions(logits, 0, 2)
    summed = per_subject.groupby(["eval_set", "transition"])["count"].sum()
    assert summed.to_dict() == per_set.set_index(["eval_set", "transition"])["count"].to_dict()
    assert counts_of(per_subject, subject="in_domain-subject0")["forgotten"] == 1
    np.testing.assert_allclose(per_subject.groupby("subject")["fraction"].sum(), 1.0)


def test_transitions_over_epochs(logits: pd.DataFrame) -> None:
    table = analysis.transitions_over_epochs(logits)
    assert sorted(table["epoch"].unique()) == [1, 2]
    assert (table["reference_epoch"] == 0).all()
    direct = analysis.transitions(logits, 0, 2)
    assert counts_of(table, eval_set="in_domain", epoch=2) == counts_of(
        direct, eval_set="in_domain"
    )
    assert counts_of(table, eval_set="in_domain", epoch=1) == {
        "stayed_right": 3,
        "learned": 1,
        "forgotten": 0,
        "stayed_wrong": 2,
    }
    with pytest.raises(StoreError, match="no epoch 7"):
        analysis.transitions_over_epochs(logits, reference_epoch=7)


# --------------------------------------------------------------------------- OOD


def test_ood_table(logits: pd.DataFrame) -> None:
    table = analysis.ood_table(logits)
    assert list(table.columns) == ["eval_set", "epoch", "score", "auroc"]
    assert sorted(table["eval_set"].unique()) == ["far", "near"]
    far = table[(table.eval_set == "far") & (table.epoch > 0)]
    assert len(far) == 6 and (far["auroc"] == 1.0).all()
    # identical members at epoch 0: every MI is 0, so MI cannot separate anything
    at_base = table[(table.epoch == 0) & (table.score == "mutual_information")]
    assert (at_base["auroc"] == 0.5).all()
    with pytest.raises(StoreError, match="'absent'"):
        analysis.ood_table(logits, in_domain="absent")


def test_roc_points_area_equals_auroc(logits: pd.DataFrame) -> None:
    points = analysis.roc_points(logits, epoch=1)
    assert (points["epoch"] == 1).all()
    ood = analysis.ood_table(logits).query("epoch == 1").set_index(["eval_set", "score"])
    for (name, score), curve in points.groupby(["eval_set", "score"]):
        fpr, tpr = curve["fpr"].to_numpy(), curve["tpr"].to_numpy()
        assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
        assert (np.diff(fpr) >= 0).all() and (np.diff(tpr) >= 0).all()
        area = np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)
        assert area == pytest.approx(ood.loc[(name, score), "auroc"])
        assert (curve["auroc"] == ood.loc[(name, score), "auroc"]).all()
    assert set(analysis.roc_points(logits)["epoch"]) == {2}


# --------------------------------------------------------------------------- calibration


def test_reliability_table_reproduces_ece(logits: pd.DataFrame, metrics: pd.DataFrame) -> None:
    table = analysis.reliability_table(logits, epoch=1)
    assert len(table) == len(KNOWN) * 10
    for name, bins in table.groupby("eval_set"):
        labelled = (KNOWN[name][0] >= 0).sum()
        assert bins["count"].sum() == labelled
        filled = bins[bins["count"] > 0]
        ece = (filled["count"] / labelled * (filled["accuracy"] - filled["confidence"]).abs()).sum()
        expected = values(metrics, eval_set=name, epoch=1, estimator="ensemble", ensemble_size=3)
        assert ece == pytest.approx(expected["ece"], rel=RTOL)
        assert bins.loc[bins["count"] == 0, "accuracy"].isna().all()
    with pytest.raises(StoreError, match="no epoch 9"):
        analysis.reliability_table(logits, epoch=9)


def test_risk_coverage_table(logits: pd.DataFrame, metrics: pd.DataFrame) -> None:
    table = analysis.risk_coverage_table(logits, epoch=2)
    for name, curve in table.groupby("eval_set"):
        expected = values(metrics, eval_set=name, epoch=2, estimator="ensemble", ensemble_size=3)
        assert len(curve) == (KNOWN[name][0] >= 0).sum()
        assert curve["coverage"].iloc[-1] == pytest.approx(1.0)
        assert curve["risk"].iloc[-1] == pytest.approx(1 - expected["accuracy"])
        assert curve["risk"].mean() == pytest.approx(expected["aurc"])


# --------------------------------------------------------------------------- agreement


def test_agreement_with_itself(logits: pd.DataFrame) -> None:
    table = analysis.agreement_table(logits, logits)
    assert list(table.columns) == [
        "eval_set",
        "epoch",
        "reference_epoch",
        "reference",
        "estimator",
        "ensemble_size",
        "metric",
        "value",
    ]
    assert (table["reference_epoch"] == table["epoch"]).all()
    assert (table["reference"] == "members 0–2 (M=3)").all()
    sizes = table.groupby("estimator")["ensemble_size"].unique()
    assert {name: size.tolist() for name, size in sizes.items()} == {
        "ensemble": [3],
        "member_mean": [1],
    }
    ensemble = table[table.estimator == "ensemble"].set_index(["eval_set", "epoch", "metric"])
    assert (ensemble.xs("agreement", level="metric")["value"] == 1.0).all()
    np.testing.assert_allclose(ensemble.xs("total_variation", level="metric")["value"], 0.0)
    assert len(table) == len(KNOWN) * len(EPOCHS) * 2 * 2


def test_agreement_against_reference_final_epoch(logits: pd.DataFrame) -> None:
    """Epochs the reference lacks are compared with the reference's final epoch."""
    table = analysis.agreement_table(logits, logits[logits.epoch <= 1])
    late = table[table.epoch == 2]
    assert (late["reference_epoch"] == 1).all()
    probs = KNOWN["in_domain"][2]
    target = probs[:, 1].mean(axis=0)

    def tv(p: np.ndarray) -> float:
        return 0.5 * np.abs(p - target).sum(axis=-1).mean()

    def agree(p: np.ndarray) -> float:
        return (p.argmax(-1) == target.argmax(-1)).mean()

    got = values(late, eval_set="in_domain", estimator="ensemble")
    assert got["agreement"] == pytest.approx(agree(probs[:, 2].mean(0)))  # 4 of 6
    assert got["agreement"] == pytest.approx(4 / 6)
    assert got["total_variation"] == pytest.approx(tv(probs[:, 2].mean(0)), rel=RTOL)
    got = values(late, eval_set="in_domain", estimator="member_mean")
    assert got["total_variation"] == pytest.approx(np.mean([tv(p) for p in probs[:, 2]]), rel=RTOL)
    assert got["agreement"] == pytest.approx(np.mean([agree(p) for p in probs[:, 2]]))


def test_agreement_needs_a_shared_eval_set(logits: pd.DataFrame) -> None:
    only_far = logits[logits.eval_set == "far"]
    with pytest.raises(StoreError, match="shares no eval set"):
        analysis.agreement_table(logits[logits.eval_set == "near"], only_far)
    fewer = only_far[only_far.id != "far-0"]
    with pytest.raises(StoreError, match="other questions"):
        analysis.agreement_table(only_far, fewer)


def test_half_agreement_by_hand(logits: pd.DataFrame) -> None:
    """Member 0 against the ensemble of members 1 and 2, worked out on paper.

    in_domain after epoch 0: all members peak on the same letter, member 0 with 0.67, the
    reference's mean with (0.72 + 0.77) / 2 = 0.745; the other 4 letters share the rest, so
    TV = ½ (0.075 + 4 × 0.075 / 4) = 0.075 and agreement 1. far after epoch 0: member 0 peaks
    on letter q (0.45, others 0.55/3); the reference mean is (0.2+0.65/3)/2 on q, 0.30833 on
    q+1, 0.275 on q+2, 0.20833 on q+3: argmax q+1 ≠ q, so agreement 0 and TV 0.241667.
    """
    table = analysis.half_agreement_table(logits)
    assert (table["reference"] == "members 1, 2 (M=2)").all()
    assert (table["ensemble_size"] == 1).all()  # ⌊3/2⌋ = 1 member against the other 2
    expected = {"in_domain": (1.0, 0.075), "far": (0.0, 0.24166667)}
    for eval_set, (agree, tv) in expected.items():
        for epoch in EPOCHS:
            got = values(table, eval_set=eval_set, epoch=epoch, estimator="ensemble")
            if epoch == 0:  # every member is the base model
                assert got == pytest.approx({"agreement": 1.0, "total_variation": 0.0}, abs=1e-7)
            else:
                assert got == pytest.approx({"agreement": agree, "total_variation": tv}, rel=1e-5)
            # One compared member: its mean is itself.
            single = values(table, eval_set=eval_set, epoch=epoch, estimator="member_mean")
            assert single == pytest.approx(got, rel=1e-12)


def test_split_members_halves_and_refuses_one_member(logits: pd.DataFrame) -> None:
    four = pd.concat([logits, logits[logits.member == 2].assign(member=3)], ignore_index=True)
    first, second = analysis.split_members(four)
    assert sorted(first["member"].unique()) == [0, 1]
    assert sorted(second["member"].unique()) == [2, 3]
    table = analysis.half_agreement_table(four)
    assert (table["reference"] == "members 2, 3 (M=2)").all()
    assert sorted(table["ensemble_size"].unique()) == [1, 2]
    with pytest.raises(StoreError, match="at least 2 members"):
        analysis.split_members(logits[logits.member == 0])


# --------------------------------------------------------------------------- letter mass


def mass_logits() -> pd.DataFrame:
    """2 members, epochs 0–1, 2 two-choice questions; letter probabilities given by hand.

    Logits are log p + c with ``logsumexp_vocab`` = c (c differs per row), so the letter mass
    is the sum of the given p. Epoch 0 (the prior, both members alike): masses 0.9 and 0.5.
    Epoch 1: q0 members 0.6 and 0.9 (ensemble 0.75); q1 members 0.1 and 0.3 (ensemble 0.2).
    """
    given = {
        (0, 0): [(0.6, 0.3), (0.25, 0.25)],
        (1, 0): [(0.6, 0.3), (0.25, 0.25)],
        (0, 1): [(0.5, 0.1), (0.05, 0.05)],
        (1, 1): [(0.7, 0.2), (0.2, 0.1)],
    }
    rows = []
    for (member, epoch), questions in given.items():
        for q, (p_a, p_b) in enumerate(questions):
            shift = 3.0 * q - member + 0.5 * epoch
            rows.append(
                {
                    "member": member,
                    "epoch": epoch,
                    "eval_set": "set",
                    "id": f"q{q}",
                    "subject": "s",
                    "group": "g",
                    "answer": 0,
                    "n_choices": 2,
                    "logit_a": np.log(p_a) + shift,
                    "logit_b": np.log(p_b) + shift,
                    "logsumexp_vocab": shift,
                }
            )
    return normalize_logits_frame(pd.DataFrame(rows))


def test_letter_mass_by_hand() -> None:
    table = analysis.letter_mass_table(mass_logits())
    assert list(table.columns) == ["eval_set", "epoch", "statistic", "value"]
    got = table.set_index(["epoch", "statistic"])["value"].to_dict()
    p05 = 0.2 + 0.05 * (0.75 - 0.2)  # numpy's linear interpolation between the two questions
    expected = {
        (0, "mean"): 0.7,
        (0, "median"): 0.7,
        (0, "p05"): 0.5 + 0.05 * 0.4,
        (1, "mean"): 0.475,
        (1, "median"): 0.475,
        (1, "p05"): p05,
    }
    assert got == pytest.approx(expected, rel=1e-6)
    for readout in ("renormalized", "with_other"):  # the mass does not depend on the read-out
        headline = analysis.headline_metrics(mass_logits(), readout=readout)
        assert headline["prior"]["set"]["letter_mass"] == pytest.approx(0.7, rel=1e-6)
        assert headline["final"]["set"]["letter_mass"] == pytest.approx(0.475, rel=1e-6)
        assert headline["final"]["set"]["letter_mass_p05"] == pytest.approx(p05, rel=1e-6)


def test_letter_mass_of_the_known_table(logits: pd.DataFrame) -> None:
    table = analysis.letter_mass_table(logits)
    assert len(table) == len(KNOWN) * len(EPOCHS) * len(analysis.LETTER_MASS_STATISTICS)
    np.testing.assert_allclose(table["value"], 1 - OTHER_MASS, rtol=1e-6)
