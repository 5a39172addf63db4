"""Write every GPU table of docs/gpu.md and README.md from ``benchmarks/results/*.json``.

The GPU numbers the docs quote are data (``scripts/gpu_results.py``: one file per measuring
run, or one transcribed from a table published before the files existed), so a new run
changes the docs by rerunning this, never by hand:

    python scripts/gpu_tables.py            # rewrite the blocks
    python scripts/gpu_tables.py --check    # exit 1 if a block is not what the files give

It rewrites the blocks between ``<!-- gpu-<name>:start … -->`` and ``<!-- gpu-<name>:end -->``
markers: in docs/gpu.md the throughput rows of every file, the peak memory per base, and what
a run costs (the paper profile, Colab, the published Bayesian-LoRA protocol, and this
repository's `protocol` profile as params.yaml composes it); in README.md a short cost table
and the time cell of the "paper on a GPU" row of its "Choose your path" table.
``tests/test_gpu_tables.py`` fails when they are out of step with the files or params.yaml.

Every number names its card. A cost is GPU-hours = questions ÷ the measured questions/s of
the matching row (the row's card and date given); a cost on a card that was not measured is
an **estimate**, labelled so, scaled from a measured card by the cards' datasheet dense
matmul peaks through ``lorauq.colab.scale_hours``, the one cost model the Colab notebook
quotes too (one member's training at batch 8 is host-bound on the measured card, and scales
less than the peaks).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT, ROOT / "scripts"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import gpu_results as results  # noqa: E402

from lorauq import colab  # noqa: E402
from lorauq.atomic import write_text_atomic  # noqa: E402
from lorauq.config import Params, load_params, unit_members  # noqa: E402
from lorauq.marked import replace_marked  # noqa: E402

GPU_DOC = Path("docs/gpu.md")
README = Path("README.md")
BLOCKS = {GPU_DOC: ("throughput", "memory", "cost"), README: ("cost-summary",)}
#: The README's "Choose your path" row whose time cell this script writes.
PATH_ROW = "| paper on a GPU |"

#: Questions in the paper profile's data (docs/paper.md, section 6): CommonsenseQA's train
#: split, and the three eval sets (CQA validation 1,221, MMLU STEM 3,153, social sciences 2,946).
PAPER_TRAIN_QUESTIONS = colab.TRAIN_QUESTIONS
PAPER_EVAL_QUESTIONS = colab.EVAL_QUESTIONS

#: The Bayesian-LoRA protocol (Laplace-LoRA's, run by BLoB, TFB, IVON-LoRA): Llama-2-7B,
#: LoRA on q/v, batch 4, max length 300, 5,000 steps, 3 seeds, 10 posterior samples.
PROTOCOL_STEPS, PROTOCOL_BATCH, PROTOCOL_MAX_LENGTH, PROTOCOL_SEEDS = 5_000, 4, 300, 3
PROTOCOL_SAMPLES = 10
#: Validation questions of the six tasks (their released validation splits).
PROTOCOL_TASKS = {
    "WinoGrande-S": 1_267,
    "ARC-Challenge": 299,
    "ARC-Easy": 570,
    "WinoGrande-M": 1_267,
    "OpenBookQA": 500,
    "BoolQ": 3_270,
}
#: Training questions of the six tasks (their training splits; tests/test_sources_protocol.py
#: checks the full copies against these sizes): the held-out rows of the `protocol` profile are
#: ``data.calibration_fraction`` of them.
PROTOCOL_TRAIN_TASKS = {
    "WinoGrande-S": 640,
    "ARC-Challenge": 1_119,
    "ARC-Easy": 2_251,
    "WinoGrande-M": 2_558,
    "OpenBookQA": 4_957,
    "BoolQ": 9_427,
}
#: Llama-2-7B's block parameters (32 layers of 4096-wide attention and 11008-wide MLP, and
#: the final norm; embedding and LM head left out as for Mistral-7B).
LLAMA2_7B_BLOCK_PARAMETERS = 6_476_271_616
#: Per method: training runs and evaluation passes per task and seed, and where they come from.
PROTOCOL_METHODS = (
    ("MLE", 1, 1, "one run"),
    ("MAP", 1, 1, "one run"),
    ("MC dropout", 0, PROTOCOL_SAMPLES, "the MLE run (trained with dropout), 10 passes"),
    ("ensemble (M = 3)", 3, 3, "three runs, one pass each"),
    ("Laplace", 0, PROTOCOL_SAMPLES, "the MAP run, 10 samples (its curvature pass not counted)"),
    ("IVON", 1, PROTOCOL_SAMPLES, "one run (an IVON step ≈ an AdamW step), 10 samples"),
)

BASE_LABEL = {"bfloat16": "bfloat16", "float32": "float32 (TF32 off)", "4bit": "4-bit NF4"}
NOT_MEASURED = "not measured"
NOT_YET = "not measured yet"


# ------------------------------------------------------------------------------ rows


@dataclass(frozen=True)
class Measured:
    """A row and the results file it came from."""

    row: dict[str, Any]
    payload: dict[str, Any]

    @property
    def card(self) -> str:
        return results.short_card(self.payload["environment"]["card"])

    @property
    def cite(self) -> str:
        return f"`{self.row['id']}` ({self.card}, {self.payload['date']})"


def newest_rows(files: list[dict[str, Any]]) -> dict[str, dict[str, Measured]]:
    """``card -> row id -> Measured``: each row from the newest file of its card that has it
    (``files`` oldest first)."""
    cards: dict[str, dict[str, Measured]] = {}
    for payload in files:
        card = results.short_card(payload["environment"]["card"])
        for row in payload["rows"]:
            cards.setdefault(card, {})[row["id"]] = Measured(row, payload)
    return cards


def _gib(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} GiB"


def _number(value: float, decimals: int = 0) -> str:
    return f"{value:,.{decimals}f}"


def _tflops(value: float) -> str:
    return _number(value) if value >= 10 else f"{value:.3g}"


def _hours(value: float) -> str:
    return _number(value, 1) if value < 100 else _number(value)


def _fine_hours(value: float) -> str:
    """Hours with two decimals below one hour, where one decimal would round them away."""
    return f"{value:.2f}" if value < 1 else _hours(value)


def _shape(row: dict[str, Any]) -> str:
    """Training: members × questions each per step; evaluation: the token budget, which
    bounds a joint pass of all members (each gets its share)."""
    members, joint = row["members"], " jointly" if row["members"] > 1 else ""
    if row["phase"] == "train":
        return f"{members} × {row['batch_per_member']} questions{joint}"
    return f"{members}{joint}, {row['batch_tokens']:,}-token batches"


def _base(row: dict[str, Any]) -> str:
    label = BASE_LABEL[row["base"]]
    if row["base"] == "4bit":
        label += f" ({row['compute_dtype']} compute)"
    return label + (", `train.compile: true`" if row["compile"] else "")


def _environment(payload: dict[str, Any]) -> str:
    env = payload["environment"]
    torch = f"torch {env.get('torch')}" + (f" + CUDA {env['cuda']}" if env.get("cuda") else "")
    parts = [torch]
    parts += [f"{k} {env[k]}" for k in ("transformers", "peft", "bitsandbytes") if env.get(k)]
    if env.get("driver"):
        parts.append(f"driver {env['driver']}")
    if env.get("git_commit"):
        dirty = " (modified)" if env.get("git_dirty") else ""
        parts.append(f"commit {env['git_commit'][:9]}{dirty}")
    return ", ".join(parts)


def _peaks(payload: dict[str, Any]) -> str:
    measured = {k: v for k, v in payload["peaks_tflops"].items() if v is not None}
    if measured:
        listed = ", ".join(f"{BASE_LABEL.get(k, k)} {v:,.0f}" for k, v in measured.items())
        return f"matmul peaks measured in the same run: {listed} TFLOP/s"
    return payload.get("peak_note", "peak not recorded")


def throughput_block(files: list[dict[str, Any]]) -> str:
    """One caption and table per results file, newest first."""
    parts = []
    for payload in reversed(files):
        card = results.short_card(payload["environment"]["card"])
        model = payload["model"]
        status = "" if payload["finished"] else " The run stopped before its end."
        parts += [
            f"**{card} · {payload['date']}** (`{results.RESULTS.as_posix()}/{payload['file']}`, "
            f"{payload['source']}): {model['weights']} weights of {model['geometry']}'s "
            f"geometry; {_environment(payload)}; {_peaks(payload)}; FLOPs counted as 4·N per "
            f"trained and 2·N per evaluated token, N = {model['block_parameters'] / 1e9:.2f} B "
            f"block parameters.{status}",
            "",
            "| card | phase | base | members × batch | tokens/s | questions/s | TFLOP/s "
            "| of peak | peak memory |",
            "|---|---|---|---|---:|---:|---:|---:|---:|",
        ]
        for row in payload["rows"]:
            parts.append(
                f"| {card} | {row['phase']} | {_base(row)} | {_shape(row)} | "
                f"{_number(row['tokens_per_s'])} | {_number(row['questions_per_s'], 1)} | "
                f"{_tflops(row['tflops'])} | {100 * row['fraction_of_peak']:.1f} % | "
                f"{_gib(row['peak_memory_gib'])} |"
            )
        if payload["skipped"]:
            skipped = "; ".join(f"`{s['id']}` ({s['reason']})" for s in payload["skipped"])
            parts += ["", f"Not measured in this run: {skipped}."]
        parts.append("")
    return "\n".join(parts).rstrip("\n")


def _weights(base: str, model: dict[str, Any]) -> str:
    """The base's weights in GB: parameters × bytes; 4-bit packs the block weights in half a
    byte each and keeps the embedding and LM head in bfloat16."""
    total, blocks = model["parameters"], model["block_parameters"]
    size = {"float32": 4 * total, "bfloat16": 2 * total, "4bit": blocks / 2 + 2 * (total - blocks)}
    return f"{size[base] / 1e9:.1f} GB"


MEMORY_COLUMNS = (
    ("training, 1 × 8", "train", 1, 8),
    ("training, 1 × 32", "train", 1, 32),
    ("training, 5 × 8 jointly", "train", 5, 8),
    ("evaluation, 1", "evaluate", 1, None),
    ("evaluation, 5 jointly", "evaluate", 5, None),
)


def memory_block(cards: dict[str, dict[str, Measured]]) -> str:
    """Peak GPU memory per card and base, from the newest row of each kind."""
    lines = [
        "| card | base | weights | " + " | ".join(c[0] for c in MEMORY_COLUMNS) + " |",
        "|---|---|---:|" + "---:|" * len(MEMORY_COLUMNS),
    ]
    for card, rows in cards.items():
        for base in results.BASES:
            found = [rows.get(results.row_id(base, *c[1:])) for c in MEMORY_COLUMNS]
            if not any(found):
                continue
            model = next(m for m in found if m).payload["model"]
            cells = [_gib(m.row["peak_memory_gib"]) if m else NOT_MEASURED for m in found]
            lines.append(
                f"| {card} | {BASE_LABEL[base]} | {_weights(base, model)} | "
                + " | ".join(cells)
                + " |"
            )
    return "\n".join(lines)


# ------------------------------------------------------------------------------ costs


@dataclass(frozen=True)
class Cost:
    """GPU-hours of a run on one card, and what they came from."""

    card: str
    train_h: float
    eval_h: float
    memory_gib: float | None
    cites: tuple[str, ...]
    estimate: str = ""  # the formula, when the card was not measured

    @property
    def hours(self) -> float:
        return self.train_h + self.eval_h

    def scaled(self, card: str, *, host_bound: bool) -> Cost | None:
        """This cost on ``card``, an estimate through ``lorauq.colab.scale_hours`` (datasheet
        peaks; ``host_bound``: one member's training at batch 8); None when either card has
        no datasheet peak here."""
        scaled = colab.scale_hours(
            self.train_h, self.eval_h, self.card, card, host_bound=host_bound
        )
        if scaled is None:
            return None
        ratio = "host-bound training: max(1, ratio/3); evaluation: ratio" if host_bound else "ratio"
        formula = f"{self.card} hours scaled by the datasheet peaks' ratio ({ratio})"
        return Cost(card, *scaled, self.memory_gib, self.cites, formula)


@dataclass(frozen=True)
class Work:
    """Questions a run trains and evaluates, and the rows that time them."""

    train_questions: int
    eval_questions: int
    prior_questions: int  # evaluated by the base alone (the prior, once)
    train_row: str
    eval_row: str
    prior_row: str


def cost(work: Work, rows: dict[str, Measured], card: str) -> Cost | None:
    """GPU-hours of ``work`` at the measured rates of ``card``; None if a row is missing."""
    needed = [rows.get(work.train_row), rows.get(work.eval_row), rows.get(work.prior_row)]
    if any(m is None for m in needed):
        return None
    train, evaluate, prior = needed
    train_h = work.train_questions / train.row["questions_per_s"] / 3600
    eval_h = (
        work.eval_questions / evaluate.row["questions_per_s"]
        + work.prior_questions / prior.row["questions_per_s"]
    ) / 3600
    memory = [m.row["peak_memory_gib"] for m in needed if m.row["peak_memory_gib"] is not None]
    cites = tuple(dict.fromkeys(m.cite for m in needed))
    return Cost(card, train_h, eval_h, max(memory) if memory else None, cites)


def paper_work(params: Params, base: str, *, joint: bool, members: int | None = None) -> Work:
    """The paper profile's questions: every ensemble's members × epochs × the training set,
    the prior once, then every member's epochs on the eval sets. ``members``: only that many
    members of the main ensemble (the Colab runs)."""
    if members is None:
        ensembles = list(params.ensembles.values())
        per = len(params.members)
    else:
        ensembles = [params.ensemble(params.main_ensemble)]
        per = members
    member_epochs = sum(per * e.train.epochs for e in ensembles)
    width = per if joint else 1
    return Work(
        train_questions=member_epochs * PAPER_TRAIN_QUESTIONS,
        eval_questions=member_epochs * PAPER_EVAL_QUESTIONS,
        prior_questions=PAPER_EVAL_QUESTIONS,
        train_row=results.row_id(base, "train", width, params.train.batch_size),
        eval_row=results.row_id(base, "evaluate", width, None),
        prior_row=results.row_id(base, "evaluate", 1, None),
    )


@dataclass(frozen=True)
class CostRow:
    """One line of the cost tables: a run, a card and its cost (None: not measured yet)."""

    run: str
    card: str
    base: str  # a results row's base: float32, bfloat16 or 4bit
    found: Cost | None
    summary: bool  # also in the README's short table
    note: str = ""  # after the base's label

    @property
    def base_label(self) -> str:
        return BASE_LABEL[self.base] + self.note


def _scaled(found: Cost | None, card: str, *, host_bound: bool) -> Cost | None:
    return found.scaled(card, host_bound=host_bound) if found else None


def joint_cost(params: Params, rows: dict[str, Measured], card: str) -> Cost | None:
    """The main ensemble's members trained jointly in bfloat16 on ``card``: its measured joint
    rows, or else an estimate that counts the joint step's rows at one member's batch-32 rate
    (as ``lorauq.colab.estimate_hours`` does)."""
    m = len(params.members)
    work = paper_work(params, "bfloat16", joint=True, members=m)
    found = cost(work, rows, card)
    if found is not None:
        return found
    proxy = dataclasses.replace(
        work,
        train_row=results.row_id("bfloat16", "train", 1, 32),
        eval_row=results.row_id("bfloat16", "evaluate", 1, None),
    )
    found = cost(proxy, rows, card)
    if found is None:
        return None
    rows_per_step = m * params.train.batch_size
    formula = f"{rows_per_step} rows a step counted at one member's batch-32 rate"
    return dataclasses.replace(found, estimate=formula)


def cost_rows(params: Params, cards: dict[str, dict[str, Measured]]) -> list[CostRow]:
    """The paper profile (as configured first, then the other way of running its members) in
    its own dtype and in bfloat16, then the Colab runs: on the measured card (the one with
    most rows) and, as estimates, on the Colab cards."""
    if not cards:
        return []
    card = max(cards, key=lambda c: len(cards[c]))
    rows = cards[card]
    configured = params.base.dtype if params.base.dtype in results.BASES else "bfloat16"
    m = len(params.members)
    epochs = "/".join(str(e) for e in sorted({e.train.epochs for e in params.ensembles.values()}))
    grid = f"{len(params.ensembles)} ensembles × {m} members × {epochs} epochs"
    joint_now = params.train.joint and any(len(unit_members(u)) > 1 for u in params.units)
    out = []
    for joint in (joint_now, not joint_now):
        how = (
            f'each ensemble\'s members jointly (`members: ["0-{m - 1}"]`)'
            if joint
            else "a stage per member"
        )
        for base in dict.fromkeys((configured, "bfloat16")):
            found = cost(paper_work(params, base, joint=joint), rows, card)
            note = ", the profile's" if base == configured else ""
            run = f"`make paper`: {grid}, {how}"
            out.append(CostRow(run, card, base, found, joint == joint_now, note))
    main = params.main_ensemble
    main_epochs = params.ensemble(main).train.epochs
    single_4bit = cost(paper_work(params, "4bit", joint=False, members=1), rows, card)
    single_bf16 = cost(paper_work(params, "bfloat16", joint=False, members=1), rows, card)
    joint_bf16 = joint_cost(params, rows, card)
    one = f"Colab, one member of `{main}`, {main_epochs} epochs"
    five = f"Colab, {m} members of `{main}` jointly, {main_epochs} epochs"
    return [
        *out,
        CostRow(
            one,
            "T4",
            "4bit",
            _scaled(single_4bit, "T4", host_bound=True),
            True,
            " (float16 compute)",
        ),
        CostRow(one, "L4", "bfloat16", _scaled(single_bf16, "L4", host_bound=True), True),
        CostRow(one, card, "bfloat16", single_bf16, False),
        CostRow(five, "A100", "bfloat16", _scaled(joint_bf16, "A100", host_bound=False), True),
        CostRow(five, card, "bfloat16", joint_bf16, True),
    ]


def _hours_cell(found: Cost | None) -> str:
    if found is None:
        return NOT_YET
    return f"≈ {_hours(found.hours)} (estimate)" if found.estimate else _hours(found.hours)


def _memory_cell(found: Cost | None) -> str:
    if found is None or found.memory_gib is None:
        return NOT_YET
    return _gib(found.memory_gib) + (" (on the measured card)" if found.estimate else "")


def _source_cell(found: Cost | None) -> str:
    if found is None:
        return "no measured row yet"
    rows = "rows " + ", ".join(found.cites)
    return f"{found.estimate}; {rows}" if found.estimate else rows


@dataclass(frozen=True)
class ProtocolRates:
    """Llama-2-7B's rates on one measured card, derived from the Mistral-7B rows: a training
    step's fixed part (the host's kernel launches) and its seconds per token, and evaluation's
    seconds per token. Both of the protocol's cost tables price their work with these."""

    card: str
    fixed_s: float
    token_s: float
    eval_token_s: float
    cites: tuple[str, ...]

    def step_s(self, batch: int, max_length: int) -> float:
        """One training step at ``batch`` questions of ≤ ``max_length`` tokens."""
        return self.fixed_s + self.token_s * batch * max_length

    def run_h(self, steps: int, batch: int, max_length: int) -> float:
        """One training run of ``steps`` steps, in hours."""
        return steps * self.step_s(batch, max_length) / 3600

    def pass_h(self, questions: int, max_length: int) -> float:
        """One evaluation pass over ``questions`` of ≤ ``max_length`` tokens, in hours."""
        return questions * max_length * self.eval_token_s / 3600


