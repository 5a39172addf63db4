"""Stage ``prior`` / ``infer@<ensemble>-<members>``: letter logits of the base (epoch 0) or of
every epoch of one stage's members, plus what their training left in each checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from lorauq.atomic import write_text_atomic
from lorauq.checkpoints import completed_epochs, epoch_dir, training_record
from lorauq.config import Params
from lorauq.infer import evaluate_members, evaluate_prior
from lorauq.layout import Layout
from lorauq.model import load_base, set_threads
from lorauq.questions import read_prepared

__all__ = ["eval_sets", "run", "write_training"]


def eval_sets(params: Params, layout: Layout = Layout()) -> dict[str, pd.DataFrame]:
    """The prepared eval tables, in the order of ``data.eval``."""
    return {name: read_prepared(layout.eval_table(name)) for name in params.data.eval}


def write_training(params: Params, ensemble: str, unit: str, layout: Layout) -> Path:
    """``members-<unit>.training.json``: per member and epoch, the training log and the
    LoRA-L2 norm of the saved adapter (Fig A's companion, the authors' LoRA-L2 curve)."""
    records = []
    for member in params.stage_members(unit):
        folder = layout.member_dir(ensemble, unit, member)
        records += [training_record(epoch_dir(folder, e)) for e in completed_epochs(folder)]
    path = layout.unit_training(ensemble, unit)
    write_text_atomic(path, json.dumps(records, indent=1, sort_keys=True) + "\n")
    return path


def run(
    params: Params,
    ensemble: str | None,
    unit: str | None = None,
    layout: Layout = Layout(),
    progress: bool = True,
) -> Path:
    """Every epoch of the members of ``unit`` in ``ensemble``, or the prior (``ensemble=None``)."""
    set_threads(params.infer.threads)
    model, tokenizer = load_base(params.base, layout.base)
    common = {
        "template": params.data.template,
        "infer": params.infer,
        "stored_letters": params.data.stored_letters,
        "progress": progress,
    }
    if ensemble is None:
        return evaluate_prior(
            model, tokenizer, eval_sets(params, layout), layout.prior_logits, **common
        )
    params.ensemble(ensemble)
    unit = str(unit)
    folders = {m: layout.member_dir(ensemble, unit, m) for m in params.stage_members(unit)}
    written = evaluate_members(
        model,
        tokenizer,
        eval_sets(params, layout),
        folders,
        layout.unit_logits(ensemble, unit),
        **common,
    )
    write_training(params, ensemble, unit, layout)
    return written
