"""Tidy tables from the logits store: everything the report shows, as pandas DataFrames.

Each function takes the long logits table of :mod:`lorauq.store` (as :func:`lorauq.store.read_logits`
returns it) and returns a tidy table, one observation per row, so that ``dvc plots``, seaborn
and a reader's own pandas code can use it without reshaping. The long table becomes arrays in
exactly one place, :func:`probability_cube`; the maths lives in :mod:`lorauq.uncertainty`.

Conventions shared by every table:

- A question is identified by ``(eval_set, id)``. Every member must have been evaluated on the
  same questions at every epoch of an eval set (otherwise ensembles and epoch-to-epoch
  comparisons are meaningless); :func:`probability_cube` checks it and raises
  :class:`~lorauq.errors.StoreError` naming the member, epoch and eval set at fault.
- "ensemble" means the mean of the members' probability vectors; an ensemble of size ``k``
  takes the first ``k`` members in ascending member id. "member_mean" is the metric of each
  single member averaged over members: the paper's "M=1" curves.
- Entropies and mutual information are in nats. Label metrics (accuracy, NLL, ECE, Brier,
  AURC, transitions, reliability) use only questions with ``answer >= 0``; unlabelled
  questions still count in the uncertainty columns.

One job at this length: every table turns the same probability cube into rows; the cube, its
checks and the tables' shared conventions would otherwise be imported back by each part.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from lorauq.errors import StoreError
from lorauq.schema import LOGIT_COLUMNS, Readout
from lorauq.uncertainty import (
    accuracy,
    agreement,
    aurc,
    auroc,
    brier,
    calibration_bins,
    ece,
    ensemble_mean,
    expected_entropy,
    letter_probs,
    mutual_information,
    nll,
    predictive_entropy,
    risk_coverage,
    total_variation,
)

__all__ = [
    "AGREEMENT_COLUMNS",
    "LETTER_MASS_STATISTICS",
    "METRICS",
    "OOD_SCORES",
    "TRANSITIONS",
    "Cube",
    "agreement_table",
    "common_epochs",
    "ensemble_summary",
    "eval_set_cubes",
    "half_agreement_table",
    "headline_metrics",
    "letter_mass_table",
    "metrics_table",
    "ood_aurocs",
    "ood_table",
    "probability_cube",
    "question_table",
    "reliability_table",
    "risk_coverage_table",
    "roc_points",
    "split_members",
    "subject_table",
    "transitions",
    "transitions_over_epochs",
]

#: Metrics of :func:`metrics_table` and :func:`headline_metrics`, in display order.
METRICS = (
    "accuracy",
    "nll",
    "ece",
    "brier",
    "predictive_entropy",
    "expected_entropy",
    "mutual_information",
    "aurc",
)
#: OOD scores: higher means "more likely out of domain"; ``max_prob`` scores 1 − max p̄.
OOD_SCORES = ("predictive_entropy", "mutual_information", "max_prob")
#: Per-question transitions of the ensemble's answer between two epochs.
TRANSITIONS = ("stayed_right", "learned", "forgotten", "stayed_wrong")
#: Estimators of :func:`metrics_table` and :func:`agreement_table`.
ENSEMBLE, MEMBER_MEAN, MEMBER = "ensemble", "member_mean", "member"

_METRICS_COLUMNS = ["eval_set", "epoch", "estimator", "ensemble_size", "member", "metric", "value"]


@dataclass(frozen=True, eq=False)
class Cube:
    """The probabilities of one eval set as arrays, with the question metadata aligned to them.

    ``probs`` is ``(n_members, n_epochs, n_questions, n_classes)``: classes are the letters
    ``a…`` up to the eval set's largest ``n_letters`` (zero past a question's own
    ``n_letters``: its choices, or more letters when inference stored more), followed by the
    "other" class when ``readout="with_other"``.
    ``members`` and ``epochs`` are ascending; questions are in ascending ``id`` order.
    """

    eval_set: str
    readout: str
    probs: np.ndarray
    members: np.ndarray
    epochs: np.ndarray
    ids: np.ndarray
    subjects: np.ndarray
    groups: np.ndarray
    answers: np.ndarray

    @property
    def n_members(self) -> int:
        return len(self.members)

    @property
    def labelled(self) -> np.ndarray:
        """Boolean mask of questions with a known answer."""
        return self.answers >= 0

    def epoch_index(self, epoch: int) -> int:
        """Position of ``epoch`` on the epoch axis; a clear error if it was never evaluated."""
        matches = np.flatnonzero(self.epochs == epoch)
        if matches.size == 0:
            raise StoreError(
                f"eval set {self.eval_set!r} has no epoch {epoch}; it has {self.epochs.tolist()}"
            )
        return int(matches[0])

    def ensemble(self, epoch: int, size: int | None = None) -> np.ndarray:
        """Member probabilities ``(size, n_questions, n_classes)`` at ``epoch`` (first members)."""
        return self.probs[: size or self.n_members, self.epoch_index(epoch)]


def probability_cube(
    logits: pd.DataFrame, eval_set: str, readout: Readout = "renormalized"
) -> Cube:
    """Turn one eval set's rows of the long logits table into a :class:`Cube`.

    Checks that every member has every question at every epoch, once, with the same answer,
    because every later comparison (ensemble means, epoch transitions) pairs rows by position.
    """
    rows = logits[logits["eval_set"] == eval_set]
    if rows.empty:
        known = sorted(logits["eval_set"].unique().tolist())
        raise StoreError(f"no rows for eval set {eval_set!r}; the table has {known}")
    members, member_index = np.unique(rows["member"].to_numpy(), return_inverse=True)
    epochs, epoch_index = np.unique(rows["epoch"].to_numpy(), return_inverse=True)
    ids, id_index = np.unique(rows["id"].to_numpy(dtype=str), return_inverse=True)
    shape = (len(members), len(epochs), len(ids))
    cell = np.ravel_multi_index((member_index, epoch_index, id_index), shape)
    if len(rows) != np.prod(shape) or len(np.unique(cell)) != len(cell):
        raise _grid_error(rows, eval_set, members, epochs, ids)
    rows = rows.iloc[np.argsort(cell)]
    answers = rows["answer"].to_numpy().reshape(shape)
    _check_same_answers(answers, rows, eval_set, shape)
    first = rows.iloc[: len(ids)]
    return Cube(
        eval_set=eval_set,
        readout=readout,
        probs=_row_probs(rows, readout).reshape(*shape, -1),
        members=members,
        epochs=epochs,
        ids=ids,
        subjects=first["subject"].to_numpy(dtype=str),
        groups=first["group"].to_numpy(dtype=str),
        answers=answers[0, 0].astype(np.int64),
    )


def _row_probs(rows: pd.DataFrame, readout: Readout) -> np.ndarray:
    """Class probabilities per row, trimmed to the eval set's largest ``n_letters`` (+ other)."""
    n_letters = rows["n_letters"].to_numpy()
    probs = letter_probs(
        rows[LOGIT_COLUMNS].to_numpy(dtype=np.float64),
        n_letters,
        readout=readout,
        logsumexp_vocab=rows["logsumexp_vocab"].to_numpy(dtype=np.float64),
    )
    letters = probs[:, : int(n_letters.max())]
    if readout == "with_other":
        return np.concatenate([letters, probs[:, -1:]], axis=1)
    return letters


