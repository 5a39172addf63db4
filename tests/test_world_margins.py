"""The tiny world's margins, as measured for world seeds 0-9, clear the e2e test's bars.

``docs/tiny-world-margins.csv`` is ``scripts/world_margins.py``'s output; ``docs/tiny-world.md``
shows it. If a change to the world or the training weakens an effect, rerun the script: this
test then says which seed and effect no longer leave room above the e2e bar.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from world_bars import BARS, MARGINS

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _margins() -> pd.DataFrame:
    return pd.read_csv(DOCS / "tiny-world-margins.csv")


def test_ten_world_seeds_were_measured() -> None:
    assert sorted(_margins()["world_seed"]) == list(range(10))


def test_every_seed_clears_every_bar_with_room() -> None:
    table = _margins()
    short = [
        (int(row.world_seed), effect, round(getattr(row, effect), 3), BARS[effect] + room)
        for row in table.itertuples()
        for effect, room in MARGINS.items()
        if getattr(row, effect) < BARS[effect] + room
    ]
    assert short == [], f"(seed, effect, value, needed): {short}"


def test_the_docs_show_the_measured_table() -> None:
    text = (DOCS / "tiny-world.md").read_text(encoding="utf-8")
    for row in _margins().itertuples():
        cells = [f"{getattr(row, effect):.3f}" for effect in BARS]
        assert f"| {int(row.world_seed)} | " + " | ".join(cells) + " |" in text, row
