"""The GPU evidence in one command: every row the docs' GPU tables need, in one JSON file.

A GPU is at hand only now and then, and briefly, so this measures, in one process and within
a time limit, what README.md and docs/gpu.md quote, and writes it to
``benchmarks/results/<card>-<date>.json`` (``scripts/gpu_results.py`` is the schema;
``scripts/gpu_tables.py`` turns the files into the tables). Random weights of
Mistral-7B-v0.1's geometry, no download, lorauq's own training and evaluation code (the
timers of ``scripts/gpu_check.py``). The rows, in the order they run:

* bfloat16: 5 members trained jointly at batch 8 each and evaluated jointly, then one member
  trained at batch 8 and evaluated, then one member at batch 32 (with batch 8, the two
  points of the step-time fit that docs/gpu.md's protocol estimate uses);
* float32 with TF32 off (the authors' setting, and the paper profile's): the same four rows;
* a 4-bit NF4 base computing in bfloat16 (bitsandbytes): one member trained at batch 8 and
  evaluated.

Each row's TFLOP/s are counted as in ``gpu_check`` (4·N per trained, 2·N per evaluated token)
and set against the dense matmul peak measured at the start of the same run in the row's
compute dtype (float32 with TF32 off for float32 rows, bfloat16 for bfloat16 and 4-bit rows).

**The time limit.** ``--time-limit`` seconds from the start (default 420). Every step has an
estimate from the measured peak and an assumed fraction of it (:data:`ASSUMED_FRACTION`,
from the H100 rows measured before); each row is sized to about ``--row-seconds`` of timed
work. Groups that the whole plan's estimate cannot fit are dropped before anything runs
(lowest priority first: 4-bit, then float32); a step that would overrun the limit at its
estimate (scaled by how much slower than estimated the steps so far ran) is skipped. The
limit counts from the process's start, its imports included; the start (imports, the
environment, the peaks: seconds) always runs. The JSON is rewritten after every row, so a run killed from outside keeps what it measured;
skipped rows are listed with the reason.

    bash scripts/gpu_evidence.sh --time-limit 420             # on the GPU machine
    bash scripts/gpu_evidence.sh --cpu-tiny --out /tmp/gpu    # the CPU rehearsal (tests)
    python scripts/gpu_evidence.py --plan                     # the H100 schedule, no GPU needed
"""

from __future__ import annotations

import time

# The time limit counts from here: the imports below (torch, transformers) are part of a run.
STARTED = time.monotonic()

import argparse  # noqa: E402
import datetime  # noqa: E402
import gc  # noqa: E402
import hashlib  # noqa: E402
import importlib.metadata  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import gpu_check as check  # noqa: E402
import gpu_results as results  # noqa: E402

from lorauq.atomic import write_text_atomic  # noqa: E402
from lorauq.batching import pad_multiple  # noqa: E402
from lorauq.config import BaseParams, InferParams, LoraParams, TrainParams  # noqa: E402
from lorauq.lora import attach_lora  # noqa: E402
from lorauq.model import load_base_model  # noqa: E402

