"""The rival methods: one record per method, and the one place that lists them.

A method is a way to produce samples of the letter logits per question (its rows read like
an ensemble's members). Its record says everything the rest of lorauq needs to know about
it: the settings it reads from ``<profile>.methods.<name>`` (a frozen dataclass whose
``check`` is the only check of those settings, run when params.yaml is loaded), whether it
runs once per member of the main ensemble, what it costs, what it reads, and why its rows
have a single run where they have one. Its ``run`` is ``run(params, layout, progress)`` in
``lorauq/methods/<name>.py``, the method's own module, loaded by name so that this module
(which config.py, and so every stage, imports) does not import any method's code.

How to add a method (docs/methods.md): write ``lorauq/methods/<name>.py`` with its ``run``,
add its record to :data:`METHODS`, then ``python -m lorauq.methods.pipeline`` to rewrite the
method stages of dvc.yaml (tests/test_method_registry.py fails until that is done).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from lorauq.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover - types only: config imports this module
    from lorauq.config import Params

__all__ = [
    "ARTEFACTS",
    "FINAL",
    "METHODS",
    "CheckpointsSettings",
    "EarlyStoppedSettings",
    "HeldOutSettings",
    "IvonSettings",
    "LaplaceSettings",
    "McDropoutSettings",
    "Method",
    "NoSettings",
    "TemperatureSettings",
    "method",
    "run_seed",
]


def _at_least_one(where: str, **counts: int) -> None:
    for key, value in counts.items():
        if value < 1:
            raise ConfigError(f"{where}.{key} must be at least 1, got {value}")


def run_seed(seed: int, run: int) -> int:
    """The sampling seed of run ``run`` (the one from member ``run``): ``seed`` for run 0, so
    that one run draws what it always drew, and one apart per run after it."""
    return seed + run


@dataclass(frozen=True)
class NoSettings:
    """A method with nothing to set (its section in params.yaml is ``{}``)."""

    def check(self, params: Params, where: str, runs: bool) -> None:
        """Nothing to check."""


@dataclass(frozen=True)
class McDropoutSettings:
    """One member trained with LoRA dropout ``dropout``, read out with ``passes`` stochastic
    passes whose masks come from ``seed`` (so a rerun writes the same samples); ``runs`` such
    members, run r from member r's seed with masks from :func:`run_seed`."""

    dropout: float = 0.1
    passes: int = 10
    seed: int = 0
    runs: int = 1

    def check(self, params: Params, where: str, runs: bool) -> None:
        """The dropout probability is in [0, 1); at least one pass and one run."""
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"{where}.dropout must be in [0, 1), got {self.dropout}")
        _at_least_one(where, passes=self.passes, runs=self.runs)


@dataclass(frozen=True)
class CheckpointsSettings:
    """The snapshot ensemble: a member's ``last`` epoch checkpoints."""

    last: int = 3

    def check(self, params: Params, where: str, runs: bool) -> None:
        """At least one checkpoint, and no more than the main ensemble saves."""
        _at_least_one(where, last=self.last)
        train = params.ensemble(params.main_ensemble).train
        saved = train.checkpoint_count
        if runs and self.last > saved:
            kind = "epochs" if train.steps is None else "checkpoints"
            raise ConfigError(
                f"{where}.last is {self.last}, more than the {saved} {kind} of the main "
                f"ensemble {params.main_ensemble!r}"
            )


@dataclass(frozen=True)
class HeldOutSettings(NoSettings):
    """A method that reads the held-out training rows and has nothing else to set; ``uses``
    says what it does with them (the error's words when there are none)."""

    uses = "reads the held-out training rows"

    def check(self, params: Params, where: str, runs: bool) -> None:
        """It needs held-out rows (``data.calibration_fraction`` > 0)."""
        if runs and params.data.calibration_fraction == 0.0:
            name = where.rsplit(".", 1)[-1]
            raise ConfigError(
                f"{params.profile}.data.calibration_fraction is 0 but methods.run has "
                f"{name!r}, which {self.uses}; set it, e.g. 0.1"
            )


@dataclass(frozen=True)
class TemperatureSettings(HeldOutSettings):
    """Temperature scaling fits on the held-out training rows: nothing to set."""

    uses = "fits on the held-out training rows"


@dataclass(frozen=True)
class EarlyStoppedSettings(HeldOutSettings):
    """Early stopping chooses each member's checkpoint on the held-out training rows: nothing
    to set."""

    uses = "chooses each member's checkpoint on the held-out training rows"


