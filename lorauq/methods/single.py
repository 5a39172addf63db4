"""Method ``single``: each member alone at the final epoch (the paper's M = 1), once per seed.

It reads the main ensemble's stored logits and nothing else; its rows are the mean ± std of
the M one-member runs. Its record: :data:`lorauq.methods.registry.METHODS`.
"""

from __future__ import annotations

from lorauq.config import Params
from lorauq.layout import Layout
from lorauq.methods import posthoc
from lorauq.stages.methods import MethodOutput, main_logits

__all__ = ["run"]


def run(params: Params, layout: Layout, progress: bool = False) -> MethodOutput:
    """Member m's final-epoch logits as run m, for every member of the main ensemble."""
    logits = main_logits(params, layout)
    runs = {m: posthoc.single(logits, m) for m in params.members}
    return MethodOutput(runs.pop(0), runs=runs)