def protocol_rates(cards: dict[str, dict[str, Measured]]) -> ProtocolRates | None:
    """A line through the step times of the measured bf16 single-member training rows at
    batch 8 and 32 (a fixed part and a part per token), its per-token part scaled from
    Mistral-7B's N to Llama-2-7B's; evaluation at the measured bf16 rate, scaled the same
    way. The first card with all three rows; None when none has them."""
    for card, rows in cards.items():
        small, large = rows.get("bfloat16-train-1x8"), rows.get("bfloat16-train-1x32")
        evaluate = rows.get("bfloat16-evaluate-1")
        if not (small and large and evaluate):
            continue
        points = []
        for m in (small, large):
            r = m.row
            tokens = r["batch_per_member"] * r["tokens_per_s"] / r["questions_per_s"]
            points.append((tokens, tokens / r["tokens_per_s"]))
        (t1, s1), (t2, s2) = points
        per_token = (s2 - s1) / (t2 - t1)
        scale = LLAMA2_7B_BLOCK_PARAMETERS / small.payload["model"]["block_parameters"]
        cites = (small.cite, large.cite, evaluate.cite)
        eval_token_s = scale / evaluate.row["tokens_per_s"]
        return ProtocolRates(card, s1 - per_token * t1, per_token * scale, eval_token_s, cites)
    return None