#: The paper profile's LoRA, training and evaluation settings (params.yaml ``paper``).
LORA = LoraParams(r=8, alpha=32, dropout=0.0, target_modules=["q_proj", "v_proj"])
TRAIN = TrainParams(lr=5e-6, batch_size=8, grad_clip=0.3, prior_lambda=1.0)
PAPER_BATCH_TOKENS = 16384
JOINT_MEMBERS = 5
#: The CPU rehearsal's geometry: gpu_check's tiny one with an MLP width bitsandbytes' CPU
#: 4-bit inference accepts (its packed layout needs every input width a multiple of 64).
REHEARSAL = {**check.TINY, "intermediate_size": 256}
#: Mean prompt lengths of the timers' random sequences (gpu_check's length ranges).
TRAIN_TOKENS = sum(check.TRAIN_LENGTHS) / 2
EVAL_TOKENS = sum(check.EVAL_LENGTHS) / 2
#: Fraction of the measured peak a row is assumed to reach, to size it and estimate its
#: seconds. bfloat16 and 4-bit single-member rows: a little under the H100 measurements of
#: 2026-11-26 (12.8 % and 7.0 % training at batch 8, 48.7 % and 48.1 % evaluating); the
#: rest are guesses set low, so a row comes out short rather than long.
ASSUMED_FRACTION: dict[tuple[str, str, bool], float] = {
    ("bfloat16", "train", False): 0.12,
    ("bfloat16", "train", True): 0.2,
    ("bfloat16", "evaluate", False): 0.45,
    ("bfloat16", "evaluate", True): 0.45,
    ("float32", "train", False): 0.3,
    ("float32", "train", True): 0.4,
    ("float32", "evaluate", False): 0.5,
    ("float32", "evaluate", True): 0.5,
    ("4bit", "train", False): 0.065,
    ("4bit", "evaluate", False): 0.45,
}
#: Set-up rates assumed for the estimates: random init on the device, saving the bf16
#: weights for the 4-bit load, and loading + quantizing them (bytes per second).
BUILD_BYTES_S, SAVE_BYTES_S, QUANTIZE_BYTES_S = 2e9, 1e9, 0.5e9
#: Seconds of fixed cost per row (optimizer, first kernels) and per member attached.
ROW_OVERHEAD_S, ATTACH_S = 2.0, 1.0
#: Peaks the ``--plan`` schedule assumes (an H100 SXM as measured here before: bf16; fp32
#: without TF32, a little under the datasheet's 67).
PLAN_PEAKS_TFLOPS = {"bfloat16": 790.0, "float32": 50.0}


@dataclass(frozen=True)
class RowPlan:
    """One row to measure: ``batch`` is the questions per member per step (training)."""

    base: str
    phase: str
    members: int
    batch: int | None = None

    @property
    def id(self) -> str:
        return results.row_id(self.base, self.phase, self.members, self.batch)

    @property
    def joint(self) -> bool:
        return self.members > 1


@dataclass(frozen=True)
class Group:
    """Rows sharing one base model in memory: built (or loaded) once, joint rows first (on the
    plain base), then LoRA attached for the single-member rows."""

    base: str
    dtype: str
    quantization: str
    rows: tuple[RowPlan, ...]


def _group(base: str, dtype: str, quantization: str, *, joint: bool, batch32: bool) -> Group:
    rows = []
    if joint:
        rows += [
            RowPlan(base, "train", JOINT_MEMBERS, 8),
            RowPlan(base, "evaluate", JOINT_MEMBERS),
        ]
    rows += [RowPlan(base, "train", 1, 8), RowPlan(base, "evaluate", 1)]
    if batch32:
        rows.append(RowPlan(base, "train", 1, 32))
    return Group(base, dtype, quantization, tuple(rows))


#: Highest priority first: what a time limit drops first is the last group.
GROUPS = (
    _group("bfloat16", "bfloat16", "none", joint=True, batch32=True),
    _group("float32", "float32", "none", joint=True, batch32=False),
    _group("4bit", "bfloat16", "4bit", joint=False, batch32=False),
)


@dataclass(frozen=True)
class Sizing:
    """How much of a row is timed, and the seconds it is expected to take in all."""

    count: int  # timed training steps, or questions per member
    warmup: int  # untimed steps, or warm-up questions
    estimate_s: float


@dataclass(frozen=True)
class Limits:
    """Row sizes: timed seconds aimed at, and the bounds on steps and questions."""

    row_seconds: float
    steps: tuple[int, int]
    questions: tuple[int, int]
    warmup_steps: int
    repeats: int


GPU_LIMITS = Limits(row_seconds=6.0, steps=(3, 20), questions=(48, 2048), warmup_steps=2, repeats=1)
TINY_LIMITS = Limits(row_seconds=0.2, steps=(2, 3), questions=(8, 16), warmup_steps=1, repeats=1)


def _clamp(value: float, bounds: tuple[int, int]) -> int:
    return int(min(max(round(value), bounds[0]), bounds[1]))