@dataclass(frozen=True)
class LaplaceSettings:
    """A Laplace posterior over member 0's LoRA weights: ``hessian`` structure, ``samples``
    weight draws from ``seed``; ``prior_precision`` a number, ``"validation"`` (chosen by the
    NLL of held-out training rows) or ``"marglik"`` (marginal likelihood); ``linearised``
    also stores the probit read-out of the linearised predictive. ``runs`` posteriors, run r
    around member r of the main ensemble, its draws from :func:`run_seed`."""

    hessian: Literal["diag", "kron"] = "diag"
    samples: int = 10
    seed: int = 0
    prior_precision: Literal["validation", "marglik"] | float = "validation"
    linearised: bool = True
    runs: int = 1

    def check(self, params: Params, where: str, runs: bool) -> None:
        """At least one draw; a positive prior precision; validation needs held-out rows; a run
        per member of the main ensemble at most (members 0 … runs − 1 must be in it)."""
        _at_least_one(where, samples=self.samples, runs=self.runs)
        missing = sorted(set(range(self.runs)) - set(params.members))
        if runs and missing:
            raise ConfigError(
                f"{where}.runs is {self.runs}, but run r fits around member r and the main "
                f"ensemble has no member {missing} (members {params.members})"
            )
        prior = self.prior_precision
        if not isinstance(prior, str) and prior <= 0:
            raise ConfigError(
                f"{where}.prior_precision must be positive (or 'validation', 'marglik'), "
                f"got {prior}"
            )
        if runs and prior == "validation" and params.data.calibration_fraction == 0.0:
            raise ConfigError(
                f"{params.profile}.data.calibration_fraction is 0 but "
                "methods.laplace.prior_precision is 'validation', which chooses it on the "
                "held-out training rows; set the fraction, e.g. 0.1, or a number or 'marglik'"
            )


@dataclass(frozen=True)
class IvonSettings:
    """One member (member 0's seed, the main ensemble's LoRA, loss, epochs and batches) trained
    with IVON instead of AdamW: a diagonal Gaussian over the LoRA weights, mean moved at ``lr``
    and precision ``ess`` · (Hessian estimate + ``weight_decay``) learnt from ``train_samples``
    weight draws per step (Hessian starts at ``hess_init``, averaged with ``beta2``; gradients
    with ``beta1``; each step's move clipped to ``lr`` · ``clip_radius`` per weight). Read out
    with ``samples`` weight draws from ``seed``. ``ess`` is the data size the posterior's
    width assumes, not the training set's: larger narrows it (see lorauq/methods/ivon.py for
    why the tiny world's defaults are what they are). ``runs`` such members, run r from
    member r's seed, its draws from :func:`run_seed`."""

    ess: float = 1e7
    hess_init: float = 3e-4
    beta1: float = 0.9
    beta2: float = 0.99999
    lr: float = 0.03
    weight_decay: float = 0.0
    clip_radius: float = 1e-3
    train_samples: int = 1
    samples: int = 10
    seed: int = 0
    runs: int = 1

    def check(self, params: Params, where: str, runs: bool) -> None:
        """IVON's ranges: the library refuses some of them deep inside a run, and a beta of 1
        (which it accepts) would freeze the momentum or the Hessian at their start. A float16
        base is refused: IVON collects the gradients before a loss scaler could unscale them."""
        _at_least_one(where, samples=self.samples, train_samples=self.train_samples, runs=self.runs)
        positive = {
            "ess": self.ess,
            "hess_init": self.hess_init,
            "lr": self.lr,
            "clip_radius": self.clip_radius,
        }
        for key, value in positive.items():
            if not value > 0:
                raise ConfigError(f"{where}.{key} must be positive, got {value}")
        for key, value in {"beta1": self.beta1, "beta2": self.beta2}.items():
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"{where}.{key} must be in [0, 1), got {value}")
        if self.weight_decay < 0:
            raise ConfigError(f"{where}.weight_decay must be at least 0, got {self.weight_decay}")
        if runs and params.base.dtype == "float16":
            raise ConfigError(
                f"{params.profile}.base.dtype is float16 but methods.run has 'ivon', whose "
                "gradients are collected before a loss scaler could unscale them; use bfloat16 "
                "or float32"
            )


#: The methods table's ``selected_by`` of a method whose samples are the final checkpoint's.
FINAL = "final epoch"

#: What a method's stage may read, each with its path in dvc.yaml (``${main}``: the main
#: ensemble, copied to the top level of params.yaml like the stage lists).
ARTEFACTS = {
    "base": "data/base",
    "prepared": "data/prepared",  # training, held-out and eval rows
    "main_adapters": "data/adapters/${main}",
    "main_logits": "data/logits/${main}",
}