@dataclass(frozen=True)
class ProtocolCost:
    """The Bayesian-LoRA protocol on the measured card: one run's hours, one evaluation pass
    over every task's validation split, and the step time behind them."""

    card: str
    step_s: float
    per_run_h: float
    eval_pass_h: float
    cites: tuple[str, ...]

    def method_hours(self, runs: int, passes: int) -> float:
        """A method's GPU-hours over every task and seed."""
        per_seed = runs * len(PROTOCOL_TASKS) * self.per_run_h + passes * self.eval_pass_h
        return PROTOCOL_SEEDS * per_seed

    def total_hours(self) -> float:
        return sum(self.method_hours(runs, passes) for _, runs, passes, _ in PROTOCOL_METHODS)


def protocol_cost(cards: dict[str, dict[str, Measured]]) -> ProtocolCost | None:
    """The published protocol at :func:`protocol_rates`: Llama-2-7B's step at batch 4 × 300
    tokens, a pass over the six validation splits at ≤ 300 tokens a question."""
    rates = protocol_rates(cards)
    if rates is None:
        return None
    step = rates.step_s(PROTOCOL_BATCH, PROTOCOL_MAX_LENGTH)
    run = rates.run_h(PROTOCOL_STEPS, PROTOCOL_BATCH, PROTOCOL_MAX_LENGTH)
    eval_pass = rates.pass_h(sum(PROTOCOL_TASKS.values()), PROTOCOL_MAX_LENGTH)
    return ProtocolCost(rates.card, step, run, eval_pass, rates.cites)