def size_row(row: RowPlan, peak_tflops: float, n_blocks: int, limits: Limits) -> Sizing:
    """Steps (or questions) for about ``limits.row_seconds`` of timed work at the assumed
    fraction of ``peak_tflops``, and the row's estimated seconds in all."""
    fraction = ASSUMED_FRACTION[(row.base, row.phase, row.joint)]
    tokens_s = fraction * peak_tflops * 1e12 / (results.FLOPS_PER_TOKEN[row.phase] * n_blocks)
    overhead = ROW_OVERHEAD_S + ATTACH_S * row.members
    if row.phase == "train":
        step_s = row.members * row.batch * TRAIN_TOKENS / tokens_s
        steps = _clamp(limits.row_seconds / step_s, limits.steps)
        return Sizing(steps, limits.warmup_steps, (steps + limits.warmup_steps) * step_s + overhead)
    question_s = EVAL_TOKENS / tokens_s  # one member's question
    questions = _clamp(limits.row_seconds / (question_s * row.members), limits.questions)
    warmup = max(1, questions // 4)
    work = (questions * limits.repeats + warmup) * row.members * question_s
    return Sizing(questions, warmup, work + overhead)


def group_setup_s(group: Group, parameters: int, with_save: bool) -> float:
    """Estimated seconds to have ``group``'s base in memory (and, for the bf16 group when the
    4-bit group follows, its weights saved for the 4-bit load)."""
    if group.quantization == "4bit":
        return 2 * parameters / QUANTIZE_BYTES_S + 5
    bytes_ = parameters * (4 if group.dtype == "float32" else 2)
    return bytes_ / BUILD_BYTES_S + 5 + (bytes_ / SAVE_BYTES_S + 2 if with_save else 0)


#: By group base: the set-up's estimated seconds, and the rows with their sizes.
Plan = dict[str, tuple[float, list[tuple[RowPlan, Sizing]]]]


def make_plan(
    groups: tuple[Group, ...],
    peaks: dict[str, float],
    parameters: int,
    n_blocks: int,
    limits: Limits,
) -> Plan:
    """Each group's estimated set-up seconds and its rows with their sizes, by base."""
    wants_4bit = any(g.quantization == "4bit" for g in groups)
    plan = {}
    for group in groups:
        setup = group_setup_s(group, parameters, wants_4bit and group.base == "bfloat16")
        sized = [(row, size_row(row, peaks[group.dtype], n_blocks, limits)) for row in group.rows]
        plan[group.base] = (setup, sized)
    return plan


def plan_seconds(plan: Plan) -> float:
    return sum(setup + sum(s.estimate_s for _, s in rows) for setup, rows in plan.values())


def fit_groups(
    groups: tuple[Group, ...],
    plan_of: Callable[[tuple[Group, ...]], Plan],
    seconds_left: float,
) -> tuple[tuple[Group, ...], list[Group]]:
    """The groups whose whole plan (``plan_of``) is estimated to fit ``seconds_left``
    (dropping the lowest priority ones, last first), and the dropped ones. The first group
    always stays: its rows are then skipped one by one if they do not fit."""
    kept = tuple(groups)
    dropped: list[Group] = []
    while len(kept) > 1 and plan_seconds(plan_of(kept)) > seconds_left:
        dropped.insert(0, kept[-1])
        kept = kept[:-1]
    return kept, dropped


class Budget:
    """Seconds since the start against the limit. Estimates are scaled by the largest ratio of
    measured to estimated seconds seen so far (per kind of step, never below 1), so a machine
    slower than assumed stops a step early rather than overrunning."""

    def __init__(
        self,
        limit_s: float,
        clock: Callable[[], float] = time.monotonic,
        start: float | None = None,
    ):
        self.limit_s = limit_s
        self.clock = clock
        self.start = clock() if start is None else start
        self.slowness = {"setup": 1.0, "row": 1.0}

    def elapsed(self) -> float:
        return self.clock() - self.start

    def fits(self, kind: str, estimate_s: float) -> bool:
        return self.elapsed() + estimate_s * self.slowness[kind] <= self.limit_s

    def observe(self, kind: str, estimate_s: float, seconds: float) -> None:
        if estimate_s > 0:
            self.slowness[kind] = max(self.slowness[kind], seconds / estimate_s)

    def why_not(self, kind: str, estimate_s: float) -> str:
        return (
            f"time limit: {self.elapsed():.0f} s used of {self.limit_s:.0f} s, this step is "
            f"estimated at {estimate_s * self.slowness[kind]:.0f} s"
        )


# ----------------------------------------------------------------------- the environment


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _command(*args: str) -> str | None:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=20, cwd=ROOT)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _host_cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


