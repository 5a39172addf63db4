"""End to end on the tiny configuration: the world's uncertainty shows up where it was built in.

The pipeline's stages run in-process, for two seeds of the synthetic world other than the
default one. The bars are what the world guarantees for *every* seed, not for the seeds
tested here: ``scripts/world_margins.py`` measured seeds 0-9 (``docs/tiny-world.md``), and
``tests/test_world_margins.py`` checks that each of them clears every bar
(``world_bars.BARS``) by its margin (``MARGINS``), room for another CPU's rounding (BLAS
kernels differ across CPUs, and one flipped question moves the in-domain accuracy by 1/32).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from world_bars import BARS

from lorauq.config import load_params
from lorauq.in_process import run_experiment, world_effects, world_seed_overrides
from lorauq.layout import Layout

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("world_seed", [1, 2])
def test_tiny_world_uncertainty_lands_where_built(tmp_path: Path, world_seed: int) -> None:
    torch.set_num_threads(2)
    params = load_params(ROOT / "params.yaml", world_seed_overrides(world_seed))
    metrics = run_experiment(params, Layout(tmp_path)).metrics["lora_l2"]["renormalized"]

    effects = world_effects(metrics)
    assert {k: v for k, v in effects.items() if v < BARS[k]} == {}, effects
    # The prior is one model: no disagreement before fine-tuning.
    assert all(
        v["mutual_information"] == pytest.approx(0.0, abs=1e-6) for v in metrics["prior"].values()
    )
    assert (tmp_path / "reports" / "metrics.json").is_file()