def _grid_error(
    rows: pd.DataFrame,
    eval_set: str,
    members: np.ndarray,
    epochs: np.ndarray,
    ids: np.ndarray,
) -> StoreError:
    """Explain which (member, epoch) breaks the "same questions everywhere" rule."""
    duplicated = rows[rows.duplicated(["member", "epoch", "id"])]
    if not duplicated.empty:
        row = duplicated.iloc[0]
        return StoreError(
            f"eval set {eval_set!r}: member {row['member']} epoch {row['epoch']} has question "
            f"{row['id']!r} more than once"
        )
    every_id = set(ids.tolist())
    present = rows.groupby(["member", "epoch"])["id"].agg(lambda s: set(s.astype(str)))
    for member in members:
        for epoch in epochs:
            missing = every_id - present.get((member, epoch), set())
            if missing:
                return StoreError(
                    f"eval set {eval_set!r}: member {member} epoch {epoch} lacks "
                    f"{len(missing)} of the {len(every_id)} questions seen elsewhere "
                    f"(e.g. {sorted(missing)[:3]}); every member must be evaluated on the same "
                    "questions at every epoch"
                )
    return StoreError(f"eval set {eval_set!r}: inconsistent (member, epoch, id) grid")


def _check_same_answers(
    answers: np.ndarray, rows: pd.DataFrame, eval_set: str, shape: tuple[int, int, int]
) -> None:
    """Raise if a question's answer differs between members or epochs (mixed-up sources)."""
    differs = answers != answers[0, 0]
    if differs.any():
        flat = int(np.flatnonzero(differs.ravel())[0])
        row = rows.iloc[flat]
        raise StoreError(
            f"eval set {eval_set!r}: member {row['member']} epoch {row['epoch']} gives question "
            f"{row['id']!r} answer {row['answer']}, another member/epoch gives "
            f"{answers[0, 0, flat % shape[2]]}"
        )


def eval_set_cubes(logits: pd.DataFrame, readout: Readout) -> list[Cube]:
    """One cube per eval set, in ascending eval-set name."""
    names = sorted(logits["eval_set"].unique().tolist())
    return [probability_cube(logits, name, readout) for name in names]


