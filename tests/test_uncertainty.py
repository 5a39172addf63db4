"""lorauq.uncertainty against independent references (scipy, sklearn, torchmetrics, brute-force
loops) on random and adversarial inputs, plus hypothesis properties of the decomposition.

Largest deviations seen from each reference over many draws are printed by
``benchmarks/uncertainty_reference_deviation.py``; the tolerances here sit well above them.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.special import logsumexp, softmax
from scipy.stats import entropy as scipy_entropy
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score
from torchmetrics.functional.classification import multiclass_calibration_error

from lorauq import uncertainty as U
from lorauq.errors import DataError

HYP = settings(max_examples=150, deadline=None)


def random_probs(rng: np.random.Generator, shape: tuple[int, ...], alpha: float = 1.0):
    """Dirichlet rows; small alpha gives peaked, near-saturated rows like an LLM's."""
    return rng.dirichlet(np.full(shape[-1], alpha), size=shape[:-1])


def random_ensemble(rng: np.random.Generator, m: int, n: int, k: int) -> np.ndarray:
    alpha = rng.choice([0.05, 0.3, 1.0, 5.0])
    p = random_probs(rng, (m, n, k), alpha)
    # adversarial: some exact zeros and one-hot rows, renormalised
    p[rng.random(p.shape) < 0.1] = 0.0
    onehot = rng.random((m, n)) < 0.05
    p[onehot] = np.eye(k)[rng.integers(0, k, onehot.sum())]
    dead = p.sum(-1) == 0
    p[dead] = 1.0 / k
    return p / p.sum(-1, keepdims=True)


# --------------------------------------------------------------------------------------------
# entropies against scipy
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_entropies_match_scipy(seed):
    rng = np.random.default_rng(seed)
    m, n, k = int(rng.integers(1, 8)), 200, int(rng.integers(2, 11))
    p = random_ensemble(rng, m, n, k)
    pe_ref = scipy_entropy(p.mean(0), axis=-1)
    ee_ref = scipy_entropy(p, axis=-1).mean(0)
    np.testing.assert_allclose(U.predictive_entropy(p), pe_ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(U.expected_entropy(p), ee_ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        U.mutual_information(p), np.maximum(pe_ref - ee_ref, 0), rtol=0, atol=1e-12
    )
    np.testing.assert_allclose(U.entropy(p[0]), scipy_entropy(p[0], axis=-1), atol=1e-12)
    np.testing.assert_allclose(U.ensemble_mean(p), p.mean(0), atol=1e-15)


def test_entropy_hand_values():
    p = np.array([[[1.0, 0.0], [0.5, 0.5]], [[0.0, 1.0], [0.5, 0.5]]])
    np.testing.assert_allclose(U.predictive_entropy(p), [math.log(2), math.log(2)], atol=1e-15)
    np.testing.assert_allclose(U.expected_entropy(p), [0.0, math.log(2)], atol=1e-15)
    np.testing.assert_allclose(U.mutual_information(p), [math.log(2), 0.0], atol=1e-15)


# --------------------------------------------------------------------------------------------
# labelled metrics against sklearn / torchmetrics / hand values
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_nll_matches_sklearn_log_loss(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 11))
    p = random_probs(rng, (300, k), alpha=float(rng.choice([0.3, 1.0, 3.0])))
    y = rng.integers(0, k, 300)
    eps = np.finfo(np.float64).eps
    p_true = p[np.arange(300), y]
    assert p_true.min() >= eps and p_true.max() <= 1 - eps  # sklearn's clip inactive
    ref = log_loss(y, p, labels=np.arange(k))
    assert U.nll(p, y) == pytest.approx(ref, rel=1e-12, abs=1e-13)


def test_nll_floor_only_touches_zeros():
    p = np.array([[1.0, 0.0], [0.25, 0.75]])
    got = U.nll(p, np.array([1, 0]))
    assert np.isfinite(got)
    assert got == pytest.approx((-math.log(U.NLL_FLOOR) + math.log(4)) / 2, rel=1e-15)
    assert U.nll(np.array([[1e-300, 1.0]]), np.array([0])) == pytest.approx(300 * math.log(10))


