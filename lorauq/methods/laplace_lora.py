"""Laplace-LoRA: a Laplace posterior over one member's LoRA weights (Yang et al., ICLR 2024).

laplace-torch (``laplace``) fits the curvature; lorauq only hands it a model whose output is
the K answer-letter logits at the answer position, so the posterior is that of the
multiple-choice classifier the paper evaluates. Only the LoRA weights require gradients,
so ``subset_of_weights="all"`` means all LoRA weights and nothing of the frozen base. The
prior precision is fitted by marginal likelihood unless given; the posterior's weight
draws are the samples (members) of the method.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lorauq.batching import collate_left, last_position_logits
from lorauq.config import InferParams
from lorauq.errors import DataError, StoreError
from lorauq.infer import encode_eval_set, encode_eval_sets, evaluate_sets


class LetterHead(torch.nn.Module):
    """The peft model as a K-class classifier: input (batch, 3, length) stacks the left-padded
    token ids, attention mask and position ids; output (batch, K) letter logits."""

    def __init__(self, model, letters: list[int]):
        super().__init__()
        self.model = model
        self.register_buffer("letters", torch.as_tensor(letters), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = last_position_logits(self.model, x[:, 0], x[:, 1], x[:, 2])
        return logits[:, self.letters].float()


def _loader(sequences: list[list[int]], answers: np.ndarray, pad_id: int, batch: int):
    """Batches of (stacked inputs, answer) in a fixed order: the fit is deterministic."""
    items = []
    for start in range(0, len(sequences), batch):
        ids, mask, pos = collate_left(sequences[start : start + batch], pad_id)
        x = torch.stack([ids, mask, pos], dim=1)
        items.append((x, torch.as_tensor(answers[start : start + batch], dtype=torch.long)))
    return items


def laplace_samples(
    base_model,
    tokenizer,
    adapter: str | Path,
    train_frame: pd.DataFrame,
    eval_sets: Mapping[str, pd.DataFrame],
    *,
    epoch: int,
    hessian: str = "diag",
    samples: int = 10,
    seed: int = 0,
    prior_precision: float | None = None,
    template: str = "paper",
    infer: InferParams | None = None,
    stored_letters: int | None = None,
    batch_size: int = 16,
) -> tuple[pd.DataFrame, dict]:
    """``samples`` posterior draws of the LoRA weights in ``adapter``, each evaluated on every
    eval set (draw s as member s at ``epoch``), and what was fitted (prior precision)."""
    from laplace import Laplace
    from peft import PeftModel
    from torch.nn.utils import parameters_to_vector, vector_to_parameters

    try:
        model = PeftModel.from_pretrained(base_model, str(adapter), is_trainable=True)
    except Exception as exc:
        raise StoreError(f"{adapter}: adapter cannot be loaded onto this base ({exc})") from exc
    model.eval()
    n_choices = train_frame["choices"].map(len)
    if n_choices.nunique() != 1:
        raise DataError(
            "laplace: the training questions have different numbers of choices "
            f"{sorted(set(n_choices))}; the K-letter head needs one K"
        )
    train = encode_eval_set(tokenizer, train_frame, template=template, infer=infer, desc="laplace")
    head = LetterHead(model, train.letters)
    params = [p for p in head.parameters() if p.requires_grad]
    batches = _loader(
        train.sequences,
        train_frame["answer"].to_numpy(copy=True),
        tokenizer.pad_token_id,
        batch_size,
    )
    loader = torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False)
    la = Laplace(
        head,
        "classification",
        subset_of_weights="all",
        hessian_structure=hessian,
        prior_precision=prior_precision if prior_precision is not None else 1.0,
    )
    la.fit(loader, progress_bar=False)
    if prior_precision is None:
        la.optimize_prior_precision(method="marglik")
    generator = torch.Generator().manual_seed(seed)
    draws = la.sample(samples, generator=generator).detach()
    mean = parameters_to_vector(params).detach().clone()
    encoded = encode_eval_sets(
        tokenizer,
        eval_sets,
        template=template,
        infer=infer,
        stored_letters=stored_letters,
        prefix="laplace",
    )
    tables = []
    try:
        for s in range(samples):
            vector_to_parameters(draws[s].to(mean.dtype), params)
            tables += evaluate_sets(
                model,
                encoded,
                pad_id=tokenizer.pad_token_id,
                member=s,
                epoch=epoch,
                infer=infer,
                progress=False,
            )
    finally:
        vector_to_parameters(mean, params)
    fitted = {
        "prior_precision": float(torch.as_tensor(la.prior_precision).mean()),
        "n_params": int(mean.numel()),
    }
    return pd.concat(tables, ignore_index=True), fitted
