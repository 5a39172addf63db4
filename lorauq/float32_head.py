"""The LM head of a bfloat16 or float16 base applied in float32, at the answer position only.

Its own module because training (``train``, ``joint``) and the read-out (``readout``) both
wrap the forward pass in it, and batching has nothing to do with precision.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F

__all__ = ["Float32Head", "float32_head"]


class Float32Head(torch.nn.Module):
    """A bfloat16/float16 LM head applied in float32.

    A low-precision head rounds every logit to the compute dtype: in bfloat16 an 8-bit
    mantissa, so a letter logit of 12.3 is only known to ±0.03, and the softmax over letters
    inherits that. Applied to the answer position only, the float32 head costs one (batch ×
    hidden) × (hidden × vocab) product; its float32 weight is cast once per use of
    :func:`float32_head`, not per batch (the head is frozen).
    """

    def __init__(self, head: torch.nn.Linear):
        super().__init__()
        self.head = head  # stays a submodule: the model's parameters are unchanged
        self.register_buffer("weight32", head.weight.detach().float(), persistent=False)
        bias = None if head.bias is None else head.bias.detach().float()
        self.register_buffer("bias32", bias, persistent=False)

    @property
    def weight(self) -> torch.Tensor:
        return self.head.weight

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden.float(), self.weight32, self.bias32)


@contextlib.contextmanager
def float32_head(model) -> Iterator[None]:
    """Inside the block, ``model``'s LM head computes in float32 if its weight is not float32.

    A no-op for a float32 head (every CPU profile), and for a head that is not a plain
    ``nn.Linear`` (a quantized one: its weight is not the matrix it applies). The original
    head is put back on exit, so the base model is left as it was given.
    """
    head = model.get_output_embeddings()
    if type(head) is not torch.nn.Linear or head.weight.dtype == torch.float32:
        yield
        return
    name = next(n for n, module in model.named_modules() if module is head)
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name)
    setattr(parent, attr, Float32Head(head))
    try:
        yield
    finally:
        setattr(parent, attr, head)