@pytest.mark.parametrize("k", [2, 3, 5, 10])
def test_brier_matches_sklearn(k):
    rng = np.random.default_rng(k)
    p = random_probs(rng, (300, k), alpha=0.5)
    y = rng.integers(0, k, 300)
    ours = U.brier(p, y)
    ref = brier_score_loss(y, p, labels=np.arange(k), scale_by_half=False)
    assert ours == pytest.approx(ref, rel=1e-12, abs=1e-14)
    # sklearn's default halves only the K = 2 case (classic binary Brier)
    auto = brier_score_loss(y, p, labels=np.arange(k))
    assert ours == pytest.approx(auto * (2 if k == 2 else 1), rel=1e-12, abs=1e-14)
    # binary per-class identity: the multiclass Brier is the sum of K one-vs-rest binary Briers
    per_class = sum(brier_score_loss(y == c, p[:, c], pos_label=True) for c in range(k))
    assert ours == pytest.approx(per_class, rel=1e-12, abs=1e-14)


def test_accuracy_and_ties():
    p = np.array([[0.5, 0.5], [0.2, 0.8], [0.6, 0.4]])
    assert U.accuracy(p, np.array([0, 1, 1])) == pytest.approx(2 / 3)
    assert U.accuracy(p, np.array([1, 1, 1])) == pytest.approx(1 / 3)  # tie -> index 0


def _off_edges(conf: np.ndarray, n_bins_list=(10, 15), margin=1e-6) -> np.ndarray:
    """Mask of confidences at least ``margin`` from every bin edge (incl. 1.0)."""
    keep = np.ones(conf.shape, dtype=bool)
    for n_bins in n_bins_list:
        d = np.abs(conf[:, None] - np.linspace(0, 1, n_bins + 1)[None, :]).min(axis=1)
        keep &= d > margin
    return keep


@pytest.mark.parametrize("n_bins", [10, 15])
@pytest.mark.parametrize("seed", range(4))
def test_ece_matches_torchmetrics_off_edges(seed, n_bins):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 11))
    p = random_probs(rng, (2000, k), alpha=float(rng.choice([0.1, 0.5, 2.0])))
    # calibrated-ish labels: draw from the probs, then corrupt some
    y = np.array([rng.choice(k, p=row) for row in p])
    noisy = rng.random(len(y)) < 0.2
    y[noisy] = rng.integers(0, k, noisy.sum())
    keep = _off_edges(p.max(1))
    p, y = p[keep], y[keep]
    assert len(y) > 1000
    ref = multiclass_calibration_error(
        torch.from_numpy(p), torch.from_numpy(y), num_classes=k, n_bins=n_bins, norm="l1"
    ).item()
    assert U.ece(p, y, n_bins=n_bins) == pytest.approx(ref, abs=2e-6)


def test_ece_matches_bruteforce_loop_including_edges():
    """Guo et al.'s definition written as a loop; confidences placed on bin edges too."""
    rng = np.random.default_rng(7)
    for n_bins in (1, 3, 10, 15):
        k = 4
        conf = rng.choice(np.concatenate([np.linspace(0.25, 1, 16), rng.uniform(0.25, 1, 16)]), 300)
        top = rng.integers(0, k, 300)
        p = np.tile(((1 - conf) / (k - 1))[:, None], (1, k))
        p[np.arange(300), top] = conf
        # ties in the max (conf 0.25) are resolved to index 0 by argmax on both sides
        y = np.where(rng.random(300) < conf, top, rng.integers(0, k, 300))
        conf_used, pred = p.max(1), p.argmax(1)
        edges = np.linspace(0, 1, n_bins + 1)
        ref = 0.0
        for b in range(n_bins):
            lo, hi = edges[b], edges[b + 1]
            inb = (conf_used > lo) & (conf_used <= hi)
            if b == 0:
                inb |= conf_used == 0
            if inb.any():
                ref += inb.mean() * abs((pred[inb] == y[inb]).mean() - conf_used[inb].mean())
        assert U.ece(p, y, n_bins=n_bins) == pytest.approx(ref, abs=1e-14)