#: The code a results file's numbers depend on: its digest identifies the code that ran
#: where the machine has the files but not the git history.
CODE = ("lorauq/*.py", "scripts/gpu_check.py", "scripts/gpu_evidence.py")


def code_sha256(root: Path = ROOT) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for pattern in CODE for p in root.glob(pattern)):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def environment(device: torch.device, commit: str | None, wheels: Path | None) -> dict[str, Any]:
    """The card, driver, library versions and code the numbers came from."""
    cuda = device.type == "cuda"
    props = torch.cuda.get_device_properties(device) if cuda else None
    head = _command("git", "rev-parse", "HEAD")
    status = _command("git", "status", "--porcelain", "--untracked-files=no") if head else None
    return {
        "card": torch.cuda.get_device_name(device) if cuda else "CPU",
        "memory_gib": round(props.total_memory / 2**30, 1) if props else None,
        "compute_capability": f"{props.major}.{props.minor}" if props else None,
        "driver": (
            _command("nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader")
            if cuda
            else None
        ),
        "cuda": torch.version.cuda,
        "torch": torch.__version__,
        **{name: _version(name) for name in ("transformers", "peft", "bitsandbytes")},
        "accelerate": _version("accelerate"),
        "python": platform.python_version(),
        "host_cpu": _host_cpu(),
        "cpu_count": os.cpu_count(),
        "tf32": {
            "matmul": torch.backends.cuda.matmul.allow_tf32,
            "cudnn": torch.backends.cudnn.allow_tf32,
        },
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "git_commit": head or commit,
        "git_dirty": None if status is None else bool(status),
        "code_sha256": code_sha256(),
        "carried_wheels": sorted(p.name for p in wheels.glob("*.whl")) if wheels else [],
    }


# ----------------------------------------------------------------------------- the run


class Record:
    """The results file, rewritten (atomically) after every change so a killed run keeps
    every row it measured."""

    def __init__(self, path: Path, payload: dict[str, Any], budget: Budget):
        self.path = path
        self.payload = payload
        self.budget = budget
        path.parent.mkdir(parents=True, exist_ok=True)
        self.write()

    def write(self) -> None:
        self.payload["elapsed_s"] = round(self.budget.elapsed(), 1)
        write_text_atomic(self.path, json.dumps(self.payload, indent=2) + "\n")

    def step(self, name: str, estimate_s: float, seconds: float) -> None:
        self.payload["steps"].append(
            {"name": name, "estimated_s": round(estimate_s, 1), "seconds": round(seconds, 1)}
        )
        self.write()

    def skip(self, row_id: str, reason: str) -> None:
        print(f"skipped {row_id}: {reason}", flush=True)
        self.payload["skipped"].append({"id": row_id, "reason": reason})
        self.write()

    def add(self, row: dict[str, Any]) -> None:
        self.payload["rows"].append(row)
        self.write()


def output_path(folder: Path, card: str, date: str) -> Path:
    """``<folder>/<card>-<date>.json``, or ``-2``, ``-3`` … after it if that file exists."""
    stem = f"{results.card_slug(card)}-{date}"
    path, n = folder / f"{stem}.json", 1
    while path.exists():
        n += 1
        path = folder / f"{stem}-{n}.json"
    return path


@dataclass
class Context:
    """What every step of a run needs."""

    args: argparse.Namespace
    device: torch.device
    geometry: dict
    peaks: dict[str, float]
    n_blocks: int
    budget: Budget
    record: Record
    limits: Limits


