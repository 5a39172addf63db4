"""MC dropout: one LoRA member read out with its dropout left on, one sample per pass.

The member is trained with ``lora.dropout`` p like any other (bayesian-peft's MC-dropout
baseline); at evaluation the LoRA dropout of every adapted layer stays active and each pass
draws its masks from its own seed, so the T passes are T samples, the same on every rerun on
one machine. With p = 0 every pass is the deterministic member.

The method ``mc_dropout`` (:func:`run`) trains that member from member 0's seed (and, with
``methods.mc_dropout.runs`` > 1, one more from each next member's seed). Its record:
:data:`lorauq.methods.registry.METHODS`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import torch

from lorauq.config import InferParams, Params
from lorauq.errors import StoreError
from lorauq.layout import Layout
from lorauq.lora import load_adapter
from lorauq.methods.own_member import own_member_runs
from lorauq.readout import encode_eval_sets, letter_table, tag_table
from lorauq.stages.methods import MethodOutput

__all__ = ["dropout_samples", "run"]


def _active_dropout(model, dropout: float) -> int:
    """Put a live ``Dropout(dropout)`` on the input of every LoRA layer; how many there are.

    peft stores an ``Identity`` there when trained with p = 0, so the module is replaced
    rather than switched to training mode; the rest of the model stays in eval mode.
    """
    count = 0
    for module in model.modules():
        table = getattr(module, "lora_dropout", None)
        if isinstance(table, torch.nn.ModuleDict):
            for name in list(table.keys()):
                table[name] = torch.nn.Dropout(dropout) if dropout > 0 else torch.nn.Identity()
                table[name].train()
                count += 1
    return count


def dropout_samples(
    base_model,
    tokenizer,
    adapter: str | Path,
    eval_sets: Mapping[str, pd.DataFrame],
    *,
    epoch: int,
    dropout: float,
    passes: int,
    seed: int,
    template: str = "paper",
    infer: InferParams | None = None,
    stored_letters: int | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """``passes`` stochastic passes of the adapter in ``adapter`` over every eval set: rows of
    the logits store, pass t as member t at ``epoch``; pass t's masks come from seed
    ``seed * 1_000_003 + t``. ``dropout`` and ``passes`` are
    :class:`lorauq.methods.registry.McDropoutSettings`, checked there when params load."""
    model = load_adapter(base_model, adapter)
    if _active_dropout(model, dropout) == 0:
        raise StoreError(f"{adapter}: no LoRA layers found to drop out")
    encoded = encode_eval_sets(
        tokenizer,
        eval_sets,
        template=template,
        infer=infer,
        stored_letters=stored_letters,
        prefix="mc dropout",
    )
    tables = []
    for t in range(passes):
        for name, enc in encoded.items():
            torch.manual_seed(seed * 1_000_003 + t)
            table = letter_table(
                model, enc, pad_id=tokenizer.pad_token_id, infer=infer, progress=progress
            )
            tables.append(tag_table(table, t, epoch, name))
    return pd.concat(tables, ignore_index=True)


def run(params: Params, layout: Layout, progress: bool = False) -> MethodOutput:
    """The method ``mc_dropout``: member 0 of the main ensemble trained again (its seed, its
    settings) with LoRA dropout ``methods.mc_dropout.dropout``, then its passes; the same from
    members 1 … runs − 1 as its other runs."""
    import dataclasses

    from lorauq.train import train_member

    m = params.methods.mc_dropout

    def train_fn(*args, lora, **kwargs):
        return train_member(
            *args, lora=dataclasses.replace(lora, dropout=m.dropout), progress=progress, **kwargs
        )

    table, runs = own_member_runs(
        params,
        layout,
        "mc_dropout",
        m,
        train_fn,
        lambda seed: functools.partial(
            dropout_samples, dropout=m.dropout, passes=m.passes, seed=seed
        ),
    )
    return MethodOutput(table, {"dropout": m.dropout}, runs=runs)