def held_out_rows(train_questions: int, fraction: float) -> int:
    """Rows ``prepare`` holds out of ``train_questions`` (``split_calibration``'s count: the
    rounded fraction, at least one when the fraction is above 0)."""
    return 0 if fraction == 0.0 else max(1, round(fraction * train_questions))


@dataclass(frozen=True)
class ProfileLine:
    """One line of the `protocol` profile's cost: per task, its training runs and evaluation
    passes, each pass over the validation split (``held_out`` false) or the held-out rows."""

    name: str  # as the table shows it
    runs: int
    passes: int
    held_out: bool
    how: str
    step_factor: int = 1  # a step of its runs in AdamW steps (IVON: its weight draws a step)


def _method_line(name: str, params: Params, checkpoints: int) -> ProfileLine:
    """One method of ``methods.run`` per task: its own training runs and its passes. The
    Laplace curvature pass and the linearised read-out's Jacobians are not counted (as in the
    published table); a method with no cost model here stops the script with its name."""
    m, members, label = params.methods, len(params.members), f"`{name}`"
    if name in ("single", "checkpoints"):
        return ProfileLine(label, 0, 0, False, "no training, no pass: the members' stored logits")
    if name == "temperature":
        how = f"no training; the {members} members' final adapters on the held-out rows"
        return ProfileLine(label, 0, members, True, how)
    if name == "early_stopped":
        how = f"no training; each member's {checkpoints} checkpoints on the held-out rows"
        return ProfileLine(label, 0, members * checkpoints, True, how)
    if name == "mc_dropout":
        s = m.mc_dropout
        how = f"{s.runs} runs of its own with dropout {s.dropout}, {s.passes} passes each"
        return ProfileLine(label, s.runs, s.passes * s.runs, False, how)
    if name == "laplace":
        s = m.laplace
        how = (
            f"no training; posteriors around members 0–{s.runs - 1}, {s.samples} samples "
            "each (the curvature pass and the linearised read-out's Jacobians not counted)"
        )
        return ProfileLine(label, 0, s.samples * s.runs, False, how)
    if name == "ivon":
        s = m.ivon
        draws = (
            "1 weight draw a step (≈ an AdamW step)"
            if s.train_samples == 1
            else f"{s.train_samples} weight draws a step (≈ {s.train_samples} AdamW steps)"
        )
        how = f"{s.runs} IVON runs, {draws}, {s.samples} samples each"
        return ProfileLine(label, s.runs, s.samples * s.runs, False, how, s.train_samples)
    raise SystemExit(f"{params.profile}.methods.run: no cost model for {name!r} here")


