"""Method ``checkpoints``: the snapshot ensemble, a member's last k epoch checkpoints, once
per seed.

It reads the main ensemble's stored logits and nothing else (``methods.checkpoints.last``
= k). Its record: :data:`lorauq.methods.registry.METHODS`.
"""

from __future__ import annotations

from lorauq.config import Params
from lorauq.layout import Layout
from lorauq.methods import posthoc
from lorauq.stages.methods import MethodOutput, main_logits

__all__ = ["run"]


def run(params: Params, layout: Layout, progress: bool = False) -> MethodOutput:
    """Member m's last k epochs as the k samples of run m, for every member."""
    logits = main_logits(params, layout)
    k = params.methods.checkpoints.last
    runs = {m: posthoc.snapshot(logits, k, m) for m in params.members}
    return MethodOutput(runs.pop(0), runs=runs)