def _timer(row: RowPlan, sizing: Sizing, model, ctx: Context) -> Callable[[], tuple[float, float]]:
    """The gpu_check timer that measures ``row`` on ``model``."""
    vocab = ctx.geometry["vocab_size"]
    multiple = pad_multiple(ctx.device)
    infer = InferParams(batch_tokens=ctx.args.batch_tokens)
    repeats = ctx.limits.repeats
    if row.phase == "train" and row.joint:
        return lambda: check.time_joint_training(
            model, LORA, TRAIN, row.members, row.batch, sizing.count, sizing.warmup, vocab, multiple
        )
    if row.phase == "train":
        return lambda: check.time_training(
            model, TRAIN, row.batch, sizing.count, sizing.warmup, vocab, multiple
        )
    return lambda: check.time_evaluation(
        model,
        infer,
        sizing.count,
        vocab,
        repeats,
        multiple,
        sizing.warmup,
        members=row.members,
        lora=LORA,
    )


def measure(row: RowPlan, sizing: Sizing, group: Group, model, ctx: Context) -> None:
    """Run one row if the budget allows, and record it (or why it was skipped)."""
    if not ctx.budget.fits("row", sizing.estimate_s):
        ctx.record.skip(row.id, ctx.budget.why_not("row", sizing.estimate_s))
        return
    peak = ctx.peaks[group.dtype] * 1e12
    start = time.monotonic()
    try:
        result = check.measure_row(
            ctx.device,
            ctx.n_blocks,
            peak,
            row.phase,
            group.quantization,
            row.id,
            results.FLOPS_PER_TOKEN[row.phase],
            _timer(row, sizing, model, ctx),
        )
    except Exception as exc:  # one failed row must not cost the others: record it, go on
        traceback.print_exc()
        check.release_memory(ctx.device)
        ctx.record.skip(row.id, f"failed: {type(exc).__name__}: {str(exc).splitlines()[0]}")
        return
    seconds = time.monotonic() - start
    ctx.budget.observe("row", sizing.estimate_s, seconds)
    timed = (
        {"steps": sizing.count, "warmup_steps": sizing.warmup}
        if row.phase == "train"
        else {
            "questions_per_member": sizing.count,
            "warmup_questions": sizing.warmup,
            "passes": ctx.limits.repeats,
        }
    )
    ctx.record.add(
        {
            "id": row.id,
            "phase": row.phase,
            "base": row.base,
            "compute_dtype": group.dtype,
            "quantization": group.quantization,
            "compile": False,
            "members": row.members,
            "batch_per_member": row.batch,
            "batch_tokens": ctx.args.batch_tokens if row.phase == "evaluate" else None,
            "tokens_per_s": result.tokens_per_s,
            "questions_per_s": result.questions_per_s,
            "tflops": result.tflops,
            "peak_dtype": group.dtype,
            "fraction_of_peak": result.fraction_of_peak,
            "peak_memory_gib": result.peak_memory_gib,
            "estimated_s": round(sizing.estimate_s, 1),
            "seconds": round(seconds, 1),
            "timed": timed,
        }
    )
    print(
        f"{row.id}: {result.tokens_per_s:,.0f} tokens/s, {result.tflops:.1f} TFLOP/s "
        f"({result.fraction_of_peak:.1%} of the {group.dtype} peak), "
        f"{seconds:.1f} s (estimated {sizing.estimate_s:.1f})",
        flush=True,
    )


def obtain_base(group: Group, ctx: Context, saved: Path | None):
    """The group's base on the device: random weights built there, or the saved bf16
    weights loaded through lorauq's loader with 4-bit quantization."""
    if group.quantization == "4bit":
        params = BaseParams(
            kind="pretrained", model=str(saved), dtype=group.dtype, quantization="4bit"
        )
        return load_base_model(str(saved), params)
    return check.build_random_model(ctx.geometry, getattr(torch, group.dtype), ctx.device)


