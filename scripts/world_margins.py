"""The tiny world's effects for world seeds 0-9: how far each lies from the bar the e2e test sets.

The synthetic world builds its uncertainty in (``lorauq/tiny/world.py``): in-domain facts are
taught, ``known`` facts are pre-trained only, ``unseen`` words appear nowhere, and the
``noisy`` group's answers are drawn at random half the time. This script runs the default
tiny experiment (its main ensemble only) for each world seed in a temporary folder and prints,
per seed, each effect the world is built to produce; ``tests/test_world_margins.py`` checks
that every seed clears the end-to-end test's bars with room to spare. ``docs/tiny-world.md`` shows its output.

    python scripts/world_margins.py --seeds 0-9 --out docs/tiny-world-margins.csv
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from lorauq.atomic import atomic_path
from lorauq.config import load_params
from lorauq.in_process import (
    run_experiment,
    seed_range,
    world_effects,
    world_seed_overrides,
)
from lorauq.layout import Layout

ROOT = Path(__file__).resolve().parents[1]


def measure_seed(seed: int, threads: int) -> dict[str, float]:
    """Run one world seed's experiment (main ensemble only) and read its effects."""
    torch.set_num_threads(threads)
    overrides = world_seed_overrides(seed)
    with tempfile.TemporaryDirectory() as folder:
        params = load_params(ROOT / "params.yaml", overrides)
        start = time.perf_counter()
        metrics = run_experiment(params, Layout(Path(folder))).metrics
        elapsed = time.perf_counter() - start
    return {
        "world_seed": seed,
        **world_effects(metrics["lora_l2"]["renormalized"]),
        "elapsed_s": elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-9", help="a range such as 0-9")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "tiny-world-margins.csv")
    args = parser.parse_args()
    rows = []
    for seed in seed_range(args.seeds):
        rows.append(measure_seed(seed, args.threads))
        print(pd.DataFrame(rows).round(3).to_string(index=False), flush=True)
    table = pd.DataFrame(rows)
    with atomic_path(args.out) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    effects = [c for c in table.columns if c not in ("world_seed", "elapsed_s")]
    worst = {column: table[column].min() for column in effects}
    print("\nworst seed per effect:")
    for column, value in worst.items():
        print(f"  {column}: {value:.3f}")


if __name__ == "__main__":
    main()
