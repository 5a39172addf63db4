"""A hand-built logits table whose probabilities are known, for the analysis, report and plot
tests.

The table (``build_logits()``) has 3 members, epochs 0–2 and three eval sets:

- ``in_domain``: 5 choices, 6 questions. Every member peaks on the same letter (the ensemble's
  prediction, fixed per epoch below) with weight 0.66 at epoch 0 (identical members: the base
  model) and 0.67/0.72/0.77 afterwards, so the ensemble's argmax and transitions are known.
- ``near``: 4 choices except question 4, which has 3 choices and no answer (−1).
- ``far``: 4 choices; after epoch 0 the members peak on different letters (they disagree), so
  entropy and MI are higher and max p̄ lower than on any in-domain question: perfect OOD.

Logits are log-probabilities, so the renormalised read-out gives back the probabilities
(up to float32 storage); ``logsumexp_vocab`` leaves 20 % of the mass to "other".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lorauq.schema import LOGIT_COLUMNS
from lorauq.store import normalize_logits_frame, validate_logits

MEMBERS = (0, 1, 2)
EPOCHS = (0, 1, 2)
OTHER_MASS = 0.2

#: in_domain: the letter every member peaks on, per epoch. Answers are [0, 1, 2, 3, 4, 0], so
#: from epoch 0 to 2: q0 right→wrong (forgotten), q1 q2 right→right, q3 q5 wrong→right
#: (learned), q4 wrong→wrong.
IN_DOMAIN_PEAKS = {0: [0, 1, 2, 0, 0, 1], 1: [0, 1, 2, 3, 0, 1], 2: [1, 1, 2, 3, 0, 0]}
IN_DOMAIN_ANSWERS = np.array([0, 1, 2, 3, 4, 0])


def peaked(n_choices: int, peak: int, weight: float, width: int) -> np.ndarray:
    """``weight`` on ``peak``, the rest spread evenly over the other choices, 0 past them."""
    p = np.zeros(width)
    p[:n_choices] = (1 - weight) / (n_choices - 1)
    p[peak] = weight
    return p


def in_domain_probs() -> np.ndarray:
    probs = np.empty((3, 3, 6, 5))
    for m in range(3):
        for e in range(3):
            weight = 0.66 if e == 0 else 0.72 + 0.05 * (m - 1)
            for q, peak in enumerate(IN_DOMAIN_PEAKS[e]):
                probs[m, e, q] = peaked(5, peak, weight, 5)
    return probs


NEAR_CHOICES = np.array([4, 4, 4, 4, 3])
NEAR_ANSWERS = np.array([0, 1, 2, 3, -1])


def near_probs() -> np.ndarray:
    probs = np.empty((3, 3, 5, 4))
    for m in range(3):
        for e in range(3):
            peaks = [0, 1, 2, 0, 1] if e == 0 else [0, 1, 2, 3, 1]
            weight = 0.52 if e == 0 else 0.5 + 0.1 * e + 0.03 * m
            for q, peak in enumerate(peaks):
                probs[m, e, q] = peaked(NEAR_CHOICES[q], peak, weight, 4)
    return probs


def far_probs() -> np.ndarray:
    probs = np.empty((3, 3, 4, 4))
    for m in range(3):
        for e in range(3):
            for q in range(4):
                peak, weight = (q, 0.45) if e == 0 else ((q + m) % 4, 0.45 - 0.05 * m)
                probs[m, e, q] = peaked(4, peak, weight, 4)
    return probs


#: eval set -> (answers, n_choices per question, probs (member, epoch, question, class))
KNOWN = {
    "far": (np.arange(4), np.full(4, 4), far_probs()),
    "in_domain": (IN_DOMAIN_ANSWERS, np.full(6, 5), in_domain_probs()),
    "near": (NEAR_ANSWERS, NEAR_CHOICES, near_probs()),
}


def store_rows(eval_set: str, answers: np.ndarray, n_choices: np.ndarray, probs: np.ndarray):
    """Rows in the store schema whose letter logits are log-probabilities."""
    for m, member in enumerate(MEMBERS):
        for e, epoch in enumerate(EPOCHS):
            for q, answer in enumerate(answers):
                row = {
                    "member": member,
                    "epoch": epoch,
                    "eval_set": eval_set,
                    "id": f"{eval_set}-{q}",
                    "subject": f"{eval_set}-subject{q % 2}",
                    "group": "stem" if q % 2 else "other",
                    "answer": answer,
                    "n_choices": n_choices[q],
                    "logsumexp_vocab": -np.log(1 - OTHER_MASS),
                }
                row.update(
                    {LOGIT_COLUMNS[k]: np.log(probs[m, e, q, k]) for k in range(n_choices[q])}
                )
                yield row


def build_logits() -> pd.DataFrame:
    rows = [row for name, known in KNOWN.items() for row in store_rows(name, *known)]
    table = normalize_logits_frame(pd.DataFrame(rows))
    validate_logits(table)
    return table