def run_group(
    group: Group,
    setup_s: float,
    rows: list[tuple[RowPlan, Sizing]],
    ctx: Context,
    scratch: Path,
    save_for_4bit: bool,
) -> bool:
    """Set up ``group``'s base and measure its rows. Returns whether the bf16 weights were
    saved under ``scratch`` for the 4-bit group."""
    saved = scratch / "base"
    if group.quantization == "4bit" and not saved.is_dir():
        for row, _ in rows:
            ctx.record.skip(row.id, "the bfloat16 weights to quantize were not saved")
        return False
    if not ctx.budget.fits("setup", setup_s):
        for row, _ in rows:
            ctx.record.skip(row.id, ctx.budget.why_not("setup", setup_s))
        return False
    start = time.monotonic()
    try:
        model = obtain_base(group, ctx, saved)
    except Exception as exc:
        traceback.print_exc()
        for row, _ in rows:
            ctx.record.skip(
                row.id, f"base failed: {type(exc).__name__}: {str(exc).splitlines()[0]}"
            )
        return False
    did_save = False
    if save_for_4bit:
        model.save_pretrained(saved, safe_serialization=True)
        did_save = True
    seconds = time.monotonic() - start
    ctx.budget.observe("setup", setup_s, seconds)
    ctx.record.step(f"{group.base} base ready", setup_s, seconds)
    try:
        for row, sizing in rows:
            if row.joint:
                measure(row, sizing, group, model, ctx)
        singles = [(row, sizing) for row, sizing in rows if not row.joint]
        if singles:
            model = attach_lora(model, LORA, seed=0)
            for row, sizing in singles:
                measure(row, sizing, group, model, ctx)
    finally:
        del model
        gc.collect()
        check.release_memory(ctx.device)
    return did_save


def measure_peaks(device: torch.device, size: int, repeats: int) -> dict[str, float]:
    """Dense matmul TFLOP/s in float32 (TF32 off) and bfloat16, the denominators of every row."""
    return {
        dtype: check.matmul_peak(device, getattr(torch, dtype), size, repeats) / 1e12
        for dtype in ("float32", "bfloat16")
    }


