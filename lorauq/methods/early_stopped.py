"""Method ``early_stopped``: the LoRA ensemble with early stopping on held-out training rows.

Every member of the main ensemble is evaluated at every checkpoint (its ``epoch-<k>``
adapters) on the held-out rows (``data/prepared/calibration.parquet``,
:func:`lorauq.methods.held_out.held_out_logits`); each member keeps the checkpoint with the
lowest held-out NLL (ties: the earlier one), and the run is the members' stored logits at
their chosen checkpoints. The choice sees no eval set, so the row's numbers on the in-domain
set are not selected on it (unlike ``lora_ensemble@best``). The samples are labelled with the
final checkpoint's epoch, the one every other method is compared at, so the methods table
reads them as one ensemble; ``info.json`` says which checkpoint (and step) each member
stopped at. Its record: :data:`lorauq.methods.registry.METHODS`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lorauq.checkpoints import training_record
from lorauq.config import Params
from lorauq.errors import StoreError
from lorauq.layout import Layout
from lorauq.methods import posthoc
from lorauq.methods.held_out import held_out_logits
from lorauq.schema import LOGIT_COLUMNS
from lorauq.stages.methods import MethodOutput, main_logits, member_checkpoints

__all__ = ["Stop", "choose_checkpoints", "run"]


@dataclass(frozen=True)
class Stop:
    """One member's early stop: the chosen checkpoint (``epoch`` column) and the held-out NLL
    of each of its checkpoints, in order."""

    epoch: int
    nll: dict[int, float]


def choose_checkpoints(held: pd.DataFrame) -> dict[int, Stop]:
    """Per member of ``held`` (logits-store rows of the held-out rows, one epoch per
    checkpoint), the checkpoint whose letters give the lowest mean NLL of the labelled rows,
    the earlier of equal ones. The NLL is the renormalised letters' (a softmax over each
    question's own letters), the read-out the checkpoint was trained for."""
    labelled = held[held["answer"] >= 0]
    if labelled.empty:
        raise StoreError("early stopping: no labelled held-out rows to choose checkpoints on")
    stops = {}
    for member, rows in labelled.groupby("member", sort=True):
        nll = {}
        for epoch, at in rows.groupby("epoch", sort=True):
            logits = at[LOGIT_COLUMNS].to_numpy(dtype=np.float64)
            nll[int(epoch)] = posthoc.temperature_nll(logits, at["answer"].to_numpy(), 1.0)
        best = min(nll, key=lambda epoch: (nll[epoch], epoch))
        stops[int(member)] = Stop(best, nll)
    return stops


def run(params: Params, layout: Layout, progress: bool = False) -> MethodOutput:
    """The members at their chosen checkpoints as samples 0…M−1 of one run."""
    logits = main_logits(params, layout)
    members = list(params.members)
    checkpoints = {m: member_checkpoints(params, layout, m) for m in members}
    folders = {(m, e): folder for m, found in checkpoints.items() for e, folder in found.items()}
    held = held_out_logits(params, layout, folders, "early_stopped", progress)
    stops = choose_checkpoints(held)
    label = max(max(found) for found in checkpoints.values())
    samples = pd.concat(
        [
            posthoc.single(logits, m, stops[m].epoch).assign(member=sample, epoch=label)
            for sample, m in enumerate(members)
        ],
        ignore_index=True,
    )
    fitted = {
        "members": members,
        "checkpoint_count": max(len(found) for found in checkpoints.values()),
        "chosen_epoch": [stops[m].epoch for m in members],
        # the step lorauq.schedule put the checkpoint at, as its training log recorded it
        "chosen_step": [
            training_record(checkpoints[m][stops[m].epoch]).get("step") for m in members
        ],
        "held_out_nll": [[stops[m].nll[e] for e in sorted(stops[m].nll)] for m in members],
        "calibration_rows": int((held.drop_duplicates("id")["answer"] >= 0).sum()),
        "samples_epoch": label,
    }
    return MethodOutput(samples, fitted)