def _concat(frames: Sequence[pd.DataFrame], columns: Sequence[str]) -> pd.DataFrame:
    """The frames stacked, or an empty table with ``columns`` when there are none.

    An experiment of an unusual shape (one eval set, no out-of-domain set, only unlabelled
    questions) leaves some tables with nothing to hold; they come back empty, with their
    columns, and the figures stage says why it draws nothing from them.
    """
    if not frames:
        return pd.DataFrame(columns=list(columns))
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------- metrics


def _label_metrics(probs: np.ndarray, labels: np.ndarray, n_bins: int) -> dict[str, float]:
    """Metrics that need the answer, of one prediction set ``(n_questions, n_classes)``."""
    correct = probs.argmax(axis=-1) == labels
    return {
        "accuracy": float(accuracy(probs, labels)),
        "nll": float(nll(probs, labels)),
        "ece": float(ece(probs, labels, n_bins=n_bins)),
        "brier": float(brier(probs, labels)),
        "aurc": float(aurc(probs.max(axis=-1), correct)),
    }


def ensemble_summary(p_ens: np.ndarray, answers: np.ndarray, n_bins: int) -> dict[str, float]:
    """Every metric of one ensemble ``(k, n_questions, n_classes)``; ``k = 1`` is one member.
    The one definition of :data:`METRICS`: the figures, metrics.json and the methods table
    (:mod:`lorauq.methods.report`) all read it.

    Label metrics are left out when no question is labelled, rather than reported as NaN.
    """
    values = {
        "predictive_entropy": float(np.mean(predictive_entropy(p_ens))),
        "expected_entropy": float(np.mean(expected_entropy(p_ens))),
        "mutual_information": float(np.mean(mutual_information(p_ens))),
    }
    labelled = answers >= 0
    if labelled.any():
        p_bar = ensemble_mean(p_ens)
        values.update(_label_metrics(p_bar[labelled], answers[labelled], n_bins))
    return {metric: values[metric] for metric in METRICS if metric in values}


def _mean_summary(summaries: Sequence[dict[str, float]]) -> dict[str, float]:
    """Average single-member summaries metric by metric: the paper's "M=1"."""
    return {metric: float(np.mean([s[metric] for s in summaries])) for metric in summaries[0]}


def _long_records(
    cube: Cube, epoch: int, estimator: str, size: int, member: int, summary: dict[str, float]
) -> list[tuple]:
    return [
        (cube.eval_set, epoch, estimator, size, member, metric, value)
        for metric, value in summary.items()
    ]


def _ensemble_sizes(requested: Iterable[int] | None, cube: Cube) -> list[int]:
    if requested is None:
        return list(range(1, cube.n_members + 1))
    sizes = sorted(set(int(k) for k in requested))
    bad = [k for k in sizes if not 1 <= k <= cube.n_members]
    if bad:
        raise StoreError(
            f"eval set {cube.eval_set!r} has {cube.n_members} members; "
            f"ensemble size(s) {bad} cannot be formed"
        )
    return sizes


def _epoch_metric_records(cube: Cube, epoch: int, sizes: list[int], n_bins: int) -> list[tuple]:
    """Rows of :func:`metrics_table` for one eval set and epoch."""
    records = []
    for size in sizes:
        summary = ensemble_summary(cube.ensemble(epoch, size), cube.answers, n_bins)
        records += _long_records(cube, epoch, ENSEMBLE, size, -1, summary)
    probs = cube.ensemble(epoch)
    singles = [
        ensemble_summary(probs[m : m + 1], cube.answers, n_bins) for m in range(cube.n_members)
    ]
    for member, summary in zip(cube.members, singles, strict=True):
        records += _long_records(cube, epoch, MEMBER, 1, int(member), summary)
    records += _long_records(cube, epoch, MEMBER_MEAN, 1, -1, _mean_summary(singles))
    return records


def metrics_table(
    logits: pd.DataFrame,
    readout: Readout = "renormalized",
    n_bins: int = 10,
    ensemble_sizes: Iterable[int] | None = None,
) -> pd.DataFrame:
    """Every metric per eval set × epoch × estimator, tidy (Fig A and the ensemble-size curves).

    Columns ``eval_set, epoch, estimator, ensemble_size, member, metric, value``. Estimators:
    ``ensemble`` (mean probabilities of the first ``ensemble_size`` members, for each size in
    ``ensemble_sizes``, default 1…M; size M is the full ensemble), ``member`` (each single
    member, ``member`` set, ``ensemble_size`` 1) and ``member_mean`` (the member rows
    averaged, ``ensemble_size`` 1). ``member`` is −1 on non-member rows. Metrics are
    :data:`METRICS`, means over questions; label metrics are absent for unlabelled eval sets.
    """
    records = []
    for cube in eval_set_cubes(logits, readout):
        sizes = _ensemble_sizes(ensemble_sizes, cube)
        for epoch in cube.epochs.tolist():
            records += _epoch_metric_records(cube, epoch, sizes, n_bins)
    return pd.DataFrame.from_records(records, columns=_METRICS_COLUMNS)


