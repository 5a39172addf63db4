"""Methods that train a member of their own: member 0's seed, the main ensemble's settings.

MC dropout trains it with LoRA dropout, IVON with another optimiser; both train it into
``data/methods/<name>/member-0`` with the ensemble's batch order, then read out its final
epoch. With ``runs`` > 1 in their settings, run r trains member r's seed into
``member-<r>`` the same way and reads it out with its own sampling seed
(:func:`lorauq.methods.registry.run_seed`). What differs is the training and the read-out,
passed in; this module is the rest.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from lorauq.config import Params
from lorauq.layout import Layout
from lorauq.methods.registry import IvonSettings, McDropoutSettings, run_seed
from lorauq.stages.methods import method_dir

__all__ = ["own_member", "own_member_runs"]


def own_member(
    params: Params,
    layout: Layout,
    name: str,
    train_fn: Callable[..., object],
    read_fn: Callable[..., pd.DataFrame],
    member: int = 0,
) -> pd.DataFrame:
    """Train member ``member``'s seed with ``train_fn`` (``lorauq.train.train_member``'s
    arguments) into ``data/methods/<name>/member-<member>``, resuming after its last complete
    epoch, then read its final epoch out on every eval set with ``read_fn`` (the read-outs'
    arguments); each on a fresh base, since peft wraps the one it trains on."""
    from lorauq.checkpoints import completed_epochs, epoch_dir
    from lorauq.model import load_base
    from lorauq.questions import read_prepared
    from lorauq.stages.infer import eval_sets
    from lorauq.train import batch_order_stream

    spec = params.ensemble(params.main_ensemble)
    folder = method_dir(layout, name) / f"member-{member}"
    model, tokenizer = load_base(params.base, layout.base)
    train_fn(
        model,
        tokenizer,
        read_prepared(layout.train_table),
        member=member,
        member_dir=folder,
        lora=spec.lora,
        train=spec.train,
        template=params.data.template,
        order_stream=batch_order_stream(spec.train, params.main_ensemble),
    )
    final = completed_epochs(folder)[-1]
    model, tokenizer = load_base(params.base, layout.base)  # fresh: peft wrapped the first
    return read_fn(
        model,
        tokenizer,
        epoch_dir(folder, final),
        eval_sets(params, layout),
        epoch=final,
        template=params.data.template,
        infer=params.infer,
        stored_letters=params.data.stored_letters,
    )


def own_member_runs(
    params: Params,
    layout: Layout,
    name: str,
    settings: McDropoutSettings | IvonSettings,
    train_fn: Callable[..., object],
    read_fn: Callable[[int], Callable[..., pd.DataFrame]],
) -> tuple[pd.DataFrame, dict[int, pd.DataFrame]]:
    """``settings.runs`` runs of :func:`own_member`, run r from member r's seed and read out by
    ``read_fn(seed)`` with the sampling seed :func:`lorauq.methods.registry.run_seed` gives it
    from ``settings.seed``: run 0's samples, and the other runs' by member."""
    tables = {
        r: own_member(params, layout, name, train_fn, read_fn(run_seed(settings.seed, r)), r)
        for r in range(settings.runs)
    }
    return tables.pop(0), tables