def profile_lines(params: Params) -> list[ProfileLine]:
    """What one task of ``params`` (the composed `protocol` profile) trains and evaluates: the
    prior, the main ensemble (every member's checkpoints), then each method of
    ``methods.run``."""
    main = params.ensemble(params.main_ensemble).train
    if main.steps is None:
        raise SystemExit(f"{params.profile}.train.steps is null: the protocol cost counts steps")
    members, checkpoints = len(params.members), main.checkpoint_count
    return [
        ProfileLine("the prior (stage `prior`)", 0, 1, False, "the base before fine-tuning"),
        ProfileLine(
            f"LoRA ensemble (`ensemble_m{members}`, `ensemble_m3`)",
            members,
            members * checkpoints,
            False,
            f"{members} members × {main.steps:,} steps (trained jointly, counted as {members} "
            f"runs); each member's {checkpoints} checkpoints evaluated",
        ),
        *(_method_line(name, params, checkpoints) for name in params.methods.run),
    ]


@dataclass(frozen=True)
class ProfileCost:
    """The `protocol` profile over the six tasks (one experiment each) at ``rates``."""

    rates: ProtocolRates
    lines: tuple[ProfileLine, ...]
    run_h: float  # one training run, summed over the six tasks
    validation_pass_h: float  # one pass over the six validation splits
    held_out_pass_h: float  # one pass over the six tasks' held-out rows
    held_out_questions: int

    def line_hours(self, line: ProfileLine) -> float:
        per_pass = self.held_out_pass_h if line.held_out else self.validation_pass_h
        return line.runs * line.step_factor * self.run_h + line.passes * per_pass

    def total_hours(self) -> float:
        return sum(self.line_hours(line) for line in self.lines)


