"""Stage ``finetune@m``: one ensemble member, resuming after its last complete epoch."""

from __future__ import annotations

from lorauq.config import Params
from lorauq.errors import StoreError
from lorauq.layout import Layout
from lorauq.model import load_base, set_threads
from lorauq.questions import read_prepared
from lorauq.train import train_member


def run(
    params: Params, member: int, layout: Layout = Layout(), progress: bool = True
) -> list[dict]:
    """Train member ``member``; returns its epoch logs (loss, prior term, tokens, seconds)."""
    if member not in params.members:
        raise StoreError(f"member {member} is not in params members {params.members}")
    set_threads(params.train.threads)
    model, tokenizer = load_base(params.base, layout.base)
    return train_member(
        model,
        tokenizer,
        read_prepared(layout.train_table),
        member=member,
        member_dir=layout.member_dir(member),
        lora=params.lora,
        train=params.train,
        template=params.data.template,
        progress=progress,
    )
