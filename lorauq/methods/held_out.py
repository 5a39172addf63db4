"""What the methods that read the held-out training rows share: adapters of the main ensemble
evaluated on ``data/prepared/calibration.parquet`` (the ``data.calibration_fraction`` of the
training source that fine-tuning never saw).

``temperature`` fits T on the members' final adapters there; ``early_stopped`` chooses each
member's checkpoint there. One base load, the rows encoded once, the adapters in turn, as
inference does without joint evaluation.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from lorauq.config import Params
from lorauq.layout import Layout

__all__ = ["held_out_logits"]


def held_out_logits(
    params: Params,
    layout: Layout,
    folders: Mapping[tuple[int, int], Path],
    prefix: str,
    progress: bool = False,
) -> pd.DataFrame:
    """The logits-store rows of each ``(member, epoch) → adapter folder`` on the held-out rows
    (eval set ``calibration``); ``prefix`` names the method in progress lines."""
    from lorauq.infer import evaluate_in_turn
    from lorauq.model import load_base
    from lorauq.questions import read_prepared
    from lorauq.readout import encode_eval_sets

    model, tokenizer = load_base(params.base, layout.base)
    encoded = encode_eval_sets(
        tokenizer,
        {"calibration": read_prepared(layout.calibration_table)},
        template=params.data.template,
        infer=params.infer,
        stored_letters=params.data.stored_letters,
        prefix=prefix,
    )
    tables: list[pd.DataFrame] = []
    evaluate_in_turn(
        model,
        tokenizer.pad_token_id,
        encoded,
        folders,
        params.infer,
        progress,
        lambda member, epoch, member_tables: tables.extend(member_tables),
    )
    return pd.concat(tables, ignore_index=True)