def profile_cost(params: Params, rates: ProtocolRates | None) -> ProfileCost | None:
    """The composed `protocol` profile's six experiments at the protocol's rates: a step at
    ``train.batch_size`` × ``train.max_length`` tokens, a question evaluated at ≤
    ``infer.max_length`` tokens."""
    if rates is None:
        return None
    train, infer = params.ensemble(params.main_ensemble).train, params.infer
    held = sum(
        held_out_rows(n, params.data.calibration_fraction) for n in PROTOCOL_TRAIN_TASKS.values()
    )
    return ProfileCost(
        rates,
        tuple(profile_lines(params)),
        len(PROTOCOL_TASKS) * rates.run_h(train.steps or 0, train.batch_size, train.max_length),
        rates.pass_h(sum(PROTOCOL_TASKS.values()), infer.max_length),
        rates.pass_h(held, infer.max_length),
        held,
    )


def profile_block(params: Params, found: ProfileCost | None) -> str:
    """The table of this repository's `protocol` profile, every number an estimate."""
    if found is None:
        return "No estimate of the `protocol` profile either."
    tasks, train = len(PROTOCOL_TASKS), params.ensemble(params.main_ensemble).train
    lines = [
        "| what | training runs per task | evaluation passes per task | a pass covers | how | "
        f"GPU-hours, {tasks} tasks ({found.rates.card}, estimate) |",
        "|---|---:|---:|---|---|---:|",
    ]
    for line in found.lines:
        covers = "the held-out rows" if line.held_out else "the validation split"
        lines.append(
            f"| {line.name} | {line.runs} | {line.passes} | {covers} | {line.how} | "
            f"≈ {_fine_hours(found.line_hours(line))} |"
        )
    runs = sum(line.runs for line in found.lines)
    passes = sum(line.passes for line in found.lines)
    lines.append(f"| all | {runs} | {passes} | | | **≈ {_hours(found.total_hours())}** |")
    fraction = params.data.calibration_fraction
    lines += [
        "",
        f"Estimate, from the composed params (`load_params` with `profile=protocol`) at the "
        f"rates above: a training run is {train.steps:,} steps at batch {train.batch_size} × "
        f"≤ {train.max_length} tokens ≈ {_fine_hours(found.run_h / tasks)} h a task. A pass over the "
        f"validation split reads the task's validation questions "
        f"({sum(PROTOCOL_TASKS.values()):,} over the {tasks} tasks) at ≤ "
        f"{params.infer.max_length} tokens (`infer.max_length`) ≈ "
        f"{found.validation_pass_h:.2f} h for all {tasks}; a pass over the held-out rows reads "
        f"the {100 * fraction:g} % of each task's training split that `prepare` holds out "
        f"(`data.calibration_fraction: {fraction:g}`; {found.held_out_questions:,} questions "
        f"over the {tasks} tasks) ≈ "
        f"{found.held_out_pass_h:.2f} h. Not counted: loading the base, writing checkpoints, "
        "the `methods` and `protocol` stages' tables. The members train jointly "
        "(`train.joint: true`), one step for all of them; they are counted as separate "
        "runs, since no joint training row was measured, so the ensemble's line is likely "
        "an overestimate.",
    ]
    return "\n".join(lines)


