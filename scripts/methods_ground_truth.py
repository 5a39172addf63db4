"""Does each method find the tiny world's built-in uncertainty? World seeds 0-4, every method.

The tiny world knows which questions are epistemically uncertain (``unseen``: made-up words
no member was taught) and which aleatorically (``noisy``: answers drawn at random half the
time). For each world seed this script runs the default tiny experiment's main ensemble with
every method in a temporary folder and asks, per method:

* does mutual information rank ``unseen`` above ``in_domain`` (AUROC > 0.5)?
* does expected entropy rank ``noisy`` above both clean sets, ``in_domain`` and ``known``?

Every AUROC is over questions (the set's against the reference set's), at the final epoch,
the mean over a method's runs. ``docs/methods-ground-truth.csv`` holds them; the table in
``docs/methods.md`` is :func:`render` of it (``tests/test_methods_ground_truth.py``).

    python scripts/methods_ground_truth.py --seeds 0-4
    python scripts/methods_ground_truth.py --seeds 0-4 --methods ivon

``--methods`` runs only those (with the ensemble they start from) and replaces their rows in
``--out``, keeping the other methods' rows as they are.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lorauq.analysis import probability_cube  # noqa: E402
from lorauq.atomic import atomic_path  # noqa: E402
from lorauq.config import METHODS, load_params  # noqa: E402
from lorauq.in_process import run_experiment, seed_range, world_seed_overrides  # noqa: E402
from lorauq.layout import Layout  # noqa: E402
from lorauq.stages.methods_report import collect  # noqa: E402
from lorauq.uncertainty import auroc, expected_entropy, mutual_information  # noqa: E402

OUT = ROOT / "docs" / "methods-ground-truth.csv"
#: (column, score, the set that should score higher, the reference set)
CHECKS = (
    ("auroc_mi_unseen_vs_in_domain", mutual_information, "unseen", "in_domain"),
    ("auroc_ee_noisy_vs_in_domain", expected_entropy, "noisy", "in_domain"),
    ("auroc_ee_noisy_vs_known", expected_entropy, "noisy", "known"),
)


def overrides(seed: int, methods: Sequence[str] = METHODS) -> dict[str, object]:
    """World seed ``seed``'s experiment (as the margins') with the calibration split and
    ``methods`` (every method unless told)."""
    return {
        **world_seed_overrides(seed),
        "tiny.data.calibration_fraction": 0.1,
        "tiny.methods.run": list(methods),
    }


def separation(table: pd.DataFrame, score, high: str, low: str) -> float:
    """AUROC of ``score`` telling set ``high`` (positive) from set ``low``, final epoch."""
    a = score(probability_cube(table, low).probs[:, -1])
    b = score(probability_cube(table, high).probs[:, -1])
    return auroc(np.r_[a, b], np.r_[np.zeros(len(a), bool), np.ones(len(b), bool)])


def method_checks(runs: list[pd.DataFrame]) -> dict[str, float | str]:
    """Every check of one method, the mean over its runs; MI of one sample cannot rank."""
    out: dict[str, float | str] = {}
    for column, score, high, low in CHECKS:
        if score is mutual_information and runs[0]["member"].nunique() == 1:
            out[column] = "one sample"
            continue
        out[column] = float(np.mean([separation(t, score, high, low) for t in runs]))
    return out


def measure_seed(seed: int, methods: Sequence[str] = METHODS) -> list[dict]:
    with tempfile.TemporaryDirectory() as folder:
        params = load_params(ROOT / "params.yaml", overrides(seed, methods))
        layout = Layout(Path(folder))
        start = time.perf_counter()
        run_experiment(params, layout)
        elapsed = time.perf_counter() - start
        found = collect(params, layout)
        return [
            {"world_seed": seed, "method": name, **method_checks(m.runs), "elapsed_s": elapsed}
            for name, m in found.items()
        ]


def render(table: pd.DataFrame) -> str:
    """The docs' table: per method, in how many seeds each check holds, and its AUROC range."""
    seeds = table["world_seed"].nunique()
    header = "| method | MI: `unseen` > `in_domain` | EE: `noisy` > `in_domain` | EE: `noisy` > `known` |"
    lines = [header, "|---|---|---|---|"]
    for method, rows in table.groupby("method", sort=False):
        cells = []
        for column, *_ in CHECKS:
            values = pd.to_numeric(rows[column], errors="coerce")
            if values.isna().all():
                cells.append("one sample: MI ≡ 0")
                continue
            holds = int((values > 0.5).sum())
            cells.append(f"{holds} of {seeds} ({values.min():.3f}–{values.max():.3f})")
        lines.append(f"| `{method}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def merged(kept: pd.DataFrame, measured: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """``kept``'s rows with ``methods``' rows (and their read-outs, ``laplace_linearised``)
    taken from ``measured`` instead."""

    def ours(name: str) -> bool:
        return any(name == m or name.startswith(f"{m}_") for m in methods)

    new = measured[measured["method"].map(ours)]
    return pd.concat([kept[~kept["method"].map(ours)], new], ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-4", help="a range such as 0-4")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help="comma-separated methods to run; the other methods' rows in --out are kept",
    )
    args = parser.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"--methods: {unknown} are not methods; methods: {list(METHODS)}")
    rows = []
    for seed in seed_range(args.seeds):
        rows += measure_seed(seed, methods)
        print(pd.DataFrame(rows).round(3).to_string(index=False), flush=True)
    table = pd.DataFrame(rows)
    if set(methods) != set(METHODS):
        table = merged(pd.read_csv(args.out), table, methods)
    with atomic_path(args.out) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    print()
    print(render(table))


if __name__ == "__main__":
    main()
