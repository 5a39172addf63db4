"""Pure array maths on answer-letter probabilities: read-outs, uncertainty, calibration, ranking.

This module knows nothing of models or files, so every number in the reports can be recomputed
from the logits store and checked against textbook definitions. numpy only, vectorised, float64.

Array conventions:

* an **ensemble** is ``(n_members, n_questions, n_classes)``; a **prediction set** (one member or
  the ensemble mean) is ``(n_questions, n_classes)``;
* **labels** are integer class indices ``(n_questions,)``; ``-1`` (unlabelled) is
  refused by every metric that needs a label rather than silently counted as wrong;
* all entropies and NLL are in **nats** (natural log); ECE is a **fraction**, not percent.

Every function validates its input and raises :class:`lorauq.errors.DataError` (a
``ValueError``) that names the argument and the fault. A metric that returned NaN for a NaN
input would let one broken row turn a whole table into NaN without saying where it came from.

One job at this length: the metrics share their input checks and are read side by side
against their textbook definitions.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from lorauq.errors import DataError
from lorauq.schema import READOUTS, Readout

__all__ = [
    "NLL_FLOOR",
    "PROB_SUM_ATOL",
    "WITH_OTHER_EXCESS_TOL",
    "accuracy",
    "agreement",
    "aurc",
    "auroc",
    "brier",
    "calibration_bins",
    "check_labels",
    "check_probs",
    "eaurc",
    "ece",
    "ensemble_mean",
    "entropy",
    "expected_entropy",
    "letter_probs",
    "mutual_information",
    "nll",
    "oracle_aurc",
    "predictive_entropy",
    "risk_coverage",
    "total_variation",
]

#: Rows of a probability array must sum to 1 within this absolute tolerance. Loose enough for
#: float32 softmax outputs over ≤ 11 classes (errors ~1e-7), tight enough to catch logits or
#: unnormalised scores passed by mistake.
PROB_SUM_ATOL = 1e-6

#: Floor on the probability of the true label in :func:`nll`. The smallest positive normal
#: float64, so the floor changes nothing but exact zeros (and subnormals): a label given
#: probability 0 costs ``-log(tiny) ≈ 708.4`` nats instead of ``inf``. That is close to the
#: truth, because a float64 softmax only underflows to 0 at a logit gap of ~745.
#: (sklearn's ``log_loss`` instead clips to ``[eps, 1 - eps]`` with ``eps = finfo(float64).eps
#: ≈ 2.2e-16``; the two agree whenever every ``p_label`` lies in that interval.)
NLL_FLOOR = float(np.finfo(np.float64).tiny)

#: In the ``with_other`` read-out the letter probabilities may sum to a little over 1 only
#: through rounding of the stored float32 log-normaliser; beyond this excess the stored
#: ``logsumexp_vocab`` cannot belong to these logits and the row is refused.
WITH_OTHER_EXCESS_TOL = 1e-3


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def _first_bad(mask: np.ndarray) -> str:
    """Index of the first True entry of ``mask``, for error messages."""
    return str(tuple(int(i) for i in np.argwhere(mask)[0]))


def check_probs(
    probs: npt.ArrayLike, name: str = "probs", *, ndim: int | None = None
) -> np.ndarray:
    """Return ``probs`` as float64 after checking it is a valid array of distributions.

    Checks, in order: the number of dimensions (if ``ndim`` is given), at least one class,
    no NaN or inf, no negative entries, every row (last axis) sums to 1 within
    :data:`PROB_SUM_ATOL`. Raises :class:`DataError` naming ``name``, the fault and the
    index of the first offending entry or row.
    """
    arr = np.asarray(probs)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise DataError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if ndim is not None and arr.ndim != ndim:
        raise DataError(f"{name}: expected {ndim} dimensions, got shape {arr.shape}")
    if arr.ndim == 0 or arr.shape[-1] == 0:
        raise DataError(f"{name}: needs a non-empty class axis, got shape {arr.shape}")
    finite = np.isfinite(arr)
    if not finite.all():
        raise DataError(f"{name}: contains NaN or inf, first at index {_first_bad(~finite)}")
    if (arr < 0).any():
        raise DataError(f"{name}: contains negative probabilities, first at {_first_bad(arr < 0)}")
    off = np.abs(arr.sum(axis=-1) - 1.0) > PROB_SUM_ATOL
    if off.any():
        raise DataError(
            f"{name}: rows must sum to 1 within {PROB_SUM_ATOL:g}; row {_first_bad(off)} sums "
            f"to {float(arr.sum(axis=-1)[off][0])!r}"
        )
    return arr


def check_labels(labels: npt.ArrayLike, n_questions: int, n_classes: int) -> np.ndarray:
    """Return ``labels`` as int64 after checking shape ``(n_questions,)`` and range.

    ``-1`` marks an unlabelled question; a metric that needs the label cannot
    use it, so it is refused with a message saying so rather than counted as an error.
    Floats holding whole numbers are accepted (pandas turns int columns with NaN into float);
    fractional values, NaN and booleans are not.
    """
    arr = np.asarray(labels)
    if arr.shape != (n_questions,):
        raise DataError(f"labels: expected shape ({n_questions},), got {arr.shape}")
    if arr.dtype == bool or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise DataError(f"labels: expected integer class indices, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            raise DataError(f"labels: non-integer value at index {_first_bad(bad)}")
    arr = arr.astype(np.int64)
    if (arr == -1).any():
        raise DataError(
            f"labels: {int((arr == -1).sum())} unlabelled question(s) (label -1), first at "
            f"index {_first_bad(arr == -1)}; drop them before computing a labelled metric"
        )
    bad = (arr < 0) | (arr >= n_classes)
    if bad.any():
        raise DataError(
            f"labels: value {int(arr[bad][0])} at index {_first_bad(bad)} is outside "
            f"[0, {n_classes})"
        )
    return arr


def _check_nonempty(n: int, name: str) -> None:
    if n == 0:
        raise DataError(f"{name}: no questions; a mean over zero questions is undefined")


def _check_scores(scores: npt.ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(scores)
    if arr.ndim != 1:
        raise DataError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.floating)
        or np.issubdtype(arr.dtype, np.integer)
        or arr.dtype == bool
    ):
        raise DataError(f"{name}: expected numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    finite = np.isfinite(arr)
    if not finite.all():
        raise DataError(f"{name}: contains NaN or inf, first at index {_first_bad(~finite)}")
    return arr


def _check_binary(values: npt.ArrayLike, name: str, n: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.shape != (n,):
        raise DataError(f"{name}: expected shape ({n},), got {arr.shape}")
    if arr.dtype == bool:
        return arr
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise DataError(f"{name}: expected booleans or 0/1, got dtype {arr.dtype}")
    bad = (arr != 0) & (arr != 1)
    if bad.any():
        raise DataError(f"{name}: expected booleans or 0/1, bad value at {_first_bad(bad)}")
    return arr == 1


# --------------------------------------------------------------------------------------------
# read-out: letter logits -> probabilities
# --------------------------------------------------------------------------------------------


def letter_probs(
    logits: npt.ArrayLike,
    n_choices: npt.ArrayLike,
    readout: Readout = "renormalized",
    logsumexp_vocab: npt.ArrayLike | None = None,
) -> np.ndarray:
    """Turn stored answer-letter logits into class probabilities (float64).

    ``logits`` is ``(..., K_max)`` with NaN past each row's ``n_choices`` (the logits store's layout); slots
    past ``n_choices`` are ignored whatever they hold. ``n_choices`` is an int or an integer
    array broadcastable to ``logits.shape[:-1]``, each in ``[1, K_max]``.

    ``readout="renormalized"`` (the paper's "reduced softmax"): softmax over the first
    ``n_choices`` letters only, zeros past them; shape ``(..., K_max)``. Computed as
    ``exp(z - max z)`` so ±1e4 logits neither overflow nor underflow to 0/0.

    ``readout="with_other"``: keeps the mass the model puts outside the letters, which the
    renormalised read-out hides. Letter probabilities are ``exp(z - logsumexp_vocab)`` (the
    full-vocabulary softmax, not renormalised) and one final class holds
    ``other = max(0, 1 - Σ letters)``; shape ``(..., K_max + 1)``. ``logsumexp_vocab``
    (broadcastable to ``logits.shape[:-1]``) is required. If rounding of a float32
    log-normaliser makes the letters sum to more than 1 (by at most
    :data:`WITH_OTHER_EXCESS_TOL`), they are scaled down to sum to exactly 1 and ``other`` is
    0; a larger excess means the log-normaliser does not belong to these logits and raises.

    ``-inf`` in a used slot is probability 0. Refused with :class:`DataError`: NaN or ``+inf``
    in a used slot (an overflowed or missing logit has no honest probability), a row whose used
    logits are all ``-inf``, and a non-finite ``logsumexp_vocab``. The result never holds NaN.
    """
    if readout not in READOUTS:
        raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim < 1 or z.shape[-1] == 0:
        raise DataError(f"logits: expected shape (..., K_max) with K_max >= 1, got {z.shape}")
    k_max = z.shape[-1]
    batch_shape = z.shape[:-1]

    n_arr = np.asarray(n_choices)
    if n_arr.dtype == bool or not (
        np.issubdtype(n_arr.dtype, np.integer) or np.issubdtype(n_arr.dtype, np.floating)
    ):
        raise DataError(f"n_choices: expected integers, got dtype {n_arr.dtype}")
    if np.issubdtype(n_arr.dtype, np.floating) and (
        not np.isfinite(n_arr).all() or (n_arr != np.round(n_arr)).any()
    ):
        raise DataError("n_choices: contains a non-integer value")
    try:
        n_arr = np.broadcast_to(n_arr.astype(np.int64), batch_shape)
    except ValueError:
        raise DataError(
            f"n_choices: shape {np.shape(n_choices)} does not broadcast to logits.shape[:-1] "
            f"= {batch_shape}"
        ) from None
    bad_n = (n_arr < 1) | (n_arr > k_max)
    if bad_n.any():
        raise DataError(
            f"n_choices: value {int(n_arr[bad_n][0])} at {_first_bad(bad_n)} is outside "
            f"[1, {k_max}]"
        )

    used = np.arange(k_max) < n_arr[..., None]
    nan_used = used & np.isnan(z)
    if nan_used.any():
        raise DataError(f"logits: NaN in a used slot (below n_choices) at {_first_bad(nan_used)}")
    posinf = used & (z == np.inf)
    if posinf.any():
        raise DataError(f"logits: +inf in a used slot at {_first_bad(posinf)}")
    z = np.where(used, z, -np.inf)
    zmax = z.max(axis=-1, keepdims=True)
    dead = ~np.isfinite(zmax[..., 0])
    if dead.any():
        raise DataError(f"logits: every used logit is -inf in row {_first_bad(dead)}")

    if readout == "renormalized":
        e = np.exp(z - zmax)  # in (0, 1], the max slot is exactly 1, unused slots exp(-inf) = 0
        return e / e.sum(axis=-1, keepdims=True)

    if logsumexp_vocab is None:
        raise ValueError("readout='with_other' needs logsumexp_vocab (the full-vocab normaliser)")
    lse = np.asarray(logsumexp_vocab, dtype=np.float64)
    try:
        lse = np.broadcast_to(lse, batch_shape)
    except ValueError:
        raise DataError(
            f"logsumexp_vocab: shape {lse.shape} does not broadcast to logits.shape[:-1] "
            f"= {batch_shape}"
        ) from None
    bad_lse = ~np.isfinite(lse)
    if bad_lse.any():
        raise DataError(f"logsumexp_vocab: NaN or inf at {_first_bad(bad_lse)}")
    letters = np.exp(z - lse[..., None])
    total = letters.sum(axis=-1)
    too_big = total > 1.0 + WITH_OTHER_EXCESS_TOL
    if too_big.any():
        raise DataError(
            f"logsumexp_vocab: letters get {float(total[too_big][0])!r} > 1 of the full-vocab mass in "
            f"row {_first_bad(too_big)}; the normaliser cannot belong to these logits"
        )
    over = total > 1.0
    letters = np.where(over[..., None], letters / np.where(over, total, 1.0)[..., None], letters)
    other = np.clip(1.0 - letters.sum(axis=-1), 0.0, None)
    return np.concatenate([letters, other[..., None]], axis=-1)


# --------------------------------------------------------------------------------------------
# uncertainty: entropies and mutual information
# --------------------------------------------------------------------------------------------


def _entropy_last_axis(p: np.ndarray) -> np.ndarray:
    """-Σ p log p over the last axis with 0·log 0 = 0 (no warnings, no NaN)."""
    return -np.sum(p * np.log(np.where(p > 0, p, 1.0)), axis=-1)


def ensemble_mean(probs_ens: npt.ArrayLike) -> np.ndarray:
    """Mean over members, ``(n_members, n_questions, n_classes) -> (n_questions, n_classes)``.

    The ensemble's predictive distribution p̄ = mean_m p_m (averaging probabilities, not
    logits, as the paper and every anchor do).
    """
    p = check_probs(probs_ens, "probs_ens", ndim=3)
    if p.shape[0] == 0:
        raise DataError("probs_ens: no members")
    return p.mean(axis=0)


def entropy(probs: npt.ArrayLike) -> np.ndarray:
    """Shannon entropy in nats of each row of a prediction set ``(n_questions, n_classes)``.

    For a single member or an already averaged ensemble; 0·log 0 = 0.
    """
    return _entropy_last_axis(check_probs(probs, "probs", ndim=2))


def predictive_entropy(probs_ens: npt.ArrayLike) -> np.ndarray:
    """Total uncertainty H(p̄) in nats, ``(n_questions,)``: entropy of the ensemble mean."""
    return _entropy_last_axis(ensemble_mean(probs_ens))


def expected_entropy(probs_ens: npt.ArrayLike) -> np.ndarray:
    """Aleatoric part mean_m H(p_m) in nats, ``(n_questions,)``.

    What the members are uncertain about *individually*; by concavity of entropy it never
    exceeds :func:`predictive_entropy` (up to rounding).
    """
    p = check_probs(probs_ens, "probs_ens", ndim=3)
    if p.shape[0] == 0:
        raise DataError("probs_ens: no members")
    return _entropy_last_axis(p).mean(axis=0)


def mutual_information(probs_ens: npt.ArrayLike) -> np.ndarray:
    """Epistemic part H(p̄) − mean_m H(p_m) in nats, ``(n_questions,)``, clamped at 0.

    The mutual information between the prediction and the member index: how much the members
    *disagree*. Mathematically ≥ 0 (Jensen); the clamp only removes rounding noise of order
    1e-16 (e.g. identical members), as TorchUncertainty does. Hence 0 ≤ MI ≤ H(p̄) ≤ log K.
    """
    p = check_probs(probs_ens, "probs_ens", ndim=3)
    if p.shape[0] == 0:
        raise DataError("probs_ens: no members")
    mi = _entropy_last_axis(p.mean(axis=0)) - _entropy_last_axis(p).mean(axis=0)
    return np.maximum(mi, 0.0)


# --------------------------------------------------------------------------------------------
# labelled metrics on one prediction set
# --------------------------------------------------------------------------------------------


def _probs_and_labels(probs: npt.ArrayLike, labels: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p = check_probs(probs, "probs", ndim=2)
    _check_nonempty(p.shape[0], "probs")
    y = check_labels(labels, p.shape[0], p.shape[1])
    return p, y


def accuracy(probs: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Fraction of questions whose argmax class is the label.

    Ties in the maximum go to the lowest class index (``np.argmax``), i.e. to letter ``a``
    before ``b``: deterministic, and the same rule :func:`agreement` uses.
    """
    p, y = _probs_and_labels(probs, labels)
    return float(np.mean(p.argmax(axis=1) == y))