def test_ece_confidence_one_goes_to_last_bin():
    # conf 1.0 right, conf 1.0 wrong, conf .95 right, conf .55 wrong; 10 bins:
    # bin (0.9, 1]: conf (1 + 1 + .95)/3, acc 2/3, weight 3/4; bin (0.5, 0.6]: .55 vs 0, w 1/4
    p = np.array([[1.0, 0, 0], [1.0, 0, 0], [0.95, 0.05, 0], [0.55, 0.45, 0]])
    y = np.array([0, 1, 0, 1])
    expected = 0.75 * abs(2 / 3 - 2.95 / 3) + 0.25 * 0.55
    assert expected == pytest.approx(0.375)
    assert U.ece(p, y, n_bins=10) == pytest.approx(expected, abs=1e-15)
    count, conf, acc = U.calibration_bins(p, y, n_bins=10)
    assert count.tolist() == [0, 0, 0, 0, 0, 1, 0, 0, 0, 3]
    assert conf[9] == pytest.approx(2.95 / 3) and acc[9] == pytest.approx(2 / 3)
    # right-closed bins: conf exactly 0.5 belongs to (0.4, 0.5]
    count, _, _ = U.calibration_bins(np.array([[0.5, 0.5]]), np.array([0]), n_bins=10)
    assert count.argmax() == 4


def test_ece_perfect_and_worst():
    p = np.eye(3)[[0, 1, 2, 0]]
    assert U.ece(p, np.array([0, 1, 2, 0])) == 0.0
    assert U.ece(p, np.array([1, 2, 0, 1])) == pytest.approx(1.0)


# --------------------------------------------------------------------------------------------
# AUROC, risk-coverage, AURC
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_auroc_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 500))
    pos = rng.random(n) < rng.uniform(0.1, 0.9)
    pos[0], pos[1] = True, False
    scores = rng.normal(size=n) + pos * rng.uniform(0, 2)
    if seed % 2:
        scores = np.round(scores, 1)  # heavy ties
    assert U.auroc(scores, pos) == pytest.approx(roc_auc_score(pos, scores), abs=1e-12)
    assert U.auroc(scores, pos.astype(int)) == pytest.approx(roc_auc_score(pos, scores), abs=1e-12)


def test_auroc_edge_cases():
    assert U.auroc([0.0, 0.0, 0.0], [True, False, True]) == 0.5
    assert U.auroc([1, 2, 3, 4], [0, 0, 1, 1]) == 1.0
    assert U.auroc([1, 2, 3, 4], [1, 1, 0, 0]) == 0.0
    with pytest.raises(ValueError, match="both classes"):
        U.auroc([0.1, 0.2], [True, True])
    with pytest.raises(ValueError, match="NaN"):
        U.auroc([0.1, np.nan], [True, False])


def _bruteforce_risk(conf, correct):
    """Average, over every order consistent with descending confidence, of the error rates."""
    n = len(conf)
    curves = []
    for perm in itertools.permutations(range(n)):
        c = conf[list(perm)]
        if np.all(c[:-1] >= c[1:]):
            errs = 0
            curve = []
            for k, i in enumerate(perm, start=1):
                errs += not correct[i]
                curve.append(errs / k)
            curves.append(curve)
    return np.arange(1, n + 1) / n, np.mean(curves, axis=0)


