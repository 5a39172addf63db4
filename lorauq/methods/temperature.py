"""Method ``temperature``: a member's letter logits divided by T, fitted by NLL on the
held-out training rows (``data/prepared/calibration.parquet``), once per seed.

Each member's final adapter is evaluated on the held-out rows
(:func:`lorauq.methods.held_out.held_out_logits`); T is fitted on them and applied to the
member's stored logits. Its record:
:data:`lorauq.methods.registry.METHODS`.
"""

from __future__ import annotations

import pandas as pd

from lorauq.config import Params
from lorauq.layout import Layout
from lorauq.methods import posthoc
from lorauq.methods.held_out import held_out_logits
from lorauq.stages.methods import MethodOutput, final_adapter, main_logits

__all__ = ["calibration_logits", "run"]


def calibration_logits(params: Params, layout: Layout) -> pd.DataFrame:
    """Every member's final adapter on the held-out rows."""
    folders = {}
    for member in params.members:
        adapter, final = final_adapter(params, layout, member)
        folders[(member, final)] = adapter
    return held_out_logits(params, layout, folders, prefix="temperature")


def run(params: Params, layout: Layout, progress: bool = False) -> MethodOutput:
    """Member m's final logits over its own fitted T as run m, for every member."""
    logits = main_logits(params, layout)
    held = calibration_logits(params, layout)
    runs, temperatures = {}, {}
    for m in params.members:
        temperatures[m] = posthoc.fit_temperature(held[held["member"] == m])
        runs[m] = posthoc.scale(posthoc.single(logits, m), temperatures[m])
    fitted = {
        "temperature": temperatures[0],
        "calibration_rows": int((held["member"] == 0).sum()),
        "temperatures": [temperatures[m] for m in params.members],
    }
    return MethodOutput(runs.pop(0), fitted, runs=runs)