@dataclass(frozen=True)
class Method:
    """One rival method.

    ``settings``: the type of ``<profile>.methods.<name>`` (defaults and ``check``).
    ``per_member``: it needs nothing but one member's logits or adapter, so it runs once per
    member of the main ensemble (each its own seed) and its rows are a mean ± std over runs.
    ``needs``: the keys of :data:`ARTEFACTS` its stage reads. ``profile_params``: the other
    sections of the profile it reads (DVC reruns its stage when they change).
    ``cost``: fine-tuning and evaluation passes relative to one member, from the params and
    what the run fitted. ``one_run``: why its rows have a single run where they have one.
    ``selected_by``: how the checkpoint its samples come from was chosen (the methods table's
    ``selected_by`` column).
    """

    name: str
    settings: type
    per_member: bool
    needs: tuple[str, ...]
    profile_params: tuple[str, ...]
    cost: Callable[[Params, dict[str, Any]], dict[str, Any]]
    one_run: str
    selected_by: str = FINAL

    @property
    def module(self) -> str:
        """The method's own module: ``lorauq.methods.<name>``."""
        return f"lorauq.methods.{self.name}"

    def run(self, params: Params, layout: Any, progress: bool) -> Any:
        """Its samples (a :class:`lorauq.stages.methods.MethodOutput`), from its module."""
        return importlib.import_module(self.module).run(params, layout, progress)


_ONE_MEMBER = "one member in the experiment"
_OWN_MEMBER = "one run (runs: 1): it trains a member of its own (seed 0)"
_INFERENCE = ("base", "data.template", "data.stored_letters", "infer")

#: Every method, in the order of the methods table.
METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            "single",
            NoSettings,
            per_member=True,
            needs=("main_logits",),
            profile_params=(),
            cost=lambda params, fitted: {"finetune_passes": 1, "eval_passes": 1},
            one_run=_ONE_MEMBER,
        ),
        Method(
            "mc_dropout",
            McDropoutSettings,
            per_member=False,
            needs=("base", "prepared"),
            profile_params=(*_INFERENCE, "lora", "train", "ensembles.${main}"),
            cost=lambda params, fitted: {
                "finetune_passes": 1,
                "eval_passes": params.methods.mc_dropout.passes,
            },
            one_run=_OWN_MEMBER,
        ),
        Method(
            "checkpoints",
            CheckpointsSettings,
            per_member=True,
            needs=("main_logits",),
            profile_params=(),
            cost=lambda params, fitted: {
                "finetune_passes": 1,
                "eval_passes": params.methods.checkpoints.last,
            },
            one_run=_ONE_MEMBER,
        ),
        Method(
            "temperature",
            TemperatureSettings,
            per_member=True,
            needs=("base", "prepared", "main_adapters", "main_logits"),
            profile_params=_INFERENCE,
            cost=lambda params, fitted: {"finetune_passes": 1, "eval_passes": 1},
            one_run=_ONE_MEMBER,
        ),
        Method(
            "laplace",
            LaplaceSettings,
            per_member=False,
            needs=("base", "prepared", "main_adapters", "main_logits"),
            profile_params=(*_INFERENCE, "train", "ensembles.${main}"),
            # the curvature: K backward passes (one per letter) per training question,
            # against one forward and backward pass per question and epoch of fine-tuning
            cost=lambda params, fitted: {
                "finetune_passes": 1 + fitted["n_letters"] / _passes_over_data(params, fitted),
                "eval_passes": params.methods.laplace.samples,
            },
            one_run="one run (runs: 1): one posterior, around member 0",
        ),
        Method(
            "ivon",
            IvonSettings,
            per_member=False,
            needs=("base", "prepared"),
            profile_params=(*_INFERENCE, "lora", "train", "ensembles.${main}"),
            # a member of its own, each step a forward and backward pass per train-time draw
            cost=lambda params, fitted: {
                "finetune_passes": params.methods.ivon.train_samples,
                "eval_passes": params.methods.ivon.samples,
            },
            one_run=_OWN_MEMBER,
        ),
        Method(
            "early_stopped",
            EarlyStoppedSettings,
            per_member=False,
            needs=("base", "prepared", "main_adapters", "main_logits"),
            profile_params=_INFERENCE,
            # an ensemble of M members; each member's every checkpoint on the held-out rows,
            # then the M chosen ones on the eval sets (their logits are the stored ones)
            cost=lambda params, fitted: {
                "finetune_passes": len(params.members),
                "eval_passes": len(params.members) * (fitted["checkpoint_count"] + 1),
            },
            one_run="one ensemble of M seeds, each at its own checkpoint",
            selected_by="lowest held-out NLL, per member",
        ),
    )
}


def _passes_over_data(params: Params, fitted: dict) -> float:
    """How often fine-tuning saw each training question: ``train.epochs``, or, training by
    steps, the steps' rows over the training set's (``n_train_questions`` of the fit)."""
    train = params.ensemble(params.main_ensemble).train
    if train.steps is None:
        return float(train.epochs)
    return train.steps * train.batch_size / fitted["n_train_questions"]


def method(name: str) -> Method:
    """The record of ``name``; an unknown name is an error that lists the methods."""
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"{name!r} is not a method; methods: {list(METHODS)}") from None
