"""MC dropout: one LoRA member read out with its dropout left on, one sample per pass.

The member is trained with ``lora.dropout`` p like any other (bayesian-peft's MC-dropout
baseline); at evaluation the LoRA dropout of every adapted layer stays active and each pass
draws its masks from its own seed, so the T passes are T samples, the same on every rerun on
one machine. With p = 0 every pass is the deterministic member.

The method ``mc_dropout`` (:func:`run`) trains that member from member 0's seed. Its record:
:data:`lorauq.methods.registry.METHODS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import torch

from lorauq.config import InferParams, Params
from lorauq.errors import StoreError
from lorauq.layout import Layout
from lorauq.readout import encode_eval_sets, letter_table, tag_table
from lorauq.stages.methods import MethodOutput, method_dir

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
    from peft import PeftModel

    try:
        model = PeftModel.from_pretrained(base_model, str(adapter), is_trainable=False)
    except Exception as exc:
        raise StoreError(f"{adapter}: adapter cannot be loaded onto this base ({exc})") from exc
    model.eval()
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
    settings) with LoRA dropout ``methods.mc_dropout.dropout``, then its passes."""
    import dataclasses

    from lorauq.checkpoints import completed_epochs, epoch_dir
    from lorauq.model import load_base
    from lorauq.questions import read_prepared
    from lorauq.stages.infer import eval_sets
    from lorauq.train import batch_order_stream, train_member

    spec = params.ensemble(params.main_ensemble)
    m = params.methods.mc_dropout
    folder = method_dir(layout, "mc_dropout") / "member-0"
    model, tokenizer = load_base(params.base, layout.base)
    train_member(
        model,
        tokenizer,
        read_prepared(layout.train_table),
        member=0,
        member_dir=folder,
        lora=dataclasses.replace(spec.lora, dropout=m.dropout),
        train=spec.train,
        template=params.data.template,
        progress=progress,
        order_stream=batch_order_stream(spec.train, params.main_ensemble),
    )
    final = completed_epochs(folder)[-1]
    model, tokenizer = load_base(params.base, layout.base)  # fresh: peft wrapped the first
    table = dropout_samples(
        model,
        tokenizer,
        epoch_dir(folder, final),
        eval_sets(params, layout),
        epoch=final,
        dropout=m.dropout,
        passes=m.passes,
        seed=m.seed,
        template=params.data.template,
        infer=params.infer,
        stored_letters=params.data.stored_letters,
    )
    return MethodOutput(table, {"dropout": m.dropout})