def headline_metrics(
    logits: pd.DataFrame,
    readout: Readout = "renormalized",
    n_bins: int = 10,
    in_domain: str = "in_domain",
) -> dict:
    """The full ensemble's numbers before and after fine-tuning, for ``reports/metrics.json``.

    ``{"prior": {eval_set: {metric: value}}, "final": {...}, "ood_auroc": {"final": {eval_set:
    {score: auroc}}}}``: prior is each eval set's smallest epoch (the base model), final its
    largest. Per eval set: :data:`METRICS` plus ``letter_mass`` and ``letter_mass_p05``, the
    mean and 5th percentile over questions of the probability the answer letters hold in the
    full vocabulary (:func:`letter_mass_table`; the same for either read-out). OOD AUROC
    separates ``in_domain`` questions (0) from each other eval set's (1) at the largest epoch
    both share (not at the prior, where MI is 0 up to rounding and its AUROC would be noise);
    the key is absent when ``in_domain`` is not an eval set.
    Values are plain floats, so ``json.dump`` and ``dvc metrics`` take the dict as is.
    """
    cubes = {cube.eval_set: cube for cube in eval_set_cubes(logits, readout)}
    masses = {cube.eval_set: _letter_mass(cube) for cube in eval_set_cubes(logits, "with_other")}
    result: dict = {
        stage: {
            name: {
                **ensemble_summary(cube.ensemble(int(cube.epochs[position])), cube.answers, n_bins),
                "letter_mass": float(LETTER_MASS_STATISTICS["mean"](masses[name][position])),
                "letter_mass_p05": float(LETTER_MASS_STATISTICS["p05"](masses[name][position])),
            }
            for name, cube in cubes.items()
        }
        for stage, position in (("prior", 0), ("final", -1))
    }
    if in_domain in cubes:
        in_cube = cubes[in_domain]
        result["ood_auroc"] = {
            "final": {
                name: ood_aurocs(in_cube, cube, common_epochs(in_cube, cube)[-1])
                for name, cube in cubes.items()
                if name != in_domain and common_epochs(in_cube, cube)
            }
        }
    return result


# --------------------------------------------------------------------------- per question


def _question_frame(cube: Cube, epoch: int) -> pd.DataFrame:
    """One row per question of the full ensemble at ``epoch``."""
    p_ens = cube.ensemble(epoch)
    p_bar = ensemble_mean(p_ens)
    prediction = p_bar.argmax(axis=-1)
    correct = pd.array(prediction == cube.answers, dtype="boolean")
    correct[~cube.labelled] = pd.NA
    return pd.DataFrame(
        {
            "eval_set": cube.eval_set,
            "epoch": epoch,
            "id": cube.ids,
            "subject": cube.subjects,
            "group": cube.groups,
            "answer": cube.answers,
            "prediction": prediction,
            "correct": correct,
            "confidence": p_bar.max(axis=-1),
            "predictive_entropy": predictive_entropy(p_ens),
            "expected_entropy": expected_entropy(p_ens),
            "mutual_information": mutual_information(p_ens),
        }
    )


def question_table(logits: pd.DataFrame, readout: Readout = "renormalized") -> pd.DataFrame:
    """One row per (eval_set, epoch, id) for the full ensemble (Fig C and per-question digging).

    Columns ``eval_set, epoch, id, subject, group, answer, prediction, correct, confidence,
    predictive_entropy, expected_entropy, mutual_information``. ``prediction`` is the argmax of
    p̄, ``confidence`` its max, ``correct`` a nullable boolean (NA where ``answer`` is −1).
    """
    frames = [
        _question_frame(cube, epoch)
        for cube in eval_set_cubes(logits, readout)
        for epoch in cube.epochs.tolist()
    ]
    return pd.concat(frames, ignore_index=True)


def subject_table(
    logits: pd.DataFrame, epoch: int, readout: Readout = "renormalized"
) -> pd.DataFrame:
    """Per eval set × subject at ``epoch``: the full ensemble's accuracy, entropy, MI, count.

    Columns ``eval_set, epoch, group, subject, count, accuracy, predictive_entropy,
    mutual_information``; ``count`` is all questions, ``accuracy`` over the labelled ones.
    """
    questions = pd.concat(
        [_question_frame(cube, epoch) for cube in eval_set_cubes(logits, readout)],
        ignore_index=True,
    )
    table = questions.groupby(["eval_set", "epoch", "group", "subject"], as_index=False).agg(
        count=("id", "size"),
        accuracy=("correct", "mean"),
        predictive_entropy=("predictive_entropy", "mean"),
        mutual_information=("mutual_information", "mean"),
    )
    return table.astype({"accuracy": float})


