"""Stage ``protocol``: ``reports/protocol.csv``, its figure and the published rows beside it.

The methods of the methods table (:func:`lorauq.stages.methods_report.collect`), with ECE
recomputed in the protocol's 15 bins, as the Bayesian-LoRA protocol reports them
(:mod:`lorauq.protocol`): the LoRA ensemble of all the profile's members at the final epoch
(``ensemble_m<M>``), the first three of them (``ensemble_m3``, the ensemble the protocol's
papers ran), the M members each early-stopped on the held-out training rows
(``ensemble_m<M>_early``, the method ``early_stopped``, as the ensemble should be run), and
each other method of ``methods.run``. Ensembles selected at their best epoch on
the validation split are left out: the protocol's sets are its validation splits, and a
number selected on them is not a validation number. The task is the training source's name.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from lorauq.atomic import atomic_path
from lorauq.config import Params, load_params
from lorauq.errors import exit_code
from lorauq.layout import Layout
from lorauq.methods.registry import FINAL
from lorauq.methods.report import MethodRuns, methods_table
from lorauq.plots import save_figure
from lorauq.protocol import ECE_BINS, figure, protocol_comparison, protocol_rows
from lorauq.protocol_reference import read_protocol_reference
from lorauq.stages.methods_report import collect

__all__ = ["EARLY_STOPPED", "PROTOCOL_ENSEMBLE", "REFERENCE", "main", "protocol_methods", "run"]

#: The published numbers of the protocol (data/reference/README.md).
REFERENCE = Path("data") / "reference" / "bayesian_lora_protocol.csv"
#: The method whose samples are the ensemble early-stopped on held-out training rows.
EARLY_STOPPED = "early_stopped"
#: The ensemble size the protocol's papers ran.
PROTOCOL_ENSEMBLE = 3


def _write_csv(table: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")


def protocol_methods(params: Params, layout: Layout) -> dict[str, MethodRuns]:
    """The rows of the protocol table: the ensembles of M = all and M = 3 members at the final
    epoch, the M-member ensemble early-stopped on held-out training rows where ``methods.run``
    has ``early_stopped`` (``ensemble_m<M>_early``), then each other method of it."""
    found = collect(params, layout)
    early = found.pop(EARLY_STOPPED, None)
    everyone = found.pop("lora_ensemble")
    found.pop("lora_ensemble@best", None)
    found.pop("single@best", None)
    final = everyone.runs[0]
    members = sorted(set(final["member"]))
    rows = {f"ensemble_m{len(members)}": everyone}
    if len(members) > PROTOCOL_ENSEMBLE:
        first = final[final["member"].isin(members[:PROTOCOL_ENSEMBLE])]
        cost = {"finetune_passes": PROTOCOL_ENSEMBLE, "eval_passes": PROTOCOL_ENSEMBLE}
        rows[f"ensemble_m{PROTOCOL_ENSEMBLE}"] = MethodRuns(
            [first], cost, f"one ensemble of the first {PROTOCOL_ENSEMBLE} seeds", FINAL
        )
    if early is not None:
        rows[f"ensemble_m{early.runs[0]['member'].nunique()}_early"] = early
    return {**rows, **found}


def run(params: Params, layout: Layout = Layout(), reference: Path = REFERENCE) -> pd.DataFrame:
    """Write ``reports/protocol.csv``, ``reports/protocol/{png,pdf}/protocol.*`` and
    ``reports/protocol_comparison.csv`` (every row of ``reference`` with ours beside it);
    return the protocol table."""
    a = params.analysis
    methods = methods_table(protocol_methods(params, layout), a.in_domain, ECE_BINS, a.readout)
    task = params.data.train.source
    table = protocol_rows(methods, task, {a.in_domain: task})
    _write_csv(table, layout.reports / "protocol.csv")
    save_figure(figure(table), layout.reports / "protocol", "protocol")
    published = read_protocol_reference(reference)
    _write_csv(protocol_comparison(table, published), layout.reports / "protocol_comparison.csv")
    return table


def main() -> int:
    return exit_code(lambda: run(load_params()).to_string())


if __name__ == "__main__":
    sys.exit(main())
