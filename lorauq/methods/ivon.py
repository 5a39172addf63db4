"""IVON: one LoRA member trained by variational learning, read out by weight draws.

IVON (Shen et al., "Variational Learning is Effective for Large Deep Networks", 2024; the
``ivon-opt`` package) replaces AdamW: it keeps a diagonal Gaussian over the LoRA weights, the
mean where AdamW keeps the weights and the precision ess · (h + weight_decay), with h a running
Hessian estimate from the same gradients. Each step evaluates the loss at ``train_samples``
weights drawn from the posterior, so the member is trained for being good *around* its mean,
not only at it. Everything else is the member's: the main ensemble's LoRA, loss (prior term
included), epochs, batch order and checkpoint folders (``lorauq.train``'s, file for file), so
the one difference from a single AdamW member is the optimiser. Gradients are not clipped by
norm: IVON clips each weight's step to ``lr · clip_radius`` instead.

At evaluation the posterior is read back from the final checkpoint's optimiser state and
sample s draws all LoRA weights at once from torch seed ``seed · 1_000_003 + s``, then reads
out every eval set with those weights: samples are members of the logits store, like MC
dropout's passes.

The method ``ivon`` (:func:`run`) trains that member from member 0's seed, as MC dropout
does (``lorauq.methods.own_member``), and with ``methods.ivon.runs`` > 1 one more from each
next member's seed. Its record and settings (:class:`IvonSettings`, whose
``check`` is the only check of them): :data:`lorauq.methods.registry.METHODS`.

The tiny world's defaults (``params.yaml``) differ from ivon-lora's (lr 0.03, clip radius
1e-3, ess 1e6–1e8, hess_init 3e-4–1e-3, beta2 0.99999, for 10⁴ steps on a 7B model) in one
place. With beta2 that close to 1 the Hessian barely leaves ``hess_init`` in a few hundred
steps, so the draws' standard deviation is about 1/√(ess · (hess_init + weight_decay)): ess
1e7 with hess_init 3e-4 and weight decay 1e-4 gives ≈0.016, a perturbation of the LoRA
weights (A ≈ 0.1 at init) that spreads predictions without drowning them; in the tiny world
ess 1e6 halves the mean prediction's in-domain accuracy and 3e7 weakens the MI ranking of
the unseen set (docs/params.md). The step cap lr · clip_radius (3e-5 there) would leave a
~500-step tiny run untrained, so the tiny world's clip radius is 0.1: a cap near AdamW's lr.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import torch

from lorauq.atomic import remove_stale_temps
from lorauq.batching import last_position_logits
from lorauq.checkpoints import (
    epoch_dir,
    read_checkpoint,
    restore_checkpoint,
    resume_point,
    training_state,
)
from lorauq.config import InferParams, LoraParams, Params, TrainParams
from lorauq.errors import StoreError
from lorauq.float32_head import float32_head
from lorauq.layout import Layout
from lorauq.lora import attach_lora, load_adapter, lora_pairs
from lorauq.methods.own_member import own_member_runs
from lorauq.methods.registry import IvonSettings
from lorauq.readout import encode_eval_sets, evaluate_sets
from lorauq.schedule import checkpoint_steps, steps_per_epoch
from lorauq.stages.methods import MethodOutput
from lorauq.train import encode_training_set, epoch_generator, member_loss, run_schedule

if TYPE_CHECKING:
    from ivon import IVON

__all__ = [
    "STEP_KEY",
    "ivon_optimizer",
    "ivon_samples",
    "lora_weights",
    "run",
    "train_ivon_member",
]

#: The optimiser's step count, which its ``state_dict`` leaves out and its bias correction reads.
STEP_KEY = "ivon_step"


def lora_weights(model) -> list[torch.nn.Parameter]:
    """The LoRA weights IVON's posterior covers, (A, B) per adapted layer in module order: the
    order its flat mean and Hessian follow, the same for the trained and the reloaded model."""
    return [weight for pair in lora_pairs(model) for weight in pair]


def ivon_optimizer(model, ivon: IvonSettings) -> IVON:
    """IVON over the LoRA weights only, at a constant learning rate, as ivon-lora runs it
    (``rescale_lr=False``: ``lr`` is the step size itself)."""
    from ivon import IVON

    return IVON(
        lora_weights(model),
        lr=ivon.lr,
        ess=ivon.ess,
        hess_init=ivon.hess_init,
        beta1=ivon.beta1,
        beta2=ivon.beta2,
        weight_decay=ivon.weight_decay,
        mc_samples=ivon.train_samples,
        clip_radius=ivon.clip_radius,
        rescale_lr=False,
    )


def _posterior_to(optimizer: IVON, device: torch.device) -> None:
    """Move the posterior's buffers (kept in the parameter groups, where ``load_state_dict``
    puts them as saved, i.e. on the CPU) to the weights' device."""
    for group in optimizer.param_groups:
        for key in ("momentum", "hess"):
            group[key] = group[key].to(device)


def _ivon_step(model, optimizer: IVON, inputs, targets, train: TrainParams, draws: int):
    """One IVON step on one batch: the loss at ``draws`` posterior draws, each backward pass
    collected by the optimiser, then the update; returns the draws' mean (cross-entropy, prior)."""
    losses, priors = [], []
    for _ in range(draws):
        with optimizer.sampled_params(train=True):
            optimizer.zero_grad(set_to_none=True)
            logits = last_position_logits(model, *inputs)
            pairs = lora_pairs(model) if train.prior_lambda > 0 else []
            loss, prior, total = member_loss(logits, targets, pairs, train)
            total.backward()
        losses.append(loss.detach())
        priors.append(prior.detach())
    optimizer.step()
    return torch.stack(losses).mean(), torch.stack(priors).mean()