def test_risk_coverage_matches_bruteforce():
    rng = np.random.default_rng(3)
    for trial in range(60):
        n = int(rng.integers(1, 7))
        conf = rng.integers(0, 3, n) / 2 if trial % 2 else rng.random(n)  # ties on odd trials
        correct = rng.random(n) < 0.6
        cov, risk = U.risk_coverage(conf, correct)
        cov_ref, risk_ref = _bruteforce_risk(conf, correct)
        np.testing.assert_allclose(cov, cov_ref, atol=1e-15)
        np.testing.assert_allclose(risk, risk_ref, atol=1e-12)
        assert U.aurc(conf, correct) == pytest.approx(risk_ref.mean(), abs=1e-12)


def test_risk_coverage_plain_loop_distinct():
    rng = np.random.default_rng(4)
    conf = rng.random(500)
    correct = rng.random(500) < conf
    order = sorted(range(500), key=lambda i: -conf[i])
    errs, ref = 0, []
    for k, i in enumerate(order, start=1):
        errs += not correct[i]
        ref.append(errs / k)
    cov, risk = U.risk_coverage(conf, correct)
    np.testing.assert_allclose(risk, ref, atol=1e-15)
    assert cov[-1] == 1.0 and risk[-1] == pytest.approx(1 - correct.mean())


def test_aurc_perfect_ranking_equals_oracle_and_order_invariance():
    rng = np.random.default_rng(5)
    for _ in range(20):
        n = int(rng.integers(1, 300))
        correct = rng.random(n) < rng.uniform(0, 1)
        conf = correct + rng.uniform(0, 0.5, n)  # every correct answer above every wrong one
        assert U.aurc(conf, correct) == pytest.approx(U.oracle_aurc(correct), abs=1e-14)
        assert abs(U.eaurc(conf, correct)) < 1e-14
        shuffled_conf = rng.permutation(np.round(rng.random(n), 1))
        perm = rng.permutation(n)
        assert U.aurc(shuffled_conf, correct) == pytest.approx(
            U.aurc(shuffled_conf[perm], correct[perm]), abs=1e-12
        )
        assert U.eaurc(shuffled_conf, correct) >= -1e-12
    # hand value: 2 of 4 wrong -> oracle risks 0, 0, 1/3, 1/2
    assert U.oracle_aurc([1, 1, 0, 0]) == pytest.approx((1 / 3 + 1 / 2) / 4)
    # worst ranking: errors first
    assert U.aurc([0.9, 0.8, 0.1, 0.0], [0, 0, 1, 1]) == pytest.approx((1 + 1 + 2 / 3 + 1 / 2) / 4)


# --------------------------------------------------------------------------------------------
# agreement and total variation
# --------------------------------------------------------------------------------------------


def test_agreement_and_total_variation():
    rng = np.random.default_rng(6)
    a = random_probs(rng, (200, 5), alpha=0.5)
    b = random_probs(rng, (200, 5), alpha=0.5)
    tv_loop = np.mean(
        [
            0.5 * sum(abs(x - z) for x, z in zip(ra, rb, strict=True))
            for ra, rb in zip(a, b, strict=True)
        ]
    )
    assert U.total_variation(a, b) == pytest.approx(tv_loop, abs=1e-14)
    assert U.total_variation(a, b) == pytest.approx(U.total_variation(b, a), abs=1e-15)
    assert U.total_variation(a, a) == 0.0
    assert U.agreement(a, a) == 1.0
    assert U.agreement(a, b) == pytest.approx(np.mean(a.argmax(1) == b.argmax(1)))
    assert U.total_variation(np.eye(3), np.eye(3)[[1, 2, 0]]) == 1.0
    with pytest.raises(DataError, match="shapes differ"):
        U.agreement(a, b[:, :4] / b[:, :4].sum(1, keepdims=True))


# --------------------------------------------------------------------------------------------
# letter_probs
# --------------------------------------------------------------------------------------------


