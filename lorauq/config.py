"""Typed experiment parameters: one validated object from ``params.yaml``.

``params.yaml`` names the active ``profile`` and holds one section per profile, so DVC can
track exactly the keys each stage reads (``${profile}.train`` and so on) and
``dvc exp run -S profile=paper`` switches the whole experiment. Every key is checked here:
a typo fails at once with its dotted path and the closest valid key, instead of silently
running the wrong experiment hours later.

One job at this length: every section's dataclass and its checks; the sections refer to each
other (ensembles override lora/train, methods read infer), and one loader resolves them all.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from lorauq.errors import ConfigError, did_you_mean
from lorauq.methods.registry import METHODS as REGISTRY
from lorauq.prompt import resolve_template
from lorauq.schema import MAX_CHOICES, MIN_CHOICES, Readout

__all__ = [
    "METHODS",
    "PROFILE_KEYS",
    "TOP_LEVEL_KEYS",
    "AnalysisParams",
    "BaseParams",
    "DataParams",
    "Ensemble",
    "FigCParams",
    "InferParams",
    "LoraParams",
    "MethodsParams",
    "Params",
    "SourceSpec",
    "TrainParams",
    "build_section",
    "config_sections",
    "load_params",
    "resolve_params",
    "stage_lists",
    "unit_members",
]


@dataclass(frozen=True)
class SourceSpec:
    """Where one question table comes from (arguments of ``lorauq.data.load_questions``)."""

    source: str
    split: str
    path: str | None = None
    group: str | None = None
    subjects: list[str] | None = None
    limit: int | None = None
    #: The hub dataset's commit to load (``datasets.load_dataset(revision=...)``), so the same
    #: params download the same bytes next year; ignored for local files (``path``).
    revision: str | None = None


@dataclass(frozen=True)
class DataParams:
    template: str = "paper"
    train: SourceSpec = field(default_factory=lambda: SourceSpec("synthetic", "train"))
    eval: dict[str, SourceSpec] = field(default_factory=dict)
    world: dict[str, Any] = field(default_factory=dict)
    #: How many answer letters inference stores per question: None, each question's own
    #: choices; K, the letters a… up to K on every set (the authors stored a–e on 4-choice
    #: MMLU too, so their read-outs have 5 letter classes everywhere).
    stored_letters: int | None = None
    #: The share of the training source's rows that ``prepare`` holds out of fine-tuning
    #: (``data/prepared/calibration.parquet``, a seeded draw): what post-hoc methods such as
    #: temperature scaling fit on, so they never see an eval set. 0: none held out.
    calibration_fraction: float = 0.0


@dataclass(frozen=True)
class BaseParams:
    kind: Literal["tiny", "pretrained"] = "tiny"
    model: str | None = None
    gguf_file: str | None = None
    revision: str | None = None
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    quantization: Literal["none", "4bit", "8bit"] = "none"
    trust_remote_code: bool = False
    attn_implementation: str | None = None
    # The tiny base (kind: tiny): geometry and pre-training.
    vocab_size: int = 600
    hidden_size: int = 128
    intermediate_size: int = 512
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 512
    pretrain_steps: int = 500
    pretrain_batch_size: int = 16
    pretrain_lr: float = 1e-3
    seed: int = 0


@dataclass(frozen=True)
class LoraParams:
    r: int = 8
    alpha: float = 32.0
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])


@dataclass(frozen=True)
class TrainParams:
    #: How long each member trains: ``epochs`` passes over the training set, a checkpoint
    #: (and a read-out) after each; or, instead, ``steps`` optimiser steps in all, with a
    #: checkpoint at each of ``checkpoint_steps`` and at the last step. Set one: a section
    #: that gives ``steps`` and no ``epochs`` trains by steps; one that inherits ``epochs``
    #: (a profile's, under an ensemble's ``steps``) sets ``epochs: null``. Steps run through
    #: the epochs' seeded batch orders one after another (``lorauq.schedule``), so a step
    #: count that does not divide an epoch goes on into the next epoch's order.
    epochs: int | None = 10
    steps: int | None = None
    checkpoint_steps: list[int] = field(default_factory=list)
    lr: float = 5e-6
    batch_size: int = 8
    max_length: int = 128
    grad_clip: float = 0.3
    weight_decay: float = 0.0
    prior_lambda: float = 1.0
    gradient_checkpointing: bool = False
    # torch.compile the LoRA model: fewer, fused kernels. On an H100 at the paper's batch 8
    # it took training from 12.8 % to 28.8 % of the bf16 peak (scripts/gpu_check.py
    # --compile), for a minute or two of compilation per process.
    compile: bool = False
    threads: int = 0
    #: How a stage of several members trains them: true, together (``lorauq.joint``: one
    #: forward and backward through the base per step for all of them, stacked adapters);
    #: false, one after another (``lorauq.train.train_member``, a fresh base each). Each member
    #: gets the same batches, loss, optimiser and RNG either way, so the checkpoints equal to
    #: float rounding and have the same files; either way resumes the other's. A one-member
    #: stage always trains alone. Joint training refuses LoRA dropout with gradient
    #: checkpointing (the recomputed pass would draw other masks). Default true: on CPU, one
    #: thread, the tiny profile's stage 0-4 (5 members, 8 epochs) trained in 53–99 s jointly
    #: against 65–95 s one after another (a shared, loaded machine): the compute per token is
    #: the same, what joint training saves is each member's base load, encoding and saves.
    joint: bool = True
    #: How an epoch's questions become batches: ``bucketed`` (length-sorted windows, little
    #: padding: the fast default) or ``shuffle`` (plain random batches, as the paper's authors
    #: trained; the paper profile's choice). Both orders depend only on (member, epoch) and,
    #: with ``batch_order: ensemble``, the ensemble.
    batching: Literal["bucketed", "shuffle"] = "bucketed"
    #: Whose batch order a member sees: ``ensemble``, its own per (ensemble, member, epoch),
    #: so member m of two ensembles draws different orders, as in the paper's authors' code
    #: (their loader shuffles from the global RNG after the rank-dependent LoRA init); or
    #: ``shared``, one order per (member, epoch) for every ensemble, so ensembles that differ
    #: in one setting are compared at equal data orders (less variance, but members of two
    #: ensembles then train in lockstep and agree more than independent runs would).
    batch_order: Literal["ensemble", "shared"] = "ensemble"

    @property
    def checkpoint_count(self) -> int:
        """How many checkpoints a member's training writes (one per epoch, or per named step
        plus the last)."""
        if self.steps is None:
            return self.epochs or 0
        return len(set(self.checkpoint_steps) | {self.steps})

    @property
    def length(self) -> str:
        """How long a member trains, in the unit the section counts in (for people: a run's
        summary): ``3 epochs``, or ``5000 steps, checkpoints at 2500 and 5000``."""
        if self.steps is None:
            return f"{self.epochs} epoch{'' if self.epochs == 1 else 's'}"
        at = [str(s) for s in sorted(set(self.checkpoint_steps) | {self.steps})]
        listed = " and ".join([", ".join(at[:-1]), at[-1]] if len(at) > 1 else at)
        return f"{self.steps} steps, checkpoint{'s' if len(at) > 1 else ''} at {listed}"


@dataclass(frozen=True)
class InferParams:
    max_length: int = 512
    batch_tokens: int = 8192
    #: How a stage of several members evaluates them: true, at each epoch all of them in one
    #: pass (stacked adapters; ``batch_tokens`` bounds the whole pass); false, one adapter after
    #: another. The same table either way, letter logits to float rounding; a killed run's
    #: finished parts are reused only by a rerun the same way. Default true: the tiny
    #: profile's stage 0-4 evaluated in 34–45 s jointly against 41–60 s in turn (as above).
    joint: bool = True
    threads: int = 0


@dataclass(frozen=True)
class FigCParams:
    """Fig C, the entropy–MI histograms: fixed axes make panels comparable across epochs and
    eval sets (the authors': x 0–ln 4, y 0–0.2, 30 bins, colour 1–1000); None fits the data."""

    readout: Readout = "with_other"
    epochs: list[int] = field(default_factory=lambda: [1, 3, 6])
    entropy_max: float | None = None
    mi_max: float | None = None
    bins: int = 30
    count_max: float | None = None


@dataclass(frozen=True)
class AnalysisParams:
    #: The read-out of the tables, metrics and every figure but Fig C (which has its own).
    readout: Readout = "renormalized"
    n_bins: int = 10
    in_domain: str = "in_domain"
    #: The ensemble the one-ensemble figures show (reliability, risk–coverage, OOD, …);
    #: None: the first of ``ensembles``.
    main: str | None = None
    #: Fig B's reference: an ensemble of this experiment (the paper: the rank-32 one), or
    #: "halves" (the first ⌊M/2⌋ members of each ensemble against the others).
    reference: str = "halves"
    fig_c: FigCParams = field(default_factory=FigCParams)
    #: A CSV of published numbers to set beside ours (reports/paper_comparison.csv), or None.
    compare_with: str | None = None


#: The uncertainty methods besides the LoRA ensemble itself (which is always compared): the
#: records of :mod:`lorauq.methods.registry`, the one place that lists them.
METHODS = tuple(REGISTRY)


def _methods_params() -> type:
    """``<profile>.methods``: the methods ``run`` (names of :data:`METHODS`) and one section
    per method, of the type its record names; all of them start from the main ensemble."""
    fields = [("run", list[str], field(default_factory=list))]
    fields += [
        (name, m.settings, field(default_factory=m.settings)) for name, m in REGISTRY.items()
    ]
    made = dataclasses.make_dataclass(
        "MethodsParams", fields, frozen=True, namespace={"__doc__": _methods_params.__doc__}
    )
    made.__module__ = __name__
    return made


MethodsParams = _methods_params()


@dataclass(frozen=True)
class Ensemble:
    """One ensemble of the experiment: the profile's ``lora`` and ``train`` with its overrides.

    Every ensemble has the experiment's members (seeds); what differs is how each member is
    trained, e.g. the paper's ``reg_l2`` (no LoRA prior, AdamW weight decay) or ``r32``.
    """

    name: str
    lora: LoraParams
    train: TrainParams


@dataclass(frozen=True)
class Params:
    """One experiment: the active profile's sections, its ensembles and its members."""

    profile: str
    #: Every member id (seed), ascending.
    members: list[int]
    #: The fine-tuning/inference stages of each ensemble: labels such as ``"3"`` (member 3
    #: alone) or ``"0-4"`` (members 0 to 4 in one process), as ``dvc.yaml`` names them.
    units: list[str]
    ensembles: dict[str, Ensemble]
    base: BaseParams
    data: DataParams
    lora: LoraParams
    train: TrainParams
    infer: InferParams
    analysis: AnalysisParams
    methods: MethodsParams = field(default_factory=MethodsParams)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def ensemble(self, name: str) -> Ensemble:
        if name not in self.ensembles:
            raise ConfigError(
                f"{self.profile}.ensembles: no ensemble {name!r}"
                f"{did_you_mean(name, self.ensembles)}; ensembles: {list(self.ensembles)}"
            )
        return self.ensembles[name]

    def stage_members(self, unit: str | int) -> list[int]:
        """The members of member stage ``unit`` (``"0-4"``), one of the profile's stages.

        A stage dvc.yaml names but the profile does not is a params.yaml whose top-level copy
        of the member list went stale: the message says how to rewrite it.
        """
        if str(unit) not in self.units:
            raise ConfigError(
                f"members {str(unit)!r} is not a stage of {self.profile}.members {self.units}; "
                "if you changed the profile's members, run `python -m lorauq.compose` (or "
                "`dvc exp run`) so dvc.yaml builds the new stages"
            )
        return unit_members(unit)

    @property
    def main_ensemble(self) -> str:
        """The ensemble of the one-ensemble figures: ``analysis.main``, else the first one."""
        return self.analysis.main or next(iter(self.ensembles))


def unit_members(unit: str | int) -> list[int]:
    """The member ids of a stage label: ``3`` → [3], ``"0-4"`` → [0, 1, 2, 3, 4]."""
    text = str(unit).strip()
    match = re.fullmatch(r"(\d+)(?:-(\d+))?", text)
    if not match:
        raise ConfigError(f"members: {unit!r} is neither a member id nor a range such as '0-4'")
    first = int(match.group(1))
    last = int(match.group(2)) if match.group(2) is not None else first
    if last < first:
        raise ConfigError(f"members: range {unit!r} runs backwards; write '{last}-{first}'")
    return list(range(first, last + 1))


_SECTIONS = {
    "base": BaseParams,
    "data": DataParams,
    "lora": LoraParams,
    "train": TrainParams,
    "infer": InferParams,
    "analysis": AnalysisParams,
    "methods": MethodsParams,
}


def config_sections() -> dict[str, type]:
    """The sections of a profile and their dataclasses, in ``params.yaml``'s order."""
    return dict(_SECTIONS)


def _check_type(value: Any, hint: Any, where: str) -> Any:
    """Coerce ``value`` to ``hint`` where lossless (int → float), else raise naming ``where``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(
                f"{where}: {value!r} is not one of {list(args)}{did_you_mean(str(value), [str(a) for a in args])}"
            )
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        return [_check_type(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
        return {str(k): _check_type(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return build_section(hint, value, where)
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if hint is int and isinstance(value, bool):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if isinstance(hint, type) and not isinstance(value, hint):
        raise ConfigError(
            f"{where}: expected {hint.__name__}, got {type(value).__name__} {value!r}"
        )
    return value


def build_section(cls: type, raw: Any, where: str) -> Any:
    """Build dataclass ``cls`` from a mapping: unknown keys (with the closest valid one), types,
    required keys, each error naming its dotted key under ``where``."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__} {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise ConfigError(
                f"{where}.{key}: unknown key{did_you_mean(str(key), list(fields))}; valid keys: {sorted(fields)}"
            )
    values = {}
    for name, spec in fields.items():
        if name in raw:
            values[name] = _check_type(raw[name], hints[name], f"{where}.{name}")
        elif spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}.{name}: required key is missing")
    return cls(**values)


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _dotted_to_nested(overrides: Mapping[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        node = nested
        parts = str(key).split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return nested


def _train_section(raw: Any) -> Any:
    """A ``train`` mapping that gives ``steps`` and no ``epochs`` trains by steps: its epochs
    are none rather than the default's."""
    if isinstance(raw, Mapping) and raw.get("steps") is not None and "epochs" not in raw:
        return {**raw, "epochs": None}
    return raw


def _check_length(train: TrainParams, where: str) -> None:
    """Exactly one of ``train.epochs`` and ``train.steps``; checkpoint steps within the run."""
    if train.epochs is not None and train.steps is not None:
        raise ConfigError(
            f"{where}.train.steps ({train.steps}) and {where}.train.epochs ({train.epochs}) are "
            "both set; train by one: set the other to null"
        )
    if train.epochs is None and train.steps is None:
        raise ConfigError(f"{where}.train.epochs and {where}.train.steps are both null; set one")
    for key in ("epochs", "steps"):
        value = getattr(train, key)
        if value is not None and value <= 0:
            raise ConfigError(f"{where}.train.{key} must be positive, got {value}")
    marks = train.checkpoint_steps
    if marks and train.steps is None:
        raise ConfigError(
            f"{where}.train.checkpoint_steps is set but the run trains by train.epochs (a "
            "checkpoint after each); set train.steps and epochs: null, or drop checkpoint_steps"
        )
    if marks and (marks != sorted(set(marks)) or marks[0] <= 0 or marks[-1] > train.steps):
        raise ConfigError(
            f"{where}.train.checkpoint_steps {marks}: increasing steps in 1..train.steps "
            f"({train.steps})"
        )


def _check_training(owner: Params | Ensemble, where: str) -> None:
    """Ranges of ``lora`` and ``train`` that types alone cannot express (profile or ensemble)."""
    _check_length(owner.train, where)
    positive = {
        "train.batch_size": owner.train.batch_size,
        "train.max_length": owner.train.max_length,
        "lora.r": owner.lora.r,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{where}.{key} must be positive, got {value}")
    if owner.train.lr <= 0:
        raise ConfigError(f"{where}.train.lr must be positive, got {owner.train.lr}")
    for key in ("train.prior_lambda", "train.weight_decay", "train.grad_clip", "lora.dropout"):
        section, name = key.split(".")
        if getattr(getattr(owner, section), name) < 0:
            raise ConfigError(f"{where}.{key} must be >= 0")
    if not owner.lora.target_modules:
        raise ConfigError(f"{where}.lora.target_modules: empty")


def _check_joint(ensemble: Ensemble, units: list[str], where: str) -> None:
    """Joint training cannot replay LoRA dropout through gradient checkpointing: refused here,
    at load time, when a stage of several members would train them jointly."""
    t = ensemble.train
    several = any(len(unit_members(unit)) > 1 for unit in units)
    if several and t.joint and t.gradient_checkpointing and ensemble.lora.dropout > 0:
        raise ConfigError(
            f"{where}: train.joint with train.gradient_checkpointing and lora.dropout > 0: "
            "joint training draws each member's dropout from its own generator, which "
            "checkpointing would not replay; set train.joint: false (members one after "
            "another), lora.dropout: 0 or train.gradient_checkpointing: false"
        )


def _check_values(params: Params, where: str) -> None:
    """Range checks that types alone cannot express."""
    _check_training(params, where)
    positive = {
        "infer.max_length": params.infer.max_length,
        "infer.batch_tokens": params.infer.batch_tokens,
        "analysis.n_bins": params.analysis.n_bins,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{where}.{key} must be positive, got {value}")
    a = params.analysis
    if a.reference != "halves" and a.reference not in params.ensembles:
        raise ConfigError(
            f"{where}.analysis.reference: {a.reference!r} is neither 'halves' nor one of the "
            f"ensembles {list(params.ensembles)}{did_you_mean(a.reference, params.ensembles)}"
        )
    if a.main is not None and a.main not in params.ensembles:
        raise ConfigError(
            f"{where}.analysis.main: {a.main!r} is not one of the ensembles "
            f"{list(params.ensembles)}{did_you_mean(a.main, params.ensembles)}"
        )
    for key in ("entropy_max", "mi_max", "count_max"):
        value = getattr(a.fig_c, key)
        if value is not None and value <= 0:
            raise ConfigError(
                f"{where}.analysis.fig_c.{key} must be positive (or null), got {value}"
            )
    if a.fig_c.bins <= 0:
        raise ConfigError(f"{where}.analysis.fig_c.bins must be positive, got {a.fig_c.bins}")
    letters = params.data.stored_letters
    if letters is not None and not MIN_CHOICES <= letters <= MAX_CHOICES:
        raise ConfigError(
            f"{where}.data.stored_letters must be {MIN_CHOICES}..{MAX_CHOICES} (or null: each "
            f"question's own choices), got {letters}"
        )
    for ensemble in params.ensembles.values():
        _check_training(ensemble, f"{where}.ensembles.{ensemble.name}")
        _check_joint(ensemble, params.units, f"{where}.ensembles.{ensemble.name}")
    if not params.data.eval:
        raise ConfigError(f"{where}.data.eval: no evaluation sets")
    if params.base.kind == "pretrained" and not params.base.model:
        raise ConfigError(f"{where}.base.model: required when base.kind is 'pretrained'")
    sources = {"data.train": params.data.train} | {
        f"data.eval.{name}": spec for name, spec in params.data.eval.items()
    }
    for key, spec in sources.items():
        if spec.limit is not None and spec.limit <= 0:
            raise ConfigError(
                f"{where}.{key}.limit must be positive (or omitted for all rows), got {spec.limit}"
            )
    _check_template(params.data.template, f"{where}.data.template")
    _check_methods(params, where)


def _check_methods(params: Params, where: str) -> None:
    """Method names, then each method's settings by its own ``check`` (the one check of
    them), at load time rather than mid-run."""
    m = params.methods
    for name in m.run:
        if name not in METHODS:
            raise ConfigError(
                f"{where}.methods.run: {name!r} is not a method{did_you_mean(name, METHODS)}; "
                f"methods: {list(METHODS)} (the LoRA ensemble is always compared)"
            )
    if len(set(m.run)) != len(m.run):
        raise ConfigError(f"{where}.methods.run: a method is listed twice ({m.run})")
    if m.run and params.analysis.main is None:
        raise ConfigError(
            f"{where}.methods.run {m.run}: set {where}.analysis.main, the ensemble the methods "
            f"start from (one of {list(params.ensembles)}): their DVC stages read its adapters "
            "and logits by that name"
        )
    fraction = params.data.calibration_fraction
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(
            f"{where}.data.calibration_fraction must be in [0, 1) (1 would leave no training "
            f"rows), got {fraction}"
        )
    for name in METHODS:
        getattr(m, name).check(params, f"{where}.methods.{name}", runs=name in m.run)


def _check_template(template: str, where: str) -> None:
    """Reject an unusable prompt template at load time, not at the first prompt of a run."""
    try:
        resolve_template(template)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


#: Keys of a profile section that are not sections of their own.
PROFILE_KEYS = ("members", "ensembles")
#: Top-level keys of params.yaml besides the profile sections (which are mappings).
#: ``ensembles`` and ``members`` repeat the active profile's for ``dvc.yaml``, which cannot
#: look them up through ``profile``; ``dvc exp run`` rewrites them (see ``compose.yaml``).
TOP_LEVEL_KEYS = ("profile", "ensembles", "members", "methods", "main")
_ENSEMBLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def _check_top_level(raw: Mapping[str, Any], profiles: list[str], source: str) -> None:
    """A top-level key is one of :data:`TOP_LEVEL_KEYS` or a profile section; a typo there
    would otherwise be ignored silently (``member: [0, 1]`` beside ``members``)."""
    for key, value in raw.items():
        if key in TOP_LEVEL_KEYS or isinstance(value, Mapping):
            continue
        valid = [*TOP_LEVEL_KEYS, *profiles]
        raise ConfigError(
            f"{key}: unknown top-level key in {source}{did_you_mean(key, valid)}; the top level "
            f"holds {list(TOP_LEVEL_KEYS)} and one mapping per profile ({profiles})"
        )


def stage_lists(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The top-level ``ensembles``, ``members`` and ``methods`` (the methods run) that the
    active profile of ``raw`` implies, as dvc.yaml wants them, and ``main``: the profile's
    ``analysis.main``, whose adapters and logits the method stages read."""
    section = raw.get(str(raw.get("profile")), {})
    methods = section.get("methods") or {}
    analysis = section.get("analysis") or {}
    return {
        "ensembles": list(section.get("ensembles") or {}),
        "members": list(section.get("members") or []),
        "methods": list(methods.get("run") or []) if isinstance(methods, Mapping) else [],
        "main": analysis.get("main") if isinstance(analysis, Mapping) else None,
    }


def _check_stage_lists(raw: Mapping[str, Any], source: str) -> None:
    """The top-level copies must be the profile's: they are what DVC builds stages for."""
    expected = stage_lists(raw)
    for key, value in expected.items():
        if key not in raw:
            continue
        found = list(raw[key]) if isinstance(value, list) else raw[key]
        if found != value:
            raise ConfigError(
                f"{source}: the top-level {key} {found!r} are not those of profile "
                f"{raw['profile']!r} ({value!r}); dvc.yaml builds the stages the top level "
                "lists. `dvc exp run` copies them from the profile, and so does "
                f"`python -m lorauq.compose`; change {raw['profile']}.{key}, not the top level"
            )


def _members(units: Any, where: str) -> tuple[list[int], list[str]]:
    """(member ids, stage labels) of ``members``; members are distinct, stages disjoint."""
    if not isinstance(units, list) or not units:
        raise ConfigError(
            f"{where}: the member list is empty; give at least one seed, e.g. [0, 1, 2, 3, 4] "
            "(or '0-4' to train them in one stage)"
        )
    labels, members = [], []
    for unit in units:
        if isinstance(unit, bool) or not isinstance(unit, (int, str)):
            raise ConfigError(f"{where}: {unit!r} is neither a member id nor a range like '0-4'")
        ids = unit_members(unit)
        clash = sorted(set(ids) & set(members))
        if clash:
            raise ConfigError(f"{where}: member(s) {clash} appear twice; members must be distinct")
        labels.append(str(unit).strip())
        members.extend(ids)
    return sorted(members), labels


def _ensembles(section: Mapping[str, Any], profile: str) -> dict[str, Ensemble]:
    """Each ensemble's ``lora`` and ``train``: the profile's, with the ensemble's overrides."""
    raw = section.get("ensembles")
    where = f"{profile}.ensembles"
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(
            f"{where}: required: a mapping of ensemble names to their overrides of lora and "
            "train, e.g. {main: {}} for one ensemble trained as the profile says"
        )
    ensembles = {}
    for name, overrides in raw.items():
        if not _ENSEMBLE_NAME.match(str(name)):
            raise ConfigError(
                f"{where}.{name}: an ensemble name is letters, digits and _ (it names stages "
                "and folders)"
            )
        overrides = {} if overrides is None else overrides
        if not isinstance(overrides, Mapping):
            raise ConfigError(f"{where}.{name}: expected a mapping of overrides, got {overrides!r}")
        unknown = [k for k in overrides if k not in ("lora", "train")]
        if unknown:
            raise ConfigError(
                f"{where}.{name}.{unknown[0]}: an ensemble overrides lora or train"
                f"{did_you_mean(unknown[0], ['lora', 'train'])}"
            )
        sections = {
            key: build_section(
                cls,
                _train_section(_merge(dict(section.get(key, {})), dict(overrides.get(key) or {})))
                if key == "train"
                else _merge(dict(section.get(key, {})), dict(overrides.get(key) or {})),
                f"{where}.{name}.{key}" if key in overrides else f"{profile}.{key}",
            )
            for key, cls in (("lora", LoraParams), ("train", TrainParams))
        }
        ensembles[str(name)] = Ensemble(str(name), **sections)
    return ensembles


def _with_overrides(
    section: dict[str, Any], nested: dict[str, Any], profile: str, raw: Mapping[str, Any]
) -> dict[str, Any]:
    """The profile section with the overrides of it (``tiny.x`` or plain ``x``) merged in.

    ``members`` and ``ensembles`` given whole replace the profile's, so an override can drop
    an ensemble; the sections merge key by key. An override of another profile is ignored.
    """
    section = copy.deepcopy(section)
    valid = [*_SECTIONS, *PROFILE_KEYS]
    stray = sorted(k for k in nested if k not in valid and k not in raw)
    if stray:
        raise ConfigError(f"override {stray[0]!r}: unknown key{did_you_mean(stray[0], valid)}")
    for given in (nested.get(profile, {}), {k: v for k, v in nested.items() if k in valid}):
        given = dict(given)
        for key in PROFILE_KEYS:
            if key in given:
                section[key] = given.pop(key)
        section = _merge(section, given)
    return section


def resolve_params(
    raw: Mapping[str, Any], overrides: Mapping[str, Any] | None = None, source: str = "params"
) -> Params:
    """Build :class:`Params` from a parsed ``params.yaml`` mapping plus dotted ``overrides``.

    ``overrides`` use the keys DVC uses (``{"tiny.train.epochs": 2}`` or, for the active
    profile, ``{"train.epochs": 2}``, ``{"members": [0]}``). The top-level stage lists of the
    file itself must match its profile; overrides only change what this process runs.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    raw = dict(raw)
    profile = raw.get("profile")
    if isinstance(profile, str) and isinstance(raw.get(profile), Mapping):
        _check_stage_lists(raw, source)
    overrides = dict(overrides or {})
    if "profile" in overrides:
        raw["profile"] = overrides.pop("profile")
    profile = raw.get("profile")
    if not isinstance(profile, str):
        raise ConfigError(f"{source}: 'profile' must name a profile section, got {profile!r}")
    profiles = [k for k, v in raw.items() if isinstance(v, Mapping)]
    _check_top_level(raw, profiles, source)
    if profile not in raw:
        raise ConfigError(
            f"profile: no section {profile!r} in {source}{did_you_mean(profile, profiles)}; profiles: {profiles}"
        )
    section = _with_overrides(dict(raw[profile]), _dotted_to_nested(overrides), profile, raw)
    valid = [*_SECTIONS, *PROFILE_KEYS]
    unknown = [k for k in section if k not in valid]
    if unknown:
        raise ConfigError(
            f"{profile}.{unknown[0]}: unknown section{did_you_mean(unknown[0], valid)}; sections: {valid}"
        )
    members, units = _members(section.get("members"), f"{profile}.members")
    built = {
        name: build_section(
            cls,
            _train_section(section.get(name, {})) if name == "train" else section.get(name, {}),
            f"{profile}.{name}",
        )
        for name, cls in _SECTIONS.items()
    }
    params = Params(
        profile=profile,
        members=members,
        units=units,
        ensembles=_ensembles(section, profile),
        **built,
    )
    _check_values(params, profile)
    return params


def load_params(
    path: str | Path = "params.yaml", overrides: Mapping[str, Any] | None = None
) -> Params:
    """Load and validate ``params.yaml``: the one entry point every stage and notebook uses."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    return resolve_params(raw or {}, overrides, source=str(path))