def protocol_block(found: ProtocolCost | None) -> str:
    if found is None:
        return "No bfloat16 training rows at batch 8 and 32 measured on one card yet: no estimate."
    tasks, seeds = len(PROTOCOL_TASKS), PROTOCOL_SEEDS
    lines = [
        "| method | training runs per task and seed | evaluation passes per task and seed | "
        f"how | GPU-hours, {tasks} tasks × {seeds} seeds ({found.card}, estimate) |",
        "|---|---:|---:|---|---:|",
    ]
    for name, runs, passes, how in PROTOCOL_METHODS:
        hours = found.method_hours(runs, passes)
        lines.append(f"| {name} | {runs} | {passes} | {how} | ≈ {_hours(hours)} |")
    lines.append(f"| all six | | | | **≈ {_hours(found.total_hours())}** |")
    questions = sum(PROTOCOL_TASKS.values())
    lines += [
        "",
        f"Estimate: one step of Llama-2-7B at batch {PROTOCOL_BATCH} × {PROTOCOL_MAX_LENGTH} "
        f"tokens (the maximum length: an upper bound on the tokens) ≈ {found.step_s:.3f} s, from "
        "a line through the step times of the two bfloat16 one-member training rows (batch 8 and "
        "32; its fixed part "
        "is the host's kernel launches; its per-token part is scaled by the block parameters, "
        f"{LLAMA2_7B_BLOCK_PARAMETERS / 1e9:.2f} B against Mistral-7B's), so a run of "
        f"{PROTOCOL_STEPS:,} steps ≈ {_hours(found.per_run_h)} h. An evaluation pass reads the "
        f"{tasks} validation splits ({questions:,} questions at ≤ {PROTOCOL_MAX_LENGTH} tokens) "
        f"at the measured evaluation rate, scaled the same way: ≈ {found.eval_pass_h:.2f} h. "
        f"Rows {', '.join(found.cites)}.",
    ]
    return "\n".join(lines)


