"""Laplace-LoRA: a Laplace posterior over one member's LoRA weights (Yang et al., ICLR 2024).

laplace-torch (``laplace``) fits the curvature; lorauq only hands it a model whose output is
the K answer-letter logits at the answer position, so the posterior is that of the
multiple-choice classifier the paper evaluates. Only the LoRA weights require gradients,
so ``subset_of_weights="all"`` means all LoRA weights and nothing of the frozen base.

Two read-outs of one posterior:

* **samples** — S weight draws, each evaluated like a member: the method's members, from
  which entropy, expected entropy and MI follow as for the ensemble;
* **linearised** — the probit approximation of the linearised (GLM) predictive, one
  distribution per question: each letter logit of the MAP member is shrunk by
  1/√(1 + π/8 · its function-space variance JΣJᵀ). It has no samples, so no MI.

The prior precision is a number, fitted by marginal likelihood (``"marglik"``), or chosen on
held-out training rows (``"validation"``: laplace-torch's grid search of the sampled
predictive's NLL). Why the default is validation: docs/methods.md.

The method ``laplace`` (:func:`run`) fits it around member 0's final adapter of the main
ensemble (and, with ``methods.laplace.runs`` > 1, around members 1 … runs − 1 too). Its record: :data:`lorauq.methods.registry.METHODS`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lorauq.batching import collate_left, last_position_logits
from lorauq.config import InferParams, Params
from lorauq.errors import ConfigError, DataError
from lorauq.layout import Layout
from lorauq.lora import load_adapter
from lorauq.methods.registry import run_seed
from lorauq.readout import EncodedEvalSet, encode_eval_set, encode_eval_sets, evaluate_sets
from lorauq.schema import LOGIT_COLUMNS
from lorauq.stages.methods import MethodOutput, final_adapter, member_logits

__all__ = ["PRIOR_GRID", "VMAP_FALLBACK", "LetterHead", "laplace_samples", "probit_table", "run"]

#: The validation grid of the prior precision: log10 from, to, points (half decades). Its
#: top is a posterior whose draws sit on the MAP weights (an sd of 1e-3 per weight).
PRIOR_GRID = (-2.0, 6.0, 17)


class LetterHead(torch.nn.Module):
    """The peft model as a K-class classifier: input (batch, 3, length) stacks the left-padded
    token ids, attention mask and position ids; output (batch, K) letter logits.

    ``letters`` is a plain attribute, not a buffer: laplace-torch's backends capture the
    buffers once, and the linearised read-out points the same head at each eval set's
    letters."""

    def __init__(self, model, letters: list[int]):
        super().__init__()
        self.model = model
        self.letters = torch.as_tensor(letters)

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
    return torch.utils.data.DataLoader(items, batch_size=None, shuffle=False)


def _one_k(frame: pd.DataFrame, what: str) -> None:
    n_choices = frame["choices"].map(len)
    if n_choices.nunique() != 1:
        raise DataError(
            f"laplace: the {what} questions have different numbers of choices "
            f"{sorted(set(n_choices))}; the K-letter head needs one K"
        )


#: torch's note that vmap (laplace-torch's Jacobians) falls back to a loop for the fused
#: attention backward: a speed note, once per run, that says nothing about the result.
VMAP_FALLBACK = "There is a performance drop because we have not yet implemented the batching"


def _fit_prior(la, prior_precision, validation, *, samples: int, seed: int) -> None:
    """Set the prior precision: a number as given, else marginal likelihood or validation."""
    with warnings.catch_warnings():
        # laplace-torch reminds every classification tuning call of its probit default,
        # which neither tuning method here reads
        warnings.filterwarnings("ignore", message="By default `link_approx` is `probit`")
        _tune_prior(la, prior_precision, validation, samples=samples, seed=seed)


def _tune_prior(la, prior_precision, validation, *, samples: int, seed: int) -> None:
    if prior_precision == "marglik":
        la.optimize_prior_precision(method="marglik")
    elif prior_precision == "validation":
        if validation is None:
            raise ConfigError(
                "methods.laplace.prior_precision is 'validation' but there are no held-out "
                "training rows; set data.calibration_fraction > 0, or a number or 'marglik'"
            )
        low, high, points = PRIOR_GRID
        with torch.random.fork_rng():  # the grid's sampled predictive draws from torch's RNG
            torch.manual_seed(seed)
            la.optimize_prior_precision(
                method="gridsearch",
                pred_type="nn",
                link_approx="mc",
                n_samples=samples,
                val_loader=validation,
                log_prior_prec_min=low,
                log_prior_prec_max=high,
                grid_size=int(points),
            )
    else:
        la.prior_precision = float(prior_precision)


def _function_variance(la, head: LetterHead, encoded: EncodedEvalSet, pad_id: int) -> np.ndarray:
    """Per question, the variance of each letter logit under the linearised posterior
    (the diagonal of JΣJᵀ), shape (n, K). One question at a time: the Jacobian of a batch
    costs a backward pass of the whole batch per output."""
    head.letters = torch.as_tensor(encoded.letters)
    out = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=VMAP_FALLBACK)
        for sequence in encoded.sequences:
            ids, mask, pos = collate_left([sequence], pad_id)
            js, _ = la.backend.jacobians(torch.stack([ids, mask, pos], dim=1))
            out.append(torch.diagonal(la.functional_variance(js), dim1=-2, dim2=-1))
    return torch.cat(out).double().numpy()


def probit_table(member: pd.DataFrame, variance: np.ndarray) -> pd.DataFrame:
    """The probit read-out of one eval set: the MAP member's letter logits, letter k shrunk by
    κ_k = 1/√(1 + π/8 σ²_k); the rest of the vocabulary keeps the MAP's probability, so the
    ``with_other`` read-out's "other" class is the member's."""
    table = member.reset_index(drop=True).copy()
    k = variance.shape[1]
    columns = LOGIT_COLUMNS[:k]
    logits = table[columns].to_numpy(dtype=np.float64)
    lse = table["logsumexp_vocab"].to_numpy(dtype=np.float64)
    letters_lse = np.logaddexp.reduce(np.where(np.isnan(logits), -np.inf, logits), axis=1)
    other = lse + np.log1p(-np.minimum(np.exp(letters_lse - lse), 1.0 - 1e-12))
    scaled = logits / np.sqrt(1.0 + math.pi / 8.0 * variance)
    scaled_lse = np.logaddexp.reduce(np.where(np.isnan(scaled), -np.inf, scaled), axis=1)
    table[columns] = scaled.astype(np.float32)
    table["logsumexp_vocab"] = np.logaddexp(scaled_lse, other).astype(np.float32)
    return table


def laplace_samples(
    base_model,
    tokenizer,
    adapter: str | Path,
    train_frame: pd.DataFrame,
    eval_sets: Mapping[str, pd.DataFrame],
    *,
    epoch: int,
    hessian: str,
    samples: int,
    seed: int,
    prior_precision: float | str,
    validation_frame: pd.DataFrame | None = None,
    member_table: pd.DataFrame | None = None,
    template: str = "paper",
    infer: InferParams | None = None,
    stored_letters: int | None = None,
    curvature_batch: int = 1,
    batch_size: int = 16,
) -> tuple[pd.DataFrame, dict, pd.DataFrame | None]:
    """``samples`` posterior draws of the LoRA weights in ``adapter``, each evaluated on every
    eval set (draw s as member s at ``epoch``); what was fitted; and, given the MAP member's
    rows at ``epoch`` (``member_table``), the linearised probit read-out of the same sets.

    ``hessian``, ``samples``, ``seed`` and ``prior_precision`` are
    :class:`lorauq.methods.registry.LaplaceSettings` (its defaults, its checks).
    ``validation_frame`` holds the held-out training rows a ``"validation"`` prior is chosen
    on; ``curvature_batch`` questions go into each curvature batch, ``batch_size`` into each
    validation batch."""
    from laplace import Laplace
    from torch.nn.utils import parameters_to_vector, vector_to_parameters

    model = load_adapter(base_model, adapter, trainable=True)
    _one_k(train_frame, "training")
    pad_id = tokenizer.pad_token_id

    def loader(frame: pd.DataFrame, desc: str, batch: int):
        encoded = encode_eval_set(tokenizer, frame, template=template, infer=infer, desc=desc)
        return encoded, _loader(
            encoded.sequences, frame["answer"].to_numpy(copy=True), pad_id, batch
        )

    # the curvature goes through per-batch Jacobians, whose cost grows with the batch squared:
    # one question at a time, benchmarks/laplace_curvature.py against 16 (docs/methods.md)
    train, train_loader = loader(train_frame, "laplace", curvature_batch)
    validation = None
    if validation_frame is not None and not validation_frame.empty:
        _one_k(validation_frame, "held-out")
        validation = loader(validation_frame, "laplace validation", batch_size)[1]
    head = LetterHead(model, train.letters)
    params = [p for p in head.parameters() if p.requires_grad]
    la = Laplace(
        head,
        "classification",
        subset_of_weights="all",
        hessian_structure=hessian,
        prior_precision=1.0,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=VMAP_FALLBACK)
        la.fit(train_loader, progress_bar=False)
    _fit_prior(la, prior_precision, validation, samples=samples, seed=seed)
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
                model, encoded, pad_id=pad_id, member=s, epoch=epoch, infer=infer, progress=False
            )
    finally:
        vector_to_parameters(mean, params)
    probit = None
    if member_table is not None:
        parts = []
        for name, enc in encoded.items():
            rows = member_table[member_table["eval_set"] == name].set_index("id")
            rows = rows.loc[enc.frame["id"]].reset_index()[member_table.columns]
            parts.append(probit_table(rows, _function_variance(la, head, enc, pad_id)))
        probit = pd.concat(parts, ignore_index=True)
    fitted = {
        "prior_precision": float(torch.as_tensor(la.prior_precision).mean()),
        "prior_fitted_by": prior_precision if isinstance(prior_precision, str) else "given",
        "n_params": int(mean.numel()),
        "n_letters": len(train.letters),
        "n_train_questions": len(train_frame),
    }
    if prior_precision == "validation":  # an edge of the grid: the optimum may lie beyond it
        edges = (10.0 ** PRIOR_GRID[0], 10.0 ** PRIOR_GRID[1])
        fitted["prior_at_grid_edge"] = bool(np.isclose(fitted["prior_precision"], edges).any())
    return pd.concat(tables, ignore_index=True), fitted, probit


def run(params: Params, layout: Layout, progress: bool = False) -> MethodOutput:
    """The method ``laplace``: the posterior around member 0's final adapter, its samples
    and (``methods.laplace.linearised``) the probit read-out, ``linearised``; with
    ``methods.laplace.runs`` > 1 the same around members 1 … runs − 1 as its other runs, each
    drawing from its own seed (:func:`lorauq.methods.registry.run_seed`)."""
    fits = {
        member: _fit_run(params, layout, member) for member in range(params.methods.laplace.runs)
    }
    table, fitted, probit = fits.pop(0)
    if fits:
        priors = [fit[1]["prior_precision"] for fit in fits.values()]
        fitted = {**fitted, "prior_precisions": [fitted["prior_precision"], *priors]}
    return MethodOutput(
        table,
        fitted,
        runs={member: fit[0] for member, fit in fits.items()},
        readouts={} if probit is None else {"linearised": probit},
        readout_runs={}
        if probit is None
        else {"linearised": {member: fit[2] for member, fit in fits.items()}},
    )


def _fit_run(
    params: Params, layout: Layout, member: int
) -> tuple[pd.DataFrame, dict, pd.DataFrame | None]:
    """The run around ``member``'s final adapter: :func:`laplace_samples` with its seed."""
    from lorauq.methods import posthoc
    from lorauq.model import load_base
    from lorauq.questions import read_prepared
    from lorauq.stages.infer import eval_sets

    m = params.methods.laplace
    adapter, final = final_adapter(params, layout, member)
    model, tokenizer = load_base(params.base, layout.base)
    held = layout.calibration_table
    return laplace_samples(
        model,
        tokenizer,
        adapter,
        read_prepared(layout.train_table),
        eval_sets(params, layout),
        epoch=final,
        hessian=m.hessian,
        samples=m.samples,
        seed=run_seed(m.seed, member),
        prior_precision=m.prior_precision,
        validation_frame=read_prepared(held) if held.exists() else None,
        member_table=posthoc.single(member_logits(params, layout, member), member)
        if m.linearised
        else None,
        template=params.data.template,
        infer=params.infer,
        stored_letters=params.data.stored_letters,
    )