# --------------------------------------------------------------------------- transitions


def _transition_labels(right_from: np.ndarray, right_to: np.ndarray) -> np.ndarray:
    """Name each question's move: index = wrong before + 2 × wrong after into TRANSITIONS."""
    index = (~right_from).astype(int) + 2 * (~right_to).astype(int)
    return np.asarray(TRANSITIONS)[index]


def _count_transitions(cube: Cube, epoch_from: int, epoch_to: int, keys: list[str]) -> pd.DataFrame:
    """Counts and fractions of each transition per ``keys`` group (all four always present)."""
    questions = pd.DataFrame(
        {
            "eval_set": cube.eval_set,
            "subject": cube.subjects[cube.labelled],
            "transition": _transition_labels(
                _confidence_correct(cube, epoch_from)[1], _confidence_correct(cube, epoch_to)[1]
            ),
        }
    )
    wide = pd.crosstab([questions[key] for key in keys], questions["transition"])
    wide = wide.reindex(columns=list(TRANSITIONS), fill_value=0)
    wide.columns.name = "transition"
    counts = wide.stack().rename("count").reset_index()
    counts["fraction"] = counts["count"] / counts.groupby(keys)["count"].transform("sum")
    return counts


def transitions(
    logits: pd.DataFrame,
    epoch_from: int,
    epoch_to: int,
    readout: Readout = "renormalized",
    by: Literal["eval_set", "subject"] = "eval_set",
) -> pd.DataFrame:
    """What the full ensemble learned and forgot between two epochs, per eval set (or subject).

    Each labelled question's move of the ensemble's argmax is one of :data:`TRANSITIONS`:
    ``stayed_right`` (right → right), ``learned`` (wrong → right), ``forgotten`` (right →
    wrong), ``stayed_wrong``. Columns ``eval_set[, subject], epoch_from, epoch_to, transition,
    count, fraction``; fractions sum to 1 per group.
    """
    if by not in ("eval_set", "subject"):
        raise ValueError(f"by must be 'eval_set' or 'subject', not {by!r}")
    keys = ["eval_set"] if by == "eval_set" else ["eval_set", "subject"]
    frames = [
        _count_transitions(cube, epoch_from, epoch_to, keys)
        for cube in eval_set_cubes(logits, readout)
        if cube.labelled.any()
    ]
    table = _concat(frames, [*keys, "transition", "count", "fraction"])
    table.insert(len(keys), "epoch_from", epoch_from)
    table.insert(len(keys) + 1, "epoch_to", epoch_to)
    return table


def transitions_over_epochs(
    logits: pd.DataFrame, reference_epoch: int = 0, readout: Readout = "renormalized"
) -> pd.DataFrame:
    """Transitions from ``reference_epoch`` to every later epoch, per eval set (tidy).

    Columns ``eval_set, reference_epoch, epoch, transition, count, fraction``; ``epoch`` is the
    later epoch. With the default reference 0 (the base model), ``forgotten`` is prior knowledge
    lost by fine-tuning and ``learned`` what fine-tuning added.
    """
    frames = []
    for cube in eval_set_cubes(logits, readout):
        cube.epoch_index(reference_epoch)
        if not cube.labelled.any():
            continue
        for epoch in cube.epochs[cube.epochs > reference_epoch].tolist():
            counts = _count_transitions(cube, reference_epoch, epoch, ["eval_set"])
            counts.insert(1, "reference_epoch", reference_epoch)
            counts.insert(2, "epoch", epoch)
            frames.append(counts)
    return _concat(
        frames, ["eval_set", "reference_epoch", "epoch", "transition", "count", "fraction"]
    )


# --------------------------------------------------------------------------- OOD


def common_epochs(a: Cube, b: Cube) -> list[int]:
    """The epochs both cubes hold."""
    return np.intersect1d(a.epochs, b.epochs).tolist()


def _ood_scores(cube: Cube, epoch: int) -> dict[str, np.ndarray]:
    """Per-question scores, higher = more likely out of domain."""
    p_ens = cube.ensemble(epoch)
    return {
        "predictive_entropy": predictive_entropy(p_ens),
        "mutual_information": mutual_information(p_ens),
        "max_prob": 1.0 - ensemble_mean(p_ens).max(axis=-1),
    }