def cost_block(params: Params, cards: dict[str, dict[str, Measured]], protocol: Params) -> str:
    """The paper profile's and Colab's costs, the published protocol's table, then this
    repository's `protocol` profile (``protocol``: its composed params)."""
    lines = [
        "| run | card | base | GPU-hours | training | evaluation | peak memory | from |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for r in cost_rows(params, cards):
        f = r.found
        split = ("–", "–") if f is None else (_hours(f.train_h), _hours(f.eval_h))
        lines.append(
            f"| {r.run} | {r.card} | {r.base_label} | {_hours_cell(f)} | {split[0]} | "
            f"{split[1]} | {_memory_cell(f)} | {_source_cell(f)} |"
        )
    m = len(params.members)
    lines += [
        "",
        f"GPU-hours = training + evaluation. Training: members × epochs × "
        f"{PAPER_TRAIN_QUESTIONS:,} CommonsenseQA questions ÷ the questions/s of the training "
        f"row at batch {params.train.batch_size} (one member's row for a stage per member, the "
        f"{m}-member joint row for `0-{m - 1}`). Evaluation: the prior once, then members × "
        f"epochs, each over {PAPER_EVAL_QUESTIONS:,} questions (CQA validation, MMLU STEM, "
        "MMLU social sciences) ÷ the questions/s of the matching evaluation row. Not counted: "
        "loading the base (once per stage), writing checkpoints, and the rival methods "
        "(`methods.run`). The rows time prompts of the real sets' lengths (gpu_check.py's "
        "ranges) on random weights. A card that was not measured gets an *estimate* "
        "(`lorauq.colab.scale_hours`, the model the Colab notebook quotes): with `ratio` the "
        "two cards' datasheet dense matmul peaks (bfloat16; float16 for the T4), evaluation "
        "takes `ratio` × the measured hours; one member's training at batch 8 kept the measured "
        "H100 busy only a third of each step (the host the rest), so it takes max(1, ratio/3) ×. "
        "Joint training without a measured joint row counts its rows at one member's "
        "batch-32 rate (an estimate too).",
        "",
        "**The Bayesian-LoRA protocol table** (Llama-2-7B, six tasks, 5,000 steps at batch 4, "
        "max length 300, 3 seeds, the methods of Laplace-LoRA's table; MC dropout and Laplace "
        "reuse a run): an estimate from the Mistral-7B rows, not a run.",
        "",
        protocol_block(protocol_cost(cards)),
        "",
        f"**This repository's `protocol` profile** (`dvc exp run -S profile=protocol`, one "
        f"experiment per task, {len(PROTOCOL_TASKS)} in all: [protocol.md](protocol.md)) runs "
        "other work per task: more members, checkpoints, held-out rows, and each method's "
        "`runs` within the one experiment in place of seeds, as its params say. Its cost at "
        "the same rates, an estimate too:",
        "",
        profile_block(protocol, profile_cost(protocol, protocol_rates(cards))),
    ]
    return "\n".join(lines)


def summary_block(params: Params, cards: dict[str, dict[str, Measured]], protocol: Params) -> str:
    """The README's short cost table: the runs a reader picks between."""
    lines = ["| run | card | base | GPU-hours | peak memory |", "|---|---|---|---:|---:|"]
    for r in cost_rows(params, cards):
        if r.summary:
            lines.append(
                f"| {r.run} | {r.card} | {r.base_label} | {_hours_cell(r.found)} | "
                f"{_memory_cell(r.found)} |"
            )
    published = protocol_cost(cards)
    if published is not None:
        lines.append(
            "| the Bayesian-LoRA protocol table: Llama-2-7B, 6 tasks × 3 seeds, 6 methods | "
            f"{published.card} | bfloat16 | ≈ {_hours(published.total_hours())} (estimate) | – |"
        )
    ours = profile_cost(protocol, protocol_rates(cards))
    if ours is not None:
        methods = ", ".join(protocol.methods.run)
        lines.append(
            f"| this repository's `protocol` profile: Llama-2-7B, 6 tasks, "
            f"{len(protocol.members)} members, {methods} | {ours.rates.card} | "
            f"{protocol.base.dtype} | ≈ {_hours(ours.total_hours())} (estimate) | – |"
        )
    lines += [
        "",
        "GPU-hours from throughput measured on random weights of the model's geometry; "
        "*estimate*: a card that was not measured, scaled by datasheet peaks, or a run that "
        "was not timed. Rows, dates and formulas: "
        "[docs/gpu.md](docs/gpu.md#what-a-run-costs).",
    ]
    return "\n".join(lines)


def path_time_cell(params: Params, cards: dict[str, dict[str, Measured]]) -> str:
    """The time cell of the README's "paper on a GPU" row: the profile as configured, in its
    own dtype and in bfloat16."""
    parts = []
    for row in cost_rows(params, cards)[:2]:
        value = NOT_YET if row.found is None else f"≈ {_hours(row.found.hours)} GPU-h"
        parts.append(f"{value} in {row.base} ({row.card})")
    return "; ".join(parts) + " ([cost](docs/gpu.md#what-a-run-costs))"


# ----------------------------------------------------------------------------- blocks


def markers(name: str) -> tuple[str, str]:
    return (
        f"<!-- gpu-{name}:start (written by `python scripts/gpu_tables.py` from "
        "benchmarks/results/*.json) -->",
        f"<!-- gpu-{name}:end -->",
    )


def replace_block(text: str, name: str, body: str, where: Path) -> str:
    """``text`` with the block ``name`` (its markers kept) holding ``body``."""
    start, end = markers(name)
    return replace_marked(text, start, end, f"{start}\n{body}\n{end}", str(where))


def replace_path_row(text: str, cell: str, where: Path) -> str:
    """``text`` with the time cell (the third) of the ``paper on a GPU`` row set to ``cell``."""
    lines = text.split("\n")
    hits = [i for i, line in enumerate(lines) if line.startswith(PATH_ROW)]
    if len(hits) != 1:
        raise SystemExit(f"{where}: expected exactly one row starting {PATH_ROW!r}")
    cells = lines[hits[0]].split(" | ")
    cells[2] = cell
    lines[hits[0]] = " | ".join(cells)
    return "\n".join(lines)


def render(root: Path) -> dict[Path, str]:
    """The new text of docs/gpu.md and README.md under ``root``."""
    files = results.load_all(root / results.RESULTS)
    cards = newest_rows(files)
    params = load_params(root / "params.yaml", {"profile": "paper"})
    protocol = load_params(root / "params.yaml", {"profile": "protocol"})
    bodies: dict[str, Callable[[], str]] = {
        "throughput": lambda: throughput_block(files),
        "memory": lambda: memory_block(cards),
        "cost": lambda: cost_block(params, cards, protocol),
        "cost-summary": lambda: summary_block(params, cards, protocol),
    }
    out = {}
    for relative, names in BLOCKS.items():
        path = root / relative
        text = path.read_text(encoding="utf-8")
        for name in names:
            text = replace_block(text, name, bodies[name](), path)
        if relative == README:
            text = replace_path_row(text, path_time_cell(params, cards), path)
        out[path] = text
    return out


def stale(root: Path) -> list[Path]:
    """The files whose blocks differ from what the results files give."""
    return [path for path, text in render(root).items() if path.read_text(encoding="utf-8") != text]


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report stale files (exit 1)")
    parser.add_argument(
        "--root", type=Path, default=ROOT, help="the repository (default: this one)"
    )
    args = parser.parse_args(None if argv is None else list(argv))
    if args.check:
        old = stale(args.root)
        for path in old:
            print(f"{path}: out of step with {results.RESULTS}/; run python scripts/gpu_tables.py")
        return 1 if old else 0
    for path, text in render(args.root).items():
        if path.read_text(encoding="utf-8") != text:
            write_text_atomic(path, text)
            print(f"{path}: rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