def test_letter_probs_renormalized_matches_softmax_per_row():
    rng = np.random.default_rng(8)
    logits = rng.normal(0, 5, (3, 40, 10)).astype(np.float32)
    n = rng.integers(2, 11, (3, 40))
    logits[np.arange(10) >= n[..., None]] = np.nan
    p = U.letter_probs(logits, n)
    assert p.shape == (3, 40, 10) and p.dtype == np.float64
    for idx in np.ndindex(3, 40):
        k = n[idx]
        np.testing.assert_allclose(p[idx][:k], softmax(logits[idx][:k].astype(float)), atol=1e-15)
        assert np.all(p[idx][k:] == 0)
    # n_choices as a plain int and broadcast over leading axes
    full = rng.normal(size=(4, 5, 4))
    np.testing.assert_allclose(U.letter_probs(full, 4), softmax(full, axis=-1), atol=1e-15)
    np.testing.assert_allclose(
        U.letter_probs(full, np.array([4, 4, 4, 4, 4])), softmax(full, axis=-1), atol=1e-15
    )


def test_letter_probs_extreme_logits():
    logits = np.array(
        [
            [1e4, -1e4, 0.0, np.nan],
            [1e4, 1e4, -1e4, -1e4],
            [-1e4, -1e4, -1e4, -1e4],
            [-np.inf, 3.0, -np.inf, 2.0],
            [-np.inf, -1e4, np.nan, np.nan],
            [0.0, -np.inf, -np.inf, -np.inf],
        ]
    )
    n = np.array([3, 4, 4, 4, 2, 4])
    p = U.letter_probs(logits, n)
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-15)
    np.testing.assert_array_equal(p[0], [1, 0, 0, 0])
    np.testing.assert_array_equal(p[1], [0.5, 0.5, 0, 0])
    np.testing.assert_array_equal(p[2], [0.25] * 4)
    np.testing.assert_allclose(p[3], [0, 1 / (1 + math.exp(-1)), 0, 1 / (1 + math.e)], atol=1e-15)
    np.testing.assert_array_equal(p[4], [0, 1, 0, 0])
    ens = np.stack([p, p[::-1]])
    for f in (U.predictive_entropy, U.expected_entropy, U.mutual_information):
        assert np.isfinite(f(ens)).all()
    used = np.where(np.arange(4) < n[:, None], logits, -np.inf)
    lse = logsumexp(used, axis=1) + 0.5  # the vocabulary holds more than the letters
    q = U.letter_probs(logits, n, "with_other", lse)
    assert np.isfinite(q).all() and q.shape == (6, 5)
    np.testing.assert_allclose(q.sum(1), 1.0, atol=1e-12)


def test_letter_probs_refusals():
    with pytest.raises(DataError, match="every used logit is -inf"):
        U.letter_probs(np.array([[-np.inf, -np.inf, 1.0]]), 2)
    with pytest.raises(DataError, match="NaN in a used slot"):
        U.letter_probs(np.array([[0.0, np.nan, np.nan]]), 2)
    with pytest.raises(DataError, match=r"\+inf"):
        U.letter_probs(np.array([[0.0, np.inf]]), 2)
    with pytest.raises(DataError, match="outside"):
        U.letter_probs(np.array([[0.0, 1.0]]), 3)
    with pytest.raises(DataError, match="broadcast"):
        U.letter_probs(np.zeros((2, 3)), np.array([3, 3, 3]))
    with pytest.raises(ValueError, match="logsumexp_vocab"):
        U.letter_probs(np.zeros((2, 3)), 3, "with_other")
    with pytest.raises(ValueError, match="readout"):
        U.letter_probs(np.zeros((2, 3)), 3, "softmax")
    with pytest.raises(DataError, match="cannot belong"):
        U.letter_probs(np.zeros((1, 3)), 3, "with_other", np.array([0.0]))
    with pytest.raises(DataError, match="logsumexp_vocab: NaN"):
        U.letter_probs(np.zeros((1, 3)), 3, "with_other", np.array([np.nan]))