def _ood_problems(
    in_cube: Cube, cube: Cube, epoch: int
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Yield ``(score name, scores, is_ood)`` with in-domain questions first (label 0)."""
    inside, outside = _ood_scores(in_cube, epoch), _ood_scores(cube, epoch)
    is_ood = np.r_[np.zeros(len(in_cube.ids), bool), np.ones(len(cube.ids), bool)]
    for score in OOD_SCORES:
        yield score, np.concatenate([inside[score], outside[score]]), is_ood


def ood_aurocs(in_cube: Cube, cube: Cube, epoch: int) -> dict[str, float]:
    """AUROC of telling ``cube``'s questions from ``in_cube``'s at ``epoch``, per score of
    :data:`OOD_SCORES` (the one definition: ood_table, metrics.json, the methods table)."""
    return {
        score: float(auroc(scores, is_ood))
        for score, scores, is_ood in _ood_problems(in_cube, cube, epoch)
    }


def _split_in_domain(
    logits: pd.DataFrame, in_domain: str, readout: Readout
) -> tuple[Cube, list[Cube]]:
    cubes = eval_set_cubes(logits, readout)
    names = [cube.eval_set for cube in cubes]
    if in_domain not in names:
        raise StoreError(f"in-domain eval set {in_domain!r} is not in the table; it has {names}")
    in_cube = cubes[names.index(in_domain)]
    return in_cube, [cube for cube in cubes if cube.eval_set != in_domain]


def ood_table(
    logits: pd.DataFrame, in_domain: str = "in_domain", readout: Readout = "renormalized"
) -> pd.DataFrame:
    """AUROC of telling each other eval set's questions from ``in_domain``'s, per epoch.

    Columns ``eval_set, epoch, score, auroc``; scores are :data:`OOD_SCORES` of the full
    ensemble (``max_prob`` scores 1 − max p̄). Epochs are those both eval sets have.
    """
    in_cube, others = _split_in_domain(logits, in_domain, readout)
    records = [
        (cube.eval_set, epoch, score, value)
        for cube in others
        for epoch in common_epochs(in_cube, cube)
        for score, value in ood_aurocs(in_cube, cube, epoch).items()
    ]
    return pd.DataFrame.from_records(records, columns=["eval_set", "epoch", "score", "auroc"])


def _roc_curve(scores: np.ndarray, is_positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC curve (fpr, tpr) from (0, 0) to (1, 1), one point per distinct score (ties merged)."""
    order = np.argsort(-scores, kind="stable")
    ordered, positive = scores[order], is_positive[order].astype(bool)
    last_of_tie = np.r_[np.flatnonzero(np.diff(ordered)), len(ordered) - 1]
    true_pos = np.cumsum(positive)[last_of_tie]
    false_pos = last_of_tie + 1 - true_pos
    tpr = np.r_[0, true_pos] / max(positive.sum(), 1)
    fpr = np.r_[0, false_pos] / max((~positive).sum(), 1)
    return fpr, tpr


def roc_points(
    logits: pd.DataFrame,
    epoch: int | None = None,
    in_domain: str = "in_domain",
    readout: Readout = "renormalized",
) -> pd.DataFrame:
    """ROC curves of the OOD detection of :func:`ood_table` at one epoch (default: the last).

    Columns ``eval_set, epoch, score, auroc, fpr, tpr``: one row per curve point, the curve's
    AUROC repeated on each row so a legend can show it. Computed with numpy (no sklearn).
    """
    in_cube, others = _split_in_domain(logits, in_domain, readout)
    frames = []
    for cube in others:
        chosen = common_epochs(in_cube, cube)[-1] if epoch is None else epoch
        for score, scores, is_ood in _ood_problems(in_cube, cube, chosen):
            fpr, tpr = _roc_curve(scores, is_ood)
            frames.append(
                pd.DataFrame(
                    {
                        "eval_set": cube.eval_set,
                        "epoch": chosen,
                        "score": score,
                        "auroc": float(auroc(scores, is_ood)),
                        "fpr": fpr,
                        "tpr": tpr,
                    }
                )
            )
    return _concat(frames, ["eval_set", "epoch", "score", "auroc", "fpr", "tpr"])


# --------------------------------------------------------------------------- calibration


def _labelled_prediction(cube: Cube, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean probabilities p̄ and answers of the full ensemble on labelled questions."""
    return ensemble_mean(cube.ensemble(epoch))[cube.labelled], cube.answers[cube.labelled]


def _confidence_correct(cube: Cube, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """Confidence (max p̄) and correctness of the full ensemble on labelled questions."""
    p_bar, labels = _labelled_prediction(cube, epoch)
    return p_bar.max(axis=-1), p_bar.argmax(axis=-1) == labels


def _reliability_bins(cube: Cube, epoch: int, n_bins: int) -> pd.DataFrame:
    """One eval set's reliability bins, the very bins :func:`lorauq.uncertainty.ece` uses."""
    count, confidence, correct = calibration_bins(*_labelled_prediction(cube, epoch), n_bins)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    empty = count == 0
    return pd.DataFrame(
        {
            "eval_set": cube.eval_set,
            "epoch": epoch,
            "bin": np.arange(n_bins),
            "bin_lower": edges[:-1],
            "bin_upper": edges[1:],
            "confidence": np.where(empty, np.nan, confidence),
            "accuracy": np.where(empty, np.nan, correct),
            "count": count.astype(int),
        }
    )


def reliability_table(
    logits: pd.DataFrame, epoch: int, n_bins: int = 10, readout: Readout = "renormalized"
) -> pd.DataFrame:
    """Reliability diagram data of the full ensemble at ``epoch``, per eval set.

    Columns ``eval_set, epoch, bin, bin_lower, bin_upper, confidence, accuracy, count``: mean
    top-label confidence and accuracy of the labelled questions in each equal-width bin (the
    bins of the ECE); empty bins have count 0 and NaN means.
    """
    frames = [
        _reliability_bins(cube, epoch, n_bins)
        for cube in eval_set_cubes(logits, readout)
        if cube.labelled.any()
    ]
    columns = ["eval_set", "epoch", "bin", "bin_lower", "bin_upper", "confidence", "accuracy"]
    return _concat(frames, [*columns, "count"])


def risk_coverage_table(
    logits: pd.DataFrame, epoch: int, readout: Readout = "renormalized"
) -> pd.DataFrame:
    """Risk–coverage curves of the full ensemble at ``epoch``, abstaining on low max p̄.

    Columns ``eval_set, epoch, coverage, risk`` (risk = error rate among the answered).
    """
    frames = []
    for cube in eval_set_cubes(logits, readout):
        if not cube.labelled.any():
            continue
        coverage, risk = risk_coverage(*_confidence_correct(cube, epoch))
        frames.append(
            pd.DataFrame(
                {"eval_set": cube.eval_set, "epoch": epoch, "coverage": coverage, "risk": risk}
            )
        )
    return _concat(frames, ["eval_set", "epoch", "coverage", "risk"])


# --------------------------------------------------------------------------- agreement


def _check_same_questions(cube: Cube, reference: Cube) -> None:
    if not np.array_equal(cube.ids, reference.ids):
        raise StoreError(
            f"eval set {cube.eval_set!r}: the reference ensemble was evaluated on other questions "
            f"({len(reference.ids)} vs {len(cube.ids)}); agreement needs the same ones"
        )
    if cube.probs.shape[-1] != reference.probs.shape[-1]:
        raise StoreError(
            f"eval set {cube.eval_set!r}: the reference has {reference.probs.shape[-1]} classes, "
            f"the table {cube.probs.shape[-1]}"
        )


_DISTANCES = {"agreement": agreement, "total_variation": total_variation}
#: Columns of :func:`agreement_table`.
AGREEMENT_COLUMNS = [
    "eval_set",
    "epoch",
    "reference_epoch",
    "reference",
    "estimator",
    "ensemble_size",
    "metric",
    "value",
]


def _members_label(cube: Cube) -> str:
    """Which members an ensemble is made of, for legends and titles: ``members 2–4 (M=3)``."""
    ids = cube.members.tolist()
    contiguous = ids == list(range(ids[0], ids[-1] + 1))
    names = f"{ids[0]}–{ids[-1]}" if contiguous and len(ids) > 2 else ", ".join(map(str, ids))
    return f"member{'s' if len(ids) > 1 else ''} {names} (M={len(ids)})"


def _agreement_records(cube: Cube, reference: Cube, epoch: int) -> list[tuple]:
    """Ensemble and member-mean agreement/TV against the reference ensemble, one epoch."""
    reference_epoch = epoch if epoch in reference.epochs else int(reference.epochs[-1])
    target = ensemble_mean(reference.ensemble(reference_epoch))
    members = cube.ensemble(epoch)
    candidates = {
        ENSEMBLE: (cube.n_members, [ensemble_mean(members)]),
        MEMBER_MEAN: (1, list(members)),
    }
    label = _members_label(reference)
    records = []
    for estimator, (size, predictions) in candidates.items():
        for metric, distance in _DISTANCES.items():
            value = float(np.mean([distance(p, target) for p in predictions]))
            records.append(
                (cube.eval_set, epoch, reference_epoch, label, estimator, size, metric, value)
            )
    return records


def agreement_table(
    logits: pd.DataFrame, reference_logits: pd.DataFrame, readout: Readout = "renormalized"
) -> pd.DataFrame:
    """How close the ensemble and its single members are to a reference ensemble (Fig B).

    The paper compared against an independently trained ensemble (rank 32, M=5): how far two
    ensembles' answers differ is what is left of the ensemble's own randomness, so it says
    whether M members are enough. For every eval set both tables have, and every epoch of
    ``logits``: agreement (fraction of questions with the same argmax) and mean
    total-variation distance of (a) the ensemble p̄ of all members in ``logits``
    (``ensemble``, ``ensemble_size`` = their number) and (b) each single member, averaged
    (``member_mean``, size 1), against the reference's p̄ at the *same* epoch when the
    reference has it, else at the reference's final epoch (``reference_epoch`` says which).
    Columns ``eval_set, epoch, reference_epoch, reference, estimator, ensemble_size, metric,
    value``; ``reference`` names the reference's members, e.g. ``members 2–4 (M=3)``.
    """
    references = {cube.eval_set: cube for cube in eval_set_cubes(reference_logits, readout)}
    records = []
    for cube in eval_set_cubes(logits, readout):
        reference = references.get(cube.eval_set)
        if reference is None:
            continue
        _check_same_questions(cube, reference)
        for epoch in cube.epochs.tolist():
            records += _agreement_records(cube, reference, epoch)
    if not records:
        raise StoreError(
            f"the reference shares no eval set with the table (reference has {sorted(references)})"
        )
    return pd.DataFrame.from_records(records, columns=AGREEMENT_COLUMNS)


def split_members(logits: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split the table into two disjoint ensembles: the first ⌊M/2⌋ members and the rest.

    Without a second, independently trained ensemble, the two halves of one ensemble are the
    closest thing to the paper's reference: each half is an ensemble trained the same way
    from other seeds. The larger half (the later member ids) is the reference, the better
    estimate of the posterior predictive. Raises :class:`StoreError` with fewer than two
    members, since one member cannot be split.
    """
    members = np.unique(logits["member"].to_numpy())
    if len(members) < 2:
        raise StoreError(
            f"agreement between halves needs at least 2 members, the table has "
            f"{members.tolist()}; train more members or give a reference ensemble's logits"
        )
    first = members[: len(members) // 2]
    in_first = logits["member"].isin(first)
    return logits[in_first], logits[~in_first]


def half_agreement_table(logits: pd.DataFrame, readout: Readout = "renormalized") -> pd.DataFrame:
    """:func:`agreement_table` of the first half of the members against the second half.

    See :func:`split_members`. At epoch 0 every member is the base model, so agreement is 1
    and total variation 0; how far they move apart over epochs is the ensemble's epistemic
    spread that ⌊M/2⌋ members cannot average away.
    """
    return agreement_table(*split_members(logits), readout=readout)


# --------------------------------------------------------------------------- letter mass

#: Statistics over questions of :func:`letter_mass_table`.
LETTER_MASS_STATISTICS = {
    "mean": np.mean,
    "median": np.median,
    "p05": lambda mass: np.percentile(mass, 5),
}


def _letter_mass(cube: Cube) -> np.ndarray:
    """``(n_epochs, n_questions)``: the letters' share of the ensemble's full-vocabulary p̄.

    ``cube`` must be read out ``with_other``. The full-vocabulary p̄ is the mean of the
    members' softmaxes, so its letter mass is the members' letter masses averaged.
    """
    if cube.readout != "with_other":
        raise ValueError(f"letter mass needs the 'with_other' read-out, not {cube.readout!r}")
    return 1.0 - cube.probs[..., -1].mean(axis=0)


def letter_mass_table(logits: pd.DataFrame) -> pd.DataFrame:
    """How much probability the K answer letters hold out of the whole vocabulary.

    The renormalised read-out divides by this mass, so a model that wanted to say something
    other than a letter still looks confident; when the mass is small the letter
    probabilities describe a choice the model was not making, and the ``with_other`` read-out
    (which keeps the rest as one class) is the honest one. Per eval set and epoch, the mass
    Σ_k exp(logit_k − logsumexp_vocab) of the ensemble's mean full-vocabulary prediction,
    summarised over questions by :data:`LETTER_MASS_STATISTICS` (``p05`` = 5th percentile:
    the worst-covered questions). Epoch 0 is the base model (the prior). Columns ``eval_set,
    epoch, statistic, value``; the mass is a probability in [0, 1], independent of the
    analysis read-out.
    """
    records = [
        (cube.eval_set, int(epoch), statistic, float(summarise(mass)))
        for cube in eval_set_cubes(logits, "with_other")
        for epoch, mass in zip(cube.epochs, _letter_mass(cube), strict=True)
        for statistic, summarise in LETTER_MASS_STATISTICS.items()
    ]
    return pd.DataFrame.from_records(records, columns=["eval_set", "epoch", "statistic", "value"])
