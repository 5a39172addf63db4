"""Methods that need no model: new sample sets drawn from logits the experiment already has.

``single`` (one member), ``checkpoints`` (a snapshot ensemble of one member's last epochs) and
``temperature`` (one member's logits divided by a temperature fitted on held-out training
rows) are table operations, so they are exact, cheap and testable without a model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lorauq.errors import ConfigError, StoreError
from lorauq.schema import LOGIT_COLUMNS

__all__ = [
    "TEMPERATURE_BOUNDS",
    "fit_temperature",
    "scale",
    "single",
    "snapshot",
    "temperature_nll",
]

#: The search range of the temperature (log-uniform bounds): far beyond any sensible fit.
TEMPERATURE_BOUNDS = (1e-2, 1e2)


def _member_rows(table: pd.DataFrame, member: int) -> pd.DataFrame:
    rows = table[table["member"] == member]
    if rows.empty:
        raise StoreError(
            f"logits table has no member {member}; it has {sorted(set(table['member']))}"
        )
    return rows


def single(table: pd.DataFrame, member: int = 0, epoch: int | None = None) -> pd.DataFrame:
    """Member ``member`` at ``epoch`` (default its last) as a one-sample method (member 0)."""
    rows = _member_rows(table, member)
    epoch = int(rows["epoch"].max()) if epoch is None else epoch
    rows = rows[rows["epoch"] == epoch]
    if rows.empty:
        raise StoreError(f"member {member} has no epoch {epoch}")
    return rows.assign(member=0).reset_index(drop=True)


def snapshot(table: pd.DataFrame, last: int, member: int = 0) -> pd.DataFrame:
    """The snapshot ensemble: member ``member``'s ``last`` final epochs as samples 0…last−1,
    all labelled with the final epoch (the one they are compared at)."""
    rows = _member_rows(table, member)
    epochs = sorted(e for e in set(rows["epoch"]) if e > 0)  # epoch 0 is the base, not a member
    if not 1 <= last <= len(epochs):
        raise ConfigError(
            f"methods.checkpoints.last is {last}; member {member} has {len(epochs)} trained epochs"
        )
    chosen = epochs[-last:]
    parts = [
        rows[rows["epoch"] == e].assign(member=sample, epoch=chosen[-1])
        for sample, e in enumerate(chosen)
    ]
    return pd.concat(parts, ignore_index=True)


def _letter_matrix(rows: pd.DataFrame) -> np.ndarray:
    return rows[LOGIT_COLUMNS].to_numpy(dtype=np.float64)


def temperature_nll(logits: np.ndarray, answers: np.ndarray, temperature: float) -> float:
    """Mean NLL of the renormalised letters of ``logits / temperature`` (NaN: no letter)."""
    scaled = np.where(np.isnan(logits), -np.inf, logits / temperature)
    top = scaled.max(axis=1, keepdims=True)
    logz = top[:, 0] + np.log(np.exp(scaled - top).sum(axis=1))
    return float(np.mean(logz - scaled[np.arange(len(answers)), answers]))


def fit_temperature(rows: pd.DataFrame) -> float:
    """The temperature minimising the NLL of the labelled ``rows`` (held-out training rows).

    One parameter, a smooth unimodal-in-practice objective: a golden-section search in log T
    over :data:`TEMPERATURE_BOUNDS` (to 1e-6 in log T) needs no learning rate and no scipy.
    """
    rows = rows[rows["answer"] >= 0]
    if rows.empty:
        raise StoreError("temperature scaling: no labelled calibration rows to fit on")
    logits, answers = _letter_matrix(rows), rows["answer"].to_numpy()

    def loss(log_t: float) -> float:
        return temperature_nll(logits, answers, float(np.exp(log_t)))

    low, high = (float(v) for v in np.log(TEMPERATURE_BOUNDS))
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = loss(a), loss(b)
    while high - low > 1e-6:
        if fa < fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = loss(a)
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = loss(b)
    return float(np.exp((low + high) / 2.0))


def scale(rows: pd.DataFrame, temperature: float) -> pd.DataFrame:
    """Rows with letter logits divided by ``temperature``.

    The vocabulary log-sum-exp is divided too, which is exact for the renormalised read-out
    (it ignores that column) and only an approximation for ``with_other``: the store keeps
    K letters, not the vocabulary a scaled log-sum-exp would need.
    """
    if temperature <= 0:
        raise ConfigError(f"temperature must be positive, got {temperature}")
    out = rows.copy()
    out[LOGIT_COLUMNS] = rows[LOGIT_COLUMNS] / temperature
    out["logsumexp_vocab"] = rows["logsumexp_vocab"] / temperature
    return out