@pytest.mark.parametrize("seed", range(5))
def test_with_other_matches_full_vocab_softmax(seed):
    rng = np.random.default_rng(seed)
    vocab, n_rows, k_max = 300, 50, 10
    full = rng.normal(0, float(rng.choice([1.0, 5.0, 30.0])), (n_rows, vocab))
    n = rng.integers(2, k_max + 1, n_rows)
    ids = np.stack([rng.choice(vocab, k_max, replace=False) for _ in range(n_rows)])
    # make the letters carry most of the mass in some rows, almost none in others
    full[np.arange(n_rows)[:, None], ids] += rng.choice([-20.0, 0.0, 20.0], (n_rows, 1))
    logits = np.take_along_axis(full, ids, axis=1)
    logits[np.arange(k_max) >= n[:, None]] = np.nan
    q = U.letter_probs(logits, n, "with_other", logsumexp(full, axis=1))
    ref = softmax(full, axis=1)
    for i in range(n_rows):
        letters = ref[i, ids[i, : n[i]]]
        np.testing.assert_allclose(q[i, : n[i]], letters, rtol=1e-12, atol=1e-300)
        assert np.all(q[i, n[i] : k_max] == 0)
        assert q[i, -1] == pytest.approx(1 - letters.sum(), abs=1e-12)
    np.testing.assert_allclose(q.sum(1), 1.0, atol=1e-12)
    U.check_probs(q)


def test_with_other_rounding_excess_is_rescaled():
    logits = np.array([[0.0, 0.0]])
    lse = np.array([math.log(2) - 1e-5])  # letters sum to 1 + 1e-5: float32 rounding
    q = U.letter_probs(logits, 2, "with_other", lse)
    np.testing.assert_allclose(q, [[0.5, 0.5, 0.0]], atol=1e-15)
    # many rows whose rescaled letters round to a hair over 1: "other" stays >= 0
    rng = np.random.default_rng(9)
    logits = rng.normal(0, 3, (2000, 10))
    q = U.letter_probs(logits, 10, "with_other", logsumexp(logits, axis=1) - 1e-7)
    assert np.all(q >= 0)
    np.testing.assert_allclose(q[:, :10], softmax(logits, axis=1), rtol=1e-12)
    assert np.all(q[:, 10] <= 1e-15)


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def test_metrics_refuse_bad_inputs():
    good = np.array([[0.3, 0.7], [0.6, 0.4]])
    y = np.array([1, 0])
    for bad, msg in [
        (np.array([[np.nan, 1.0], [0.5, 0.5]]), "NaN or inf"),
        (np.array([[1.5, -0.5], [0.5, 0.5]]), "negative"),
        (np.array([[0.3, 0.6], [0.5, 0.5]]), "sum to 1"),
        (np.array([0.3, 0.7]), "dimensions"),
    ]:
        for f in (U.accuracy, U.nll, U.brier, U.ece):
            with pytest.raises(DataError, match=f"probs: .*{msg}"):
                f(bad, y)
    for f in (U.accuracy, U.nll, U.brier, U.ece):
        with pytest.raises(ValueError, match="unlabelled"):
            f(good, np.array([1, -1]))
        with pytest.raises(DataError, match="outside"):
            f(good, np.array([1, 2]))
        with pytest.raises(DataError, match="shape"):
            f(good, np.array([1]))
        with pytest.raises(DataError, match="integer"):
            f(good, np.array([0.5, 1.0]))
    ens_bad = np.stack([good, good])
    ens_bad[1, 0, 0] = np.inf
    for f in (U.predictive_entropy, U.expected_entropy, U.mutual_information, U.ensemble_mean):
        with pytest.raises(DataError, match="probs_ens: contains NaN or inf"):
            f(ens_bad)
        with pytest.raises(DataError, match="probs_ens: expected 3 dimensions"):
            f(good)
    with pytest.raises(DataError, match="probs_b"):
        U.total_variation(good, np.array([[0.2, 0.2], [0.5, 0.5]]))
    with pytest.raises(DataError, match="no questions"):
        U.nll(np.zeros((0, 2)), np.zeros(0, dtype=int))
    with pytest.raises(DataError, match="correct"):
        U.aurc([0.1, 0.2], [0, 2])
    # float labels holding whole numbers (pandas) are fine
    assert U.accuracy(good, np.array([1.0, 0.0])) == 1.0