def nll(probs: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Mean negative log-likelihood of the label, in nats: mean_i −log max(p_i,y_i, floor).

    The floor is :data:`NLL_FLOOR` (smallest normal float64), so only exact zeros are
    changed and the result is finite; equals sklearn's ``log_loss(labels, probs,
    labels=range(K))`` whenever all ``p_label`` lie in ``[eps, 1 - eps]``, eps ≈ 2.2e-16.
    """
    p, y = _probs_and_labels(probs, labels)
    p_true = p[np.arange(p.shape[0]), y]
    return float(-np.mean(np.log(np.maximum(p_true, NLL_FLOOR))))


def brier(probs: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Multiclass Brier score: mean_i Σ_c (p_ic − 1[c = y_i])², in [0, 2].

    Not halved for any K, so values are comparable across 2-, 4- and 5-choice sets. Relation
    to scikit-learn ≥ 1.7: equals ``brier_score_loss(labels, probs, labels=range(K),
    scale_by_half=False)``; sklearn's default ``scale_by_half="auto"`` halves it when K = 2
    (only), giving the classic binary Brier score.
    """
    p, y = _probs_and_labels(probs, labels)
    sq = p.copy()
    sq[np.arange(p.shape[0]), y] -= 1.0
    return float(np.mean(np.sum(sq * sq, axis=1)))


