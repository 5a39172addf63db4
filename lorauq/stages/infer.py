"""Stage ``prior`` / ``infer@m``: letter logits of the base (epoch 0) or of a member's epochs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lorauq.config import Params
from lorauq.infer import evaluate_member, evaluate_prior
from lorauq.layout import Layout
from lorauq.model import load_base, set_threads
from lorauq.questions import read_prepared


def eval_sets(params: Params, layout: Layout = Layout()) -> dict[str, pd.DataFrame]:
    """The prepared eval tables, in the order of ``data.eval``."""
    return {name: read_prepared(layout.eval_table(name)) for name in params.data.eval}


def run(
    params: Params, member: int | None, layout: Layout = Layout(), progress: bool = True
) -> Path:
    """Every epoch of ``member`` on every eval set, or the prior (``member=None``)."""
    set_threads(params.infer.threads)
    model, tokenizer = load_base(params.base, layout.base)
    common = {"template": params.data.template, "infer": params.infer, "progress": progress}
    if member is None:
        return evaluate_prior(
            model, tokenizer, eval_sets(params, layout), layout.prior_logits, **common
        )
    return evaluate_member(
        model,
        tokenizer,
        eval_sets(params, layout),
        layout.member_dir(member),
        layout.member_logits(member),
        member=member,
        **common,
    )