# --------------------------------------------------------------------------------------------
# hypothesis properties
# --------------------------------------------------------------------------------------------


@st.composite
def ensembles(draw, min_members=1):
    m = draw(st.integers(min_members, 6))
    n = draw(st.integers(1, 5))
    k = draw(st.integers(2, 10))
    raw = draw(
        arrays(
            np.float64,
            (m, n, k),
            elements=st.one_of(
                st.just(0.0),
                st.floats(1e-300, 1.0),
                st.floats(0.0, 1.0),
            ),
        )
    )
    raw[..., 0] += (raw.sum(-1) == 0).astype(float)  # no all-zero rows
    return raw / raw.sum(-1, keepdims=True)


@HYP
@given(ensembles())
def test_decomposition_bounds(p):
    k = p.shape[-1]
    pe, ee, mi = U.predictive_entropy(p), U.expected_entropy(p), U.mutual_information(p)
    for v in (pe, ee, mi):
        assert np.isfinite(v).all()
    assert np.all(mi >= 0)
    assert np.all(mi <= pe)
    assert np.all(pe <= math.log(k) + 1e-12)
    assert np.all(ee >= 0)
    assert np.all(ee <= pe + 1e-12)


@HYP
@given(ensembles(min_members=2), st.randoms(use_true_random=False))
def test_permutation_invariance(p, rnd):
    members = list(range(p.shape[0]))
    classes = list(range(p.shape[2]))
    rnd.shuffle(members)
    rnd.shuffle(classes)
    for f in (U.predictive_entropy, U.expected_entropy, U.mutual_information):
        base = f(p)
        np.testing.assert_allclose(f(p[members]), base, rtol=0, atol=1e-12)
        np.testing.assert_allclose(f(p[:, :, classes]), base, rtol=0, atol=1e-12)


@HYP
@given(ensembles(), st.integers(1, 8))
def test_identical_members_have_zero_mi(p, m):
    same = np.repeat(p[:1], m, axis=0)
    assert np.all(U.mutual_information(same) < 1e-12)
    np.testing.assert_allclose(U.predictive_entropy(same), U.expected_entropy(same), atol=1e-12)


extreme_logit = st.one_of(
    st.sampled_from([1e4, -1e4, -np.inf, 0.0, 745.0, -745.0]),
    st.floats(-1e4, 1e4),
)


@HYP
@given(
    arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(2, 10)), elements=extreme_logit),
    st.data(),
)
def test_letter_probs_never_nan(logits, data):
    rows, k = logits.shape
    n = np.array([data.draw(st.integers(1, k)) for _ in range(rows)])
    logits[np.arange(rows), 0] = np.where(np.isinf(logits[:, 0]), 0.0, logits[:, 0])
    logits[np.arange(k) >= n[:, None]] = np.nan
    p = U.letter_probs(logits, n)
    assert np.isfinite(p).all() and np.all(p >= 0)
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-12)
    assert np.isfinite(U.predictive_entropy(p[None])).all()
    assert np.isfinite(U.mutual_information(np.stack([p, np.roll(p, 1, axis=0)]))).all()
    # with_other, log-normaliser at least the letters' own logsumexp plus some outside mass
    used = np.where(np.arange(k) < n[:, None], logits, -np.inf)
    lse = np.logaddexp(logsumexp(used, axis=1), data.draw(st.floats(-1e4, 1e4)))
    q = U.letter_probs(logits, n, "with_other", lse)
    assert np.isfinite(q).all() and np.all(q >= 0)
    np.testing.assert_allclose(q.sum(-1), 1.0, atol=1e-12)