def train_ivon_member(
    base_model,
    tokenizer,
    train_frame: pd.DataFrame,
    *,
    member: int,
    member_dir: str | Path,
    lora: LoraParams,
    train: TrainParams,
    ivon: IvonSettings,
    template: str = "paper",
    progress: bool = True,
    order_stream: int = 0,
) -> list[dict]:
    """Train member ``member`` with IVON for ``train.epochs`` epochs or ``train.steps`` steps
    into ``member_dir`` (a checkpoint folder at each of :func:`lorauq.schedule.checkpoint_steps`,
    the posterior in its optimiser state), resuming after the last complete one; the same
    batches as the AdamW member of that seed and ``order_stream``."""
    member_dir = Path(member_dir)
    data = encode_training_set(tokenizer, train_frame, template, train.max_length)
    remove_stale_temps(member_dir)
    model = attach_lora(base_model, lora, seed=member)
    optimizer = ivon_optimizer(model, ivon)
    no_scaler = torch.amp.GradScaler(enabled=False)
    marks = checkpoint_steps(steps_per_epoch(data.lengths, train), train)
    done, logs = resume_point(member_dir, marks)
    last = done[-1] if done else 0
    if last:
        folder = epoch_dir(member_dir, last)
        restore_checkpoint(model, optimizer, no_scaler, folder)
        optimizer.current_step = int(read_checkpoint(folder)[1][STEP_KEY])
    _posterior_to(optimizer, next(model.parameters()).device)

    def state(index: int) -> dict:
        cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        saved = training_state(optimizer, no_scaler, index, torch.get_rng_state(), cuda_rng)
        saved[STEP_KEY] = optimizer.current_step  # IVON's bias correction reads it
        return saved

    with float32_head(model):
        logs += run_schedule(
            model,
            tokenizer.pad_token_id,
            data,
            train,
            marks,
            last,
            order=lambda epoch: epoch_generator(member, epoch, order_stream),
            step=lambda inputs, targets: _ivon_step(
                model, optimizer, inputs, targets, train, ivon.train_samples
            ),
            state=state,
            member_dir=member_dir,
            label=f"ivon member {member}",
            member=member,
            progress=progress,
        )
    return logs


def _posterior(model, folder: Path) -> IVON:
    """An IVON optimiser over ``model``'s LoRA weights holding the posterior saved in
    ``folder`` (its Hessian, ess and weight decay), to draw weights with."""
    from ivon import IVON

    _, state = read_checkpoint(folder)
    weights = lora_weights(model)
    if not weights:
        raise StoreError(f"{folder}: no LoRA layers found to draw weights for")
    if STEP_KEY not in state:
        raise StoreError(f"{folder}: not an IVON checkpoint (no posterior in its training state)")
    optimizer = IVON(weights, lr=1.0, ess=1.0)  # the saved groups replace these settings
    try:
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise StoreError(f"{folder}: posterior does not fit this adapter ({exc})") from exc
    _posterior_to(optimizer, weights[0].device)
    hess = optimizer.param_groups[0]["hess"]
    if hess.numel() != sum(w.numel() for w in weights):
        raise StoreError(
            f"{folder}: posterior covers {hess.numel()} weights, the adapter has "
            f"{sum(w.numel() for w in weights)}"
        )
    return optimizer


def ivon_samples(
    base_model,
    tokenizer,
    adapter: str | Path,
    eval_sets: Mapping[str, pd.DataFrame],
    *,
    epoch: int,
    samples: int,
    seed: int,
    template: str = "paper",
    infer: InferParams | None = None,
    stored_letters: int | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """``samples`` weight draws from the IVON posterior saved in the checkpoint folder
    ``adapter``, each read out on every eval set: rows of the logits store, draw s as member s
    at ``epoch``. The same ``seed`` draws the same weights on one machine."""
    adapter = Path(adapter)
    model = load_adapter(base_model, adapter)
    optimizer = _posterior(model, adapter)
    encoded = encode_eval_sets(
        tokenizer,
        eval_sets,
        template=template,
        infer=infer,
        stored_letters=stored_letters,
        prefix="ivon",
    )
    tables = []
    for s in range(samples):
        torch.manual_seed(seed * 1_000_003 + s)
        with torch.no_grad(), optimizer.sampled_params(train=False):
            tables += evaluate_sets(
                model,
                encoded,
                pad_id=tokenizer.pad_token_id,
                member=s,
                epoch=epoch,
                infer=infer,
                progress=progress,
            )
    return pd.concat(tables, ignore_index=True)


def run(params: Params, layout: Layout, progress: bool = False) -> MethodOutput:
    """The method ``ivon``: member 0 of the main ensemble trained again (its seed, its
    settings) with IVON instead of AdamW, then ``methods.ivon.samples`` weight draws; the same
    from members 1 … runs − 1 as its other runs."""
    m = params.methods.ivon
    table, runs = own_member_runs(
        params,
        layout,
        "ivon",
        m,
        functools.partial(train_ivon_member, ivon=m, progress=progress),
        lambda seed: functools.partial(ivon_samples, samples=m.samples, seed=seed),
    )
    return MethodOutput(table, {"ess": m.ess, "hess_init": m.hess_init}, runs=runs)
