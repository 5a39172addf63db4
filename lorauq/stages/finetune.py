"""Stage ``finetune@<ensemble>-<members>``: the members of one ensemble that one stage trains.

One member per stage lets members run on different GPUs or machines; several per stage
save the process start-up that dominates small models (the tiny profile trains an ensemble
in one stage). Several members are trained together in one pass through one loaded base
(``train.joint``, :func:`lorauq.joint.train_members`) or one after another, each on a fresh
base (:func:`lorauq.train.train_member`); the checkpoints have the same files either way, and
either way resumes after each member's last complete epoch.
"""

from __future__ import annotations

from lorauq.config import Params
from lorauq.joint import train_members
from lorauq.layout import Layout
from lorauq.model import load_base, set_threads
from lorauq.questions import read_prepared
from lorauq.train import batch_order_stream, train_member

__all__ = ["run"]


def run(
    params: Params, ensemble: str, unit: str, layout: Layout = Layout(), progress: bool = True
) -> dict[int, list[dict]]:
    """Train the members of ``unit`` in ``ensemble``; their epoch logs by member."""
    spec = params.ensemble(ensemble)
    members = params.stage_members(unit)
    set_threads(spec.train.threads)
    train_frame = read_prepared(layout.train_table)
    folders = {member: layout.member_dir(ensemble, str(unit), member) for member in members}
    common = {
        "lora": spec.lora,
        "train": spec.train,
        "template": params.data.template,
        "progress": progress,
        "order_stream": batch_order_stream(spec.train, ensemble),
    }
    if spec.train.joint and len(members) > 1:
        model, tokenizer = load_base(params.base, layout.base)
        return train_members(model, tokenizer, train_frame, folders, **common)
    logs = {}
    for member, folder in folders.items():
        model, tokenizer = load_base(params.base, layout.base)  # peft wraps it in place
        logs[member] = train_member(
            model, tokenizer, train_frame, member=member, member_dir=folder, **common
        )
    return logs
