"""Stage ``method@<name>``: one rival method's samples, in ``data/methods/<name>/``.

``samples.parquet`` holds the samples of the method's run from member 0 in the logits
store's schema (sample s as member s, at the main ensemble's final epoch);
``runs/member-<m>.parquet`` its runs from the other members, for the methods made from one
member's logits or adapter alone (:data:`PER_MEMBER`: ``single`` and ``checkpoints`` from
stored logits, ``temperature`` from the final adapter); ``linearised.parquet`` Laplace's
probit read-out; ``info.json`` what the method fitted, what it cost (fine-tuning and
evaluation passes relative to one member) and the stage's peak memory. ``laplace`` starts
from member 0's final adapter, ``mc_dropout`` from its seed (it trains its own member, with
LoRA dropout).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pandas as pd

from lorauq.atomic import write_text_atomic
from lorauq.checkpoints import completed_epochs, epoch_dir
from lorauq.config import Params, load_params, unit_members
from lorauq.errors import ConfigError, StoreError, exit_code
from lorauq.layout import Layout
from lorauq.methods import posthoc
from lorauq.model import load_base, set_threads
from lorauq.store import read_logits, write_logits

__all__ = ["COST", "PER_MEMBER", "main", "member_unit", "method_dir", "peak_memory", "run"]


def method_dir(layout: Layout, name: str) -> Path:
    return layout.root / "data" / "methods" / name


def member_unit(params: Params, member: int = 0) -> str:
    """The member stage of the main ensemble that holds ``member`` (0: the methods' start)."""
    for unit in params.units:
        if member in unit_members(unit):
            return unit
    raise ConfigError(
        f"{params.profile}.members {params.units}: the methods start from member {member}, "
        "which is not among them"
    )


def _final_adapter(params: Params, layout: Layout, member: int = 0) -> tuple[Path, int]:
    folder = layout.member_dir(params.main_ensemble, member_unit(params, member), member)
    epochs = completed_epochs(folder)
    if not epochs:
        raise StoreError(f"{folder}: no complete epochs; fine-tune the main ensemble first")
    return epoch_dir(folder, epochs[-1]), epochs[-1]


def _member_logits(params: Params, layout: Layout, member: int = 0) -> pd.DataFrame:
    table = read_logits(layout.unit_logits(params.main_ensemble, member_unit(params, member)))
    return table[table["member"] == member]


def _mc_dropout(params: Params, layout: Layout, progress: bool) -> tuple[pd.DataFrame, dict]:
    from lorauq.methods.dropout import dropout_samples
    from lorauq.questions import read_prepared
    from lorauq.stages.infer import eval_sets
    from lorauq.train import train_member

    spec = params.ensemble(params.main_ensemble)
    m = params.methods.mc_dropout
    folder = method_dir(layout, "mc_dropout") / "member-0"
    model, tokenizer = load_base(params.base, layout.base)
    train_member(
        model,
        tokenizer,
        read_prepared(layout.train_table),
        member=0,
        member_dir=folder,
        lora=dataclasses.replace(spec.lora, dropout=m.dropout),
        train=spec.train,
        template=params.data.template,
        progress=progress,
    )
    final = completed_epochs(folder)[-1]
    model, tokenizer = load_base(params.base, layout.base)  # fresh: peft wrapped the first
    table = dropout_samples(
        model,
        tokenizer,
        epoch_dir(folder, final),
        eval_sets(params, layout),
        epoch=final,
        dropout=m.dropout,
        passes=m.passes,
        seed=m.seed,
        template=params.data.template,
        infer=params.infer,
        stored_letters=params.data.stored_letters,
    )
    return table, {"finetune_passes": 1, "eval_passes": m.passes, "dropout": m.dropout}


def _calibration_logits(params: Params, layout: Layout) -> pd.DataFrame:
    """Every member's final adapter on the held-out rows: one base load, the rows encoded
    once, the adapters in turn (as inference does without joint evaluation)."""
    from lorauq.infer import evaluate_in_turn
    from lorauq.questions import read_prepared
    from lorauq.readout import encode_eval_sets

    model, tokenizer = load_base(params.base, layout.base)
    encoded = encode_eval_sets(
        tokenizer,
        {"calibration": read_prepared(layout.calibration_table)},
        template=params.data.template,
        infer=params.infer,
        stored_letters=params.data.stored_letters,
        prefix="temperature",
    )
    folders = {}
    for member in params.members:
        adapter, final = _final_adapter(params, layout, member)
        folders[(member, final)] = adapter
    tables: list[pd.DataFrame] = []
    evaluate_in_turn(
        model,
        tokenizer.pad_token_id,
        encoded,
        folders,
        params.infer,
        False,
        lambda member, epoch, member_tables: tables.extend(member_tables),
    )
    return pd.concat(tables, ignore_index=True)


def _laplace(params: Params, layout: Layout) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    from lorauq.methods.laplace_lora import laplace_samples
    from lorauq.questions import read_prepared
    from lorauq.schedule import passes_over_data
    from lorauq.stages.infer import eval_sets

    m = params.methods.laplace
    adapter, final = _final_adapter(params, layout)
    model, tokenizer = load_base(params.base, layout.base)
    held = layout.calibration_table
    train_frame = read_prepared(layout.train_table)
    table, fitted, probit = laplace_samples(
        model,
        tokenizer,
        adapter,
        train_frame,
        eval_sets(params, layout),
        epoch=final,
        hessian=m.hessian,
        samples=m.samples,
        seed=m.seed,
        prior_precision=m.prior_precision,
        validation_frame=read_prepared(held) if held.exists() else None,
        member_table=posthoc.single(_member_logits(params, layout)) if m.linearised else None,
        template=params.data.template,
        infer=params.infer,
        stored_letters=params.data.stored_letters,
    )
    # the curvature: K backward passes (one per letter) per training question, against one
    # forward and backward pass per question and epoch of fine-tuning
    epochs = passes_over_data(params.ensemble(params.main_ensemble).train, len(train_frame))
    cost = {
        "finetune_passes": 1 + fitted["n_letters"] / epochs,
        "eval_passes": m.samples,
    }
    return table, {**cost, **fitted}, probit


def peak_memory() -> dict[str, float]:
    """This process's peak memory so far, in MiB: resident set (CPU, the whole process: base
    model, data, Python) and, on a GPU, torch's peak allocation."""
    import resource

    import torch

    peak = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if torch.cuda.is_available():
        peak["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return peak


#: Methods made from one member's stored logits or adapter alone: run once per member of the
#: main ensemble (each its own seed), so their rows are a mean ± std over seeds.
PER_MEMBER = ("single", "checkpoints", "temperature")
COST = {
    "single": lambda params: {"finetune_passes": 1, "eval_passes": 1},
    "checkpoints": lambda params: {
        "finetune_passes": 1,
        "eval_passes": params.methods.checkpoints.last,
    },
    "temperature": lambda params: {"finetune_passes": 1, "eval_passes": 1},
}


def _member_runs(params: Params, layout: Layout, name: str) -> dict[int, tuple[pd.DataFrame, dict]]:
    """Every run of a per-member method, by member: its samples (sample s as member s) and
    what it fitted; the main ensemble's logits are read once for all of them."""
    logits = read_logits([layout.unit_logits(params.main_ensemble, unit) for unit in params.units])
    if name == "single":
        return {m: (posthoc.single(logits, m), {}) for m in params.members}
    if name == "checkpoints":
        k = params.methods.checkpoints.last
        return {m: (posthoc.snapshot(logits, k, m), {}) for m in params.members}
    held = _calibration_logits(params, layout)
    runs = {}
    for m in params.members:
        rows = held[held["member"] == m]
        temperature = posthoc.fit_temperature(rows)
        fitted = {"temperature": temperature, "calibration_rows": len(rows)}
        runs[m] = (posthoc.scale(posthoc.single(logits, m), temperature), fitted)
    return runs


def run(params: Params, name: str, layout: Layout = Layout(), progress: bool = True) -> Path:
    """Write ``data/methods/<name>/samples.parquet`` and ``info.json``."""
    if name not in params.methods.run:
        raise ConfigError(
            f"{params.profile}.methods.run {params.methods.run} does not run {name!r}"
        )
    member_unit(params, 0)  # every method starts from member 0
    set_threads(params.infer.threads)
    extra: dict[str, pd.DataFrame] = {}
    runs: dict[int, pd.DataFrame] = {}
    if name in PER_MEMBER:
        fitted_runs = _member_runs(params, layout, name)
        info = {**COST[name](params), **fitted_runs[0][1]}
        if name == "temperature":
            info["temperatures"] = [fitted["temperature"] for _, fitted in fitted_runs.values()]
        runs = {member: rows for member, (rows, _) in fitted_runs.items()}
        table = runs.pop(0)
    elif name == "mc_dropout":
        table, info = _mc_dropout(params, layout, progress)
    else:
        table, info, linearised = _laplace(params, layout)
        if linearised is not None:
            extra["linearised"] = linearised
    folder = method_dir(layout, name)
    folder.mkdir(parents=True, exist_ok=True)
    for read_out, rows in extra.items():
        write_logits(rows, folder / f"{read_out}.parquet")
    for member, rows in runs.items():
        write_logits(rows, folder / "runs" / f"member-{member}.parquet")
    info = {**info, "runs": 1 + len(runs), **peak_memory()}
    write_text_atomic(folder / "info.json", json.dumps(info, indent=1, sort_keys=True) + "\n")
    return write_logits(table, folder / "samples.parquet")


def main(argv: list[str] | None = None) -> int:
    """``python -m lorauq.stages.methods <name>``: the stage ``method@<name>``."""
    args = sys.argv[1:] if argv is None else argv
    return exit_code(lambda: run(load_params(), args[0], Layout(), progress=False))


if __name__ == "__main__":
    sys.exit(main())
