"""Reference maths on stored logits with numpy alone, to check lorauq's numbers against:
each member's softmax over a question's own letters (the ``renormalized`` read-out)."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["member_probs"]


def member_probs(logits: pd.DataFrame) -> tuple[dict[str, np.ndarray], pd.Series]:
    """Per question id (sorted), its members' softmax over its own letters, shape
    (members, K) in member order; and the answers by id."""
    letters = [c for c in logits.columns if c.startswith("logit_")]
    probs = {}
    for qid, rows in logits.sort_values(["id", "member"]).groupby("id"):
        z = rows[letters].to_numpy(dtype=float)
        z = z[:, ~np.isnan(z[0])]
        p = np.exp(z - z.max(axis=1, keepdims=True))
        probs[qid] = p / p.sum(axis=1, keepdims=True)
    return probs, logits.groupby("id")["answer"].first()
