"""Stage ``method@<name>``: one rival method's samples, in ``data/methods/<name>/``.

The method is the record :func:`lorauq.methods.registry.method` finds by name; its ``run``
(in ``lorauq/methods/<name>.py``) returns a :class:`MethodOutput` and this module writes it:
``samples.parquet`` the samples of its run from member 0 in the logits store's schema
(sample s as member s, at the main ensemble's final epoch); ``runs/member-<m>.parquet`` its
runs from the other members, for a method that runs once per member; ``<read-out>.parquet``
another read-out of the same run (Laplace's probit one, ``linearised.parquet``);
``info.json`` what the method fitted and what it cost (fine-tuning and evaluation passes
relative to one member, the record's cost model); ``runs/<read-out>/member-<m>.parquet`` that
read-out of the run from member m, for a method with ``runs`` > 1 in its settings (run r from
member r: its seed, or its adapter); ``reports/costs/method-<name>.json`` the
stage's peak memory on this machine (a measurement, kept apart from the results). Every
method starts from the main ensemble: member 0's adapter, its stored logits, or its seed.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from lorauq.atomic import write_text_atomic
from lorauq.checkpoints import completed_epochs, epoch_dir
from lorauq.config import Params, load_params, unit_members
from lorauq.errors import ConfigError, StoreError, exit_code
from lorauq.layout import Layout
from lorauq.methods.registry import method
from lorauq.model import set_threads
from lorauq.store import read_logits, write_logits

__all__ = [
    "MethodOutput",
    "cost_file",
    "final_adapter",
    "main",
    "main_logits",
    "member_checkpoints",
    "member_logits",
    "member_unit",
    "method_dir",
    "peak_memory",
    "run",
    "write_output",
]


@dataclass
class MethodOutput:
    """What a method's ``run`` returns: the samples of its run from member 0 (sample s as
    member s), what it fitted, its runs from the other members by member (methods that run
    once per member, or ``runs`` times), other read-outs of the same run by name, and those
    read-outs of the other runs (read-out → member → rows)."""

    samples: pd.DataFrame
    fitted: dict = field(default_factory=dict)
    runs: dict[int, pd.DataFrame] = field(default_factory=dict)
    readouts: dict[str, pd.DataFrame] = field(default_factory=dict)
    readout_runs: dict[str, dict[int, pd.DataFrame]] = field(default_factory=dict)


def method_dir(layout: Layout, name: str) -> Path:
    return layout.root / "data" / "methods" / name


def cost_file(layout: Layout, name: str) -> Path:
    """Where stage ``method@<name>`` records this machine's peak memory: apart from its
    samples and ``info.json``, so that their hashes depend on the experiment alone."""
    return layout.reports / "costs" / f"method-{name}.json"


def member_unit(params: Params, member: int = 0) -> str:
    """The member stage of the main ensemble that holds ``member`` (0: the methods' start)."""
    for unit in params.units:
        if member in unit_members(unit):
            return unit
    raise ConfigError(
        f"{params.profile}.members {params.units}: the methods start from member {member}, "
        "which is not among them"
    )


def member_checkpoints(params: Params, layout: Layout, member: int = 0) -> dict[int, Path]:
    """The folders of ``member``'s complete checkpoints in the main ensemble, by epoch (the
    logits' ``epoch`` column), in order."""
    folder = layout.member_dir(params.main_ensemble, member_unit(params, member), member)
    epochs = completed_epochs(folder)
    if not epochs:
        raise StoreError(f"{folder}: no complete epochs; fine-tune the main ensemble first")
    return {epoch: epoch_dir(folder, epoch) for epoch in epochs}


def final_adapter(params: Params, layout: Layout, member: int = 0) -> tuple[Path, int]:
    """The folder of ``member``'s last complete epoch in the main ensemble, and the epoch."""
    epoch, folder = list(member_checkpoints(params, layout, member).items())[-1]
    return folder, epoch


def member_logits(params: Params, layout: Layout, member: int = 0) -> pd.DataFrame:
    """``member``'s stored logits in the main ensemble, every epoch."""
    table = read_logits(layout.unit_logits(params.main_ensemble, member_unit(params, member)))
    return table[table["member"] == member]


def main_logits(params: Params, layout: Layout) -> pd.DataFrame:
    """Every member's stored logits in the main ensemble, every epoch (read once)."""
    return read_logits([layout.unit_logits(params.main_ensemble, unit) for unit in params.units])


def peak_memory() -> dict[str, float]:
    """This process's peak memory so far, in MiB: resident set (CPU, the whole process: base
    model, data, Python) and, on a GPU, torch's peak allocation."""
    import resource

    import torch

    peak = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if torch.cuda.is_available():
        peak["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return peak


def run(params: Params, name: str, layout: Layout = Layout(), progress: bool = True) -> Path:
    """Run method ``name`` and write ``data/methods/<name>/``; the samples' path."""
    record = method(name)
    if name not in params.methods.run:
        raise ConfigError(
            f"{params.profile}.methods.run {params.methods.run} does not run {name!r}"
        )
    member_unit(params, 0)  # every method starts from member 0
    set_threads(params.infer.threads)
    out = record.run(params, layout, progress)
    samples = write_output(params, name, out, layout)
    write_text_atomic(cost_file(layout, name), json.dumps(peak_memory(), indent=1) + "\n")
    return samples


def write_output(params: Params, name: str, out: MethodOutput, layout: Layout) -> Path:
    """Write what method ``name`` returned into ``data/methods/<name>/``, the samples last;
    their path. Its runs must be the ones its record and settings ask for: one per other
    member of the main ensemble, or members 1 … ``runs`` − 1."""
    record = method(name)
    if record.per_member:
        expected, why = sorted(m for m in params.members if m != 0), "once per member"
    else:
        runs = getattr(getattr(params.methods, name), "runs", 1)
        expected, why = list(range(1, runs)), f"{runs} times (runs: {runs})"
    if sorted(out.runs) != expected:
        raise StoreError(f"method {name!r} runs {why} but returned runs for {sorted(out.runs)}")
    folder = method_dir(layout, name)
    folder.mkdir(parents=True, exist_ok=True)
    for read_out, rows in out.readouts.items():
        write_logits(rows, folder / f"{read_out}.parquet")
    for member, rows in out.runs.items():
        write_logits(rows, folder / "runs" / f"member-{member}.parquet")
    for read_out, by_member in out.readout_runs.items():
        for member, rows in by_member.items():
            write_logits(rows, folder / "runs" / read_out / f"member-{member}.parquet")
    info = {**record.cost(params, out.fitted), **out.fitted, "runs": 1 + len(out.runs)}
    write_text_atomic(folder / "info.json", json.dumps(info, indent=1, sort_keys=True) + "\n")
    return write_logits(out.samples, folder / "samples.parquet")


def main(argv: list[str] | None = None) -> int:
    """``python -m lorauq.stages.methods <name>``: the stage ``method@<name>``."""
    args = sys.argv[1:] if argv is None else argv
    return exit_code(lambda: run(load_params(), args[0], Layout(), progress=False))


if __name__ == "__main__":
    sys.exit(main())
