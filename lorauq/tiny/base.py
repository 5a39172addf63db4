"""Build and pre-train the tiny offline base model.

LoRA on a randomly initialised model does not learn (its frozen embeddings and norms bound
the letter logits), so the tiny world's base is pre-trained in full, for well under a
minute, on the "known" membership questions with next-token loss. That gives the base real
prior knowledge to keep or forget, exactly what fine-tuning a 7B model is about.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from lorauq.atomic import atomic_dir
from lorauq.batching import collate_left
from lorauq.config import BaseParams, DataParams
from lorauq.progress import progress_bar
from lorauq.prompt import format_prompt
from lorauq.tiny.model import build_tiny_model, train_tokenizer
from lorauq.tiny.world import WorldSpec, finetune_questions, pretraining_questions

__all__ = ["build_tiny_base", "pretrain"]


def _texts(frame, template: str, with_answer: bool) -> list[str]:
    return [
        format_prompt(row, template=template, with_answer=with_answer)
        for row in frame.to_dict("records")
    ]


def pretrain(
    model, tokenizer, texts: list[str], params: BaseParams, progress: bool = True
) -> list[float]:
    """Full next-token training of ``model`` on ``texts``; returns the loss per step."""
    encoded = [tokenizer(t)["input_ids"] for t in texts]
    generator = torch.Generator().manual_seed(params.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=params.pretrain_lr, weight_decay=0.0)
    model.train()
    losses = []
    bar = progress_bar(range(params.pretrain_steps), "pre-train tiny base", enabled=progress)
    for _ in bar:
        rows = torch.randint(
            len(encoded), (params.pretrain_batch_size,), generator=generator
        ).tolist()
        input_ids, attention_mask, position_ids = collate_left(
            [encoded[i] for i in rows], tokenizer.pad_token_id
        )
        labels = input_ids.masked_fill(attention_mask == 0, -100)
        loss = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            labels=labels,
        ).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
    model.eval()
    return losses


def build_tiny_base(
    out_dir: str | Path, base: BaseParams, data: DataParams, progress: bool = True
) -> Path:
    """Train the tokenizer, build and pre-train the tiny model, save both to ``out_dir``.

    The folder is written under a temporary name and renamed, so it is complete or absent.
    """
    out_dir = Path(out_dir)
    spec = WorldSpec.from_params(data.world)
    corpus = pretraining_questions(spec)
    pretrain_texts = _texts(corpus, data.template, with_answer=True)
    # The vocabulary also covers the fine-tuning questions' words; digits (the unseen
    # domain) stay byte-level pieces the model never trained on.
    vocab_texts = pretrain_texts + _texts(finetune_questions(spec), data.template, with_answer=True)
    tokenizer = train_tokenizer(vocab_texts, base.vocab_size)
    model = build_tiny_model(tokenizer, base)
    losses = pretrain(model, tokenizer, pretrain_texts, base, progress=progress)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        summary = {
            "parameters": int(sum(p.numel() for p in model.parameters())),
            "vocab_size": len(tokenizer),
            "pretrain_steps": base.pretrain_steps,
            "final_loss": float(np.mean(losses[-20:])),
        }
        (tmp / "pretraining.json").write_text(json.dumps(summary, indent=2))
    return out_dir