def format_rows(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| row | tokens/s | questions/s | TFLOP/s | of peak | peak memory | seconds |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        memory = "-" if r["peak_memory_gib"] is None else f"{r['peak_memory_gib']:.1f} GiB"
        lines.append(
            f"| {r['id']} | {r['tokens_per_s']:,.0f} | {r['questions_per_s']:,.1f} | "
            f"{r['tflops']:.3g} | {r['fraction_of_peak']:.1%} | {memory} | {r['seconds']} |"
        )
    return "\n".join(lines)


def print_plan(plan, peaks: dict[str, float], limit_s: float) -> None:
    print(f"assumed peaks (TFLOP/s): {peaks}; limit {limit_s:.0f} s")
    for base, (setup, rows) in plan.items():
        print(f"{base}: set-up ≈ {setup:.0f} s")
        for row, sizing in rows:
            unit = "steps" if row.phase == "train" else "questions per member"
            print(
                f"  {row.id}: {sizing.count} {unit} + {sizing.warmup} warm-up, ≈ {sizing.estimate_s:.0f} s"
            )
    print(f"total ≈ {plan_seconds(plan):.0f} s (plus the peaks and start-up)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--time-limit", type=float, default=420.0, help="seconds (default 420)")
    parser.add_argument(
        "--out", type=Path, default=ROOT / results.RESULTS, help="folder of the results file"
    )
    parser.add_argument("--cpu-tiny", action="store_true", help="tiny geometry on CPU (rehearsal)")
    parser.add_argument("--row-seconds", type=float, default=None, help="timed seconds per row")
    parser.add_argument("--only", nargs="+", default=None, choices=[g.base for g in GROUPS])
    parser.add_argument("--commit", default=None, help="the code's commit, where git is absent")
    parser.add_argument("--wheels", type=Path, default=None, help="(set by gpu_evidence.sh)")
    parser.add_argument("--plan", action="store_true", help="print the H100 schedule and exit")
    args = parser.parse_args(argv)
    args.batch_tokens = 1024 if args.cpu_tiny else PAPER_BATCH_TOKENS
    return args


def main(argv: list[str] | None = None, started: float | None = None) -> Path | None:
    """Measure, write and return the results file (None with ``--plan``). ``started``: when
    the time limit began (the process's start; default now)."""
    args = parse_args(argv)
    budget = Budget(args.time_limit, start=started)
    device = torch.device("cpu" if args.cpu_tiny else "cuda")
    if not args.plan and device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device: run with --cpu-tiny for the CPU rehearsal")
    limits = TINY_LIMITS if args.cpu_tiny else GPU_LIMITS
    if args.row_seconds is not None:
        limits = Limits(
            args.row_seconds, limits.steps, limits.questions, limits.warmup_steps, limits.repeats
        )
    geometry = REHEARSAL if args.cpu_tiny else check.MISTRAL_7B
    meta = check.build_random_model(geometry, torch.bfloat16, torch.device("meta"))
    parameters = sum(p.numel() for p in meta.parameters())
    n_blocks = check.block_parameters(meta)
    del meta
    groups = tuple(g for g in GROUPS if args.only is None or g.base in args.only)
    if args.plan:
        print_plan(
            make_plan(groups, PLAN_PEAKS_TFLOPS, parameters, n_blocks, limits),
            PLAN_PEAKS_TFLOPS,
            args.time_limit,
        )
        return None
    # float32 rows as the authors ran them: TF32 off for matmuls and convolutions.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    env = environment(device, args.commit, args.wheels)
    date = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    start = time.monotonic()
    peaks = measure_peaks(device, 256 if args.cpu_tiny else 8192, 10 if args.cpu_tiny else 20)
    payload: dict[str, Any] = {
        "schema": results.SCHEMA,
        "source": "measured by scripts/gpu_evidence.py",
        "date": date,
        "finished": False,
        "environment": env,
        "model": {
            "geometry": "tiny (CPU rehearsal)" if args.cpu_tiny else "Mistral-7B-v0.1",
            "weights": "random",
            "parameters": parameters,
            "block_parameters": n_blocks,
        },
        "flops_per_token": dict(results.FLOPS_PER_TOKEN),
        "peaks_tflops": peaks,
        "time_limit_s": args.time_limit,
        "elapsed_s": 0.0,
        "rows": [],
        "skipped": [],
        "steps": [],
    }
    record = Record(output_path(args.out, env["card"], date), payload, budget)
    record.step("matmul peaks", 0.0, time.monotonic() - start)
    print(
        f"{env['card']}: peaks {', '.join(f'{k} {v:.1f}' for k, v in peaks.items())} TFLOP/s",
        flush=True,
    )
    if (
        any(g.quantization == "4bit" for g in groups)
        and importlib.util.find_spec("bitsandbytes") is None
    ):
        for group in [g for g in groups if g.quantization == "4bit"]:
            for row in group.rows:
                record.skip(row.id, "bitsandbytes is not installed")
        groups = tuple(g for g in groups if g.quantization != "4bit")

    def plan_of(chosen: tuple[Group, ...]) -> Plan:
        return make_plan(chosen, peaks, parameters, n_blocks, limits)

    kept, dropped = fit_groups(groups, plan_of, args.time_limit - budget.elapsed())
    for group in dropped:
        for row in group.rows:
            record.skip(row.id, "time limit: the whole plan's estimate does not fit; group dropped")
    plan = plan_of(kept)
    ctx = Context(args, device, geometry, peaks, n_blocks, budget, record, limits)
    with tempfile.TemporaryDirectory(dir=check.scratch_dir(2 * parameters)) as tmp:
        wants_4bit = any(g.quantization == "4bit" for g in kept)
        for group in kept:
            setup_s, rows = plan[group.base]
            run_group(group, setup_s, rows, ctx, Path(tmp), wants_4bit and group.base == "bfloat16")
    payload["finished"] = True
    record.write()
    print(format_rows(payload["rows"]))
    print(
        f"{record.path}: {len(payload['rows'])} rows, {len(payload['skipped'])} skipped, {budget.elapsed():.0f} s"
    )
    return record.path


if __name__ == "__main__":
    main(started=STARTED)