def calibration_bins(
    probs: npt.ArrayLike, labels: npt.ArrayLike, n_bins: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-bin (count, mean confidence, accuracy) of top-label confidence, for ECE and plots.

    Confidence is the max probability (top-label, Guo et al. 2017; not the probability of the
    true class), correctness is argmax == label. Bins are equal-width with edges
    ``np.linspace(0, 1, n_bins + 1)`` and are closed on the right: bin ``b`` holds
    ``edges[b] < conf <= edges[b + 1]``, except that confidence exactly 0 goes to bin 0.
    Confidence exactly 1.0 (common with saturated fp32 LLM softmax) therefore lands in the
    last bin — torchmetrics (1.9.0 checked, issue #3510) puts it in a phantom extra bin and also
    closes bins on the left, so it differs from this for confidences on a bin edge.
    Empty bins have count 0 and mean confidence / accuracy 0.
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive int, got {n_bins!r}")
    p, y = _probs_and_labels(probs, labels)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    conf_sum = np.bincount(idx, weights=conf, minlength=n_bins)
    acc_sum = np.bincount(idx, weights=correct, minlength=n_bins)
    safe = np.where(count > 0, count, 1.0)
    return count, conf_sum / safe, acc_sum / safe


def ece(probs: npt.ArrayLike, labels: npt.ArrayLike, n_bins: int = 10) -> float:
    """Expected calibration error, top-label, equal-width bins, as a fraction (not percent).

    ECE = Σ_b (|B_b| / N) · |acc_b − conf_b| with the bins of :func:`calibration_bins`
    (right-closed, conf 0 in the first bin, conf 1.0 in the last). The paper uses 10 bins;
    BLoB/TFB-style tables use 15 (torchmetrics' default) and print ×100.
    """
    count, conf, acc = calibration_bins(probs, labels, n_bins)
    return float(np.sum(count / count.sum() * np.abs(acc - conf)))


# --------------------------------------------------------------------------------------------
# ranking: OOD AUROC and selective prediction
# --------------------------------------------------------------------------------------------


def auroc(scores: npt.ArrayLike, is_positive: npt.ArrayLike) -> float:
    """Area under the ROC curve of ``scores`` for detecting ``is_positive`` (e.g. OOD = True).

    Computed as the Mann–Whitney statistic with mid-ranks:
    AUROC = (Σ_{positives} rank − n₊(n₊+1)/2) / (n₊ n₋) = P(s₊ > s₋) + ½ P(s₊ = s₋),
    which is what sklearn's ``roc_auc_score`` gives (its trapezoid rule treats ties the same).
    Higher score = more likely positive. Raises :class:`DataError` (a ValueError) if only one
    class is present, since the area is then undefined.
    """
    s = _check_scores(scores, "scores")
    pos = _check_binary(is_positive, "is_positive", s.shape[0])
    n_pos = int(pos.sum())
    n_neg = s.shape[0] - n_pos
    if n_pos == 0 or n_neg == 0:
        raise DataError(
            f"is_positive: AUROC needs both classes, got {n_pos} positive and {n_neg} negative"
        )
    srt = np.sort(s)
    # 1-based mid-rank of each score: ties share the mean of the ranks they span.
    mid = (np.searchsorted(srt, s, "left") + np.searchsorted(srt, s, "right") + 1) / 2.0
    u = mid[pos].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def risk_coverage(
    confidence: npt.ArrayLike, correct: npt.ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """Risk–coverage curve of selective prediction: answer only the most confident questions.

    Questions are sorted by ``confidence`` descending; at coverage k/N (k = 1..N) the risk is
    the error rate of the k most confident. Returns ``(coverage, risk)``, each ``(N,)``.

    Ties: questions with equal confidence cannot be ordered by the model, so rather than an
    arbitrary (input-order) tie-break, the errors of a tied group are spread evenly across
    its positions — the cumulative error count is interpolated linearly inside the group.
    That is exactly the *expected* risk over uniformly random tie-breaking, it does not depend
    on the input order, and at the end of each tied group it equals the plain error rate.
    """
    conf = _check_scores(confidence, "confidence")
    n = conf.shape[0]
    _check_nonempty(n, "confidence")
    err = (~_check_binary(correct, "correct", n)).astype(np.float64)
    order = np.argsort(-conf, kind="stable")
    c_sorted = conf[order]
    e_sorted = err[order]
    # tie groups in the sorted order: start/end (exclusive) position of each position's group
    new_group = np.empty(n, dtype=bool)
    new_group[0] = True
    new_group[1:] = c_sorted[1:] != c_sorted[:-1]
    group_id = np.cumsum(new_group) - 1
    starts = np.flatnonzero(new_group)
    ends = np.append(starts[1:], n)
    cum_err = np.concatenate([[0.0], np.cumsum(e_sorted)])  # cum_err[j] = errors in first j
    g_start = starts[group_id]
    g_end = ends[group_id]
    k = np.arange(1, n + 1)
    err_before = cum_err[g_start]
    err_group = cum_err[g_end] - err_before
    expected_err = err_before + (k - g_start) * err_group / (g_end - g_start)
    return k / n, expected_err / k


def aurc(confidence: npt.ArrayLike, correct: npt.ArrayLike) -> float:
    """Area under the risk–coverage curve (raw AURC, lower is better).

    AURC = (1/N) Σ_{k=1..N} risk(k/N), the mean of :func:`risk_coverage`'s risk over the N
    coverages k/N (a right Riemann sum; no point at coverage 0). This is the raw AURC of
    Geifman et al. 2019, *not* the excess over the oracle that TorchUncertainty's ``AURC``
    integrates — for that use :func:`eaurc`. Ties are handled as in :func:`risk_coverage`.
    """
    _, risk = risk_coverage(confidence, correct)
    return float(risk.mean())


def oracle_aurc(correct: npt.ArrayLike) -> float:
    """AURC of the best possible ranking (all correct answers first), exact and discrete.

    With N questions of which E are wrong, risk(k/N) = max(0, k − (N − E)) / k, averaged over
    k = 1..N. (Geifman et al.'s closed form r + (1 − r) ln(1 − r) is the N → ∞ limit.)
    """
    arr = np.asarray(correct)
    if arr.ndim != 1:
        raise DataError(f"correct: expected a 1-D array, got shape {arr.shape}")
    wrong = ~_check_binary(arr, "correct", arr.shape[0])
    n = wrong.shape[0]
    _check_nonempty(n, "correct")
    k = np.arange(1, n + 1)
    return float(np.mean(np.maximum(0, k - (n - int(wrong.sum()))) / k))


def eaurc(confidence: npt.ArrayLike, correct: npt.ArrayLike) -> float:
    """Excess AURC: :func:`aurc` − :func:`oracle_aurc`, ≥ 0, and 0 for a perfect ranking.

    Removes the part of AURC that is due to the error rate alone, so rankings of models with
    different accuracy can be compared; the convention TorchUncertainty's ``AURC`` reports.
    """
    return aurc(confidence, correct) - oracle_aurc(correct)


# --------------------------------------------------------------------------------------------
# comparing two prediction sets
# --------------------------------------------------------------------------------------------


def _pair(probs_a: npt.ArrayLike, probs_b: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    a = check_probs(probs_a, "probs_a", ndim=2)
    b = check_probs(probs_b, "probs_b", ndim=2)
    if a.shape != b.shape:
        raise DataError(f"probs_a and probs_b: shapes differ, {a.shape} vs {b.shape}")
    _check_nonempty(a.shape[0], "probs_a")
    return a, b


def agreement(probs_a: npt.ArrayLike, probs_b: npt.ArrayLike) -> float:
    """Fraction of questions on which both prediction sets pick the same argmax class.

    Ties in a row's maximum go to the lowest index, as in :func:`accuracy`.
    """
    a, b = _pair(probs_a, probs_b)
    return float(np.mean(a.argmax(axis=1) == b.argmax(axis=1)))


def total_variation(probs_a: npt.ArrayLike, probs_b: npt.ArrayLike) -> float:
    """Mean over questions of the total-variation distance ½ Σ_c |a_c − b_c|, in [0, 1]."""
    a, b = _pair(probs_a, probs_b)
    return float(np.mean(0.5 * np.abs(a - b).sum(axis=1)))
