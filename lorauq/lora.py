"""LoRA on a frozen base: peft's config, a seeded fresh adapter, and the LoRA prior term.

The prior λ·Σ‖B·A‖²_F is computed from (A, B) pairs, so a member's term is the same whether
its layers are peft's (``lorauq.train``) or stacked with other members' (``lorauq.joint``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from lorauq.config import LoraParams
from lorauq.errors import ModelError, StoreError

__all__ = ["attach_lora", "load_adapter", "lora_config", "lora_pairs", "lora_prior", "pairs_prior"]


def lora_config(params: LoraParams):
    """peft's LoraConfig for the experiment (B = 0 at init: every member starts at the base)."""
    from peft import LoraConfig

    return LoraConfig(
        r=params.r,
        lora_alpha=params.alpha,
        lora_dropout=params.dropout,
        target_modules=list(params.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )


def attach_lora(model, params: LoraParams, seed: int):
    """Wrap ``model`` with a fresh LoRA adapter whose A matrices are drawn from ``seed``."""
    from peft import get_peft_model

    torch.manual_seed(seed)
    try:
        return get_peft_model(model, lora_config(params))
    except ValueError as exc:
        raise ModelError(f"lora.target_modules {params.target_modules}: {exc}") from exc


def load_adapter(base_model, adapter: str | Path, *, trainable: bool = False):
    """A saved adapter folder (peft's format) on ``base_model``, in eval mode; one that does
    not fit the base names the folder."""
    from peft import PeftModel

    try:
        model = PeftModel.from_pretrained(base_model, str(adapter), is_trainable=trainable)
    except Exception as exc:
        raise StoreError(f"{adapter}: adapter cannot be loaded onto this base ({exc})") from exc
    model.eval()
    return model


def lora_pairs(model) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(A, B) weight pairs of every LoRA-adapted layer, for the prior term λ·Σ‖B·A‖²_F."""
    pairs = []
    for module in model.modules():
        lora_a = getattr(module, "lora_A", None)
        lora_b = getattr(module, "lora_B", None)
        if isinstance(lora_a, torch.nn.ModuleDict) and "default" in lora_a:
            pairs.append((lora_a["default"].weight, lora_b["default"].weight))
    return pairs


def lora_prior(model) -> torch.Tensor:
    """Σ over adapted layers of ‖B·A‖²_F (no α/r scale): the paper's LoRA-L2 prior term."""
    return pairs_prior(lora_pairs(model), device=next(model.parameters()).device)


def pairs_prior(
    pairs: Iterable[tuple[torch.Tensor, torch.Tensor]], device: torch.device
) -> torch.Tensor:
    """Σ ‖B·A‖²_F over (A, B) pairs: one member's prior, whether its LoRA layers are peft's or
    stacked with other members' (``lorauq.stacked``), summed in the same order either way.

    ‖B·A‖²_F = tr(Aᵀ·Bᵀ·B·A) = Σ_ij (BᵀB)_ij (A·Aᵀ)_ij, so the two r×r Gram matrices give it
    exactly without the d_out×d_in product (16.8 M entries per q_proj of a 7B model, every step).
    """
    total = torch.zeros((), device=device)
    for a, b in pairs:
        a32, b32 = a.float(), b.float()
        total = total + ((b32.T @ b32) * (a32 @ a32.T)).sum()
    return total
